/*
 * socksload.h - the load generator's shared types and module interfaces.
 *
 * Modules (one concept per file, prefix = file name):
 *   url.c     proxy URL and HOST:PORT parsing (pure)
 *   http.c    HTTP/1.1 through the tunnel: the request, an incremental response parser (pure)
 *   srcaddr.c --source: client source address ranges, round robin (pure)
 *   socks.c   client side of SOCKS4/4a/5 and RFC 1929: encode requests, parse replies; and
 *             the SOCKS5 greeting and request parsers of the target's front (pure)
 *   pattern.c the deterministic byte pattern and the target protocol header (pure after init)
 *   opts.c    option values naming a choice: --close, --direction (pure)
 *   usertpl.c the --user template: a user name and session key per tunnel (pure)
 *   sources.c the target's record of source addresses per session key, bounded (pure)
 *   stats.c   per-worker counters and latency histogram; progress line, table, JSON
 *   phases.c  latency by phase of a tunnel (connect, greeting, auth, reply, first byte, close)
 *   intervals.c  the per-interval figures (diff of two cumulative snapshots) as JSON lines
 *   plot.c    `socksload plot`: the per-interval file drawn by gnuplot (fork/exec)
 *   limits.c  socksload's own limits: open files, local ports, its workers' CPU (pure)
 *   target.c  sink/source/echo/request-response TCP server and UDP echo (embedded or `serve`),
 *             optionally behind its own SOCKS5 front (`serve --socks5`)
 *   client.c  the worker thread: one io_uring loop driving tunnels for every TCP mode
 *   udp.c     UDP ASSOCIATE datagram exchange, driven by client.c's loop
 *   main.c    options, address safety checks, threads, report; the only place that exits
 *
 * Threads: main thread (options, progress, report), one client worker per --threads, and
 * the embedded target's threads. Workers share nothing writable but their own stats, which
 * only they write (relaxed atomic stores) and the main thread reads (relaxed loads), the
 * embedded target's record of the connections it reset for a mismatch (under its mutex), and
 * --source's round-robin counter (an atomic add per tunnel).
 */
#ifndef SOCKSLOAD_H
#define SOCKSLOAD_H

#include <liburing.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- url.c ---- */
enum url_scheme { URL_SOCKS4, URL_SOCKS4A, URL_SOCKS5, URL_SOCKS5H, URL_HTTP };
enum url_host { URL_HOST_IPV4, URL_HOST_IPV6, URL_HOST_NAME };

#define URL_FIELD_MAX 255 /* RFC 1929 and RFC 1928 domain names: one length byte */

struct url {
    enum url_scheme scheme;
    enum url_host host_type;
    char host[URL_FIELD_MAX + 1]; /* without brackets for IPv6 */
    uint16_t port;                /* 1080 when the URL names none */
    bool has_user;
    bool has_pass;
    char user[URL_FIELD_MAX + 1]; /* percent-decoded */
    char pass[URL_FIELD_MAX + 1];
};

/* Parses a curl-style proxy URL: scheme://[user[:pass]@]host[:port][/]. Schemes: socks4,
 * socks4a, socks5, socks5h, and http (an HTTP CONNECT proxy: ringsocks's upstream chaining
 * speaks it; socksload and the socksifier refuse it). host: IPv4 dotted quad, [IPv6], or a name (not resolved here).
 * Returns 0, or -EINVAL with a message in err. Pure. */
int url_parse(struct url *u, const char *s, char *err, size_t errlen);

/* Parses HOST:PORT, [IPv6]:PORT or NAME:PORT into host (errlen-style buffer of
 * URL_FIELD_MAX + 1 bytes), its type and port (1-65535). Returns 0 or -EINVAL. Pure. */
int url_parse_hostport(const char *s, char *host, enum url_host *type, uint16_t *port, char *err,
                       size_t errlen);

/* Turns a literal address or the name "localhost" into a socket address (127.0.0.1, or ::1
 * when want_v6). Never resolves other names: returns -EADDRNOTAVAIL for them. */
int url_to_sockaddr(const char *host, enum url_host type, uint16_t port, bool want_v6,
                    struct sockaddr_storage *ss, socklen_t *len);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool url_is_loopback(const struct sockaddr *sa);

const char *url_scheme_str(enum url_scheme s);

/* ---- http.c ---- */
/* Status line and headers (and a chunked body's trailers), at most this many bytes; a chunk
 * size line at most HTTP_CHUNK_LINE_MAX. */
#define HTTP_HEADER_MAX     16384
#define HTTP_CHUNK_LINE_MAX 1024
#define HTTP_REQ_MAX        (URL_FIELD_MAX + 2048 + 256) /* a request socksload sends */
#define HTTP_PATH_MAX       2048

/* Why a response is malformed: the detail of STATS_E_HTTP_MALFORMED (http_err_str). */
enum http_err {
    HTTP_E_NONE,
    HTTP_E_STATUS_LINE,
    HTTP_E_HEADER,
    HTTP_E_TOO_BIG,
    HTTP_E_LENGTH,
    HTTP_E_BOTH,
    HTTP_E_CHUNK,
    HTTP_E_CHUNK_END,
    HTTP_E_EXTRA,
    HTTP_E_EOF_HEADERS,
    HTTP_E_EOF_CHUNKED,
    HTTP_E_N
};

