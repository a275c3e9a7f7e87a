/*
 * acl.c - access rules: built by acl_add() on the control thread, matched by
 * acl_match() on any thread.
 *
 * Owns struct acl: the rules in order and, in flat arrays shared by all the
 * rules, their conditions in the form matching wants: IPv4 networks as a
 * host-order network and mask, IPv6 networks as two 64-bit halves, names
 * lower-cased with their length and last eight bytes. A rule refers to its
 * entries by offset, so growing an array never leaves a dangling pointer.
 *
 * A linear scan costs a branch-mispredicting ~10 ns per rule, too much for
 * block lists of thousands of rules, so acl_add() also files each rule in
 * an index under the entries of one of its lists (its anchor: hosts, else
 * users, else destinations, else clients; a rule with none of them goes on
 * the scan list). A query looks up the keys it can match: its host and
 * every parent domain, its user, its addresses masked to each prefix
 * length present. Each key holds its rules in rule order, so the lowest
 * index that fully matches is found by walking each chain only below the
 * best match so far; every candidate is checked against all conditions.
 *
 * acl_add() is the only writer and runs before the set is published; after
 * that the set is immutable. acl_match() must never allocate, lock or write
 * to the set: shards call it on every request.
 */
#include "acl.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"

/* RFC 1035 2.3.4: a name is at most 253 characters in text form. */
#define ACL_NAME_MAX  253
/* SOCKS5 DOMAINNAME and RFC 1929 UNAME: a length octet, so at most 255. */
#define ACL_QUERY_MAX 255
/* No entry, in index chains. */
#define ACL_NIL       UINT32_MAX

struct acl_v4 {
    uint32_t net, mask; /* host order */
};

struct acl_v6 {
    uint64_t net[2], mask[2]; /* host order, [0] the high half */
};

/*
 * A host name ("example.com", exact) or suffix (".example.com": the bytes
 * compared from the end, so the dot is the label boundary; the apex
 * "example.com" is the stored name without its dot).
 */
struct acl_name {
    uint64_t tail;      /* last min(len, 8) bytes, as load_tail() reads them */
    uint64_t tail_mask; /* which bytes of a loaded tail tail holds */
    uint32_t off;       /* into the arena; not NUL-terminated */
    uint16_t len;
    bool suffix;
};

struct acl_user {
    uint32_t off;
    uint16_t len;
};

struct acl_rule {
    uint8_t action;
    uint8_t cmds;  /* ACL_CMD_* bits; 0xff for "any" so the test is one AND */
    uint8_t flags; /* ACL_RF_* */
    uint8_t gss;   /* acl_set_gss(): bit n for level n; 0: any connection */
    /* First entry (offset into the array of its kind) and count, per list. */
    uint32_t ports, n_ports;
    uint32_t from4, n_from4, from6, n_from6;
    uint32_t to4, n_to4, to6, n_to6;
    uint32_t hosts, n_hosts;
    uint32_t users, n_users;
};

/* Index key types; a key is (type, prefix or length, value). */
enum acl_key_type {
    ACL_KEY_FROM4 = 1,
    ACL_KEY_TO4,
    ACL_KEY_FROM6,
    ACL_KEY_TO6,
    ACL_KEY_EXACT,  /* a host name */
    ACL_KEY_SUFFIX, /* a domain, without its leading dot */
    ACL_KEY_USER,
};

/* One key of the index (open addressing, linear probing). */
struct acl_slot {
    uint64_t a;          /* network (IPv4, or the IPv6 high half); name hash */
    uint64_t b;          /* IPv6 low half; name offset in the arena */
    uint32_t c;          /* type | prefix or name length << 8; 0: a free slot */
    uint32_t head, tail; /* its first and last struct acl_ent */
};

/* A rule filed under a key; a key's entries chain in rule order. */
struct acl_ent {
    uint32_t rule, next;
};

/* A growable array; n and cap count elements. */
struct acl_vec {
    void *p;
    size_t n, cap;
};

struct acl {
    struct acl_vec rules; /* struct acl_rule */
    struct acl_vec ports; /* struct acl_ports */
    struct acl_vec v4;    /* struct acl_v4, from and to lists alike */
    struct acl_vec v6;    /* struct acl_v6 */
    struct acl_vec names; /* struct acl_name */
    struct acl_vec users; /* struct acl_user */
    struct acl_vec arena; /* char: names and user names */
    /* The index. */
    struct acl_vec ents;    /* struct acl_ent */
    struct acl_vec scan;    /* uint32_t: rules without an anchor, tried on every query */
    struct acl_slot *slots; /* n_slots: 0 or a power of two, at most half used */
    /* acl_set_data(): what each rule carries besides its conditions, and how to free it. */
    void **data;
    size_t n_data;
    void (*data_free)(void *);
    char **rule_names; /* acl_set_name(): n_rule_names, NULL where a rule has none */
    size_t n_rule_names;
    size_t n_slots, used_slots;
    uint32_t key_types;   /* bit t: some key of type t exists */
    uint64_t plen4[2];    /* bit p: an IPv4 key of prefix p; [0] from, [1] to */
    uint64_t plen6[2][3]; /* the same for IPv6, bits 0..128 */
};

