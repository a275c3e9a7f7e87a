/*
 * faultspec.h - the faults a test target can be told to commit (docs/faults.md): their
 * names, their one argument, and the parser shared by the rule key `fault` and the
 * user-name parameter "-fault-NAME".
 *
 * Pure: no state, any thread. A fault is NAME or NAME_ARG, ARG a decimal number (reply
 * codes also 0xHH); the same words work in the configuration and in a user name, which is
 * why there is no ':' or '='. A set holds at most one fault of each kind (the last one
 * given wins) and is plain data, copied into the connection that commits it.
 */
#ifndef RINGSOCKS_FAULTSPEC_H
#define RINGSOCKS_FAULTSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum fault_kind {
    FAULT_REPLY = 0,    /* SOCKS5 request refused with this code (0x01-0x08), nothing tried */
    FAULT_REPLY4,       /* SOCKS4 request refused with this code (0x5b-0x5d) */
    FAULT_NO_METHOD,    /* SOCKS5 greeting answered 05 ff */
    FAULT_AUTH_FAIL,    /* RFC 1929 status 0x01 whatever the password */
    FAULT_DELAY_METHOD, /* ms before the method selection */
    FAULT_DELAY_AUTH,   /* ms before the RFC 1929 status */
    FAULT_DELAY_REPLY,  /* ms before the request's reply */
    FAULT_SPLIT,        /* the request's reply a byte at a time, ms between the bytes */
    FAULT_TRUNCATE,     /* the first N bytes of the request's reply, then close */
    FAULT_WRONG_BND,    /* the reply's BND names 192.0.2.1 / 2001:db8::1, port 9 */
    FAULT_BIND_PEER,    /* BIND's second reply names 203.0.113.1 / 2001:db8::2 as the peer */
    FAULT_RST_DOWN,     /* reset the client after N bytes towards it */
    FAULT_RST_UP,       /* reset the client after N bytes from it */
    FAULT_FIN_DOWN,     /* close (FIN) after N bytes towards the client */
    FAULT_FIN_UP,       /* close (FIN) after N bytes from the client */
    FAULT_THROTTLE,     /* each direction at most N bytes per second */
    FAULT_UDP_DROP,     /* a datagram is dropped with probability N % */
    FAULT_UDP_DUP,      /* a datagram is sent twice with probability N % */
    FAULT_UDP_REORDER,  /* a datagram is held back behind the next with probability N % */
    FAULT_UDP_FRAG,     /* datagrams to the client carry FRAG = N (default 1) */
    FAULT__COUNT,
};

struct fault_set {
    uint32_t kinds; /* bit k: fault k is set */
    uint32_t arg[FAULT__COUNT];
};

/* The faults that act before the request: in a rule, it may have only from (and users). */
#define FAULT_KINDS_GREETING ((1u << FAULT_NO_METHOD) | (1u << FAULT_DELAY_METHOD))
#define FAULT_KINDS_AUTH     ((1u << FAULT_AUTH_FAIL) | (1u << FAULT_DELAY_AUTH))

static inline bool
fault_has(const struct fault_set *f, enum fault_kind k)
{
    return f->kinds & (1u << k);
}

/* The longest accepted argument: delays, pauses (ms). */
#define FAULT_DELAY_MAX_MS 60000u

/*
 * Adds the fault s names to f ("refused", "delay_reply_500", "rst_down_1000", ...).
 * Returns 0, or -EINVAL with a message naming what is wrong in err (f unchanged).
 */
int fault_parse(const char *s, size_t len, struct fault_set *f, char *err, size_t errlen);

/* The name of kind k as the access log and the metrics give it ("reply", "rst_down"). */
const char *fault_name(enum fault_kind k);

/*
 * f as the access log gives it: the kinds' names, with their argument where there is one,
 * comma-separated ("delay_reply_500,split_20"); "" for none. Truncated to cap - 1 bytes.
 */
size_t fault_format(const struct fault_set *f, char *out, size_t cap);

/*
 * A user name's fault parameters: "alice-fault-refused[-fault-NAME...]" (after any
 * "-session-ID[-ttl-N]"). *base_len gets the length before the first "-fault-" (the whole
 * name when there is none) and f the faults. 0, or -EINVAL: a "-fault-" with no valid
 * fault after it (err says why).
 */
int fault_user_params(const char *name, size_t *base_len, struct fault_set *f, char *err,
                      size_t errlen);

/* Does the name hold the "-fault-" keyword? (users.c refuses such names with params on.) */
static inline bool
fault_name_has_keyword(const char *name)
{
    return strstr(name, "-fault-") != NULL;
}

#endif