enum http_phase {
    HTTP_P_STATUS,
    HTTP_P_HEADERS,
    HTTP_P_BODY_LEN,   /* Content-Length bytes */
    HTTP_P_BODY_EOF,   /* until the server closes */
    HTTP_P_CHUNK_SIZE, /* RFC 9112 section 7.1 */
    HTTP_P_CHUNK_DATA,
    HTTP_P_CHUNK_CRLF,
    HTTP_P_TRAILERS,
    HTTP_P_DONE,
};

/* One response being read. Owned by one tunnel; http_resp_init before each response. */
struct http_resp {
    enum http_phase phase;
    enum http_err err;   /* set with -EPROTO */
    int status;          /* of the final response (1xx interim ones are skipped) */
    bool keep_alive;     /* the connection may carry another request after this one */
    bool has_length;     /* a Content-Length was given: length */
    bool has_te;         /* a Transfer-Encoding: without chunked last, the body ends at EOF */
    bool chunked;        /* the last Transfer-Encoding ends in chunked */
    uint64_t length;     /* Content-Length */
    uint64_t body;       /* body bytes read (for chunked: chunk data) */
    uint64_t chunk_left; /* of the current chunk */
    size_t head;         /* bytes of the current header block (status + headers, or trailers) */
    size_t line_len;     /* bytes of the line being read */
    char line[HTTP_HEADER_MAX + 1];
};

void http_resp_init(struct http_resp *r);
/* Reads n more bytes of the response. Returns the bytes consumed: all n, or fewer when the
 * response completed within them (phase HTTP_P_DONE; the rest belong to no response); or
 * -EPROTO with r->err set. Pure and incremental: any split of the input gives the same
 * answers. */
ssize_t http_resp_feed(struct http_resp *r, const uint8_t *p, size_t n);
/* The server closed the connection: 0 when that ends the response (a body read until the
 * close, phase HTTP_P_DONE), or -EPROTO with r->err. In HTTP_P_BODY_LEN the caller reports the
 * short body itself (body of length bytes): this returns -EPROTO with HTTP_E_NONE. */
int http_resp_eof(struct http_resp *r);
const char *http_err_str(enum http_err e);
/* Writes a GET of path with Host: host and, when close, Connection: close. Returns its
 * length, 0 when it would not fit cap. */
size_t http_get(char *out, size_t cap, const char *host, const char *path, bool close);
/* Splits http://AUTHORITY[/PATH] into its authority (as written: the Host header),
 * HOST:PORT (port 80 when none) and the path ("/" when none; no fragment). https:// and
 * user info are refused. Returns 0 or -EINVAL with a message in err. */
int http_url_parse(const char *url, char *authority, size_t alen, char *hostport, size_t hlen,
                   char *path, size_t plen, char *err, size_t errlen);
/* A path socksload may send: "/" first, then visible ASCII only (no space, CR, LF). */
bool http_path_ok(const char *path);

/* ---- srcaddr.c ---- */
/* --source: the client's source addresses, a comma list of ranges: A (one address), A-B (B
 * not below A; IPv6: the same /64), or A/P (a prefix; IPv4 shorter than /31 without its network
 * and broadcast addresses; IPv6 /96 or longer). One family in the list; at most SRCADDR_RANGES
 * ranges and SRCADDR_MAX addresses in all. */
#define SRCADDR_RANGES 64
#define SRCADDR_MAX    (1ull << 32)

struct srcaddr_range {
    int family;     /* AF_INET or AF_INET6 */
    uint8_t lo[16]; /* the first address, network order (4 bytes for IPv4) */
    uint64_t n;     /* addresses: lo, lo + 1, ... (IPv6: in the low 64 bits) */
};

struct srcaddr {
    unsigned n;     /* ranges; 0: no --source */
    uint64_t total; /* addresses in all */
    struct srcaddr_range r[SRCADDR_RANGES];
};

/* Returns 0, or -EINVAL with a message in err naming the bad element. Pure. */
int srcaddr_parse(struct srcaddr *s, const char *str, char *err, size_t errlen);
/* Address i mod total (round robin over the list in order), port 0. Pure. */
void srcaddr_at(const struct srcaddr *s, uint64_t i, struct sockaddr_storage *ss, socklen_t *len);
/* The first and the last address of range k. */
void srcaddr_ends(const struct srcaddr *s, unsigned k, struct sockaddr_storage *first,
                  struct sockaddr_storage *last);

/* ---- socks.c ---- */
#define SOCKS_CMD_CONNECT 1
#define SOCKS_CMD_UDP     3

/* Destination as sent to the proxy: a literal address, or a name for socks5h/socks4a. */
struct socks_dest {
    enum url_host type;
    char name[URL_FIELD_MAX + 1];
    uint8_t addr[16];
    uint16_t port;
};