/* A query address: family 4 or 6 (0: absent or another family). */
struct acl_qaddr {
    int fam;
    uint32_t v4;
    uint64_t v6[2];
};

/* One query, prepared once, and the best match found so far. */
struct acl_ctx {
    const struct acl *acl;
    const struct acl_query *q;
    struct acl_qaddr from, to;
    const char *host; /* lower-cased, no trailing dot, 8 zero bytes in front */
    size_t hlen;      /* 0: no host that a name could match */
    uint64_t htail;
    size_t ulen;   /* 0: no user that a name could match */
    uint32_t best; /* the lowest matching rule so far; rules.n: none */
};

struct acl *
acl_new(void)
{
    return calloc(1, sizeof(struct acl));
}

void
acl_free(struct acl *acl)
{
    if (!acl)
        return;
    for (size_t i = 0; i < acl->n_data; i++)
        if (acl->data[i] && acl->data_free)
            acl->data_free(acl->data[i]);
    free(acl->data);
    for (size_t i = 0; i < acl->n_rule_names; i++)
        free(acl->rule_names[i]);
    free(acl->rule_names);
    free(acl->slots);
    free(acl->scan.p);
    free(acl->ents.p);
    free(acl->arena.p);
    free(acl->users.p);
    free(acl->names.p);
    free(acl->v6.p);
    free(acl->v4.p);
    free(acl->ports.p);
    free(acl->rules.p);
    free(acl);
}

size_t
acl_count(const struct acl *acl)
{
    return acl ? acl->rules.n : 0;
}

/* ---- addresses */

static uint64_t
load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return be64toh(v);
}

static uint32_t
load_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return ntohl(v);
}

static bool
is_v4mapped(const uint8_t *a)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, sizeof(prefix)) == 0;
}

/*
 * Check c and bring it to its one form: host bits must be zero (so that
 * "10.0.0.1/8", a typo for a host or a network, is an error), and an
 * IPv4-mapped network (::ffff:0:0/96 or longer) becomes IPv4, as queries
 * with mapped addresses are matched as IPv4.
 */
static int
cidr_norm(struct acl_cidr *c)
{
    unsigned bytes;

    if (c->family == AF_INET && c->prefix <= 32)
        bytes = 4;
    else if (c->family == AF_INET6 && c->prefix <= 128)
        bytes = 16;
    else
        return -EINVAL;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = c->prefix >= 8 * (i + 1) ? 8 : c->prefix > 8 * i ? c->prefix - 8 * i : 0;
        if (c->addr[i] & (0xffu >> keep))
            return -EINVAL;
    }
    if (c->family == AF_INET6 && c->prefix >= 96 && is_v4mapped(c->addr)) {
        memmove(c->addr, c->addr + 12, 4);
        c->family = AF_INET;
        c->prefix -= 96;
    }
    if (c->family == AF_INET)
        memset(c->addr + 4, 0, sizeof(c->addr) - 4);
    return 0;
}

int
acl_cidr_parse(const char *s, struct acl_cidr *out)
{
    char host[INET6_ADDRSTRLEN];
    struct acl_cidr c = {0};
    unsigned max;

    if (!s)
        return -EINVAL;
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return -EINVAL;
    }

    unsigned prefix = max;
    if (slash) {
        const char *p = slash + 1;
        /* Decimal digits only: no sign, space or leading zero (as inet_pton). */
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0'))
            return -EINVAL;
        for (prefix = 0; *p >= '0' && *p <= '9'; p++) {
            prefix = prefix * 10 + (unsigned)(*p - '0');
            if (prefix > max)
                return -EINVAL;
        }
        if (*p != '\0')
            return -EINVAL;
    }
    c.prefix = (uint8_t)prefix;
    if (cidr_norm(&c) < 0)
        return -EINVAL;
    *out = c;
    return 0;
}

static struct acl_v4
v4_entry(const struct acl_cidr *c)
{
    /* A shift by 32 is undefined: /0 is spelled out. */
    uint32_t mask = c->prefix ? ~UINT32_C(0) << (32 - c->prefix) : 0;
    return (struct acl_v4){.net = load_be32(c->addr), .mask = mask};
}

