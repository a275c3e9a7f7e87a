/*
 * users.c - the user table: RFC 1929 names and their crypt(3) hashes, and
 * the dummy hash that unknown names are checked against.
 *
 * Threads: users_load()/users_free() on the main (control) thread, which
 * also runs the one crypt(3) that makes the dummy; the table is then
 * read-only and shared by every shard. The per-shard checker is authq.c.
 */
#include "users.h"

#include <crypt.h>
#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct user_entry {
    char *name;
    char *hash;
};

struct users {
    struct user_entry *e;
    size_t n;
    char *dummy; /* crypt(random, a hash of the commonest kind), or NULL: no users */
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct user_entry *)a)->name, ((const struct user_entry *)b)->name);
}

static bool
hash_supported(const char *h)
{
    /* crypt(3) prefixes libcrypt knows; anything else can never match. */
    static const char *const prefixes[] = {"$y$", "$gy$", "$7$", "$2b$",   "$2a$", "$2y$",
                                           "$6$", "$5$",  "$1$", "$sha1$", "$md5"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(h, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

size_t
users_hash_class_len(const char *h)
{
    size_t len = strlen(h);
    /* bcrypt: $2b$NN$ then salt and hash with no '$' between them. */
    if (h[0] == '$' && h[1] == '2' && h[2] && h[3] == '$') {
        const char *end = strchr(h + 4, '$');
        return end ? (size_t)(end - h) : len;
    }
    /* Everything else: ...$salt$hash, so the class ends at the second '$' from the end. */
    const char *last = strrchr(h, '$');
    if (!last || last == h)
        return len;
    for (const char *p = last - 1; p > h; p--)
        if (*p == '$')
            return (size_t)(p - h);
    return 0;
}

static int
class_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    size_t lx = users_hash_class_len(x), ly = users_hash_class_len(y);
    int r = memcmp(x, y, lx < ly ? lx : ly);
    return r ? r : (lx > ly) - (lx < ly);
}

static bool
same_class(const char *x, const char *y)
{
    return class_cmp(&x, &y) == 0;
}

/*
 * Unknown names must cost what known ones cost, or a stopwatch lists the
 * users: they are checked against a hash of the kind most entries have
 * (algorithm and cost), made here from a random password with the setting
 * of such an entry. One crypt(3) on the loading thread, never on a shard.
 * Entries whose hash crypt(3) cannot use are skipped; with none usable
 * there is no dummy and unknown names fail at once. -ENOMEM only.
 */
static int
make_dummy(struct users *u)
{
    int ret = 0;
    if (u->n == 0)
        return 0;
    const char **by = malloc(u->n * sizeof(*by));
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    if (!by || !cd) {
        ret = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < u->n; i++)
        by[i] = u->e[i].hash;
    qsort(by, u->n, sizeof(*by), class_cmp);
    /* Runs of one class, longest first (ties: the first in sort order). */
    size_t best = 0, best_n = 0;
    for (size_t i = 0, j; i < u->n; i = j) {
        for (j = i + 1; j < u->n && same_class(by[i], by[j]); j++)
            ;
        if (j - i > best_n) {
            best = i;
            best_n = j - i;
        }
    }
    char pw[33];
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
    for (size_t k = 0; k < u->n && !u->dummy; k++) {
        const char *setting = by[(best + k) % u->n];
        const char *out = crypt_rn(pw, setting, cd, sizeof(*cd));
        if (out && out[0] != '*' && strcmp(out, setting) != 0) {
            u->dummy = strdup(out);
            if (!u->dummy)
                ret = -ENOMEM;
            break;
        }
    }
    sodium_memzero(pw, sizeof(pw));
out:
    if (cd)
        sodium_memzero(cd, sizeof(*cd));
    free(cd);
    free(by);
    return ret;
}

struct users *
users_load(const char *path, char *err, size_t errlen)
{
    struct users *u = calloc(1, sizeof(*u));
    size_t cap = 0;
    unsigned lineno = 0;
    char line[1024];
    FILE *f = NULL;

    if (!u) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%u: line too long", path, lineno);
            goto fail;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        char *colon = strchr(p, ':');
        if (!colon || colon == p) {
            snprintf(err, errlen, "%s:%u: expected user:hash", path, lineno);
            goto fail;
        }
        *colon = '\0';
        const char *name = p, *hash = colon + 1;
        if (strlen(name) > 255) {
            snprintf(err, errlen, "%s:%u: user name longer than 255 bytes", path, lineno);
            goto fail;
        }
        if (!hash_supported(hash)) {
            snprintf(err, errlen,
                     "%s:%u: '%s' has no crypt(3) hash (make one with: mkpasswd -m yescrypt)", path,
                     lineno, name);
            goto fail;
        }
        if (strlen(hash) >= CRYPT_OUTPUT_SIZE) {
            snprintf(err, errlen, "%s:%u: hash too long", path, lineno);
            goto fail;
        }
        if (u->n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct user_entry *ne = realloc(u->e, ncap * sizeof(*ne));
            if (!ne) {
                snprintf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            u->e = ne;
            cap = ncap;
        }
        u->e[u->n].name = strdup(name);
        u->e[u->n].hash = strdup(hash);
        if (!u->e[u->n].name || !u->e[u->n].hash) {
            free(u->e[u->n].name);
            free(u->e[u->n].hash);
            snprintf(err, errlen, "%s: out of memory", path);
            goto fail;
        }
        u->n++;
    }
    fclose(f);
    if (u->n) /* qsort(NULL, 0, ...) is undefined: an empty file leaves e NULL */
        qsort(u->e, u->n, sizeof(*u->e), entry_cmp);
    for (size_t i = 1; i < u->n; i++) {
        if (strcmp(u->e[i - 1].name, u->e[i].name) == 0) {
            snprintf(err, errlen, "%s: user '%s' appears twice", path, u->e[i].name);
            users_free(u);
            return NULL;
        }
    }
    if (make_dummy(u) < 0) {
        snprintf(err, errlen, "%s: out of memory", path);
        users_free(u);
        return NULL;
    }
    return u;
fail:
    if (f)
        fclose(f);
    users_free(u);
    return NULL;
}

void
users_free(struct users *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n; i++) {
        free(u->e[i].name);
        free(u->e[i].hash);
    }
    free(u->e);
    free(u->dummy);
    free(u);
}

const char *
users_hash(const struct users *u, const char *user)
{
    if (!u || u->n == 0)
        return NULL;
    struct user_entry k = {.name = (char *)user};
    struct user_entry *hit = bsearch(&k, u->e, u->n, sizeof(*u->e), entry_cmp);
    return hit ? hit->hash : NULL;
}

size_t
users_count(const struct users *u)
{
    return u ? u->n : 0;
}

const char *
users_name(const struct users *u, size_t i)
{
    return u && i < u->n ? u->e[i].name : NULL;
}

const char *
users_dummy(const struct users *u)
{
    return u ? u->dummy : NULL;
}
