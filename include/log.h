/*
 * log.h - the access log: one line per finished tunnel.
 *
 * Shards never write a file: each pushes a fixed-size record into its own
 * single-producer ring (log_push, a few stores, never blocks; when the ring
 * is full the record is counted as dropped); one writer thread drains every
 * ring, formats (logfmt or JSON) and writes to stderr, a file or syslog.
 * log_reopen() (SIGUSR1, from the control thread) makes the writer reopen
 * its file, for logrotate.
 */
#ifndef RINGSOCKS_LOG_H
#define RINGSOCKS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "opts.h"

/*
 * Why a UDP association dropped a datagram: one counter each in the record,
 * named in the line by log_udp_drop_str().
 */
enum log_udp_drop {
    LOG_UDP_DROP_RULE = 0,  /* the rules deny its destination */
    LOG_UDP_DROP_MALFORMED, /* the RFC 1928 header does not parse */
    LOG_UDP_DROP_FRAG,      /* FRAG != 0: no reassembly */
    LOG_UDP_DROP_SOURCE,    /* not from the client nor from a remote it sent to */
    LOG_UDP_DROP_RESOLVE,   /* its destination name did not resolve (or not in time) */
    LOG_UDP_DROP_QUEUE,     /* no room to hold it while its name resolves */
    LOG_UDP_DROP_FAMILY,    /* no source address (or no socket) of the remote's family */
    LOG_UDP_DROP_SEND,      /* sendmmsg() refused it (buffer full, ICMP error, firewall) */
    LOG_UDP_DROP_TOO_BIG,   /* larger than a datagram slot (MSG_TRUNC) */
    LOG_UDP_DROP_GSS,       /* GSS-API level 1/2: not a frame, forged, replayed, or no room */
    LOG_UDP_DROP_FAULT,     /* fault mode: udp_drop, or held by udp_reorder with no successor */
    LOG_UDP_DROP__COUNT,
};

/* Pure: the name of a drop reason in the log line ("rule", "frag", ...). */
const char *log_udp_drop_str(enum log_udp_drop why);

/* What an association relayed and dropped (only lines of cmd udp show them). */
struct log_udp {
    uint32_t out;                       /* datagrams sent client -> target */
    uint32_t in;                        /* datagrams sent target -> client */
    uint32_t drop[LOG_UDP_DROP__COUNT]; /* datagrams dropped, by reason */
};

struct log_rec {
    uint64_t start_ms;    /* wall clock, ms since the epoch, at accept */
    uint32_t duration_ms; /* the line's end field is start_ms + duration_ms */
    uint16_t shard;
    uint32_t slot, gen; /* with shard, the connection's id "SHARD.SLOT.GEN" (admin API) */
    uint16_t port;      /* requested destination port */
    uint8_t version;    /* 4, 5, HTTPCONNECT_VERSION, TRANSPARENT_VERSION; 0: never said */
    uint8_t cmd;        /* SOCKS5_CMD_*, 0 when no request was made */
    uint8_t gss;        /* GSS-API: 0 not used, else the protection level agreed + 1 */
    int16_t rep;        /* SOCKS5 reply code sent (SOCKS4 clients: mapped), -1 none */
    uint8_t end;        /* enum conn_end */
    union sockaddr_inx client;
    union sockaddr_inx via;      /* the load balancer of a PROXY listener; family 0: none */
    union sockaddr_inx resolved; /* family 0: none */
    union sockaddr_inx egress;   /* our end towards the target; family 0: none */
    union sockaddr_inx parent;   /* the parent proxy that carried it (rule key via); 0: none */
    char session[65];            /* username_params session ID; "" none */
    /* The rule that decided the request: its name, or its 1-based number, "default" (no
     * rule matched: denied), or "" (no rule decided: no rules, or never asked). */
    char rule[65];
    struct log_udp udp;  /* cmd udp only */
    uint64_t bytes_up;   /* client -> target */
    uint64_t bytes_down; /* target -> client */
    /* The faults committed on purpose (fault.h), as fault_format() gives them; "" none.
     * With user and host after the fixed part, copied by length: nearly always empty. */
    char fault[128];
    char user[256]; /* "" when none */
    char host[256]; /* requested destination: the name, or the address as text; "" none */
};

struct logger;

