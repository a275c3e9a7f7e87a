/*
 * hosts.c - the hosts table: read once by main() before any shard starts,
 * read-only afterwards, so any thread may look names up in it without a
 * lock. Lookups are a binary search over lower-cased names.
 */
#include "hosts.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"

struct host_entry {
    char *name; /* lower case */
    union sockaddr_inx addr;
};

struct hosts {
    struct host_entry *e;
    size_t n;
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct host_entry *)a)->name, ((const struct host_entry *)b)->name);
}

static int
hosts_add(struct hosts *h, size_t *cap, const char *name, const union sockaddr_inx *a)
{
    if (h->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct host_entry *n = realloc(h->e, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        h->e = n;
        *cap = ncap;
    }
    char *s = strdup(name);
    if (!s)
        return -ENOMEM;
    h->e[h->n].name = s;
    h->e[h->n].addr = *a;
    h->n++;
    return 0;
}

struct hosts *
hosts_load(const char *path)
{
    struct hosts *h = calloc(1, sizeof(*h));
    size_t cap = 0;
    if (!h)
        return NULL;
    FILE *f = fopen(path, "re");
    if (!f)
        return h;
    char line[1024];
    while (fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *save;
        char *ip = strtok_r(line, " \t\r\n", &save);
        if (!ip)
            continue;
        union sockaddr_inx a;
        memset(&a, 0, sizeof(a));
        if (inet_pton(AF_INET, ip, &a.v4.sin_addr) == 1)
            a.sa.sa_family = AF_INET;
        else if (inet_pton(AF_INET6, ip, &a.v6.sin6_addr) == 1)
            a.sa.sa_family = AF_INET6;
        else
            continue;
        for (char *name = strtok_r(NULL, " \t\r\n", &save); name;
             name = strtok_r(NULL, " \t\r\n", &save)) {
            /* Kept in the normal form lookups use; a name no request can carry is skipped. */
            char norm[HOSTNAME_MAX + 1];
            if (hostname_norm(name, strlen(name), norm) < 0)
                continue;
            if (hosts_add(h, &cap, norm, &a) < 0) {
                fclose(f);
                hosts_free(h);
                return NULL;
            }
        }
    }
    fclose(f);
    /* Stable order within a name is lost by qsort; hosts(5) order matters little. */
    qsort(h->e, h->n, sizeof(*h->e), entry_cmp);
    return h;
}

void
hosts_free(struct hosts *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        free(h->e[i].name);
    free(h->e);
    free(h);
}

void
hosts_set_port(union sockaddr_inx *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->v4.sin_port = htons(port);
    else
        a->v6.sin6_port = htons(port);
}

/* key is in normal form: lower case, no trailing dot. */
static bool
is_localhost(const char *key, size_t len)
{
    static const char lh[] = "localhost";
    const size_t n = sizeof(lh) - 1;
    if (len < n || memcmp(key + len - n, lh, n) != 0)
        return false;
    return len == n || key[len - n - 1] == '.';
}

unsigned
hosts_lookup(const struct hosts *h, const char *name, uint16_t port, union sockaddr_inx *out,
             unsigned max)
{
    char key[HOSTNAME_MAX + 1];
    unsigned n = 0;

    /* The one normal form (hostname.h): "LOCALHOST.", "localhost" and a table entry
     * compare alike, and "localhost.." is no name at all. */
    int len = hostname_norm(name, strnlen(name, HOSTNAME_MAX + 2), key);
    if (max == 0 || len < 0)
        return 0;

    /* RFC 6761 6.3: localhost names are loopback, whatever DNS or the file say. */
    if (is_localhost(key, (size_t)len)) {
        memset(&out[0], 0, sizeof(out[0]));
        out[0].v4.sin_family = AF_INET;
        out[0].v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        hosts_set_port(&out[0], port);
        n = 1;
        if (max > 1) {
            memset(&out[1], 0, sizeof(out[1]));
            out[1].v6.sin6_family = AF_INET6;
            out[1].v6.sin6_addr = in6addr_loopback;
            hosts_set_port(&out[1], port);
            n = 2;
        }
        return n;
    }
    if (!h || h->n == 0)
        return 0;
    struct host_entry k = {.name = key};
    struct host_entry *hit = bsearch(&k, h->e, h->n, sizeof(*h->e), entry_cmp);
    if (!hit)
        return 0;
    while (hit > h->e && strcmp(hit[-1].name, key) == 0)
        hit--;
    for (; hit < h->e + h->n && n < max && strcmp(hit->name, key) == 0; hit++) {
        out[n] = hit->addr;
        hosts_set_port(&out[n], port);
        n++;
    }
    return n;
}
