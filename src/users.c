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
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acct.h"
#include "egress.h"
#include "lim.h"

struct user_entry {
    char *name;
    char *hash;
    unsigned line;                    /* in the file: for the duplicate's message */
    const struct egress_pool *egress; /* egress=...; owned by users.pools; NULL: none */
    struct lim_conf lim;              /* max_conns=... (lim.h); unset fields: the defaults */
    struct uacct *acct;               /* its running state (users_link()), or NULL */
};

/* One distinct attribute value and what it became, so 100,000 users naming one pool
 * parse it once. */
struct users_pool {
    char *text;
    struct egress_pool *pool;
};

struct users {
    struct user_entry *e;
    size_t n;
    char *dummy; /* crypt(random, a hash of the commonest kind), or NULL: no users */
    struct users_pool *pools;
    size_t n_pools, cap_pools;
    /* Loading only: an index of pools by text (open addressing, power-of-two size). */
    uint32_t *pool_idx;
    size_t pool_slots;
};

static int
entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct user_entry *)a)->name, ((const struct user_entry *)b)->name);
}

/*
 * Why hash h cannot stand in the file, or NULL when it can. Accepted: the
 * crypt(3) methods libcrypt implements that are not broken, and only in a
 * form crypt_checksalt() takes. Refused by name: the weak ones libcrypt still
 * verifies (a leaked file of them is cracked in hours), so they must not sit
 * in a file that is otherwise believed to be safe.
 */