/*
 * Main thread: start the writer for n_shards rings of ring_slots records
 * (power of two, 2..2^20). target: "stderr", "syslog" (LOG_DAEMON, ident
 * "ringsocks", LOG_INFO), "off" or a file path (opened for append, created
 * 0640). Returns NULL and writes a message into err on failure. "off" gives
 * a logger that drops nothing and writes nothing, with no thread.
 * The writer polls the rings every 50 ms when they are empty, so a line is
 * written within about 50 ms and a ring should hold what its shard finishes
 * in 50 ms at peak; more is dropped.
 */
struct logger *log_start(const char *target, enum log_format fmt, unsigned n_shards,
                         unsigned ring_slots, char *err, size_t errlen);
/*
 * log_start() in two steps, for main(): log_open() opens the target (before the
 * privilege drop: the file may be root's to create) with no thread; log_run() starts
 * the writer (after the drop: a thread keeps the capabilities it was made with). 0, or
 * -1 with the reason in err (the logger stays log_stop()'s to free).
 */
struct logger *log_open(const char *target, enum log_format fmt, unsigned n_shards,
                        unsigned ring_slots, char *err, size_t errlen);
int log_run(struct logger *lg, char *err, size_t errlen);
/*
 * Main thread, after the shards stopped: write what is queued, stop, free
 * (waits up to one 50 ms poll, plus the writing). NULL is a no-op.
 */
void log_stop(struct logger *lg);

/*
 * Shard thread `shard` only (one producer per ring): copy rec into the ring;
 * no lock, no syscall, never blocks. false when the ring is full (counted
 * as dropped) or shard >= n_shards (a caller bug, not counted). "off": true.
 */
bool log_push(struct logger *lg, unsigned shard, const struct log_rec *rec);
/*
 * Any thread, async-signal-safe (one atomic store): ask the writer to reopen
 * its file (close the old one once the new one is open; on failure it keeps
 * the old one and says so on stderr). The writer acts within one 50 ms
 * poll; lines already queued may still go to the old file. A no-op for
 * stderr, syslog and off.
 */
void log_reopen(struct logger *lg);
/*
 * Any thread: records dropped (ring full) and written so far, all shards.
 * Lines lost to a failed write(2) count as neither.
 */
uint64_t log_dropped(const struct logger *lg);
uint64_t log_written(const struct logger *lg);

/*
 * Pure: format one record as a line (with '\n') into buf; returns its
 * length (truncated to cap - 1, always NUL-terminated when cap > 0; a cut
 * line still ends in '\n'; cap 0 writes nothing). end_str names the end
 * reason (NULL: none). Fields, in order: time (RFC 3339 UTC, ms), shard,
 * id (SHARD.SLOT.GEN), client, user, cmd (connect, bind, udp, none, unknown), proto=http (only
 * for an HTTP CONNECT client, whose version is then 1; proto=transparent with version 0 for a
 * transparent listener's), version, gss (only for a client authenticated by GSS-API:
 * the protection level agreed, 0-2), dest
 * (host:port, an IPv6 host in brackets), resolved, egress, session (only
 * when there is one), rule, fault (only when a fault acted: fault.h), rep, up, down,
 * duration_ms, end (the reason),
 * end_time (RFC 3339 like time: start plus duration), and for cmd udp
 * udp_out, udp_in and udp_drop (logfmt "rule:3,frag:1", "-" when none;
 * JSON an object {"rule":3,"frag":1}, {} when none). A line is always printable ASCII, whatever bytes user
 * and host hold:
 * - logfmt: an empty value or rep -1 is "-"; values with a space, '"', '='
 *   or a byte < 0x20, 0x7f or >= 0x80 are quoted, with '"' and '\' escaped
 *   by a backslash and those bytes as \xNN.
 * - JSON (RFC 8259): one object per line, numbers as numbers, none as null;
 *   '"' and '\' backslash-escaped, bytes < 0x20, 0x7f and >= 0x80 as
 *   \u00XX (byte N as U+00NN: the exact bytes can be recovered, and the
 *   output is valid UTF-8 without validating the input). Longest line: ~3.9 KB.
 */
/* Pure: a SOCKS5_CMD_* as text: "connect", "bind", "udp", "none" (0), "unknown". */
const char *log_cmd_name(uint8_t cmd);

size_t log_format(const struct log_rec *r, enum log_format fmt, const char *end_str, char *buf,
                  size_t cap);

#endif