/* Encoders write into out (at least 600 bytes) and return the length. */
size_t socks_greeting(uint8_t *out, const struct url *u);
/* user: the name to send (at most URL_FIELD_MAX bytes), NULL for the URL's. */
size_t socks_auth_request(uint8_t *out, const struct url *u, const char *user);
size_t socks_request(uint8_t *out, const struct url *u, uint8_t cmd, const struct socks_dest *d);
/* The SOCKS5 UDP request header (RFC 1928 section 7) for d; returns its length. */
size_t socks_udp_header(uint8_t *out, const struct socks_dest *d);

/* Parsers return > 0 bytes consumed by a complete message, 0 need more, -EPROTO malformed.
 * *code receives the method, status or reply code of a complete message. */
ssize_t socks_parse_method(const uint8_t *p, size_t len, int *code);
ssize_t socks_parse_auth(const uint8_t *p, size_t len, int *code);
/* bnd (may be NULL) receives the bound address of a SOCKS5 reply with an IP address. */
ssize_t socks_parse_reply(const struct url *u, const uint8_t *p, size_t len, int *code,
                          struct sockaddr_storage *bnd);
/* Length of the SOCKS5 UDP header at p, or -EPROTO. */
ssize_t socks_parse_udp_header(const uint8_t *p, size_t len);
/* True when code is the success code of the URL's protocol (0 for SOCKS5, 90 for SOCKS4). */
bool socks_reply_ok(const struct url *u, int code);
/* Server side, for the target's SOCKS5 front; same return convention.
 * A SOCKS5 greeting (VER=5, 1..255 methods): *noauth receives whether method 0 is offered. */
ssize_t socks_parse_greeting(const uint8_t *p, size_t len, bool *noauth);
/* A SOCKS5 request (VER=5, RSV=0, ATYP 1, 3 with a non-empty name, or 4): *cmd receives CMD.
 * The destination is checked for form only, never decoded. A wrong byte is -EPROTO as soon as
 * it has arrived. */
ssize_t socks_parse_request(const uint8_t *p, size_t len, int *cmd);

/* ---- pattern.c ---- */
/* Byte at stream offset o of a stream with seed s is (s + o) % PATTERN_MOD. */
#define PATTERN_MOD   251
#define PATTERN_CHUNK (256 * 1024)

/* Target protocol: the first PATTERN_HDR_LEN bytes the client sends after the tunnel is up.
 *   [0]='s' [1]='l' [2]=mode [3]=flags [4..8) seed [8..12) a [12..16) b [16..20) key
 *   (little endian). flags: PATTERN_F_KEY, the tunnel's session key is in key (the --user
 *   template's number); the target records its source address under it (sources.c).
 *   PATTERN_F_CLOSE ('Q' only): the target closes first, as an HTTP/1.0 server does.
 *   Other flag bits must be 0; without PATTERN_F_KEY, key must be 0.
 * Modes:
 *   'S' source: stream the pattern until the client goes away.
 *   'K' sink:   read and verify the pattern; on the client's EOF answer PATTERN_REPORT_LEN
 *               bytes 'O' + u64 count; on a mismatch answer 'X' + count at once and close.
 *   'B' both:   source and sink at once; a mismatch closes with RST (and counts in the
 *               embedded target's counter, see target_claim).
 *   'E' echo:   send back every byte.
 *   'Q' request/response: read a bytes (verified), send b bytes, then wait for EOF; with
 *               PATTERN_F_CLOSE close (a FIN) once the b bytes are sent, without waiting.
 * Behind the SOCKS5 front (`serve --socks5`) each TCP connection first gets a greeting that
 * offers method 0 answered 05 00, then a CONNECT with any ATYP answered 05 00 00 01 0.0.0.0:0
 * (the destination is never connected to); then the header, as above. Anything else (no
 * method 0, another command such as UDP ASSOCIATE, a malformed message) is closed with RST. */
#define PATTERN_HDR_LEN    20
#define PATTERN_REPORT_LEN 9
#define PATTERN_F_KEY      1
#define PATTERN_F_CLOSE    2

struct pattern_hdr {
    uint8_t mode;
    uint8_t flags;
    uint32_t seed;
    uint32_t a;
    uint32_t b;
    uint32_t key;
};

void pattern_init(void); /* before any thread starts */
/* PATTERN_CHUNK readable bytes that start at stream offset off of the stream seeded seed. */
const uint8_t *pattern_at(uint32_t seed, uint64_t off);
/* True when p[0..n) equals the stream seeded seed at offset off (any n). */
bool pattern_check(uint32_t seed, uint64_t off, const uint8_t *p, size_t n);
void pattern_hdr_encode(uint8_t *out, const struct pattern_hdr *h);
int pattern_hdr_decode(struct pattern_hdr *h, const uint8_t *in);

/* ---- usertpl.c ---- */
/* A user name template: literal text with at most one {n} (the tunnel's number n, written as
 * n mod 2^32) or {n%K} (n mod K, K 1..USERTPL_MOD_MAX), and any number of {worker} (the
 * worker thread's number, 0 .. --threads - 1); {{ and }} are literal braces. The number n
 * writes is the tunnel's session key. */