static const char *
hash_problem(const char *h, char *buf, size_t cap)
{
    static const char *const good[] = {"$y$", "$gy$", "$7$", "$2b$", "$2a$", "$2y$", "$6$", "$5$"};
    static const struct {
        const char *prefix, *what;
    } weak[] = {
        {"$1$", "md5-crypt ($1$)"}, {"$md5", "Sun MD5 ($md5)"}, {"$sha1$", "NetBSD SHA-1 ($sha1$)"},
        {"$3$", "NT hash ($3$)"},   {"_", "BSDI extended DES"},
    };
    static const char fix[] = "set one with: ringsocksctl users passwd NAME";
    if (h[0] == '\0') {
        snprintf(buf, cap, "no password hash (%s)", fix);
        return buf;
    }
    for (size_t i = 0; i < sizeof(weak) / sizeof(weak[0]); i++) {
        if (strncmp(h, weak[i].prefix, strlen(weak[i].prefix)) == 0) {
            snprintf(buf, cap, "%s is a weak hash, refused (%s)", weak[i].what, fix);
            return buf;
        }
    }
    if (strlen(h) == 13 &&
        strspn(h, "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == 13) {
        snprintf(buf, cap, "traditional DES crypt is a weak hash, refused (%s)", fix);
        return buf;
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (strncmp(h, good[i], strlen(good[i])) != 0)
            continue;
        /* $id$[params$]salt$hash (bcrypt: $2b$cost$salthash): a setting alone is no hash. */
        const char *last = strrchr(h, '$');
        size_t dollars = 0;
        for (const char *q = h; *q; q++)
            dollars += *q == '$';
        if (crypt_checksalt(h) == CRYPT_SALT_INVALID || dollars < 3 || last[1] == '\0') {
            snprintf(buf, cap, "the %.*s hash is malformed (%s)", (int)strlen(good[i]), good[i],
                     fix);
            return buf;
        }
        if (strlen(h) >= CRYPT_OUTPUT_SIZE) {
            snprintf(buf, cap, "hash too long");
            return buf;
        }
        return NULL;
    }
    if (strncmp(h, "$apr1$", 6) == 0)
        snprintf(buf, cap,
                 "Apache's $apr1$ (htpasswd) is not a crypt(3) hash and is weak: unsupported (%s)",
                 fix);
    else
        snprintf(buf, cap,
                 "not a crypt(3) hash ringsocks accepts (yescrypt $y$, gost-yescrypt $gy$, "
                 "scrypt $7$, bcrypt $2b$, sha512-crypt $6$, sha256-crypt $5$; %s)",
                 fix);
    return buf;
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

static uint64_t
text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: loading only, not on the network */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/* The pool "a,b/64" stands for, parsed once per distinct text; NULL with why. */
static const struct egress_pool *
pool_intern(struct users *u, const char *text, char *why, size_t whycap)
{
    if (u->n_pools * 2 >= u->pool_slots) {
        size_t ns = u->pool_slots ? u->pool_slots * 2 : 64;
        uint32_t *idx = malloc(ns * sizeof(*idx));
        if (!idx) {
            snprintf(why, whycap, "out of memory");
            return NULL;
        }
        memset(idx, 0xff, ns * sizeof(*idx));
        for (size_t i = 0; i < u->n_pools; i++) {
            size_t j = text_hash(u->pools[i].text) & (ns - 1);
            while (idx[j] != UINT32_MAX)
                j = (j + 1) & (ns - 1);
            idx[j] = (uint32_t)i;
        }
        free(u->pool_idx);
        u->pool_idx = idx;
        u->pool_slots = ns;
    }
    size_t j = text_hash(text) & (u->pool_slots - 1);
    for (; u->pool_idx[j] != UINT32_MAX; j = (j + 1) & (u->pool_slots - 1))
        if (strcmp(u->pools[u->pool_idx[j]].text, text) == 0)
            return u->pools[u->pool_idx[j]].pool;
    if (u->n_pools == u->cap_pools) {
        size_t nc = u->cap_pools ? u->cap_pools * 2 : 16;
        struct users_pool *np = realloc(u->pools, nc * sizeof(*np));
        if (!np) {
            snprintf(why, whycap, "out of memory");
            return NULL;
        }
        u->pools = np;
        u->cap_pools = nc;
    }
    struct egress_pool *pool = egress_pool_parse_csv(text, why, whycap);
    if (!pool)
        return NULL;
    char *t = strdup(text);
    if (!t) {
        egress_pool_free(pool);
        snprintf(why, whycap, "out of memory");
        return NULL;
    }
    u->pools[u->n_pools] = (struct users_pool){t, pool};
    u->pool_idx[j] = (uint32_t)u->n_pools++;
    return pool;
}

/*
 * The attributes after the hash: "key=value" words separated by blanks. Adding one is a
 * row here and a field in struct user_entry. 0, or -1 with why.
 */
static int
attr_egress(struct users *u, struct user_entry *e, const char *v, char *why, size_t whycap)
{
    e->egress = pool_intern(u, v, why, whycap);
    return e->egress ? 0 : -1;
}

static const struct user_attr {
    const char *key;
    int (*set)(struct users *u, struct user_entry *e, const char *v, char *why, size_t whycap);
} user_attrs[] = {
    {"egress", attr_egress}, /* source addresses and prefixes of this user's tunnels */
};

static int
parse_attrs(struct users *u, struct user_entry *e, char *p, char *why, size_t whycap)
{
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            return 0;
        char *w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (*p)
            *p++ = '\0';
        char *eq = strchr(w, '=');
        if (!eq || eq == w || eq[1] == '\0') {
            snprintf(why, whycap, "'%s' is not key=value", w);
            return -1;
        }
        *eq = '\0';
        size_t k = 0;
        while (k < sizeof(user_attrs) / sizeof(user_attrs[0]) && strcmp(user_attrs[k].key, w))
            k++;
        if (k == sizeof(user_attrs) / sizeof(user_attrs[0])) {
            /* The limits (lim.h) are attributes too, with the same words everywhere. */
            int r = lim_conf_set(&e->lim, w, eq + 1, why, whycap);
            if (r == -2)
                snprintf(why, whycap, "unknown attribute '%s' (egress, %s)", w, lim_conf_keys);
            if (r < 0)
                return -1;
            continue;
        }
        if (user_attrs[k].set(u, e, eq + 1, why, whycap) < 0)
            return -1;
    }
}

struct users *
users_load(const char *path, char *err, size_t errlen)
{
    return users_load_flags(path, 0, err, errlen);
}

/* Errors of one load: every one of them, up to USERS_ERR_MAX lines, then a count. */
#define USERS_ERR_MAX 20

struct users_errs {
    const char *path;
    char *buf;
    size_t cap, used;
    unsigned n;
};

static void uerr(struct users_errs *e, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One "FILE:LINE: message" (line 0: "FILE: message"). */
static void
uerr(struct users_errs *e, unsigned line, const char *fmt, ...)
{
    if (e->n++ >= USERS_ERR_MAX || e->used + 1 >= e->cap)
        return;
    char where[32] = "";
    if (line)
        snprintf(where, sizeof(where), ":%u", line);
    int n = snprintf(e->buf + e->used, e->cap - e->used, "%s%s%s: ", e->used ? "\n" : "", e->path,
                     where);
    if (n > 0)
        e->used = (size_t)n < e->cap - e->used ? e->used + (size_t)n : e->cap - 1;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(e->buf + e->used, e->cap - e->used, fmt, ap);
    va_end(ap);
    if (n > 0)
        e->used = (size_t)n < e->cap - e->used ? e->used + (size_t)n : e->cap - 1;
}

/* A user name is any bytes but blanks, control bytes and DEL (RFC 1929 allows them; a file
 * and a log line should not carry them). The offending byte's place, or 0. */
static size_t
name_bad_byte(const char *name)
{
    for (size_t i = 0; name[i]; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 0x20 || c == 0x7f)
            return i + 1;
    }
    return 0;
}

/* One "user:hash [attributes]" line (comments and blanks already skipped) into u. */
static void
load_line(struct users *u, struct users_errs *e, char *p, unsigned lineno, unsigned flags,
          size_t *cap)
{
    char *colon = strchr(p, ':');
    if (!colon || colon == p) {
        uerr(e, lineno, "expected user:hash");
        return;
    }
    *colon = '\0';
    const char *name = p;
    char *hash = colon + 1, *attrs = hash + strcspn(hash, " \t");
    if (*attrs)
        *attrs++ = '\0';
    size_t bad = name_bad_byte(name);
    if (bad) {
        uerr(e, lineno, "the user name has a blank or control byte (byte %zu): not allowed", bad);
        return;
    }
    if (strlen(name) > 255) {
        uerr(e, lineno, "user name longer than 255 bytes");
        return;
    }
    if ((flags & USERS_F_PARAMS) && egress_name_has_keyword(name)) {
        uerr(e, lineno,
             "'%s' holds \"-session-\", \"-ttl-\" or \"-fault-\", which username_params reads as "
             "parameters: rename the user",
             name);
        return;
    }
    char why[256];
    if (hash_problem(hash, why, sizeof(why))) {
        uerr(e, lineno, "'%s': %s", name, why);
        return;
    }
    if (u->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct user_entry *ne = realloc(u->e, ncap * sizeof(*ne));
        if (!ne) {
            uerr(e, 0, "out of memory");
            return;
        }
        u->e = ne;
        *cap = ncap;
    }
    struct user_entry *ent = &u->e[u->n];
    memset(ent, 0, sizeof(*ent));
    lim_conf_unset(&ent->lim);
    ent->line = lineno;
    if (parse_attrs(u, ent, attrs, why, sizeof(why)) < 0) {
        uerr(e, lineno, "%s: %s", name, why);
        return;
    }
    ent->name = strdup(name);
    ent->hash = strdup(hash);
    if (!ent->name || !ent->hash) {
        free(ent->name);
        free(ent->hash);
        uerr(e, 0, "out of memory");
        return;
    }
    u->n++;
}

static struct users *load_stream(FILE *f, const char *path, unsigned flags, char *err,
                                 size_t errlen);

struct users *
users_load_flags(const char *path, unsigned flags, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    return load_stream(f, path, flags, err, errlen);
}

struct users *
users_load_text(const char *label, const char *text, unsigned flags, char *err, size_t errlen)
{
    /* An empty table is a table: fmemopen() refuses a size of 0. */
    static char empty[] = "\n";
    size_t len = strlen(text);
    FILE *f = len ? fmemopen((void *)text, len, "r") : fmemopen(empty, 1, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", label, strerror(errno));
        return NULL;
    }
    return load_stream(f, label, flags, err, errlen);
}

/* Takes f (closed before it returns). */
static struct users *
load_stream(FILE *f, const char *path, unsigned flags, char *err, size_t errlen)
{
    struct users *u = calloc(1, sizeof(*u));
    struct users_errs e = {.path = path, .buf = err, .cap = errlen};
    size_t cap = 0;
    unsigned lineno = 0;
    char line[1024];

    if (errlen)
        err[0] = '\0';
    if (!u) {
        uerr(&e, 0, "out of memory");
        fclose(f);
        return NULL;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
            uerr(&e, lineno, "line too long");
            /* The rest of this line is not the next one. */
            while (fgets(line, sizeof(line), f) && line[strlen(line) - 1] != '\n')
                ;
            continue;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        load_line(u, &e, p, lineno, flags, &cap);
    }
    fclose(f);
    f = NULL;
    free(u->pool_idx);
    u->pool_idx = NULL;
    if (u->n) /* qsort(NULL, 0, ...) is undefined: an empty file leaves e NULL */
        qsort(u->e, u->n, sizeof(*u->e), entry_cmp);
    for (size_t i = 1; i < u->n; i++) {
        const struct user_entry *a = &u->e[i - 1], *b = &u->e[i];
        if (strcmp(a->name, b->name) == 0)
            uerr(&e, a->line > b->line ? a->line : b->line,
                 "user '%s' appears twice: also at line %u", b->name,
                 a->line < b->line ? a->line : b->line);
    }
    if (e.n)
        goto fail;
    if (make_dummy(u) < 0) {
        uerr(&e, 0, "out of memory");
        goto fail;
    }
    return u;
fail:
    if (e.n > USERS_ERR_MAX && e.used + 1 < e.cap)
        snprintf(err + e.used, e.cap - e.used, "\n%s: and %u more errors", path,
                 e.n - USERS_ERR_MAX);
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
    for (size_t i = 0; i < u->n_pools; i++) {
        free(u->pools[i].text);
        egress_pool_free(u->pools[i].pool);
    }
    free(u->pools);
    free(u->pool_idx);
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

bool
users_info(const struct users *u, const char *user, struct users_info *out)
{
    if (!u || u->n == 0 || !user)
        return false;
    struct user_entry k = {.name = (char *)user};
    const struct user_entry *hit = bsearch(&k, u->e, u->n, sizeof(*u->e), entry_cmp);
    if (!hit)
        return false;
    *out = (struct users_info){hit->hash, hit->egress, &hit->lim, hit->acct};
    return true;
}

int
users_link(struct users *u, struct acct_reg *reg)
{
    for (size_t i = 0; u && i < u->n; i++) {
        u->e[i].acct = acct_get(reg, u->e[i].name);
        if (!u->e[i].acct)
            return -ENOMEM;
    }
    return 0;
}

const struct egress_pool *
users_egress(const struct users *u, const char *user)
{
    if (!u || u->n_pools == 0 || !user)
        return NULL;
    struct user_entry k = {.name = (char *)user};
    struct user_entry *hit = bsearch(&k, u->e, u->n, sizeof(*u->e), entry_cmp);
    return hit ? hit->egress : NULL;
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
