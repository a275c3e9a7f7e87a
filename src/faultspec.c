/*
 * faultspec.c - fault names and their parser (faultspec.h). Pure.
 */
#include "faultspec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum arg_use {
    ARG_NONE,     /* no argument */
    ARG_REQUIRED, /* NAME_N */
    ARG_OPTIONAL, /* NAME or NAME_N (the default then) */
    ARG_FIXED,    /* an alias: the argument is the table's, none may follow */
};

struct fault_word {
    const char *name;
    enum fault_kind kind;
    enum arg_use use;
    uint32_t lo, hi; /* the argument's range; ARG_FIXED and ARG_OPTIONAL: lo is its value */
};

static const struct fault_word words[] = {
    {"reply", FAULT_REPLY, ARG_REQUIRED, 0, 0}, /* range by value: reply_check() */
    {"general_failure", FAULT_REPLY, ARG_FIXED, 0x01, 0},
    {"not_allowed", FAULT_REPLY, ARG_FIXED, 0x02, 0},
    {"net_unreachable", FAULT_REPLY, ARG_FIXED, 0x03, 0},
    {"host_unreachable", FAULT_REPLY, ARG_FIXED, 0x04, 0},
    {"refused", FAULT_REPLY, ARG_FIXED, 0x05, 0},
    {"ttl_expired", FAULT_REPLY, ARG_FIXED, 0x06, 0},
    {"cmd_unsupported", FAULT_REPLY, ARG_FIXED, 0x07, 0},
    {"atyp_unsupported", FAULT_REPLY, ARG_FIXED, 0x08, 0},
    {"rejected", FAULT_REPLY4, ARG_FIXED, 0x5b, 0},
    {"no_identd", FAULT_REPLY4, ARG_FIXED, 0x5c, 0},
    {"identd_mismatch", FAULT_REPLY4, ARG_FIXED, 0x5d, 0},
    {"no_method", FAULT_NO_METHOD, ARG_NONE, 0, 0},
    {"auth_fail", FAULT_AUTH_FAIL, ARG_NONE, 0, 0},
    {"delay_method", FAULT_DELAY_METHOD, ARG_REQUIRED, 1, FAULT_DELAY_MAX_MS},
    {"delay_auth", FAULT_DELAY_AUTH, ARG_REQUIRED, 1, FAULT_DELAY_MAX_MS},
    {"delay_reply", FAULT_DELAY_REPLY, ARG_REQUIRED, 1, FAULT_DELAY_MAX_MS},
    {"split", FAULT_SPLIT, ARG_REQUIRED, 1, FAULT_DELAY_MAX_MS},
    {"truncate", FAULT_TRUNCATE, ARG_REQUIRED, 0, 21}, /* shorter than any SOCKS reply */
    {"wrong_bnd", FAULT_WRONG_BND, ARG_NONE, 0, 0},
    {"bind_peer", FAULT_BIND_PEER, ARG_NONE, 0, 0},
    {"rst_down", FAULT_RST_DOWN, ARG_REQUIRED, 0, UINT32_MAX},
    {"rst_up", FAULT_RST_UP, ARG_REQUIRED, 0, UINT32_MAX},
    {"fin_down", FAULT_FIN_DOWN, ARG_REQUIRED, 0, UINT32_MAX},
    {"fin_up", FAULT_FIN_UP, ARG_REQUIRED, 0, UINT32_MAX},
    {"throttle", FAULT_THROTTLE, ARG_REQUIRED, 1, UINT32_MAX},
    {"udp_drop", FAULT_UDP_DROP, ARG_REQUIRED, 1, 100},
    {"udp_dup", FAULT_UDP_DUP, ARG_REQUIRED, 1, 100},
    {"udp_reorder", FAULT_UDP_REORDER, ARG_REQUIRED, 1, 100},
    {"udp_frag", FAULT_UDP_FRAG, ARG_OPTIONAL, 1, 255},
};

#define N_WORDS (sizeof(words) / sizeof(words[0]))

/* The kind's own name: the first word of the table that is no alias. */
const char *
fault_name(enum fault_kind k)
{
    for (size_t i = 0; i < N_WORDS; i++)
        if (words[i].kind == k && words[i].use != ARG_FIXED)
            return words[i].name;
    return k == FAULT_REPLY4 ? "reply4" : "?";
}