#define USERTPL_MOD_MAX       4294967295ull
#define USERTPL_WORKER_DIGITS 3 /* worker numbers are below THREADS_MAX (256) */
#define USERTPL_PARTS         64

enum usertpl_part { USERTPL_LIT, USERTPL_N, USERTPL_WORKER };

struct usertpl {
    bool has_key;                /* a {n} or {n%K} is in it */
    uint64_t mod;                /* K, 0 for {n} */
    char lit[URL_FIELD_MAX + 1]; /* the literal text of every part, in order */
    unsigned nparts;
    struct {
        uint8_t kind; /* enum usertpl_part */
        uint16_t len; /* USERTPL_LIT: its bytes, the next ones of lit */
    } part[USERTPL_PARTS];
};

/* Returns 0, or -EINVAL with a message in err: a brace that is no {n}, {n%K}, {worker}, {{ or
 * }}; a second number; K out of range; more than USERTPL_PARTS parts; an expansion that could
 * exceed URL_FIELD_MAX bytes; empty. */
int usertpl_parse(struct usertpl *t, const char *s, char *err, size_t errlen);
/* The session key of tunnel n: n % K, or n mod 2^32 for {n}. */
uint32_t usertpl_key(const struct usertpl *t, uint64_t n);
/* Writes the name of tunnel n of worker `worker` (below 1000) to out (URL_FIELD_MAX + 1
 * bytes); returns its length. */
size_t usertpl_expand(const struct usertpl *t, uint64_t n, unsigned worker, char *out);

/* ---- sources.c ---- */
/* At most this many distinct (address, session key) pairs are kept: 24 bytes each in a table
 * at most twice as large (48 MiB). */
#define SOURCES_MAX (1u << 20)

struct sources_entry;
struct sources {
    struct sources_entry *tab;
    size_t cap, n;
    uint64_t seen;    /* every address added, new or not */
    uint64_t dropped; /* new pairs not kept: the table was full (or out of memory) */
};

struct sources_summary {
    uint64_t seen;            /* connections and datagrams recorded */
    uint64_t pairs;           /* distinct (address, key) pairs kept */
    uint64_t dropped;         /* > 0: the figures below are lower bounds */
    uint64_t addresses;       /* distinct source addresses */
    uint64_t sessions;        /* distinct session keys */
    uint64_t sessions_one;    /* session keys seen from exactly one address */
    uint64_t max_per_session; /* most addresses for one session key */
};

/* A zeroed struct sources is empty. Adds a source address (AF_INET or AF_INET6; IPv4 counts
 * as its IPv4-mapped IPv6 address) under key when has_key. Returns 1 new pair, 0 known,
 * -ENOSPC / -ENOMEM not kept (counted in dropped), -EAFNOSUPPORT. */
int sources_add(struct sources *s, const struct sockaddr *sa, bool has_key, uint32_t key);
/* Fills out; -ENOMEM (out then has only seen, pairs and dropped). */
int sources_summarize(const struct sources *s, struct sources_summary *out);
void sources_free(struct sources *s);

/* ---- stats.c ---- */
enum stats_err {
    STATS_E_CONNECT,        /* TCP connect to the proxy failed */
    STATS_E_REPLY,          /* proxy refused the request (by code in rep[]) */
    STATS_E_AUTH,           /* no acceptable method or RFC 1929 failure */
    STATS_E_RESET,          /* ECONNRESET / EPIPE */
    STATS_E_TIMEOUT,        /* a step overran --timeout */
    STATS_E_MISMATCH,       /* data differed from the pattern or the echo */
    STATS_E_CLOSED,         /* EOF where data was due */
    STATS_E_PROTOCOL,       /* malformed proxy reply */
    STATS_E_LOST,           /* UDP datagram not echoed within --loss-timeout */
    STATS_E_HTTP_STATUS,    /* http: a status other than --expect-status (detail: it) */
    STATS_E_HTTP_SIZE,      /* http: a body of the wrong size (detail: STATS_D_SIZE) */
    STATS_E_HTTP_MALFORMED, /* http: the response broke HTTP/1.1 (detail: enum http_err) */
    STATS_E_NO_EOF,         /* connrate --close target: the target's EOF never came through */
    STATS_E_OTHER,
    STATS_E_N
};

/* The latency histogram, HdrHistogram's layout for 3 significant digits: values below
 * STATS_HIST_SUB ns have a bucket each; above, every power of two [2^m, 2^(m+1)) for m = 11 ..
 * STATS_HIST_TOP has STATS_HIST_HALF buckets 2^(m-10) ns wide, at most 1/1024 of the value,
 * and a percentile reads a bucket's middle: relative error <= 0.05 %. Up to 2^42 ns (73
 * minutes); a larger value lands in the last bucket (max is kept exactly, apart). 264 KiB.
 * Histograms merge by adding the buckets. */