static uint64_t
mask64(unsigned bits)
{
    return bits == 0 ? 0 : bits >= 64 ? ~UINT64_C(0) : ~UINT64_C(0) << (64 - bits);
}

static struct acl_v6
v6_entry(const struct acl_cidr *c)
{
    struct acl_v6 e = {
        .net = {load_be64(c->addr), load_be64(c->addr + 8)},
        .mask = {mask64(c->prefix), mask64(c->prefix > 64 ? c->prefix - 64u : 0)},
    };
    return e;
}

bool
acl_cidr_holds(const struct acl_cidr *n, int fam, const uint8_t *a)
{
    if (n->family != fam)
        return false;
    for (unsigned bit = 0; bit < n->prefix; bit++) {
        uint8_t m = (uint8_t)(0x80u >> (bit % 8));
        if ((n->addr[bit / 8] & m) != (a[bit / 8] & m))
            return false;
    }
    return true;
}

/* The query's address in the form entries are compared with; mapped IPv4 as IPv4. */
static void
qaddr_set(struct acl_qaddr *qa, const union sockaddr_inx *a)
{
    qa->fam = 0;
    if (!a)
        return;
    if (a->sa.sa_family == AF_INET) {
        qa->fam = 4;
        qa->v4 = ntohl(a->v4.sin_addr.s_addr);
    } else if (a->sa.sa_family == AF_INET6) {
        const uint8_t *b = a->v6.sin6_addr.s6_addr;
        if (is_v4mapped(b)) {
            qa->fam = 4;
            qa->v4 = load_be32(b + 12);
        } else {
            qa->fam = 6;
            qa->v6[0] = load_be64(b);
            qa->v6[1] = load_be64(b + 8);
        }
    }
}

/* Entries are passed as base and offset: a base may be NULL while its count is 0. */
static bool
addr_in(const struct acl_qaddr *qa, const struct acl_v4 *v4, uint32_t off4, uint32_t n4,
        const struct acl_v6 *v6, uint32_t off6, uint32_t n6)
{
    if (qa->fam == 4) {
        for (uint32_t i = off4; i < off4 + n4; i++)
            if ((qa->v4 & v4[i].mask) == v4[i].net)
                return true;
    } else if (qa->fam == 6) {
        for (uint32_t i = off6; i < off6 + n6; i++)
            if ((qa->v6[0] & v6[i].mask[0]) == v6[i].net[0] &&
                (qa->v6[1] & v6[i].mask[1]) == v6[i].net[1])
                return true;
    }
    return false;
}

/* ---- names */

/*
 * The eight bytes ending at p + len, in memory order. Callers keep eight
 * zero bytes in front of the name, so a short name reads zeros, never
 * outside the buffer; comparing loaded words is then endian-neutral.
 */
static uint64_t
load_tail(const char *p, size_t len)
{
    uint64_t v;
    memcpy(&v, p + len - 8, sizeof(v));
    return v;
}

/*
 * A rule's host name into out in the normal form requests use (hostname.h),
 * len bytes with a leading dot for a suffix. A name hostname_norm()
 * refuses, "*" of a wildcard included, is an error rather than a rule that
 * never matches.
 */
static int
host_norm(const char *s, char *out, size_t *len, bool *suffix)
{
    size_t o = 0;

    *suffix = s[0] == '.';
    if (*suffix) {
        out[o++] = '.';
        s++;
    }
    int n = hostname_norm(s, strnlen(s, ACL_NAME_MAX + 2), out + o);
    if (n < 0)
        return -EINVAL;
    *len = o + (size_t)n;
    return 0;
}

static bool
name_match(const struct acl_name *e, const char *arena, const char *q, size_t qlen, uint64_t qtail)
{
    if (qlen >= e->len && (e->suffix || qlen == e->len)) {
        if ((qtail & e->tail_mask) == e->tail &&
            (e->len <= 8 || memcmp(q + qlen - e->len, arena + e->off, e->len - 8u) == 0))
            return true;
    }
    /* ".example.com" also matches the apex, "example.com". */
    return e->suffix && qlen + 1 == e->len && memcmp(q, arena + e->off + 1, qlen) == 0;
}

static bool
user_match(const struct acl_user *u, uint32_t off, uint32_t n, const char *arena, const char *user,
           size_t ulen)
{
    for (uint32_t i = off; i < off + n; i++)
        if (u[i].len == ulen && memcmp(arena + u[i].off, user, ulen) == 0)
            return true;
    return false;
}

/* ---- building */

