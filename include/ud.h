/*
 * ud.h - the user_data of a ring operation: which op, a one-bit argument
 * (the relay direction), and for a connection's op its slot and generation,
 * so that a completion for a slot freed and reused since is recognised as
 * stale. Pure encoding: no state, any thread.
 *
 * Bits 0-6 op, bit 7 the argument, bits 8-31 slot (or a listener, DNS socket
 * index), bits 32-63 generation.
 */
#ifndef RINGSOCKS_UD_H
#define RINGSOCKS_UD_H

#include <stdint.h>

enum op {
    OP_NONE = 0,
    /* The shard's own ops (shard.c, dns.c, authq.c): */
    OP_ACCEPT,     /* slot: listener index */
    OP_TICK,       /* the shard's periodic timer */
    OP_WAKE,       /* read on the shard's eventfd: another thread wants attention */
    OP_DNS_POLL,   /* slot: DNS socket index, gen: its generation */
    OP_DNS_REMOVE, /* poll removal for a DNS socket c-ares closed */
    OP_AUTH,       /* read on the auth worker's eventfd: results are ready */
    OP_GSS,        /* read on the GSS-API worker's eventfd: answers are ready (gssw.h) */
    /* A connection's ops (conn.c checks slot and generation, the phase handles them): */
    OP_CONN_FIRST,
    OP_CANCEL = OP_CONN_FIRST, /* cancellation issued by the slot layer */
    OP_HUP,                    /* conn_watch_hangup(): POLLRDHUP on the client */
    OP_HS_READ,                /* handshake bytes from the client */
    OP_HS_WRITE,               /* handshake replies to the client */
    OP_LEFTOVER,               /* pipelined client bytes to the target */
    OP_CONNECT,                /* outgoing connect (argument: which of two attempts) */
    OP_CONNECT_DELAY,          /* request: the delay before the next address joins in */
    OP_BIND_ACCEPT,            /* BIND: the one inbound connection */
    OP_POLL_IN,                /* relay: source readable (argument: direction) */
    OP_POLL_OUT,               /* relay: destination writable */
    OP_RECV,                   /* relay: source socket -> provided buffer */
    OP_SEND,                   /* relay: buffer -> destination socket */
    OP_UDP_POLL,               /* UDP ASSOCIATE: datagrams wait on the association's socket */
    OP_UDP_CTRL,               /* UDP ASSOCIATE: read on the TCP control connection */
    OP_THROTTLE,               /* relay: a direction waits for bandwidth (limit.h) */
    OP_UP_SEND,                /* chain: a message to the parent proxy */
    OP_UP_PEEK,                /* chain: the parent's reply, peeked (MSG_PEEK) */
    OP_GSS_READ,               /* handshake, GSS-API method: RFC 1961 messages from the client */
    OP_GSS_WRITE,              /* handshake, GSS-API method: RFC 1961 messages to the client */
    OP_FAULT,                  /* a fault's timer (fault.h; argument: 0, or relay direction) */
};

#define UD_ARG_BIT 0x80u

static inline uint64_t
ud_make(unsigned op, unsigned arg, uint32_t slot, uint32_t gen)
{
    return (uint64_t)gen << 32 | (uint64_t)(slot & 0xFFFFFFu) << 8 | (arg ? UD_ARG_BIT : 0) |
           (op & 0x7Fu);
}
static inline unsigned
ud_op(uint64_t ud)
{
    return (unsigned)(ud & 0x7Fu);
}
static inline unsigned
ud_arg(uint64_t ud)
{
    return (ud & UD_ARG_BIT) ? 1 : 0;
}
static inline uint32_t
ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 8) & 0xFFFFFFu;
}
static inline uint32_t
ud_gen(uint64_t ud)
{
    return (uint32_t)(ud >> 32);
}

#endif