#define STATS_HIST_SUB  2048
#define STATS_HIST_HALF 1024
#define STATS_HIST_TOP  41
#define STATS_HIST_N    (STATS_HIST_SUB + (STATS_HIST_TOP - 10) * STATS_HIST_HALF)

/*
 * A failure's detail, by kind: STATS_E_REPLY the reply code; STATS_E_AUTH a RFC 1929 status,
 * or STATS_D_METHOD + the method the proxy chose (0xff: none acceptable); the kinds from a
 * syscall (connect, reset, timeout, closed, other) the errno, 0 for none (an EOF). Each
 * worker counts up to STATS_FAIL_N distinct (kind, detail) pairs; the first time a pair is
 * seen its kind and detail are stored before its count (release), and never change.
 */
#define STATS_D_METHOD   0x100
/* STATS_E_HTTP_SIZE's detail: the body's size read and the size expected, each at most
 * STATS_D_SIZE_MAX (larger ones are written as that, with a "+"). */
#define STATS_D_SIZE_MAX 0xffffffffull
#define STATS_D_SIZE(got, exp)                                               \
    (((got) < STATS_D_SIZE_MAX ? (uint64_t)(got) : STATS_D_SIZE_MAX) << 32 | \
     ((exp) < STATS_D_SIZE_MAX ? (uint64_t)(exp) : STATS_D_SIZE_MAX))
#define STATS_FAIL_N        16
#define STATS_HTTP_STATUS_N 1000

struct stats_fail {
    uint64_t kind; /* enum stats_err */
    uint64_t detail;
    uint64_t count; /* 0: a free slot */
};

/* Written only by its worker (stats_add), read by main with relaxed loads. */
struct stats {
    uint64_t units;    /* completed: tunnels, messages or datagrams (see mode) */
    uint64_t tunnels;  /* SOCKS handshakes completed */
    uint64_t bytes_up; /* verified or acknowledged payload */
    uint64_t bytes_down;
    uint64_t started; /* --rate: tunnels started (hold: round trips) */
    uint64_t late;    /* --rate: of those, started > 1 ms after their intended start */
    uint64_t missed;  /* --rate: starts due before the stop that never began */
    uint64_t open;    /* tunnels or associations open now (socket to close): a gauge */
    uint64_t sent;    /* udp: datagrams handed to the kernel (each is echoed, lost or failed) */
    uint64_t err[STATS_E_N];
    uint64_t rep[256];
    uint64_t http_status[STATS_HTTP_STATUS_N]; /* http: responses by status code */
    uint64_t max_ns; /* the largest latency recorded, exact; stats_sum takes the larger */
    uint64_t hist[STATS_HIST_N]; /* latency in ns */
    uint64_t fail_more;          /* failures past the STATS_FAIL_N distinct pairs kept */
    /* Last: stats_sum adds every word before it and merges this table by (kind, detail). */
    struct stats_fail fail[STATS_FAIL_N];
};

void stats_add(uint64_t *field, uint64_t v);
void stats_record_ns(struct stats *s, uint64_t ns);
/* Adds ns to a histogram of STATS_HIST_N buckets and its exact max (relaxed stores). */
void stats_hist_add(uint64_t *hist, uint64_t *max, uint64_t ns);
/* The middle of the highest non-empty bucket, 0 when empty: the max of a histogram that has
 * no exact one (an interval's, a difference of two snapshots). */
uint64_t stats_hist_top(const uint64_t *hist);
/* stats_latency_line of a histogram and its exact max. */
void stats_hist_line(char *buf, size_t len, const uint64_t *hist, uint64_t max);
void stats_error(struct stats *s, enum stats_err e);
/* stats_error, and the (e, detail) pair counted in s->fail (see struct stats_fail). */
void stats_fail(struct stats *s, enum stats_err e, uint64_t detail);
/* The failure for a person: "connect: ECONNREFUSED (Connection refused)", "SOCKS reply 0x02
 * not allowed by ruleset", "SOCKS4 reply 0x5b rejected or failed", "RFC 1929 auth failed
 * (status 0x01)", "no acceptable method (05 ff)", "HTTP status 404", "HTTP body 10 bytes,
 * expected 20", "HTTP malformed response: bad status line". socks4: reply codes are SOCKS4's.
 * Pure. */
void stats_fail_str(char *buf, size_t len, enum stats_err e, uint64_t detail, bool socks4);
/* Distinct (kind, detail) pairs in s->fail; the one pair through *only when every failure
 * counted in s->err is that pair (NULL otherwise, or when there are none). */
unsigned stats_fail_pairs(const struct stats *s, const struct stats_fail **only);
/* dst += src (max_ns: the larger of the two), reading src with relaxed loads. */
void stats_sum(struct stats *dst, const struct stats *src);
/* Samples in the histogram. */
uint64_t stats_samples(const uint64_t *hist);
/* Percentile q (0..1) of the histogram, in ns (a bucket's middle); 0 when empty. */
uint64_t stats_percentile(const uint64_t *hist, double q);
/* The exact largest latency recorded; 0 when none. */
uint64_t stats_max(const struct stats *s);
/* ns for a person: 1.2us, 456us, 300.1ms, 7.80s. */
void stats_fmt_ns(char *buf, size_t len, uint64_t ns);
/* "p50 A, p90 B, p99 C, p99.9 D, max E" of s's histogram (percentiles never above the exact
 * max), or "no samples" when it has none: never a figure that means nothing. */