/* Make room for add more elements of size bytes; an offset must fit uint32_t. */
static int
vec_reserve(struct acl_vec *v, size_t add, size_t size)
{
    if (add >= UINT32_MAX - v->n)
        return -ENOMEM;
    if (add <= v->cap - v->n)
        return 0;
    size_t cap = v->cap ? v->cap : 16;
    while (cap - v->n < add) {
        if (cap > SIZE_MAX / 2 / size)
            return -ENOMEM;
        cap *= 2;
    }
    void *p = realloc(v->p, cap * size);
    if (!p)
        return -ENOMEM;
    v->p = p;
    v->cap = cap;
    return 0;
}

/* Append n elements; vec_reserve() made room. Returns the first one's offset. */
static uint32_t
vec_push(struct acl_vec *v, const void *src, size_t n, size_t size)
{
    uint32_t off = (uint32_t)v->n;
    if (n)
        memcpy((char *)v->p + v->n * size, src, n * size);
    v->n += n;
    return off;
}

/*
 * Validate and count one address list: how many entries are IPv4 and IPv6
 * once normalised.
 */
static int
cidrs_check(const struct acl_cidr *c, size_t n, uint32_t *n4, uint32_t *n6)
{
    *n4 = *n6 = 0;
    if (n && !c)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        struct acl_cidr t = c[i];
        if (cidr_norm(&t) < 0)
            return -EINVAL;
        if (t.family == AF_INET)
            (*n4)++;
        else
            (*n6)++;
    }
    return 0;
}

static void
cidrs_push(struct acl *acl, const struct acl_cidr *c, size_t n, uint32_t *off4, uint32_t *off6)
{
    *off4 = (uint32_t)acl->v4.n;
    *off6 = (uint32_t)acl->v6.n;
    for (size_t i = 0; i < n; i++) {
        struct acl_cidr t = c[i];
        cidr_norm(&t);
        if (t.family == AF_INET) {
            struct acl_v4 e = v4_entry(&t);
            vec_push(&acl->v4, &e, 1, sizeof(e));
        } else {
            struct acl_v6 e = v6_entry(&t);
            vec_push(&acl->v6, &e, 1, sizeof(e));
        }
    }
}

/* ---- the index */

/* splitmix64's finaliser: every input bit moves every output bit. */
static inline uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

#define ACL_FNV_OFFSET UINT64_C(0xcbf29ce484222325)
#define ACL_FNV_PRIME  UINT64_C(0x100000001b3)

/*
 * FNV-1a over the bytes from the last to the first: a query's host then
 * yields the hash of every parent domain on one pass (acl_match()).
 */
static uint64_t
name_hash(const char *p, size_t len)
{
    uint64_t h = ACL_FNV_OFFSET;
    while (len)
        h = (h ^ (uint8_t)p[--len]) * ACL_FNV_PRIME;
    return h;
}

static bool
key_is_name(uint32_t c)
{
    return (c & 0xff) >= ACL_KEY_EXACT;
}

/*
 * One multiply-mix per key. c (24 bits) lands above an IPv4 network's 32;
 * a name key's b (its arena offset) is not known to a lookup: not hashed.
 */
static inline size_t
key_hash(uint64_t a, uint64_t b, uint32_t c)
{
    if (key_is_name(c))
        b = 0;
    return (size_t)mix64(a ^ (uint64_t)c << 32 ^ b * UINT64_C(0x9e3779b97f4a7c15));
}

/*
 * The slot holding key (a, b, c), or the free slot where it would go. A
 * name key (name != NULL) compares name with the arena bytes at b instead
 * of b itself. Needs n_slots > 0; a free slot always exists (half used).
 */
static inline size_t
slot_probe(const struct acl *acl, uint64_t a, uint64_t b, uint32_t c, const char *name)
{
    const struct acl_slot *s = acl->slots;
    const char *arena = acl->arena.p;
    size_t mask = acl->n_slots - 1;
    size_t i = key_hash(a, b, c) & mask;
    while (s[i].c && !(s[i].c == c && s[i].a == a &&
                       (name ? memcmp(arena + s[i].b, name, c >> 8) == 0 : s[i].b == b)))
        i = (i + 1) & mask;
    return i;
}

/* Room for add more keys: the table grows to keep at most half its slots used. */
static int
slots_reserve(struct acl *acl, size_t add)
{
    size_t need = acl->used_slots + add, n = acl->n_slots ? acl->n_slots : 64;
    if (need > SIZE_MAX / 4 / sizeof(struct acl_slot))
        return -ENOMEM;
    while (n < 2 * need)
        n *= 2;
    if (n == acl->n_slots)
        return 0;
    struct acl_slot *slots = calloc(n, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < acl->n_slots; i++) {
        const struct acl_slot *s = &acl->slots[i];
        if (!s->c)
            continue;
        size_t k = key_hash(s->a, s->b, s->c) & (n - 1);
        while (slots[k].c)
            k = (k + 1) & (n - 1);
        slots[k] = *s;
    }
    free(acl->slots);
    acl->slots = slots;
    acl->n_slots = n;
    return 0;
}

