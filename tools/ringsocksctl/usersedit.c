/*
 * usersedit.c - the users file editor of ringsocksctl: one line added,
 * changed or removed, every other byte kept. Pure: bytes in, bytes out; the
 * file, its lock and its atomic replacement are ringsocksctl.c's.
 */
#include "usersedit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool
is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool
is_ctl(unsigned char ch)
{
    return ch < 0x20 || ch == 0x7f;
}

const char *
usersedit_name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "is empty";
    if (n > USERSEDIT_NAME_MAX)
        return "is longer than 255 bytes";
    if (name[0] == '#')
        return "starts with '#', which makes the line a comment";
    for (const char *p = name; *p; p++) {
        if (*p == ':')
            return "holds ':', which ends a name in the users file";
        if (is_blank(*p) || is_ctl((unsigned char)*p))
            return "holds a blank or a control character";
    }
    return NULL;
}

const char *
usersedit_attr_problem(const char *attr)
{
    size_t k = strspn(attr, "abcdefghijklmnopqrstuvwxyz0123456789_");
    if (k == 0 || attr[k] != '=')
        return "is not key=value (a lower-case key)";
    if (attr[k + 1] == '\0')
        return "has an empty value";
    for (const char *p = attr + k + 1; *p; p++)
        if (is_blank(*p) || is_ctl((unsigned char)*p))
            return "holds a blank or a control character";
    return NULL;
}

/* One line of the file: [start, end) without its '\n', [cend] without a '\r' either. */
struct line {
    size_t start, end, cend, next;
    size_t h0, h1; /* the hash: after the ':' up to a blank or the line's end */
};

/* The line of user name from *pos on: true and *l; false at the end. */
static bool
find_user(const char *in, size_t len, const char *name, size_t *pos, struct line *l,
          unsigned *lineno)
{
    size_t nlen = strlen(name);
    while (*pos < len) {
        const char *nl = memchr(in + *pos, '\n', len - *pos);
        l->start = *pos;
        l->end = nl ? (size_t)(nl - in) : len;
        l->next = nl ? l->end + 1 : len;
        l->cend = l->end;
        while (l->cend > l->start && in[l->cend - 1] == '\r')
            l->cend--;
        *pos = l->next;
        (*lineno)++;
        size_t p = l->start;
        while (p < l->cend && is_blank(in[p]))
            p++;
        if (p == l->cend || in[p] == '#')
            continue;
        const char *colon = memchr(in + p, ':', l->cend - p);
        if (!colon || (size_t)(colon - in) - p != nlen || memcmp(in + p, name, nlen) != 0)
            continue;
        l->h0 = (size_t)(colon - in) + 1;
        l->h1 = l->h0;
        while (l->h1 < l->cend && !is_blank(in[l->h1]))
            l->h1++;
        return true;
    }
    return false;
}

struct buf {
    char *p;
    size_t len;
};

static void
put(struct buf *b, const char *s, size_t n)
{
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void
puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* The key of an attribute word w[0..n): its length up to '=' (n when none). */
static size_t
key_len(const char *w, size_t n)
{
    const char *eq = memchr(w, '=', n);
    return eq ? (size_t)(eq - w) : n;
}

/* The next blank-separated word of s[*pos..n): true with [*w0, *w1). */
static bool
next_word(const char *s, size_t n, size_t *pos, size_t *w0, size_t *w1)
{
    while (*pos < n && is_blank(s[*pos]))
        (*pos)++;
    if (*pos == n)
        return false;
    *w0 = *pos;
    while (*pos < n && !is_blank(s[*pos]))
        (*pos)++;
    *w1 = *pos;
    return true;
}

/* Is there a word of words (blank-separated) with the key of w[0..n)? */
static bool
has_key(const char *words, const char *w, size_t n)
{
    size_t pos = 0, w0, w1, k = key_len(w, n), len = strlen(words);
    while (next_word(words, len, &pos, &w0, &w1))
        if (key_len(words + w0, w1 - w0) == k && memcmp(words + w0, w, k) == 0)
            return true;
    return false;
}

/* SET: the line's attributes, each one attrs names replaced, the new ones appended. */
static void
set_attrs(struct buf *b, const char *in, const struct line *l, const char *attrs)
{
    size_t pos = l->h1, w0, w1, alen = strlen(attrs);
    put(b, in + l->start, l->h1 - l->start);
    while (next_word(in, l->cend, &pos, &w0, &w1)) {
        if (has_key(attrs, in + w0, w1 - w0))
            continue;
        puts_(b, " ");
        put(b, in + w0, w1 - w0);
    }
    pos = 0;
    while (next_word(attrs, alen, &pos, &w0, &w1)) {
        puts_(b, " ");
        put(b, attrs + w0, w1 - w0);
    }
    put(b, in + l->cend, l->next - l->cend);
}

static int
check_attrs(const char *attrs)
{
    char w[1024];
    size_t pos = 0, w0, w1, len = strlen(attrs);
    while (next_word(attrs, len, &pos, &w0, &w1)) {
        if (w1 - w0 >= sizeof(w))
            return -EINVAL;
        memcpy(w, attrs + w0, w1 - w0);
        w[w1 - w0] = '\0';
        if (usersedit_attr_problem(w))
            return -EINVAL;
    }
    return 0;
}

int
usersedit_apply(const char *in, size_t len, enum usersedit_op op, const char *name,
                const char *hash, const char *attrs, char **out, size_t *outlen, unsigned *line)
{
    struct line l = {0};
    size_t pos = 0;
    unsigned lineno = 0;
    hash = hash ? hash : "";
    attrs = attrs ? attrs : "";
    *line = 0;
    if (usersedit_name_problem(name) || check_attrs(attrs) < 0)
        return -EINVAL;
    if ((op == USERSEDIT_ADD || op == USERSEDIT_PASSWD) && (!hash[0] || strpbrk(hash, " \t\r\n")))
        return -EINVAL;
    bool found = find_user(in, len, name, &pos, &l, &lineno);
    if (found && op == USERSEDIT_ADD) {
        *line = lineno;
        return -EEXIST;
    }
    if (!found && op != USERSEDIT_ADD)
        return -ENOENT;

    struct buf b = {malloc(len + strlen(name) + strlen(hash) + 2 * strlen(attrs) + 8), 0};
    if (!b.p)
        return -ENOMEM;
    switch (op) {
    case USERSEDIT_ADD:
        pos = 0;
        put(&b, in, len);
        if (len && in[len - 1] != '\n')
            puts_(&b, "\n");
        *line = lineno + 1;
        puts_(&b, name);
        puts_(&b, ":");
        puts_(&b, hash);
        for (size_t w0, w1; next_word(attrs, strlen(attrs), &pos, &w0, &w1);) {
            puts_(&b, " ");
            put(&b, attrs + w0, w1 - w0);
        }
        puts_(&b, "\n");
        break;
    case USERSEDIT_PASSWD:
        put(&b, in, l.h0);
        puts_(&b, hash);
        put(&b, in + l.h1, len - l.h1);
        *line = lineno;
        break;
    case USERSEDIT_DEL:
        put(&b, in, l.start);
        put(&b, in + l.next, len - l.next);
        *line = lineno;
        break;
    case USERSEDIT_SET:
        put(&b, in, l.start);
        set_attrs(&b, in, &l, attrs);
        put(&b, in + l.next, len - l.next);
        *line = lineno;
        break;
    }
    *out = b.p;
    *outlen = b.len;
    return 0;
}