void stats_latency_line(char *buf, size_t len, const struct stats *s);
uint64_t stats_errors(const struct stats *s);
const char *stats_err_str(enum stats_err e);
uint64_t stats_now_ns(void);

/* ---- phases.c ---- */
/* The phases of a tunnel, each timed from its own actual start: TCP connect to the proxy;
 * greeting (SOCKS5 method request sent to its reply); auth (RFC 1929 request to its reply);
 * reply (the SOCKS request sent to its reply, the proxy's connect to the target included);
 * first byte (the SOCKS reply received to the first byte of the target's answer); close
 * (connrate --close fin: shutdown(SHUT_WR) to the peer's EOF; --close target: the response's
 * last byte to the target's EOF). */
enum phase {
    PHASE_CONNECT,
    PHASE_GREETING,
    PHASE_AUTH,
    PHASE_REPLY,
    PHASE_FIRST_BYTE,
    PHASE_CLOSE,
    PHASE_N
};

struct phase_hist {
    uint64_t max_ns;
    uint64_t hist[STATS_HIST_N];
};

/* One per worker, written by it alone; read by main after the join. 1.6 MiB. */
struct phases {
    struct phase_hist p[PHASE_N];
};

void phases_record(struct phases *ph, enum phase p, uint64_t ns);
/* dst += src: buckets added, max the larger. */
void phases_sum(struct phases *dst, const struct phases *src);
/* "connect", "greeting", "auth", "reply", "first_byte", "close". */
const char *phases_name(enum phase p);
/* The "phases" block of the table: one line per phase, "no samples" where none. */
void phases_print_table(FILE *f, const struct phases *ph);
/* "phases":{"connect":{"samples":N,"p50":US,...,"max":US},...}, nulls without samples. */
void phases_print_json(FILE *f, const struct phases *ph);

/* ---- intervals.c ---- */
/* One interval of the run, from two cumulative snapshots of the summed stats. */
struct interval {
    double t;    /* seconds since the start, at the interval's end */
    double secs; /* its length */
    uint64_t units, bytes, failures;
    uint64_t open; /* tunnels open at its end */
    uint64_t samples;
    uint64_t p50_ns, p90_ns, p99_ns, max_ns; /* of the interval alone; 0 without samples */
    bool sched;                              /* connrate --rate: due and started are set */
    uint64_t due, started;
};

/* The figures between prev and now (cumulative; prev NULL: the start, all zero): counts are
 * differences, the latency is read from the difference of the two histograms (scratch:
 * STATS_HIST_N words), its max from the highest bucket that gained a sample (no exact one
 * exists for an interval; within 0.05 %). Sets units ... max_ns, and started; the caller sets
 * t, secs, sched and due. Pure. */
void intervals_diff(struct interval *iv, const struct stats *now, const struct stats *prev,
                    uint64_t *scratch);
/* connrate --rate: the starts due in the first elapsed seconds of the schedule (tunnel j is
 * due at j / rate), at most count when count > 0. Pure. */
uint64_t intervals_due(double rate, double elapsed, uint64_t count);
/* The interval as one JSON object and a newline; final: the whole run's, marked
 * "final":true. Returns what snprintf returns. Pure. */
int intervals_format(char *buf, size_t len, const struct interval *iv, bool final);

/* ---- modes and options (main.c fills, client.c and udp.c read) ---- */
enum mode {
    MODE_THROUGHPUT,
    MODE_CONNRATE,
    MODE_HOLD,
    MODE_LATENCY,
    MODE_UDP,
    MODE_SERVE,
    MODE_HTTP
};
enum dir { DIR_DOWN, DIR_UP, DIR_BOTH };
/* How connrate ends a tunnel after its response: CLOSE_RST (SO_LINGER 0, then close: no
 * TIME_WAIT anywhere, the proxy passes the reset on), CLOSE_FIN (a plain close: the client
 * closes first, so a proxy that closes its outgoing socket on the client's FIN is the first
 * closer towards the target and holds TIME_WAIT there) or CLOSE_TARGET (the target closes
 * first, as an HTTP/1.0 server does, PATTERN_F_CLOSE: it holds TIME_WAIT on its port pairs;
 * the proxy must carry the FIN to the client, which makes it the first closer on its client
 * side too; the client closes once it has read the EOF and holds none). */
enum close_how { CLOSE_RST, CLOSE_FIN, CLOSE_TARGET };