/* File rule under key (a, b, c); slots_reserve() and vec_reserve() made room. */
static void
index_add(struct acl *acl, uint64_t a, uint64_t b, uint32_t c, const char *name, uint32_t rule)
{
    struct acl_slot *s = &acl->slots[slot_probe(acl, a, b, c, name)];
    struct acl_ent *e = acl->ents.p;

    if (!s->c) {
        *s = (struct acl_slot){.a = a, .b = b, .c = c, .head = ACL_NIL, .tail = ACL_NIL};
        acl->used_slots++;
        acl->key_types |= 1u << (c & 0xff);
    } else if (e[s->tail].rule == rule) {
        return; /* the same key twice in one list */
    }
    uint32_t i = vec_push(&acl->ents, &(struct acl_ent){.rule = rule, .next = ACL_NIL}, 1,
                          sizeof(struct acl_ent));
    if (s->head == ACL_NIL)
        s->head = i;
    else
        e[s->tail].next = i;
    s->tail = i;
}

static unsigned
popcount64(uint64_t x)
{
    return (unsigned)__builtin_popcountll(x);
}

static void
plen_set(uint64_t *bits, unsigned p)
{
    bits[p / 64] |= UINT64_C(1) << (p % 64);
}

/* File rule under each address of one list: dir 0 from, 1 to. */
static void
index_addrs(struct acl *acl, int dir, uint32_t off4, uint32_t n4, uint32_t off6, uint32_t n6,
            uint32_t rule)
{
    const struct acl_v4 *v4 = acl->v4.p;
    const struct acl_v6 *v6 = acl->v6.p;
    uint32_t t4 = dir ? ACL_KEY_TO4 : ACL_KEY_FROM4, t6 = dir ? ACL_KEY_TO6 : ACL_KEY_FROM6;

    for (uint32_t i = off4; i < off4 + n4; i++) {
        unsigned p = popcount64(v4[i].mask);
        index_add(acl, v4[i].net, 0, t4 | p << 8, NULL, rule);
        plen_set(&acl->plen4[dir], p);
    }
    for (uint32_t i = off6; i < off6 + n6; i++) {
        unsigned p = popcount64(v6[i].mask[0]) + popcount64(v6[i].mask[1]);
        index_add(acl, v6[i].net[0], v6[i].net[1], t6 | p << 8, NULL, rule);
        plen_set(acl->plen6[dir], p);
    }
}