/* "123" or (reply codes) "0x5b": 0 and *v, or -1. */
static int
number(const char *s, size_t len, bool hex_ok, uint32_t *v)
{
    uint64_t n = 0;
    unsigned base = 10;
    if (hex_ok && len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > 10)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (base == 16 && ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (base == 16 && ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return -1;
        n = n * base + d;
    }
    if (n > UINT32_MAX)
        return -1;
    *v = (uint32_t)n;
    return 0;
}

/* "reply_N": a SOCKS5 failure code or a SOCKS4 refusal, each to its own kind. */
static int
reply_code(uint32_t v, enum fault_kind *k)
{
    if (v >= 0x01 && v <= 0x08)
        *k = FAULT_REPLY;
    else if (v >= 0x5b && v <= 0x5d)
        *k = FAULT_REPLY4;
    else
        return -1;
    return 0;
}

int
fault_parse(const char *s, size_t len, struct fault_set *f, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_WORDS; i++) {
        const struct fault_word *w = &words[i];
        size_t nl = strlen(w->name);
        if (len < nl || memcmp(s, w->name, nl) != 0 || (len > nl && s[nl] != '_'))
            continue;
        bool has_arg = len > nl;
        const char *a = s + nl + 1;
        size_t al = has_arg ? len - nl - 1 : 0;
        enum fault_kind k = w->kind;
        uint32_t v = w->lo;
        if (has_arg && (w->use == ARG_NONE || w->use == ARG_FIXED)) {
            snprintf(err, errlen, "fault '%.*s': %s takes no argument", (int)len, s, w->name);
            return -EINVAL;
        }
        if (!has_arg && w->use == ARG_REQUIRED) {
            snprintf(err, errlen, "fault '%.*s': %s needs an argument (%s_N)", (int)len, s, w->name,
                     w->name);
            return -EINVAL;
        }
        if (has_arg) {
            bool is_reply = w->kind == FAULT_REPLY;
            if (number(a, al, is_reply, &v) < 0 || (is_reply && reply_code(v, &k) < 0) ||
                (!is_reply && (v < w->lo || v > w->hi))) {
                if (is_reply)
                    snprintf(err, errlen,
                             "fault '%.*s': a reply code is 1-8 (SOCKS5) or 0x5b-0x5d (SOCKS4)",
                             (int)len, s);
                else
                    snprintf(err, errlen, "fault '%.*s': %s takes a whole number %u-%u", (int)len,
                             s, w->name, w->lo, w->hi);
                return -EINVAL;
            }
        }
        f->kinds |= 1u << k;
        f->arg[k] = v;
        return 0;
    }
    snprintf(err, errlen,
             "unknown fault '%.*s' (refused, reply_N, no_method, auth_fail, delay_method_MS, "
             "delay_auth_MS, delay_reply_MS, split_MS, truncate_N, wrong_bnd, bind_peer, "
             "rst_down_N, rst_up_N, fin_down_N, fin_up_N, throttle_BPS, udp_drop_PCT, "
             "udp_dup_PCT, udp_reorder_PCT, udp_frag[_N]: docs/faults.md)",
             (int)(len > 64 ? 64 : len), s);
    return -EINVAL;
}

size_t
fault_format(const struct fault_set *f, char *out, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return 0;
    out[0] = '\0';
    for (unsigned k = 0; k < FAULT__COUNT; k++) {
        if (!fault_has(f, (enum fault_kind)k))
            continue;
        const char *name = fault_name((enum fault_kind)k);
        const struct fault_word *w = NULL;
        for (size_t i = 0; i < N_WORDS && !w; i++)
            if (words[i].kind == k && words[i].use != ARG_FIXED)
                w = &words[i];
        int n;
        if (k == FAULT_REPLY || k == FAULT_REPLY4)
            n = snprintf(out + used, cap - used, "%sreply_0x%02x", used ? "," : "", f->arg[k]);
        else if (w && w->use != ARG_NONE)
            n = snprintf(out + used, cap - used, "%s%s_%u", used ? "," : "", name, f->arg[k]);
        else
            n = snprintf(out + used, cap - used, "%s%s", used ? "," : "", name);
        if (n < 0 || (size_t)n >= cap - used) {
            used = cap - 1;
            out[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
    return used;
}

static const char KW_FAULT[] = "-fault-";

int
fault_user_params(const char *name, size_t *base_len, struct fault_set *f, char *err, size_t errlen)
{
    const size_t kl = sizeof(KW_FAULT) - 1;
    const char *k = strstr(name, KW_FAULT);
    memset(f, 0, sizeof(*f));
    *base_len = k ? (size_t)(k - name) : strlen(name);
    if (k == name) {
        snprintf(err, errlen, "a user name cannot start with \"-fault-\"");
        return -EINVAL;
    }
    while (k) {
        const char *s = k + kl, *next = strstr(s, KW_FAULT);
        size_t len = next ? (size_t)(next - s) : strlen(s);
        if (fault_parse(s, len, f, err, errlen) < 0)
            return -EINVAL;
        k = next;
    }
    return 0;
}