struct opts {
    enum mode mode;
    struct url proxy;
    struct sockaddr_storage proxy_sa;
    socklen_t proxy_len;
    struct socks_dest dest; /* the target, as sent to the proxy */
    enum dir dir;
    unsigned threads;
    unsigned tunnels; /* throughput, hold, latency, udp: tunnels or associations */
    unsigned workers; /* connrate */
    double duration_s;
    uint64_t count; /* 0: unbounded (duration rules) */
    double timeout_s;
    double hold_s;
    uint32_t request;     /* connrate R */
    uint32_t response;    /* connrate S */
    uint32_t size;        /* latency and udp message size */
    unsigned window;      /* udp datagrams in flight per association */
    double loss_s;        /* udp --loss-timeout: a datagram not echoed by then is lost */
    enum close_how close; /* connrate */
    double rate;          /* connrate, http --rate: tunnels started per second, 0: closed model */
    bool json;
    bool allow_nonlocal;
    bool no_fail_fast; /* --no-fail-fast */
    bool has_tpl;      /* --user: the RFC 1929 name of each tunnel from tpl */
    struct usertpl tpl;
    struct target *target; /* the embedded target, or NULL (see target_claim) */
    /* http: the two requests (keep-alive, and Connection: close for a tunnel's last). */
    char http_req[2][HTTP_REQ_MAX];
    size_t http_req_len[2];
    unsigned requests_per_tunnel; /* http --requests-per-tunnel, 1.. */
    unsigned expect_status;       /* http --expect-status, 0: any 2xx */
    bool has_expect_size;         /* http --expect-size */
    uint64_t expect_size;
    struct srcaddr src; /* --source, n == 0 without */
};

/* ---- plot.c ---- */
enum plot_fmt { PLOT_SVG, PLOT_PNG };

/* The format an output name asks for by its ending, .svg or .png (any case); -EINVAL for
 * another. Pure. */
int plot_format(const char *out, enum plot_fmt *fmt);
/* One line of an --intervals file as a row of the data file (t, Mbit/s, units/s, p50, p99 and
 * max in ms, "?" for a latency without samples, tab-separated, a newline). Returns 1 with the
 * row, 0 for a line that is no interval (blank, or the "final":true summary), or -EINVAL with
 * what is wrong in err. Pure. */
int plot_row(const char *line, char *row, size_t rowlen, char *err, size_t errlen);
/* The gnuplot script that draws data (the rows above) into out, three panels over time:
 * throughput, rate, latency. It exits with status PLOT_NO_TERMINAL when gnuplot has no
 * terminal for fmt (svg; pngcairo, else png). Names and title are quoted for gnuplot.
 * Returns what snprintf returns. Pure. */
#define PLOT_NO_TERMINAL 3
int plot_script(char *buf, size_t len, const char *data, const char *out, enum plot_fmt fmt,
                const char *title);
/* `socksload plot FILE [--out OUT.svg|OUT.png] [--title T]`; argv[0] is "plot". Returns the
 * exit status: 0, 1 (a bad input line, FILE:LINE named; gnuplot failed) or 2 (bad usage). */
int plot_main(int argc, char **argv);

/* ---- limits.c ---- */
/* Where socksload itself, not the proxy, bounds a figure: each a sentence for the report
 * ("limits" lines, JSON "limits": [...]). */
#define LIMITS_MAX     8
#define LIMITS_LEN     240
#define LIMITS_CPU_PCT 90 /* a worker busier than this was CPU-bound */

struct limits {
    unsigned n;
    char msg[LIMITS_MAX][LIMITS_LEN];
};

/* File descriptors a run needs: per tunnel its socket (and its UDP socket in udp mode), the
 * embedded target's end of it when embedded, and LIMITS_FD_SLACK for rings, listeners, stdio. */
#define LIMITS_FD_SLACK 64
uint64_t limits_fds_needed(enum mode m, uint64_t tunnels, bool embedded);
/* Adds the sentence for an open-files soft limit (after raising it to the hard one) below
 * need; nothing when it is enough. */
void limits_nofile(struct limits *l, uint64_t soft, uint64_t need);
/* Adds the sentence for n connects that failed with EADDRNOTAVAIL (no local port left). */
void limits_ports(struct limits *l, uint64_t n);
/* Adds "socksload's worker N was CPU-bound (P %)..." when cpu_ns > LIMITS_CPU_PCT % of wall_ns;
 * returns whether it did. */
bool limits_cpu(struct limits *l, unsigned worker, uint64_t cpu_ns, uint64_t wall_ns);

/* ---- opts.c ---- */
/* "rst", "fin" or "target"; "down", "up" or "both". Return 0 or -EINVAL (*out untouched).
 * Pure. */
int opts_close_parse(const char *s, enum close_how *out);
const char *opts_close_str(enum close_how c);
int opts_dir_parse(const char *s, enum dir *out);
const char *opts_dir_str(enum dir d);

/* ---- client.c ---- */
struct worker;
struct tun;