int
acl_add(struct acl *acl, enum acl_action action, const struct acl_cidr *from, size_t n_from,
        const struct acl_cidr *to, size_t n_to, const char *const *hosts, size_t n_hosts,
        const struct acl_ports *ports, size_t n_ports, uint8_t cmds, const char *const *users,
        size_t n_users)
{
    struct acl_rule r = {0};
    size_t arena_add = 0, n_keys;
    char buf[ACL_NAME_MAX + 2];
    size_t len = 0;
    bool suffix;
    int err;

    /* Validate everything first: a rejected rule leaves acl as it was. */
    if (!acl || (action != ACL_DENY && action != ACL_ALLOW))
        return -EINVAL;
    if (cmds & ~(ACL_CMD_CONNECT | ACL_CMD_BIND | ACL_CMD_UDP))
        return -EINVAL;
    if (acl->rules.n >= INT_MAX)
        return -ENOMEM;
    if (cidrs_check(from, n_from, &r.n_from4, &r.n_from6) < 0 ||
        cidrs_check(to, n_to, &r.n_to4, &r.n_to6) < 0)
        return -EINVAL;
    if ((n_hosts && !hosts) || (n_ports && !ports) || (n_users && !users))
        return -EINVAL;
    if (n_hosts >= UINT32_MAX || n_ports >= UINT32_MAX || n_users >= UINT32_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n_ports; i++)
        if (ports[i].lo > ports[i].hi)
            return -EINVAL;
    for (size_t i = 0; i < n_hosts; i++) {
        if (!hosts[i] || host_norm(hosts[i], buf, &len, &suffix) < 0)
            return -EINVAL;
        arena_add += len;
    }
    for (size_t i = 0; i < n_users; i++) {
        if (!users[i])
            return -EINVAL;
        len = strnlen(users[i], ACL_QUERY_MAX + 1);
        if (len == 0 || len > ACL_QUERY_MAX)
            return -EINVAL;
        arena_add += len;
    }
    /*
     * The anchor, the list the rule is filed under: the one likely to hold
     * the fewest queries' keys. Names are exact keys; a destination is
     * usually narrower than the clients allowed to reach it.
     */
    n_keys = n_hosts ? n_hosts : n_users ? n_users : n_to ? n_to : n_from;

    err = vec_reserve(&acl->rules, 1, sizeof(struct acl_rule));
    if (!err)
        err = vec_reserve(&acl->ports, n_ports, sizeof(struct acl_ports));
    if (!err)
        err = vec_reserve(&acl->v4, (size_t)r.n_from4 + r.n_to4, sizeof(struct acl_v4));
    if (!err)
        err = vec_reserve(&acl->v6, (size_t)r.n_from6 + r.n_to6, sizeof(struct acl_v6));
    if (!err)
        err = vec_reserve(&acl->names, n_hosts, sizeof(struct acl_name));
    if (!err)
        err = vec_reserve(&acl->users, n_users, sizeof(struct acl_user));
    if (!err)
        err = vec_reserve(&acl->arena, arena_add, 1);
    if (!err)
        err = vec_reserve(&acl->ents, n_keys, sizeof(struct acl_ent));
    if (!err)
        err = vec_reserve(&acl->scan, 1, sizeof(uint32_t));
    if (!err)
        err = slots_reserve(acl, n_keys);
    if (err)
        return err;

    /* Nothing can fail from here on. */
    uint32_t idx = (uint32_t)acl->rules.n;
    r.action = (uint8_t)action;
    r.cmds = cmds ? cmds : 0xff;
    r.flags = n_to ? ACL_RF_TO : 0;
    r.n_ports = (uint32_t)n_ports;
    r.ports = vec_push(&acl->ports, ports, n_ports, sizeof(*ports));
    cidrs_push(acl, from, n_from, &r.from4, &r.from6);
    cidrs_push(acl, to, n_to, &r.to4, &r.to6);

    r.hosts = (uint32_t)acl->names.n;
    r.n_hosts = (uint32_t)n_hosts;
    for (size_t i = 0; i < n_hosts; i++) {
        /* Eight zero bytes in front of the name for load_tail(). */
        char pad[8 + sizeof(buf)] = {0};
        static const unsigned char ones[16] = {0,    0,    0,    0,    0,    0,    0,    0,
                                               0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        host_norm(hosts[i], pad + 8, &len, &suffix);
        struct acl_name e = {
            .tail = load_tail(pad + 8, len),
            .tail_mask = load_tail((const char *)ones + 8, len < 8 ? len : 8),
            .off = vec_push(&acl->arena, pad + 8, len, 1),
            .len = (uint16_t)len,
            .suffix = suffix,
        };
        vec_push(&acl->names, &e, 1, sizeof(e));
    }

    r.users = (uint32_t)acl->users.n;
    r.n_users = (uint32_t)n_users;
    for (size_t i = 0; i < n_users; i++) {
        len = strlen(users[i]);
        struct acl_user u = {.off = vec_push(&acl->arena, users[i], len, 1), .len = (uint16_t)len};
        vec_push(&acl->users, &u, 1, sizeof(u));
    }
    vec_push(&acl->rules, &r, 1, sizeof(r));

    const char *arena = acl->arena.p;
    if (n_hosts) {
        const struct acl_name *nm = (const struct acl_name *)acl->names.p + r.hosts;
        for (size_t i = 0; i < n_hosts; i++) {
            /* A suffix is filed without its dot: the query's parent domains have none. */
            uint32_t off = nm[i].off + nm[i].suffix, l = nm[i].len - nm[i].suffix;
            uint32_t type = nm[i].suffix ? ACL_KEY_SUFFIX : ACL_KEY_EXACT;
            index_add(acl, name_hash(arena + off, l), off, type | l << 8, arena + off, idx);
        }
    } else if (n_users) {
        const struct acl_user *u = (const struct acl_user *)acl->users.p + r.users;
        for (size_t i = 0; i < n_users; i++)
            index_add(acl, name_hash(arena + u[i].off, u[i].len), u[i].off,
                      ACL_KEY_USER | (uint32_t)u[i].len << 8, arena + u[i].off, idx);
    } else if (n_to) {
        index_addrs(acl, 1, r.to4, r.n_to4, r.to6, r.n_to6, idx);
    } else if (n_from) {
        index_addrs(acl, 0, r.from4, r.n_from4, r.from6, r.n_from6, idx);
    } else {
        vec_push(&acl->scan, &idx, 1, sizeof(idx));
    }
    return (int)idx;
}

uint8_t
acl_rule_flags(const struct acl *acl, int rule)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->rules.n)
        return 0;
    return ((const struct acl_rule *)acl->rules.p)[rule].flags;
}

int
acl_set_flags(struct acl *acl, int rule, uint8_t flags)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->rules.n || (flags & ACL_RF_TO))
        return -EINVAL;
    ((struct acl_rule *)acl->rules.p)[rule].flags |= flags;
    return 0;
}

int
acl_set_gss(struct acl *acl, int rule, uint8_t levels)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->rules.n || !levels || (levels & ~7u))
        return -EINVAL;
    ((struct acl_rule *)acl->rules.p)[rule].gss = levels;
    return 0;
}

/* A per-rule pointer array (*arr, *n long) grown with NULLs to hold every rule so far. */
static int
rule_slots(const struct acl *acl, void ***arr, size_t *n, int rule)
{
    if ((size_t)rule < *n)
        return 0;
    size_t want = acl->rules.n;
    void **d = realloc(*arr, want * sizeof(*d));
    if (!d)
        return -ENOMEM;
    memset(d + *n, 0, (want - *n) * sizeof(*d));
    *arr = d;
    *n = want;
    return 0;
}

int
acl_set_data(struct acl *acl, int rule, void *data, void (*data_free)(void *))
{
    if (!acl || rule < 0 || (size_t)rule >= acl->rules.n)
        return -EINVAL;
    if (acl->data_free && data_free != acl->data_free)
        return -EINVAL;
    if (rule_slots(acl, (void ***)&acl->data, &acl->n_data, rule) < 0)
        return -ENOMEM;
    if (acl->data[rule] && data_free)
        data_free(acl->data[rule]);
    acl->data[rule] = data;
    acl->data_free = data_free;
    return 0;
}

void *
acl_rule_data(const struct acl *acl, int rule)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->n_data)
        return NULL;
    return acl->data[rule];
}

int
acl_set_name(struct acl *acl, int rule, const char *name)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->rules.n || !name)
        return -EINVAL;
    if (rule_slots(acl, (void ***)&acl->rule_names, &acl->n_rule_names, rule) < 0)
        return -ENOMEM;
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    free(acl->rule_names[rule]);
    acl->rule_names[rule] = copy;
    return 0;
}

const char *
acl_rule_name(const struct acl *acl, int rule)
{
    if (!acl || rule < 0 || (size_t)rule >= acl->n_rule_names)
        return NULL;
    return acl->rule_names[rule];
}

/* ---- matching */

/* Every condition of rule i against the prepared query. */
static bool
rule_match(const struct acl_ctx *x, uint32_t i)
{
    const struct acl *acl = x->acl;
    const struct acl_rule *r = (const struct acl_rule *)acl->rules.p + i;
    const struct acl_ports *ports = acl->ports.p;
    const struct acl_v4 *v4 = acl->v4.p;
    const struct acl_v6 *v6 = acl->v6.p;
    const struct acl_name *names = acl->names.p;
    const char *arena = acl->arena.p;

    /* Cheapest first: command bits, ports, addresses, then names. */
    if (!(r->cmds & x->q->cmd))
        return false;
    if (r->gss && (!x->q->gss || !(r->gss & (1u << (x->q->gss - 1)))))
        return false;
    if (r->n_ports) {
        uint32_t k = r->ports, end = r->ports + r->n_ports;
        while (k < end && (x->q->port < ports[k].lo || x->q->port > ports[k].hi))
            k++;
        if (k == end)
            return false;
    }
    if ((r->n_from4 | r->n_from6) &&
        !addr_in(&x->from, v4, r->from4, r->n_from4, v6, r->from6, r->n_from6))
        return false;
    if ((r->n_to4 | r->n_to6) && !addr_in(&x->to, v4, r->to4, r->n_to4, v6, r->to6, r->n_to6))
        return false;
    if (r->n_hosts) {
        uint32_t k = r->hosts, end = r->hosts + r->n_hosts;
        if (x->hlen == 0)
            return false;
        while (k < end && !name_match(&names[k], arena, x->host, x->hlen, x->htail))
            k++;
        if (k == end)
            return false;
    }
    return !r->n_users ||
           (x->ulen && user_match(acl->users.p, r->users, r->n_users, arena, x->q->user, x->ulen));
}

/* The rules of one chain below the best so far, in order; the first match is the new best. */
static void
chain_walk(struct acl_ctx *x, const struct acl_slot *s)
{
    const struct acl_ent *e = x->acl->ents.p;
    for (uint32_t i = s->head; i != ACL_NIL && e[i].rule < x->best; i = e[i].next) {
        if (rule_match(x, e[i].rule)) {
            x->best = e[i].rule;
            return;
        }
    }
}