struct worker_ctl {
    const struct opts *o;
    unsigned index;
    uint64_t count;         /* this worker's share of --count, 0 unbounded */
    unsigned conns;         /* this worker's tunnels / workers / associations */
    uint64_t start_ns;      /* common start */
    uint64_t stop_ns;       /* end of the measured run */
    int stop_flag;          /* set by main (SIGINT): stop early; atomic */
    int done;               /* set by the worker when it finished; atomic */
    int rc;                 /* 0 or -errno of a setup failure */
    uint64_t end_ns;        /* when the worker's last unit finished */
    uint64_t last_start_ns; /* connrate --rate: when its last tunnel actually started */
    uint64_t opened_ns;     /* hold: when its last tunnel was set up, 0 if some never was */
    uint64_t cpu_ns;        /* the worker thread's CPU time, read by itself at its end */
    struct phases ph;       /* written by the worker, read by main after the join */
    uint64_t *src_next;     /* --source: the run's next address, one counter for all workers */
    uint64_t sched0_ns;     /* hold --rate: when its schedule started (all tunnels held), or 0 */
    struct stats st;
};

void *client_worker(void *arg); /* arg: struct worker_ctl * */

/* Shared with udp.c: the loop's submission helpers and the tunnel's UDP hooks. */
#define CLIENT_OP_CONNECT 1
#define CLIENT_OP_SEND    2
#define CLIENT_OP_RECV    3
#define CLIENT_OP_TIMER   4
#define CLIENT_OP_USEND   5
#define CLIENT_OP_URECV   6
#define CLIENT_OP_MASK    7

struct io_uring_sqe *client_sqe(struct worker *w, unsigned need);
void client_prep_timeout(struct worker *w, struct io_uring_sqe *sqe);
/* The same with another bound than --timeout (ts must live until the op completes). */
void client_prep_timeout_ts(struct worker *w, struct io_uring_sqe *sqe,
                            struct __kernel_timespec *ts);
void client_track(struct tun *t, struct io_uring_sqe *sqe, unsigned op);
/* Like client_track, with user_data naming obj (16-byte aligned, its first member the
 * struct tun *) so that the completion finds obj; for CLIENT_OP_USEND. */
void client_track_obj(struct tun *t, void *obj, struct io_uring_sqe *sqe, unsigned op);
struct stats *client_stats(struct worker *w);
bool client_count_take(struct worker *w);
const struct opts *client_opts(struct worker *w);

/* ---- udp.c ---- */
struct udpa;
/* Opens the association's UDP socket towards the relay address the proxy gave (bnd; an
 * unspecified address means the proxy's own address). Returns 0 or -errno. */
int udp_start(struct worker *w, struct tun *t, struct udpa **out,
              const struct sockaddr_storage *bnd, uint32_t seed);
/* A UDP op of the association completed (obj: what client_track_obj named, or NULL).
 * Returns false when the association is over. */
bool udp_complete(struct worker *w, struct udpa *u, void *obj, unsigned op, int res);
/* No more datagrams; abort also drops the ones in flight (shuts the UDP socket down). */
void udp_stop(struct udpa *u, bool abort);
/* --rate: sends the association's next datagram now. 1: sent; 0: every send buffer is in a
 * send op (try again after a completion); -1: the association sends no more (stopped, or
 * --count is used up). */
int udp_send_due(struct udpa *u);
/* --rate: the entries of an association's ring of sent datagrams, a power of two from 1024:
 * room for UDP_RING_SECS loss timeouts (loss_ns) of its share (rate / tunnels). Pure. */
uint64_t udp_ring_size(double rate, unsigned tunnels, uint64_t loss_ns);
void udp_free(struct udpa *u);
/* Asks for a receive buffer of bytes (SO_RCVBUFFORCE, else SO_RCVBUF up to rmem_max). */
void udp_grow_rcvbuf(int fd, size_t bytes);

/* ---- target.c ---- */
struct target;
/* Starts threads serving TCP and UDP on host:port (port 0: a free port, the same number for
 * both); socks5: every TCP connection starts with the SOCKS5 front (see "Target protocol").
 * *port_out receives the port. Returns 0 or -errno. */
int target_start(struct target **out, const char *host, uint16_t port, unsigned threads,
                 bool socks5, uint16_t *port_out);
/* Mismatches the target detected and could only answer with a reset ('B' and 'Q' modes). */
uint64_t target_mismatches(const struct target *t);
/* TCP connections accepted, and bytes read or written over TCP and UDP, so far. Thread-safe
 * (relaxed loads of counters each target thread alone writes). */
void target_counts(const struct target *t, uint64_t *conns, uint64_t *bytes);
/* True, once, when the target reset the connection whose stream is seeded seed because of a
 * mismatch: the client's error on that tunnel is its consequence, already counted in
 * target_mismatches. Remembers the last TARGET_CLAIMS such connections. Thread-safe. */
#define TARGET_CLAIMS 4096
bool target_claim(struct target *t, uint32_t seed);
/* Stops the threads; then the source addresses seen (summary) can still be read, until
 * target_free. */
void target_stop(struct target *t);
/* The source address of every connection that sent a target header and of every UDP datagram,
 * under the header's session key. Call after target_stop. Returns sources_summarize's. */
int target_sources(const struct target *t, struct sources_summary *out);
void target_free(struct target *t);

#endif