static inline void
lookup(struct acl_ctx *x, uint64_t a, uint64_t b, uint32_t c, const char *name)
{
    const struct acl_slot *s = &x->acl->slots[slot_probe(x->acl, a, b, c, name)];
    if (s->c)
        chain_walk(x, s);
}

/* The address masked to every prefix length filed for it: dir 0 from, 1 to. */
static void
lookup_addr(struct acl_ctx *x, const struct acl_qaddr *qa, int dir)
{
    const struct acl *acl = x->acl;

    if (qa->fam == 4) {
        uint32_t type = dir ? ACL_KEY_TO4 : ACL_KEY_FROM4;
        for (uint64_t bits = acl->plen4[dir]; bits; bits &= bits - 1) {
            unsigned p = (unsigned)__builtin_ctzll(bits);
            uint32_t mask = p ? ~UINT32_C(0) << (32 - p) : 0;
            lookup(x, qa->v4 & mask, 0, type | p << 8, NULL);
        }
    } else if (qa->fam == 6) {
        uint32_t type = dir ? ACL_KEY_TO6 : ACL_KEY_FROM6;
        for (unsigned w = 0; w < 3; w++) {
            for (uint64_t bits = acl->plen6[dir][w]; bits; bits &= bits - 1) {
                unsigned p = w * 64 + (unsigned)__builtin_ctzll(bits);
                lookup(x, qa->v6[0] & mask64(p), qa->v6[1] & mask64(p > 64 ? p - 64 : 0),
                       type | p << 8, NULL);
            }
        }
    }
}

/* The host's exact key, and a suffix key for itself and every parent domain. */
static void
lookup_host(struct acl_ctx *x)
{
    const char *h = x->host;
    uint64_t hash = ACL_FNV_OFFSET;
    bool suffixes = x->acl->key_types & (1u << ACL_KEY_SUFFIX);

    for (size_t i = x->hlen; i-- > 0;) {
        hash = (hash ^ (uint8_t)h[i]) * ACL_FNV_PRIME;
        if (suffixes && (i == 0 || h[i - 1] == '.'))
            lookup(x, hash, 0, ACL_KEY_SUFFIX | (uint32_t)(x->hlen - i) << 8, h + i);
    }
    if (x->acl->key_types & (1u << ACL_KEY_EXACT))
        lookup(x, hash, 0, ACL_KEY_EXACT | (uint32_t)x->hlen << 8, h);
}

enum acl_action
acl_match(const struct acl *acl, const struct acl_query *q, int *rule)
{
    /* The query's host, normalised as rule names are, after 8 zero bytes. */
    char hbuf[8 + ACL_QUERY_MAX];
    struct acl_ctx x = {.acl = acl, .q = q, .host = hbuf + 8};

    if (rule)
        *rule = -1;
    if (!acl || acl->rules.n == 0)
        return ACL_DENY;
    x.best = (uint32_t)acl->rules.n;
    qaddr_set(&x.from, q->client);
    qaddr_set(&x.to, q->dest);
    /* The host in the one normal form (hostname.h). A name that has none (too
     * long, an empty label, a stray byte) keeps length 0: no host list matches it;
     * requests never carry one (the parsers refuse them). */
    if (q->host && acl->names.n) {
        memset(hbuf, 0, 8);
        int n = hostname_norm(q->host, strnlen(q->host, ACL_QUERY_MAX + 1), hbuf + 8);
        if (n > 0) {
            x.hlen = (size_t)n;
            x.htail = load_tail(x.host, x.hlen);
        }
    }
    if (q->user && acl->users.n) {
        x.ulen = strnlen(q->user, ACL_QUERY_MAX + 1);
        if (x.ulen > ACL_QUERY_MAX)
            x.ulen = 0;
    }

    const uint32_t *scan = acl->scan.p;
    for (size_t i = 0; i < acl->scan.n && scan[i] < x.best; i++) {
        if (rule_match(&x, scan[i])) {
            x.best = scan[i];
            break;
        }
    }
    if (x.hlen)
        lookup_host(&x);
    if (x.ulen && (acl->key_types & (1u << ACL_KEY_USER)))
        lookup(&x, name_hash(q->user, x.ulen), 0, ACL_KEY_USER | (uint32_t)x.ulen << 8, q->user);
    lookup_addr(&x, &x.to, 1);
    lookup_addr(&x, &x.from, 0);

    if (x.best == acl->rules.n)
        return ACL_DENY;
    if (rule)
        *rule = (int)x.best;
    return (enum acl_action)((const struct acl_rule *)acl->rules.p)[x.best].action;
}
