/*
 * main.c - socksload: options, the address safety checks, worker and target start, the
 * live progress line, the final table or JSON. The only place that exits.
 *
 * Runs on the main thread; reads the workers' stats with relaxed loads only and talks to
 * them through worker_ctl.stop_flag. Must never let a run go to a non-loopback address
 * without --allow-nonlocal.
 */
#include "socksload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t main_signalled;

#define THREADS_MAX 256
#define CONNS_MAX   1000000 /* --tunnels, --workers, hold --count */
#define COUNT_MAX   (1ull << 60)
#define RATE_MAX    10000000.0 /* connrate --rate, tunnels per second */

static const char usage_text[] =
    "usage: socksload MODE --proxy URL [options]\n"
    "       socksload serve [--host 127.0.0.1] [--port P] [--threads N] [--socks5] [--json]\n"
    "       socksload plot FILE [--out OUT.svg|OUT.png] [--title T]\n"
    "modes:\n"
    "  throughput  --tunnels N tunnels stream data (--direction down|up|both), verified\n"
    "  connrate    --workers C loops of connect, handshake, request of --request R bytes,\n"
    "              response of --response S bytes (verified), close (--close: RST); with\n"
    "              --rate N, N such tunnels started per second instead (the open model)\n"
    "  hold        open --tunnels N, one round trip each, keep them --hold T seconds\n"
    "              (default: --duration), one more round trip, close; with --rate N, N\n"
    "              round trips per second on the held tunnels during the hold instead\n"
    "  latency     --tunnels N ping-pong --size bytes through an echo, round trip times\n"
    "  udp         --tunnels N UDP ASSOCIATEs, --window W datagrams of --size bytes each in\n"
    "              flight, echoed and verified (SOCKS5 only)\n"
    "  http        --workers C loops of: a tunnel to the --url's (or --target's) HTTP server,\n"
    "              --requests-per-tunnel K GET requests on it (keep-alive; Connection: close\n"
    "              on the last), each response's status and size checked, close; with\n"
    "              --rate N, N such tunnels started per second (the open model, as connrate).\n"
    "              Plain HTTP/1.1 only: no TLS (https:// is refused), as that would need a TLS\n"
    "              library on the data path for handshakes that measure the library, not the\n"
    "              proxy\n"
    "  serve       run only the target servers (TCP sink/source/echo + UDP echo) on one port\n"
    "              (--port 0 or none: a free one) until SIGINT or SIGTERM. Its first stderr\n"
    "              line is \"socksload: serving on HOST:PORT (tcp and udp)\" (with --socks5:\n"
    "              \"(tcp behind a SOCKS5 front, and udp)\"), then a progress line a second\n"
    "              (\"N connections, B bytes served\"); at the end, on stdout,\n"
    "              \"served N connections, B bytes\" (TCP and UDP, both directions) and the\n"
    "              sources line (see below); --json: one object {connections, bytes, sources}\n"
    "  plot        draw an --intervals FILE with gnuplot: throughput, rate and latency (p50,\n"
    "              p99, max) over time, into OUT (default: FILE with .svg; .png too, when\n"
    "              gnuplot has a png terminal); a bad line is named FILE:LINE\n"
    "options:\n"
    "  --proxy URL          socks4|socks4a|socks5|socks5h://[user[:pass]@]HOST[:PORT]\n"
    "                       (default port 1080; HOST: IPv4, [IPv6] or localhost)\n"
    "  --user TEMPLATE      SOCKS5 user name of each tunnel (RFC 1929; the password is the\n"
    "                       URL's, empty without one): {n} is the tunnel's number (0, 1, ...\n"
    "                       over all threads), {n%K} that number mod K, so K session names\n"
    "                       repeat; {worker} is the worker thread's number (0 .. --threads\n"
    "                       - 1; any number of them; not part of the session key); {{ and }}\n"
    "                       are braces. E.g. 'alice-session-{n%200}', 'w{worker}-s{n}'\n"
    "  --target HOST[:PORT] target as named to the proxy; without PORT (or without the\n"
    "                       option) the embedded target is started on 127.0.0.1, a free port.\n"
    "                       A name goes to the proxy as a name with socks5h/socks4a; socksload\n"
    "                       itself resolves only 'localhost'\n"
    "  --duration SEC       run length (default 5; hold: the hold time)\n"
    "  --count N            stop after N units: bytes in total (throughput, K/M/G suffixes),\n"
    "                       tunnels (connrate, hold), messages (latency), datagrams (udp),\n"
    "                       requests (http)\n"
    "  --threads N          worker threads, one io_uring loop each (default 1; 1..256, at\n"
    "                       most one per tunnel or connrate worker)\n"
    "  --tunnels N          tunnels or associations (default 1; hold 100; at most 1000000)\n"
    "  --workers C          connrate/http concurrency (default 16; at most 1000000); with --rate\n"
    "                       the bound on tunnels in flight (default 256)\n"
    "  --rate N             connrate/http, the open model: start N tunnels per second (the whole\n"
    "                       run, all threads; a fraction is fine) on a fixed schedule whatever\n"
    "                       the proxy does: tunnel k is due at start + k/N. Latency counts from\n"
    "                       that intended start (corrected for coordinated omission), so a\n"
    "                       proxy that stalls shows as latency, not as a lower rate. When\n"
    "                       --workers tunnels are in flight a due start waits, and the wait is\n"
    "                       in its latency; the report gives the rate asked and achieved, the\n"
    "                       starts late by more than 1 ms, and the starts due before the stop\n"
    "                       that never began (missed). In-flight tunnels finish after the stop.\n"
    "                       hold --rate N: once all --tunnels are open, N round trips of --size\n"
    "                       bytes per second on the held tunnels for the hold time, each to\n"
    "                       the tunnel idle longest; when all are busy a due round trip waits,\n"
    "                       and the wait is in its latency (from its intended start)\n"
    "                       udp --rate N: the open loop. Once all --tunnels associations are\n"
    "                       up, N datagrams per second in all (all threads), paced on the\n"
    "                       same schedule and sent on the associations in turn, whatever the\n"
    "                       echoes do, until --duration; then the echoes are waited for\n"
    "                       (--loss-timeout after each association's last send) and what is\n"
    "                       not back is lost: loss = sent - echoed. --window is then the send\n"
    "                       buffers per association (at least 64); an echo later than\n"
    "                       2 x --loss-timeout may count as lost. The report adds the rate\n"
    "                       asked, the send rate achieved and the echoed rate (\"open loop\")\n"
    "  --url URL            http: http://HOST[:PORT][/PATH] (port 80 by default); HOST as for\n"
    "                       --target (loopback, or localhost, without --allow-nonlocal) and\n"
    "                       the Host header as written. Or --target HOST:PORT and --path\n"
    "  --path PATH          http with --target: the request's path (default /; visible ASCII)\n"
    "  --requests-per-tunnel K  http: GET requests per tunnel (default 1; Connection: close on\n"
    "                       the last; a response that closes ends the tunnel early). --count\n"
    "                       counts requests: each tunnel takes its K from it at once\n"
    "  --expect-status N    http: the status every response must have (default: any 2xx)\n"
    "  --expect-size N      http: the body size every response must have (default: the\n"
    "                       Content-Length, or the chunks, must be complete). http failures:\n"
    "                       \"HTTP status 404\", \"HTTP body 10 bytes, expected 20\", \"HTTP\n"
    "                       malformed response: ...\"; the report counts responses by status\n"
    "                       and gives latency from each request's send to its whole response\n"
    "  --direction D        throughput: down (default), up or both\n"
    "  --close rst|fin|target  connrate/http: how each tunnel ends. rst (default):\n"
    "                       SO_LINGER 0 then close, a reset; no TIME_WAIT on the client, and a\n"
    "                       proxy that passes the reset on leaves none towards the target.\n"
    "                       fin: a plain close; the client holds TIME_WAIT (60 s per port) and\n"
    "                       a proxy that closes its outgoing socket on the client's FIN is the\n"
    "                       first closer towards the target, holding TIME_WAIT there.\n"
    "                       target (connrate only): the target closes first after its\n"
    "                       response (a FIN, as an HTTP/1.0 server; it holds TIME_WAIT on\n"
    "                       its port pairs), the proxy must carry the FIN to the client,\n"
    "                       which then closes; a tunnel counts at that EOF, and one whose\n"
    "                       EOF never comes fails as no_eof (\"no EOF from the target\n"
    "                       through the proxy\") after --timeout\n"
    "  --request R, --response S   connrate sizes in bytes (default 64, 64; below 4G)\n"
    "  --size B             latency/hold/udp message size (default 64; 1..1M, udp 16..60000)\n"
    "  --window W           udp datagrams in flight per association (default 8); with --rate\n"
    "                       the send buffers per association (at least 64)\n"
    "  --loss-timeout SEC   udp: a datagram not echoed within SEC counts as lost and its\n"
    "                       window slot sends the next one (default: --timeout). At the end\n"
    "                       of the run nothing more is sent and the datagrams in flight are\n"
    "                       waited for (echoed or lost), so sent = echoed + lost (+ mismatch\n"
    "                       and failed sends, errors); the report's \"datagrams\" line (JSON\n"
    "                       \"udp\") gives sent, echoed, lost and the loss in %%\n"
    "  --hold SEC           hold time (default: --duration)\n"
    "  --source LIST        the client's source addresses towards the proxy, round robin over\n"
    "                       the tunnels: a comma list of A, A-B (IPv6: within one /64) or A/P\n"
    "                       (IPv4 shorter than /31 without network and broadcast; IPv6 /96 or\n"
    "                       longer), e.g. 127.0.0.2-127.0.0.200 or 127.0.1.0/24; loopback only\n"
    "                       without --allow-nonlocal; at most 2^32 addresses. Each tunnel binds\n"
    "                       the next one (port 0, IP_BIND_ADDRESS_NO_PORT); the report says how\n"
    "                       many were used (JSON \"client_sources\")\n"
    "  --timeout SEC        bound on every step: connect, each reply, each read (default 5)\n"
    "  --target-threads N   threads of the embedded target (default 1; 1..256)\n"
    "  --socks5             serve: the target answers a SOCKS5 handshake itself on every TCP\n"
    "                       connection before the target protocol (no authentication, CONNECT\n"
    "                       with any address type, never connected to; no UDP ASSOCIATE). A\n"
    "                       run with --proxy socks5://HOST:PORT --target HOST:PORT then goes\n"
    "                       to the target with no proxy in between: a direct baseline\n"
    "  --json               print one JSON object instead of the table\n"
    "  --intervals FILE     write one JSON object per line to FILE every --interval: t (s since\n"
    "                       the start), secs, units, bytes, rate, throughput (bytes/s), failures,\n"
    "                       open tunnels, samples, p50_us, p90_us, p99_us, max_us of that\n"
    "                       interval alone (null without samples), and with --rate due and\n"
    "                       started; the last line is the whole run's, marked \"final\":true\n"
    "  --interval SEC       the interval of --intervals (default 1, at least 0.05)\n"
    "  --no-fail-fast       run on when every attempt fails the same way (see below)\n"
    "  --allow-nonlocal     allow proxy, target and UDP relay addresses outside 127.0.0.0/8\n"
    "                       and ::1 (and target names other than localhost). Off by default so\n"
    "                       that a typo never aims load at someone else's machine\n"
    "the embedded target (and serve, at its end) reports the source address of every target\n"
    "connection and UDP datagram: distinct addresses and, with a {n} template, per session\n"
    "key (at most 1M distinct address-session pairs are kept, 48 MiB; past that, lower bounds)\n"
    "numbers are whole, with an optional K, M or G suffix (x1024); one out of range is bad\n"
    "usage. The embedded target's own finds (an upload it verified and reset) count once, in\n"
    "data_mismatch, and also show as target_mismatches\n"
    "latency is reported as p50, p90, p99, p99.9 (the value that fraction of the samples is\n"
    "at or below) and the exact max, from a log-linear histogram of 3 significant digits\n"
    "(error <= 0.05 %, up to 73 minutes), merged over the threads; \"no samples\" when none\n"
    "failures are counted by kind and listed by detail, most frequent first: the SOCKS reply\n"
    "code spelled out (\"SOCKS reply 0x02 not allowed by ruleset\", \"SOCKS4 reply 0x5b rejected\n"
    "or failed\"), the RFC 1929 status (\"RFC 1929 auth failed (status 0x01)\"), \"no acceptable\n"
    "method (05 ff)\", and the errno where a syscall failed (\"connect: ECONNREFUSED (Connection\n"
    "refused)\"); JSON \"failures\": [{kind, detail, text, count}]\n"
    "fail fast: when no tunnel was set up and every failure so far is the same (kind, detail),\n"
    "20 of them or after a second, the run stops at once, exit status 1, with one line on\n"
    "stderr saying what every attempt got and what to check (JSON \"stopped_early\"); not when\n"
    "some attempt succeeded. --no-fail-fast runs on\n"
    "latency by phase (\"phases\", JSON \"phases\": {connect, greeting, auth, reply, first_byte,\n"
    "close}), each timed from its own actual start: connect, TCP connect to the proxy;\n"
    "greeting, SOCKS5 method request to reply; auth, RFC 1929 request to reply (with a user);\n"
    "reply, SOCKS request to reply (the proxy's connect to the target included); first_byte,\n"
    "the reply to the target's first byte (connrate, hold, latency, throughput down and both);\n"
    "close, connrate --close fin: shutdown to the peer's EOF (then close; with fin a\n"
    "connrate worker starts its next tunnel once the peer's close is in), --close target:\n"
    "the response's last byte to the target's EOF. SOCKS4 has no\n"
    "greeting or auth. With --rate only the whole-tunnel latency is corrected for coordinated\n"
    "omission, never the phases\n"
    "a progress line a second on stderr (in place on a terminal, one per line otherwise)\n"
    "socksload's own limits (\"limits\" lines, JSON \"limits\": [...]): an open-files limit below\n"
    "what the run needs (the soft limit is raised to the hard one first), connects that failed\n"
    "with EADDRNOTAVAIL (no local port left), a worker thread busy over 90 % of the run\n"
    "(CPU-bound: the figure may be socksload's, try --threads)\n"
    "hold prints no rate (JSON \"rate\": null) but how long opening all its tunnels took\n"
    "(JSON \"open_all_s\", null when some never opened)\n"
    "exit status: 0 units done and no errors, 1 errors, no unit done or stopped early, 2 bad\n"
    "usage\n";

static void
on_signal(int sig)
{
    (void)sig;
    main_signalled = 1;
}

static void
die_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "socksload: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(socksload --help for usage)\n");
    exit(2);
}

/* A whole number in min..max, with an optional K, M or G suffix (powers of 1024); anything
 * else (signs, fractions, overflow, out of range) is a usage error naming the option. */
static uint64_t
parse_uint(const char *s, const char *opt, uint64_t min, uint64_t max)
{
    char *end;
    uint64_t v, mul = 1;

    if (*s < '0' || *s > '9')
        die_usage("bad number for %s", opt);
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        die_usage("number too large for %s", opt);
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1024;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1024 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1024ull * 1024 * 1024;
        end++;
        break;
    }
    if (*end)
        die_usage("bad number for %s", opt);
    if (v > UINT64_MAX / mul)
        die_usage("number too large for %s", opt);
    v *= mul;
    if (v < min || v > max) {
        fprintf(stderr, "socksload: %s must be %" PRIu64 "..%" PRIu64 ", not %s\n", opt, min, max,
                s);
        fprintf(stderr, "(socksload --help for usage)\n");
        exit(2);
    }
    return v;
}

static double
parse_secs(const char *s, const char *opt)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || *end || !(v > 0) || v > 86400 * 30)
        die_usage("bad seconds for %s", opt);
    return v;
}

static const char *
mode_str(enum mode m)
{
    static const char *const names[] = {"throughput", "connrate", "hold", "latency",
                                        "udp",        "serve",    "http"};
    return names[m];
}

/* What one unit is, per mode, for the table and the progress line. */
static const char *
unit_str(enum mode m)
{
    switch (m) {
    case MODE_THROUGHPUT:
        return "verified streams";
    case MODE_CONNRATE:
        return "tunnels";
    case MODE_HOLD:
        return "held tunnels";
    case MODE_LATENCY:
        return "messages";
    case MODE_HTTP:
        return "requests";
    default:
        return "datagrams";
    }
}

/* hold --rate counts round trips on the held tunnels. */
static const char *
unit_what(const struct opts *o)
{
    return o->mode == MODE_HOLD && o->rate > 0 ? "round trips on held tunnels" : unit_str(o->mode);
}

static const char *
latency_str(enum mode m)
{
    switch (m) {
    case MODE_THROUGHPUT:
        return "tunnel setup (socket to SOCKS reply)";
    case MODE_CONNRATE:
        return "whole tunnel (socket to response)";
    case MODE_SERVE: /* connrate --rate, see latency_what */
        return "whole tunnel from its intended start, corrected for coordinated omission";
    case MODE_HOLD:
        return "round trip after the hold";
    default:
        return "round trip";
    }
}

/* What the latency figures measure. */
static const char *
latency_what(const struct opts *o)
{
    if (o->mode == MODE_HOLD && o->rate > 0)
        return "round trip on a held tunnel from its intended start, corrected for coordinated "
               "omission";
    if (o->mode == MODE_HTTP)
        return o->rate > 0 ? "request sent to whole response; a tunnel's first from the tunnel's "
                             "intended start, corrected for coordinated omission"
                           : "request sent to whole response";
    if (o->mode == MODE_CONNRATE && o->close == CLOSE_TARGET)
        return o->rate > 0 ? "whole tunnel up to the target's EOF, from its intended start, "
                             "corrected for coordinated omission"
                           : "whole tunnel (socket to the target's EOF)";
    return latency_str(o->mode == MODE_CONNRATE && o->rate > 0 ? MODE_SERVE : o->mode);
}

static void
print_sources_table(const struct sources_summary *m)
{
    printf("sources     %" PRIu64 " distinct address%s (%" PRIu64 " connections and datagrams)",
           m->addresses, m->addresses == 1 ? "" : "es", m->seen);
    if (m->sessions)
        printf("; sessions %" PRIu64 ", with one address each %" PRIu64
               ", most addresses for one session %" PRIu64,
               m->sessions, m->sessions_one, m->max_per_session);
    printf("\n");
    if (m->dropped)
        printf("            %" PRIu64 " new address-session pairs past the %u kept: the figures "
               "are lower bounds\n",
               m->dropped, SOURCES_MAX);
}

static void
print_sources_json(const struct sources_summary *m)
{
    printf("\"sources\":{\"seen\":%" PRIu64 ",\"addresses\":%" PRIu64 ",\"sessions\":%" PRIu64
           ",\"sessions_one_address\":%" PRIu64 ",\"max_addresses_per_session\":%" PRIu64
           ",\"dropped\":%" PRIu64 "}",
           m->seen, m->addresses, m->sessions, m->sessions_one, m->max_per_session, m->dropped);
}

/* One progress line a second on stderr: overwritten in place on a terminal, one line each
 * otherwise (a log keeps them all). */
static bool progress_tty;

static void
progress_start(double t, const char *mode)
{
    fprintf(stderr, "%s[%5.1fs] %s: ", progress_tty ? "\r\033[K" : "", t, mode);
}

static void
progress_end(void)
{
    if (!progress_tty)
        fputc('\n', stderr);
    fflush(stderr);
}

static int
serve(const char *host, uint16_t port, unsigned threads, bool allow_nonlocal, bool socks5,
      bool json)
{
    struct target *tg;
    struct sockaddr_storage ss;
    socklen_t len;
    uint16_t got;
    enum url_host type = strchr(host, ':') ? URL_HOST_IPV6 : URL_HOST_IPV4;

    if (url_to_sockaddr(host, type, port, false, &ss, &len) < 0)
        die_usage("serve: --host must be an IP address, not %s", host);
    if (!allow_nonlocal && !url_is_loopback((struct sockaddr *)&ss))
        die_usage("serve: %s is not loopback (--allow-nonlocal to permit)", host);
    int rc = target_start(&tg, host, port, threads, socks5, &got);
    if (rc < 0) {
        fprintf(stderr, "socksload: serve on %s:%u: %s\n", host, port, strerror(-rc));
        return 1;
    }
    fprintf(stderr, "socksload: serving on %s%s%s:%u (tcp%s and udp)\n",
            type == URL_HOST_IPV6 ? "[" : "", host, type == URL_HOST_IPV6 ? "]" : "", got,
            socks5 ? " behind a SOCKS5 front," : "");
    fflush(stderr);
    uint64_t start = stats_now_ns(), next = start + 1000000000u, conns, bytes;
    while (!main_signalled) {
        uint64_t now = stats_now_ns();
        if (now >= next) {
            target_counts(tg, &conns, &bytes);
            progress_start((double)(now - start) / 1e9, "serve");
            fprintf(stderr, "%" PRIu64 " connections, %" PRIu64 " bytes served", conns, bytes);
            progress_end();
            next += 1000000000u;
            continue;
        }
        uint64_t left = next - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                              .tv_nsec = (long)(left % 1000000000u)};
        nanosleep(&ts, NULL); /* a signal ends it early */
    }
    if (progress_tty)
        fputc('\n', stderr);
    target_stop(tg);
    target_counts(tg, &conns, &bytes);
    struct sources_summary m;
    rc = target_sources(tg, &m);
    if (json) {
        printf("{\"connections\":%" PRIu64 ",\"bytes\":%" PRIu64 ",", conns, bytes);
        print_sources_json(&m);
        printf("}\n");
    } else {
        printf("served      %" PRIu64 " connections, %" PRIu64 " bytes (tcp and udp, both "
               "directions)\n",
               conns, bytes);
        print_sources_table(&m);
    }
    fflush(stdout);
    target_free(tg);
    return rc < 0 ? 1 : 0;
}

/* The proxy speaks SOCKS4 or 4a. */
static bool
proxy_v4(const struct opts *o)
{
    return o->proxy.scheme == URL_SOCKS4 || o->proxy.scheme == URL_SOCKS4A;
}

/* Sets o->dest from the --target host (and port) after the safety rules. */
static void
make_dest(struct opts *o, const char *host, enum url_host type, uint16_t port)
{
    bool remote_names = o->proxy.scheme == URL_SOCKS5H || o->proxy.scheme == URL_SOCKS4A;
    bool v4only = proxy_v4(o);
    struct socks_dest *d = &o->dest;

    memset(d, 0, sizeof(*d));
    d->port = port;
    if (type == URL_HOST_NAME) {
        bool local = strcasecmp(host, "localhost") == 0;
        if (!local && !o->allow_nonlocal)
            die_usage("target %s: only 'localhost' or loopback addresses without "
                      "--allow-nonlocal",
                      host);
        if (remote_names) {
            d->type = URL_HOST_NAME;
            snprintf(d->name, sizeof(d->name), "%s", host);
            return;
        }
        if (!local)
            die_usage("target %s: socksload resolves no names; use socks5h:// or socks4a://", host);
        host = "127.0.0.1";
        type = URL_HOST_IPV4;
    }
    if (type == URL_HOST_IPV6 && v4only)
        die_usage("target %s: SOCKS4 cannot carry an IPv6 address", host);
    d->type = type;
    inet_pton(type == URL_HOST_IPV4 ? AF_INET : AF_INET6, host, d->addr);
    struct sockaddr_storage ss;
    socklen_t len;
    url_to_sockaddr(host, type, port, false, &ss, &len);
    if (!o->allow_nonlocal && !url_is_loopback((struct sockaddr *)&ss))
        die_usage("target %s is not loopback (--allow-nonlocal to permit)", host);
}

static void
sum_all(struct stats *sum, struct worker_ctl *ctl, unsigned n)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < n; i++)
        stats_sum(sum, &ctl[i].st);
}

static void
progress(const struct opts *o, double t, const struct stats *now, const struct stats *prev)
{
    static uint64_t delta[STATS_HIST_N];
    char p50[32], p99[32], lat[80] = "latency: no samples";

    for (unsigned i = 0; i < STATS_HIST_N; i++)
        delta[i] = now->hist[i] - prev->hist[i];
    if (stats_samples(delta)) {
        stats_fmt_ns(p50, sizeof(p50), stats_percentile(delta, 0.50));
        stats_fmt_ns(p99, sizeof(p99), stats_percentile(delta, 0.99));
        snprintf(lat, sizeof(lat), "p50 %s, p99 %s", p50, p99);
    }
    uint64_t bytes = now->bytes_up + now->bytes_down - prev->bytes_up - prev->bytes_down;
    progress_start(t, mode_str(o->mode));
    if (o->rate > 0)
        fprintf(stderr, "%" PRIu64 " started/s (late %" PRIu64 "), ", now->started - prev->started,
                now->late - prev->late);
    if (o->mode == MODE_HOLD) /* a rate of held tunnels means nothing */
        fprintf(stderr, "%" PRIu64 " of %u tunnels set up, %s, errors %" PRIu64, now->tunnels,
                o->tunnels, lat, stats_errors(now));
    else
        fprintf(stderr, "%" PRIu64 " %s/s, %.3f Gbit/s, %s, errors %" PRIu64,
                now->units - prev->units, unit_str(o->mode), (double)bytes * 8 / 1e9, lat,
                stats_errors(now));
    if (o->mode == MODE_UDP)
        fprintf(stderr, ", lost %" PRIu64, now->err[STATS_E_LOST]);
    progress_end();
}

/* The target as sent to the proxy, HOST:PORT. */
static void
dest_str(char *buf, size_t len, const struct socks_dest *d)
{
    char a[INET6_ADDRSTRLEN] = "";

    if (d->type == URL_HOST_NAME)
        snprintf(buf, len, "%s:%u", d->name, d->port);
    else if (d->type == URL_HOST_IPV6)
        snprintf(buf, len, "[%s]:%u", inet_ntop(AF_INET6, d->addr, a, sizeof(a)), d->port);
    else
        snprintf(buf, len, "%s:%u", inet_ntop(AF_INET, d->addr, a, sizeof(a)), d->port);
}

/* What to check when every attempt failed with (e, detail). */
static void
fail_hint(char *buf, size_t len, const struct opts *o, enum stats_err e, unsigned d)
{
    char px[URL_FIELD_MAX + 16], dst[URL_FIELD_MAX + 16];
    bool v4 = proxy_v4(o);

    snprintf(px, sizeof(px), "%s%s%s:%u", o->proxy.host_type == URL_HOST_IPV6 ? "[" : "",
             o->proxy.host, o->proxy.host_type == URL_HOST_IPV6 ? "]" : "", o->proxy.port);
    dest_str(dst, sizeof(dst), &o->dest);
    switch (e) {
    case STATS_E_CONNECT:
        if (d == ECONNREFUSED)
            snprintf(buf, len, "is the proxy listening on %s?", px);
        else if (d == EMFILE || d == ENFILE || d == ENOMEM)
            snprintf(buf, len, "socksload's own limit: raise ulimit -n or use fewer tunnels");
        else if (d == EADDRNOTAVAIL)
            snprintf(buf, len, "socksload ran out of local ports: fewer --workers, --close rst");
        else
            snprintf(buf, len, "check the --proxy address %s", px);
        return;
    case STATS_E_AUTH:
        if (d == STATS_D_METHOD + 0xff)
            snprintf(buf, len, "%s",
                     o->proxy.has_user
                         ? "the proxy accepts neither no-auth nor user/password: check its auth"
                         : "the proxy wants authentication: give user:password in --proxy");
        else if (d >= STATS_D_METHOD)
            snprintf(buf, len, "the proxy chose a method socksload did not offer");
        else
            snprintf(buf, len, "check the user and password");
        return;
    case STATS_E_REPLY:
        if (v4 && d == 0x5b)
            snprintf(buf, len, "check the proxy's rules for %s and that %s is listening", dst, dst);
        else if (v4)
            snprintf(buf, len, "the proxy checks identd: check its SOCKS4 user-id settings");
        else if (d == 0x02)
            snprintf(buf, len, "check the proxy's rules for the target %s", dst);
        else if (d == 0x05)
            snprintf(buf, len, "is the target %s listening?", dst);
        else if (d == 0x03 || d == 0x04 || d == 0x06)
            snprintf(buf, len, "can the proxy reach the target %s?", dst);
        else if (d == 0x07 || d == 0x08)
            snprintf(buf, len,
                     "the proxy does not support this request: another --target "
                     "form or mode");
        else
            snprintf(buf, len, "check the proxy's log");
        return;
    case STATS_E_TIMEOUT:
        snprintf(buf, len, "is %s answering? every step is bounded by --timeout %g s", px,
                 o->timeout_s);
        return;
    case STATS_E_PROTOCOL:
        snprintf(buf, len, "is %s a %s proxy?", px, v4 ? "SOCKS4" : "SOCKS5");
        return;
    case STATS_E_CLOSED:
    case STATS_E_RESET:
        snprintf(buf, len, "the proxy closed the connection: check its log, rules and auth");
        return;
    default:
        snprintf(buf, len, "check the proxy and the target");
        return;
    }
}

/*
 * Fail fast: when no tunnel was set up and no unit done, every failure so far is the same
 * (kind, detail) pair, and there were FAIL_FAST_N of them or a second passed, writes the line
 * that says what every attempt got and what to check, and returns true.
 */
#define FAIL_FAST_N 20

static bool
fail_fast(char *buf, size_t len, const struct opts *o, const struct stats *s, double secs)
{
    const struct stats_fail *f;
    uint64_t n = stats_errors(s);
    char what[200], hint[800];

    if (s->tunnels || s->units || n == 0 || (n < FAIL_FAST_N && secs < 1))
        return false;
    stats_fail_pairs(s, &f);
    if (!f)
        return false;
    bool v4 = proxy_v4(o);
    stats_fail_str(what, sizeof(what), (enum stats_err)f->kind, f->detail, v4);
    fail_hint(hint, sizeof(hint), o, (enum stats_err)f->kind, (unsigned)f->detail);
    snprintf(buf, len, "all %" PRIu64 " attempt%s: %s - %s", n, n == 1 ? "" : "s", what, hint);
    return true;
}

/* http: the responses by status code, "200: 950, 404: 50" or {"200":950,"404":50}. */
static void
print_http_status(const struct stats *s, bool json)
{
    const char *sep = "";

    printf(json ? ",\"http_status\":{" : "statuses    ");
    for (unsigned c = 0; c < STATS_HTTP_STATUS_N; c++) {
        if (s->http_status[c]) {
            printf(json ? "%s\"%u\":%" PRIu64 : "%s%u: %" PRIu64, sep, c, s->http_status[c]);
            sep = json ? "," : ", ";
        }
    }
    printf(json ? "}" : "%s\n", *sep ? "" : "no response");
}

/* The failure pairs of s, most frequent first, through fn. */
static void
fail_each(const struct opts *o, const struct stats *s,
          void (*fn)(const struct stats_fail *f, const char *text, bool first))
{
    const struct stats_fail *only, *order[STATS_FAIL_N];
    unsigned n = stats_fail_pairs(s, &only);
    bool v4 = proxy_v4(o);
    char text[200];

    for (unsigned i = 0; i < n; i++) {
        unsigned j = i;
        for (; j > 0 && order[j - 1]->count < s->fail[i].count; j--)
            order[j] = order[j - 1];
        order[j] = &s->fail[i];
    }
    for (unsigned i = 0; i < n; i++) {
        stats_fail_str(text, sizeof(text), (enum stats_err)order[i]->kind, order[i]->detail, v4);
        fn(order[i], text, i == 0);
    }
}

/* s as a JSON string, quotes included. Bytes outside printable ASCII become \u00XX escapes
 * (so a user name that is not UTF-8 still gives valid JSON, read as Latin-1). */
static void
json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* A latency in microseconds for JSON, null without samples. */
static void
json_us(const char *name, const struct stats *s, double q)
{
    uint64_t ns = q < 1 ? stats_percentile(s->hist, q) : stats_max(s);

    if (stats_samples(s->hist) == 0)
        printf("\"%s\":null", name);
    else
        printf("\"%s\":%.1f", name, (double)(ns < s->max_ns ? ns : s->max_ns) / 1e3);
}

static void
json_fail(const struct stats_fail *f, const char *text, bool first)
{
    printf("%s{\"kind\":\"%s\",\"detail\":%" PRIu64 ",\"text\":", first ? "" : ",",
           stats_err_str((enum stats_err)f->kind), f->detail);
    json_str(text);
    printf(",\"count\":%" PRIu64 "}", f->count);
}

static void
table_fail(const struct stats_fail *f, const char *text, bool first)
{
    (void)first;
    printf("            %" PRIu64 " %s\n", f->count, text);
}

/* What the run found besides its figures: achieved, connrate --rate's start rate; opened_s,
 * hold: seconds until every tunnel was set up, < 0 when some never was; stopped, the fail-fast
 * line or NULL. */
struct outcome {
    uint64_t src_used; /* --source: distinct client source addresses used */
    double achieved;
    double opened_s;
    const char *stopped;
    const struct phases *ph;   /* latency by phase, summed over the workers */
    const struct limits *lims; /* where socksload itself bounded the figures */
};

/* udp --rate: the echoes per second over the schedule's time (the send rate achieved times
 * the share echoed). */
static double
udp_echoed_rate(const struct stats *s, double sent_rate)
{
    return s->sent ? sent_rate * (double)s->units / (double)s->sent : 0;
}

/* udp: the datagrams lost, in % of those sent. */
static double
loss_pct(const struct stats *s)
{
    return s->sent ? 100.0 * (double)s->err[STATS_E_LOST] / (double)s->sent : 0;
}

static void
print_json(const struct opts *o, const struct stats *s, double secs, uint64_t target_mm,
           const struct sources_summary *m, const struct outcome *oc)
{
    const char *sep = "";
    char proxy[2 * URL_FIELD_MAX + 64];

    /* The user name (never the password), then the address. */
    snprintf(proxy, sizeof(proxy), "%s://%s%s%s%s%s:%u", url_scheme_str(o->proxy.scheme),
             o->proxy.has_user ? o->proxy.user : "", o->proxy.has_user ? "@" : "",
             o->proxy.host_type == URL_HOST_IPV6 ? "[" : "", o->proxy.host,
             o->proxy.host_type == URL_HOST_IPV6 ? "]" : "", o->proxy.port);
    printf("{\"mode\":\"%s\",\"proxy\":", mode_str(o->mode));
    json_str(proxy);
    if (o->mode == MODE_THROUGHPUT)
        printf(",\"direction\":\"%s\"", opts_dir_str(o->dir));
    if (o->mode == MODE_CONNRATE || o->mode == MODE_HTTP)
        printf(",\"close\":\"%s\"", opts_close_str(o->close));
    printf(",\"threads\":%u,\"concurrency\":%u,\"seconds\":%.3f", o->threads,
           o->mode == MODE_CONNRATE || o->mode == MODE_HTTP ? o->workers : o->tunnels, secs);
    printf(",\"tunnels\":%" PRIu64 ",\"units\":%" PRIu64 ",\"unit\":\"%s\"", s->tunnels, s->units,
           unit_what(o));
    printf(",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64, s->bytes_up, s->bytes_down);
    if (o->mode == MODE_HOLD) /* a rate of held tunnels means nothing */
        printf(",\"rate\":null");
    else
        printf(",\"rate\":%.1f", (double)s->units / secs);
    printf(",\"gbps\":%.3f", (double)(s->bytes_up + s->bytes_down) * 8 / secs / 1e9);
    if (o->mode == MODE_HTTP)
        print_http_status(s, true);
    if (o->mode == MODE_UDP)
        printf(",\"udp\":{\"sent\":%" PRIu64 ",\"echoed\":%" PRIu64 ",\"lost\":%" PRIu64
               ",\"loss_pct\":%.4f,\"loss_timeout_s\":%g",
               s->sent, s->units, s->err[STATS_E_LOST], loss_pct(s), o->loss_s);
    if (o->mode == MODE_UDP && o->rate > 0)
        printf(",\"rate_asked\":%.3f,\"rate_sent\":%.3f,\"rate_echoed\":%.3f", o->rate,
               oc->achieved, udp_echoed_rate(s, oc->achieved));
    if (o->mode == MODE_UDP)
        printf("}");
    if (o->mode == MODE_HOLD && oc->opened_s >= 0)
        printf(",\"open_all_s\":%.3f", oc->opened_s);
    else if (o->mode == MODE_HOLD)
        printf(",\"open_all_s\":null");
    if (o->rate > 0)
        printf(",\"rate_asked\":%.3f,\"rate_achieved\":%.3f,\"started\":%" PRIu64
               ",\"late_starts\":%" PRIu64 ",\"missed_starts\":%" PRIu64,
               o->rate, oc->achieved, s->started, s->late, s->missed);
    printf(",\"latency_us\":{\"what\":\"%s\",\"corrected\":%s,\"samples\":%" PRIu64 ",",
           latency_what(o), o->rate > 0 ? "true" : "false", stats_samples(s->hist));
    json_us("p50", s, 0.50);
    putchar(',');
    json_us("p90", s, 0.90);
    putchar(',');
    json_us("p99", s, 0.99);
    putchar(',');
    json_us("p999", s, 0.999);
    putchar(',');
    json_us("max", s, 1);
    putchar('}');
    putchar(',');
    fflush(stdout);
    phases_print_json(stdout, oc->ph);
    printf(",\"limits\":[");
    for (unsigned i = 0; i < oc->lims->n; i++) {
        printf("%s", i ? "," : "");
        json_str(oc->lims->msg[i]);
    }
    putchar(']');
    /* Of errors.data_mismatch, those the embedded target found (uploads it reset). */
    printf(",\"target_mismatches\":%" PRIu64, target_mm);
    if (m) {
        printf(",");
        print_sources_json(m);
    }
    if (o->src.n)
        printf(",\"client_sources\":{\"given\":%" PRIu64 ",\"used\":%" PRIu64 "}", o->src.total,
               oc->src_used);
    printf(",\"errors\":{\"total\":%" PRIu64, stats_errors(s));
    for (int e = 0; e < STATS_E_N; e++)
        printf(",\"%s\":%" PRIu64, stats_err_str(e), s->err[e]);
    printf(",\"socks_reply_codes\":{");
    for (int c = 0; c < 256; c++) {
        if (s->rep[c]) {
            printf("%s\"%d\":%" PRIu64, sep, c, s->rep[c]);
            sep = ",";
        }
    }
    printf("}}");
    /* Every failure by (kind, detail), most frequent first. */
    printf(",\"failures\":[");
    fail_each(o, s, json_fail);
    printf("],\"failures_more\":%" PRIu64 ",\"stopped_early\":", s->fail_more);
    if (oc->stopped)
        json_str(oc->stopped);
    else
        printf("null");
    printf("}\n");
}

static void
print_table(const struct opts *o, const struct stats *s, double secs, uint64_t target_mm,
            const struct sources_summary *m, const struct outcome *oc)
{
    char lat[200];

    printf("mode        %s%s%s via %s://%s%s%s:%u, %u thread%s\n", mode_str(o->mode),
           o->mode == MODE_THROUGHPUT ? " " : "",
           o->mode == MODE_THROUGHPUT ? opts_dir_str(o->dir) : "", url_scheme_str(o->proxy.scheme),
           o->proxy.host_type == URL_HOST_IPV6 ? "[" : "", o->proxy.host,
           o->proxy.host_type == URL_HOST_IPV6 ? "]" : "", o->proxy.port, o->threads,
           o->threads == 1 ? "" : "s");
    if (o->mode == MODE_CONNRATE || o->mode == MODE_HTTP)
        printf("close       %s\n", o->close == CLOSE_FIN      ? "fin (plain close)"
                                   : o->close == CLOSE_TARGET ? "target (the target closes first)"
                                                              : "rst (SO_LINGER 0)");
    printf("time        %.3f s\n", secs);
    printf("tunnels     %" PRIu64 " set up\n", s->tunnels);
    if (o->mode == MODE_HOLD) {
        printf("done        %" PRIu64 " %s\n", s->units, unit_what(o));
        if (oc->opened_s >= 0)
            printf("opened      all %u tunnels in %.3f s\n", o->tunnels, oc->opened_s);
        else
            printf("opened      %" PRIu64 " of %u tunnels: not all were set up\n", s->tunnels,
                   o->tunnels);
    } else {
        printf("done        %" PRIu64 " %s, %.1f/s\n", s->units, unit_str(o->mode),
               (double)s->units / secs);
    }
    if (o->mode == MODE_HOLD) /* a few verified round trips: no throughput */
        printf("bytes       up %" PRIu64 ", down %" PRIu64 "\n", s->bytes_up, s->bytes_down);
    else
        printf("bytes       up %" PRIu64 ", down %" PRIu64 ", %.3f Gbit/s\n", s->bytes_up,
               s->bytes_down, (double)(s->bytes_up + s->bytes_down) * 8 / secs / 1e9);
    if (o->mode == MODE_HTTP)
        print_http_status(s, false);
    if (o->mode == MODE_UDP)
        printf("datagrams   sent %" PRIu64 ", echoed %" PRIu64 ", lost %" PRIu64
               " (%.4f %%; not echoed within --loss-timeout %g s)\n",
               s->sent, s->units, s->err[STATS_E_LOST], loss_pct(s), o->loss_s);
    if (o->mode == MODE_UDP && o->rate > 0)
        printf("open loop   asked %.1f/s, sent %.1f/s, echoed %.1f/s, lost %.4f %%\n", o->rate,
               oc->achieved, udp_echoed_rate(s, oc->achieved), loss_pct(s));
    if (o->rate > 0) {
        char bound[64];
        if (o->mode == MODE_HOLD)
            snprintf(bound, sizeof(bound), "every held tunnel busy");
        else if (o->mode == MODE_UDP)
            snprintf(bound, sizeof(bound), "every send buffer in flight");
        else
            snprintf(bound, sizeof(bound), "--workers %u in flight", o->workers);
        printf("rate        asked %.1f/s, achieved %.1f/s (%" PRIu64 " started; %" PRIu64
               " late by > 1 ms; %" PRIu64 " missed: due before the stop, held back by %s)\n",
               o->rate, oc->achieved, s->started, s->late, s->missed, bound);
    }
    stats_latency_line(lat, sizeof(lat), s);
    printf("latency     %s (%s)\n", lat, latency_what(o));
    phases_print_table(stdout, oc->ph);
    printf("errors      %" PRIu64, stats_errors(s));
    for (int e = 0; e < STATS_E_N; e++)
        if (s->err[e])
            printf(", %s %" PRIu64, stats_err_str(e), s->err[e]);
    printf("\n");
    fail_each(o, s, table_fail);
    if (s->fail_more)
        printf("            %" PRIu64 " more, of other kinds and details\n", s->fail_more);
    if (target_mm)
        printf("            %" PRIu64 " of the data mismatches found by the embedded target "
               "(uploads it reset)\n",
               target_mm);
    if (m)
        print_sources_table(m);
    if (o->src.n)
        printf("client      %" PRIu64 " source address%s used, of %" PRIu64 " in --source\n",
               oc->src_used, oc->src_used == 1 ? "" : "es", o->src.total);
    for (unsigned i = 0; i < oc->lims->n; i++)
        printf("limits      %s\n", oc->lims->msg[i]);
}

/* Raises the soft open-files limit to the hard one; the soft limit it ends with. */
static uint64_t
raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return UINT64_MAX;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1 || getrlimit(RLIMIT_NOFILE, &rl) == -1)
            return UINT64_MAX;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* Writes iv (final: the whole run's) to the intervals file; a write error is reported once. */
static void
interval_write(FILE *f, const char *path, const struct interval *iv, bool final)
{
    static bool failed;
    char line[600];

    intervals_format(line, sizeof(line), iv, final);
    if ((fputs(line, f) == EOF || fflush(f) == EOF) && !failed) {
        failed = true;
        fprintf(stderr, "socksload: --intervals %s: %s\n", path, strerror(errno));
    }
}

/* The interval from `from` to `to` (ns, start the run's) between the snapshots prev and now
 * (prev NULL: the whole run, with its exact max). */
static void
interval_emit(FILE *f, const char *path, const struct opts *o, const struct stats *now,
              const struct stats *prev, uint64_t *scratch, uint64_t start, uint64_t from,
              uint64_t to)
{
    struct interval iv;

    intervals_diff(&iv, now, prev, scratch);
    iv.t = (double)(to - start) / 1e9;
    iv.secs = (double)(to - from) / 1e9;
    if (!prev && iv.samples)
        iv.max_ns = now->max_ns;
    if (!prev) /* the whole run: rates over its measured time, t when written (the last) */
        iv.t = (double)(stats_now_ns() - start) / 1e9;
    /* hold --rate's schedule starts once its tunnels are held, a time main does not know
     * during the run: its intervals give no "due". */
    iv.sched = o->rate > 0 && o->mode != MODE_HOLD && o->mode != MODE_UDP;
    if (iv.sched) {
        double a = (double)(from - start) / 1e9, b = iv.t;
        if (b > o->duration_s)
            b = o->duration_s;
        if (a > b)
            a = b;
        iv.due =
            intervals_due(o->rate, b, o->count) - (prev ? intervals_due(o->rate, a, o->count) : 0);
    }
    interval_write(f, path, &iv, prev == NULL);
}

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"proxy", required_argument, NULL, 'p'},
        {"target", required_argument, NULL, 'T'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"tunnels", required_argument, NULL, 'N'},
        {"workers", required_argument, NULL, 'w'},
        {"direction", required_argument, NULL, 'D'},
        {"request", required_argument, NULL, 'R'},
        {"response", required_argument, NULL, 'S'},
        {"size", required_argument, NULL, 'z'},
        {"window", required_argument, NULL, 'W'},
        {"loss-timeout", required_argument, NULL, 'l'},
        {"hold", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, 'o'},
        {"target-threads", required_argument, NULL, 'x'},
        {"json", no_argument, NULL, 'j'},
        {"allow-nonlocal", no_argument, NULL, 'A'},
        {"port", required_argument, NULL, 'P'},
        {"host", required_argument, NULL, 'h'},
        {"socks5", no_argument, NULL, '5'},
        {"user", required_argument, NULL, 'u'},
        {"close", required_argument, NULL, 'C'},
        {"rate", required_argument, NULL, 'r'},
        {"no-fail-fast", no_argument, NULL, 'F'},
        {"url", required_argument, NULL, 'L'},
        {"source", required_argument, NULL, 's'},
        {"path", required_argument, NULL, 'Q'},
        {"requests-per-tunnel", required_argument, NULL, 'k'},
        {"expect-status", required_argument, NULL, 'e'},
        {"expect-size", required_argument, NULL, 'E'},
        {"intervals", required_argument, NULL, 'I'},
        {"interval", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, '?' + 256},
        {0, 0, 0, 0},
    };
    struct opts o = {.threads = 1,
                     .workers = 16,
                     .duration_s = 5,
                     .timeout_s = 5,
                     .request = 64,
                     .response = 64,
                     .size = 64,
                     .window = 8};
    const char *proxy = NULL, *target = NULL, *host = "127.0.0.1", *user = NULL;
    const char *iv_path = NULL;
    double iv_secs = 1;
    unsigned target_threads = 1, serve_port = 0;
    bool have_duration = false, have_tunnels = false, socks5 = false, have_close = false;
    bool have_workers = false, http_opts = false;
    const char *http_url = NULL, *http_path = NULL;
    char err[300];
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "plot"))
        return plot_main(argc - 1, argv + 1);
    if (!strcmp(mode, "throughput"))
        o.mode = MODE_THROUGHPUT;
    else if (!strcmp(mode, "connrate"))
        o.mode = MODE_CONNRATE;
    else if (!strcmp(mode, "hold"))
        o.mode = MODE_HOLD;
    else if (!strcmp(mode, "latency"))
        o.mode = MODE_LATENCY;
    else if (!strcmp(mode, "udp"))
        o.mode = MODE_UDP;
    else if (!strcmp(mode, "http"))
        o.mode = MODE_HTTP;
    else if (!strcmp(mode, "serve"))
        o.mode = MODE_SERVE;
    else
        die_usage("unknown mode %s", mode);
    optind = 2;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            proxy = optarg;
            break;
        case 'T':
            target = optarg;
            break;
        case 'd':
            o.duration_s = parse_secs(optarg, "--duration");
            have_duration = true;
            break;
        case 'n':
            o.count = parse_uint(optarg, "--count", 1, COUNT_MAX);
            break;
        case 't':
            o.threads = (unsigned)parse_uint(optarg, "--threads", 1, THREADS_MAX);
            break;
        case 'N':
            o.tunnels = (unsigned)parse_uint(optarg, "--tunnels", 1, CONNS_MAX);
            have_tunnels = true;
            break;
        case 'w':
            o.workers = (unsigned)parse_uint(optarg, "--workers", 1, CONNS_MAX);
            have_workers = true;
            break;
        case 'r': {
            char *end;
            o.rate = strtod(optarg, &end);
            if (end == optarg || *end || !(o.rate >= 0.001) || o.rate > RATE_MAX)
                die_usage("bad rate for --rate: %s (tunnels per second, 0.001..10000000)", optarg);
            break;
        }
        case 'D':
            if (opts_dir_parse(optarg, &o.dir) < 0)
                die_usage("%s: --direction is down, up or both", optarg);
            break;
        case 'C':
            if (opts_close_parse(optarg, &o.close) < 0)
                die_usage("%s: --close is rst, fin or target", optarg);
            have_close = true;
            break;
        case 'R':
            o.request = (uint32_t)parse_uint(optarg, "--request", 0, UINT32_MAX);
            break;
        case 'S':
            o.response = (uint32_t)parse_uint(optarg, "--response", 0, UINT32_MAX);
            break;
        case 'z':
            o.size = (uint32_t)parse_uint(optarg, "--size", 1, 1 << 20);
            break;
        case 'W':
            o.window = (unsigned)parse_uint(optarg, "--window", 1, 4096);
            break;
        case 'H':
            o.hold_s = parse_secs(optarg, "--hold");
            break;
        case 'o':
            o.timeout_s = parse_secs(optarg, "--timeout");
            break;
        case 'l':
            o.loss_s = parse_secs(optarg, "--loss-timeout");
            break;
        case 'x':
            target_threads = (unsigned)parse_uint(optarg, "--target-threads", 1, THREADS_MAX);
            break;
        case 'j':
            o.json = true;
            break;
        case 'A':
            o.allow_nonlocal = true;
            break;
        case 's':
            if (srcaddr_parse(&o.src, optarg, err, sizeof(err)) < 0)
                die_usage("--source: %s", err);
            break;
        case 'L':
            http_url = optarg;
            http_opts = true;
            break;
        case 'Q':
            http_path = optarg;
            http_opts = true;
            break;
        case 'k':
            o.requests_per_tunnel =
                (unsigned)parse_uint(optarg, "--requests-per-tunnel", 1, CONNS_MAX);
            http_opts = true;
            break;
        case 'e':
            o.expect_status = (unsigned)parse_uint(optarg, "--expect-status", 100, 999);
            http_opts = true;
            break;
        case 'E':
            o.expect_size = parse_uint(optarg, "--expect-size", 0, COUNT_MAX);
            o.has_expect_size = true;
            http_opts = true;
            break;
        case 'F':
            o.no_fail_fast = true;
            break;
        case 'I':
            iv_path = optarg;
            break;
        case 'i':
            iv_secs = parse_secs(optarg, "--interval");
            if (iv_secs < 0.05)
                die_usage("%s", "--interval is at least 0.05 seconds");
            break;
        case 'P':
            serve_port = (unsigned)parse_uint(optarg, "--port", 0, 65535);
            break;
        case 'h':
            host = optarg;
            break;
        case '5':
            socks5 = true;
            break;
        case 'u':
            user = optarg;
            break;
        case '?' + 256:
            fputs(usage_text, stdout);
            return 0;
        default:
            die_usage("%s", "bad option");
        }
    }
    if (optind < argc)
        die_usage("unexpected argument %s", argv[optind]);
    if (socks5 && o.mode != MODE_SERVE)
        die_usage("%s", "--socks5 is an option of serve");
    if (have_close && o.mode != MODE_CONNRATE && o.mode != MODE_HTTP)
        die_usage("%s", "--close is an option of connrate and http");
    if (o.close == CLOSE_TARGET && o.mode != MODE_CONNRATE)
        die_usage("%s", "--close target is connrate's: the target it needs is socksload's own");
    if (o.rate > 0 && o.mode != MODE_CONNRATE && o.mode != MODE_HTTP && o.mode != MODE_HOLD &&
        o.mode != MODE_UDP)
        die_usage("%s", "--rate is an option of connrate, http, hold and udp");
    if (http_opts && o.mode != MODE_HTTP)
        die_usage("%s", "--url, --path, --requests-per-tunnel and --expect-* are options of http");
    if (o.mode == MODE_HTTP && http_url && (target || http_path))
        die_usage("%s", "http: --url, or --target HOST:PORT with --path, not both");
    if (o.mode == MODE_HTTP && !http_url && !target)
        die_usage("%s", "http needs --url http://HOST:PORT/PATH or --target HOST:PORT (socksload "
                        "has no HTTP server of its own)");
    if (o.requests_per_tunnel == 0)
        o.requests_per_tunnel = 1;
    if (o.rate > 0 && !have_workers)
        o.workers = 256; /* the bound on tunnels in flight, not a concurrency */

    if (iv_path && o.mode == MODE_SERVE)
        die_usage("%s", "--intervals is not an option of serve");

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    pattern_init();
    progress_tty = isatty(STDERR_FILENO);

    if (o.mode == MODE_SERVE)
        return serve(host, (uint16_t)serve_port, o.threads, o.allow_nonlocal, socks5, o.json);

    /* The proxy. */
    if (!proxy)
        die_usage("%s", "--proxy URL is required");
    if (url_parse(&o.proxy, proxy, err, sizeof(err)) < 0)
        die_usage("--proxy: %s", err);
    if (o.proxy.scheme == URL_HTTP)
        die_usage("%s", "--proxy: socksload speaks SOCKS only (socks4, socks4a, socks5, socks5h)");
    if (url_to_sockaddr(o.proxy.host, o.proxy.host_type, o.proxy.port, false, &o.proxy_sa,
                        &o.proxy_len) < 0)
        die_usage("proxy host %s: socksload resolves no names (only localhost)", o.proxy.host);
    if (!o.allow_nonlocal && !url_is_loopback((struct sockaddr *)&o.proxy_sa))
        die_usage("proxy %s is not loopback (--allow-nonlocal to permit)", o.proxy.host);
    for (unsigned k = 0; k < o.src.n; k++) {
        struct sockaddr_storage first, last;
        srcaddr_ends(&o.src, k, &first, &last);
        if (first.ss_family != o.proxy_sa.ss_family)
            die_usage("--source: %s", first.ss_family == AF_INET
                                          ? "IPv4 addresses cannot reach an IPv6 proxy"
                                          : "IPv6 addresses cannot reach an IPv4 proxy");
        if (!o.allow_nonlocal && (!url_is_loopback((struct sockaddr *)&first) ||
                                  !url_is_loopback((struct sockaddr *)&last))) {
            char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], range[2 * INET6_ADDRSTRLEN + 2];
            bool v4 = first.ss_family == AF_INET;
            inet_ntop(first.ss_family,
                      v4 ? (void *)&((struct sockaddr_in *)&first)->sin_addr
                         : (void *)&((struct sockaddr_in6 *)&first)->sin6_addr,
                      a, sizeof(a));
            inet_ntop(last.ss_family,
                      v4 ? (void *)&((struct sockaddr_in *)&last)->sin_addr
                         : (void *)&((struct sockaddr_in6 *)&last)->sin6_addr,
                      b, sizeof(b));
            snprintf(range, sizeof(range), "%s-%s", a, b);
            die_usage("--source: %s is not all loopback (127.0.0.0/8 or ::1; --allow-nonlocal "
                      "to permit)",
                      range);
        }
    }
    if (o.mode == MODE_UDP && proxy_v4(&o))
        die_usage("%s", "udp mode needs SOCKS5 (UDP ASSOCIATE)");
    if (o.loss_s > 0 && o.mode != MODE_UDP)
        die_usage("%s", "--loss-timeout is for udp mode");
    if (o.loss_s == 0)
        o.loss_s = o.timeout_s;
    if (user) {
        if (proxy_v4(&o))
            die_usage("%s", "--user needs SOCKS5 (RFC 1929)");
        if (usertpl_parse(&o.tpl, user, err, sizeof(err)) < 0)
            die_usage("--user: %s", err);
        o.has_tpl = true;
        o.proxy.has_user = true;                    /* the greeting offers username/password */
        usertpl_expand(&o.tpl, 0, 0, o.proxy.user); /* what the report names */
    }

    /* Sizes and counts. */
    if (!have_tunnels)
        o.tunnels = o.mode == MODE_HOLD ? 100 : 1;
    if (o.mode == MODE_HOLD && o.count) {
        if (o.count > CONNS_MAX)
            die_usage("%s", "hold --count is the number of tunnels: at most 1000000");
        o.tunnels = (unsigned)o.count;
    }
    if (o.hold_s == 0)
        o.hold_s = o.duration_s;
    if (o.count && !have_duration)
        o.duration_s = 3600; /* --count bounds the run; an hour bounds --count */
    if ((o.mode == MODE_LATENCY || o.mode == MODE_HOLD) && (o.size == 0 || o.size > 1 << 20))
        die_usage("%s", "--size must be 1..1M");
    if (o.mode == MODE_UDP && (o.size < 16 || o.size > 60000))
        die_usage("%s", "udp --size must be 16..60000");
    unsigned conns = o.mode == MODE_CONNRATE || o.mode == MODE_HTTP ? o.workers : o.tunnels;
    /* A thread without a tunnel would take its share of --count and do nothing with it. */
    if (o.threads > conns)
        o.threads = conns;

    /* http: the target and the Host header from --url, or from --target and --path. */
    char url_auth[URL_FIELD_MAX + 8], url_hp[URL_FIELD_MAX + 16], path[HTTP_PATH_MAX] = "/";
    if (http_url) {
        if (http_url_parse(http_url, url_auth, sizeof(url_auth), url_hp, sizeof(url_hp), path,
                           sizeof(path), err, sizeof(err)) < 0)
            die_usage("--url: %s", err);
        target = url_hp;
    } else if (o.mode == MODE_HTTP) {
        if (http_path && !http_path_ok(http_path))
            die_usage("--path %s: a path starts with /, then visible ASCII only (percent-encode "
                      "the rest), at most 2047 bytes",
                      http_path);
        snprintf(path, sizeof(path), "%s", http_path ? http_path : "/");
        snprintf(url_auth, sizeof(url_auth), "%s", target);
    }
    if (o.mode == MODE_HTTP) {
        for (int close = 0; close < 2; close++) {
            o.http_req_len[close] =
                http_get(o.http_req[close], sizeof(o.http_req[close]), url_auth, path, close);
            if (o.http_req_len[close] == 0)
                die_usage("%s", "http: the request would be too long");
        }
    }

    /* The target: named by --target, or embedded. */
    char thost[URL_FIELD_MAX + 1] = "127.0.0.1";
    enum url_host ttype = URL_HOST_IPV4;
    uint16_t tport = 0;
    struct target *tg = NULL;
    if (target && url_parse_hostport(target, thost, &ttype, &tport, err, sizeof(err)) < 0) {
        char tmp[URL_FIELD_MAX + 16];
        bool v6 = strchr(target, ':') && target[0] != '[';
        snprintf(tmp, sizeof(tmp), v6 ? "[%s]:1" : "%s:1", target);
        if (url_parse_hostport(tmp, thost, &ttype, &tport, err, sizeof(err)) < 0)
            die_usage("--target: %s", err);
        tport = 0;
    }
    if (tport == 0 && o.mode == MODE_HTTP)
        die_usage("http: --target %s needs a port (HOST:PORT)", target);
    if (tport == 0) {
        const char *bind_host = ttype == URL_HOST_IPV6 ? thost : "127.0.0.1";
        if (ttype == URL_HOST_IPV4)
            bind_host = thost;
        make_dest(&o, thost, ttype, 1); /* the safety checks before anything listens */
        int rc = target_start(&tg, bind_host, 0, target_threads, false, &tport);
        if (rc < 0) {
            fprintf(stderr, "socksload: embedded target on %s: %s\n", bind_host, strerror(-rc));
            return 1;
        }
    }
    make_dest(&o, thost, ttype, tport);
    o.target = tg;

    /* socksload's own limits: the open files first, raised as far as the hard limit. */
    static struct limits lims;
    limits_nofile(&lims, raise_nofile(), limits_fds_needed(o.mode, conns, tg != NULL));
    if (lims.n)
        fprintf(stderr, "socksload: %s\n", lims.msg[0]);
    FILE *ivf = NULL;
    if (iv_path) {
        ivf = fopen(iv_path, "w");
        if (!ivf) {
            fprintf(stderr, "socksload: --intervals %s: %s\n", iv_path, strerror(errno));
            return 1;
        }
    }

    /* Workers. */
    struct worker_ctl *ctl = calloc(o.threads, sizeof(*ctl));
    pthread_t *tids = calloc(o.threads, sizeof(*tids));
    if (!ctl || !tids) {
        fprintf(stderr, "socksload: out of memory\n");
        return 1;
    }
    uint64_t start = stats_now_ns();
    uint64_t stop = start + (uint64_t)(o.duration_s * 1e9);
    unsigned started = 0;
    uint64_t src_next = 0;
    for (unsigned i = 0; i < o.threads; i++) {
        ctl[i].o = &o;
        ctl[i].src_next = &src_next;
        ctl[i].index = i;
        ctl[i].conns = conns / o.threads + (i < conns % o.threads);
        if (o.count && o.mode != MODE_HOLD)
            ctl[i].count = o.count / o.threads + (i < o.count % o.threads);
        if (o.count && o.mode != MODE_THROUGHPUT && o.mode != MODE_HOLD && ctl[i].count == 0)
            ctl[i].conns = 0;
        ctl[i].start_ns = start;
        ctl[i].stop_ns = stop;
        if (pthread_create(&tids[i], NULL, client_worker, &ctl[i]) != 0) {
            fprintf(stderr, "socksload: cannot start worker thread\n");
            return 1;
        }
        started++;
    }

    /* Progress and intervals until every worker is done. */
    struct stats *now = calloc(1, sizeof(*now)), *prev = calloc(1, sizeof(*prev));
    struct stats *iv_prev = calloc(1, sizeof(*iv_prev));
    uint64_t *scratch = calloc(STATS_HIST_N, sizeof(*scratch));
    if (!now || !prev || !iv_prev || !scratch) {
        fprintf(stderr, "socksload: out of memory\n");
        return 1;
    }
    uint64_t next_tick = start + 1000000000u, iv_ns = (uint64_t)(iv_secs * 1e9);
    uint64_t iv_last = start, iv_next = start + iv_ns;
    bool printed = false;
    char stopped[1100];
    bool tripped = false;
    for (;;) {
        unsigned done = 0;
        for (unsigned i = 0; i < started; i++)
            done += __atomic_load_n(&ctl[i].done, __ATOMIC_ACQUIRE) != 0;
        if (done == started)
            break;
        if (main_signalled)
            for (unsigned i = 0; i < started; i++)
                __atomic_store_n(&ctl[i].stop_flag, 1, __ATOMIC_RELAXED);
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        uint64_t t = stats_now_ns();
        if (!o.no_fail_fast && !tripped) {
            sum_all(now, ctl, started);
            if (fail_fast(stopped, sizeof(stopped), &o, now, (double)(t - start) / 1e9)) {
                tripped = true;
                for (unsigned i = 0; i < started; i++)
                    __atomic_store_n(&ctl[i].stop_flag, 1, __ATOMIC_RELAXED);
            }
        }
        if (ivf && t >= iv_next) {
            sum_all(now, ctl, started);
            interval_emit(ivf, iv_path, &o, now, iv_prev, scratch, start, iv_last, t);
            memcpy(iv_prev, now, sizeof(*now));
            iv_last = t;
            while (iv_next <= t)
                iv_next += iv_ns;
        }
        if (t >= next_tick) {
            sum_all(now, ctl, started);
            progress(&o, (double)(t - start) / 1e9, now, prev);
            printed = true;
            struct stats *x = prev;
            prev = now;
            now = x;
            while (next_tick <= t)
                next_tick += 1000000000u;
        }
    }
    if (printed && progress_tty)
        fprintf(stderr, "\n");
    for (unsigned i = 0; i < started; i++)
        pthread_join(tids[i], NULL);

    /* Report. */
    struct stats sum;
    uint64_t end = start, last_start = start, opened = start;
    bool all_opened = true;
    sum_all(&sum, ctl, started);
    if (tripped) {
        /* The attempts in flight at the decision have ended since: the line counts them too
         * when they failed alike, so that it agrees with the table. */
        fail_fast(stopped, sizeof(stopped), &o, &sum, 1e9);
        fprintf(stderr, "socksload: stopped early: %s (--no-fail-fast to run on)\n", stopped);
    }
    for (unsigned i = 0; i < started; i++) {
        if (ctl[i].rc < 0) {
            fprintf(stderr, "socksload: worker %u: io_uring setup: %s\n", i, strerror(-ctl[i].rc));
            return 1;
        }
        if (ctl[i].end_ns > end)
            end = ctl[i].end_ns;
        if (ctl[i].last_start_ns > last_start)
            last_start = ctl[i].last_start_ns;
        if (ctl[i].conns && ctl[i].opened_ns == 0)
            all_opened = false;
        if (ctl[i].opened_ns > opened)
            opened = ctl[i].opened_ns;
    }
    /* --rate: starts over the time from the run's start to the last actual start plus one
     * interval, the time the schedule gives that many; starts that lag lower it. */
    /* Each worker's CPU time against its wall time; the local ports. */
    struct phases *ph = calloc(1, sizeof(*ph));
    if (!ph) {
        fprintf(stderr, "socksload: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < started; i++) {
        phases_sum(ph, &ctl[i].ph);
        if (ctl[i].conns && ctl[i].end_ns > start)
            limits_cpu(&lims, i, ctl[i].cpu_ns, ctl[i].end_ns - start);
    }
    for (unsigned i = 0; i < STATS_FAIL_N && sum.fail[i].count; i++)
        if (sum.fail[i].kind == STATS_E_CONNECT && sum.fail[i].detail == EADDRNOTAVAIL)
            limits_ports(&lims, sum.fail[i].count);
    struct outcome oc = {.opened_s = all_opened ? (double)(opened - start) / 1e9 : -1,
                         .stopped = tripped ? stopped : NULL,
                         .ph = ph,
                         .lims = &lims};
    /* The counter went round the list in order: every address up to it was used. */
    oc.src_used = src_next < o.src.total ? src_next : o.src.total;
    /* hold --rate: the schedule started once the tunnels were held, the first worker's first. */
    uint64_t origin = 0;
    for (unsigned i = 0; i < started && (o.mode == MODE_HOLD || o.mode == MODE_UDP); i++)
        if (ctl[i].sched0_ns && (!origin || ctl[i].sched0_ns < origin))
            origin = ctl[i].sched0_ns;
    if (!origin)
        origin = start;
    if (o.rate > 0 && sum.started)
        oc.achieved = (double)sum.started /
                      ((double)(last_start > origin ? last_start - origin : 0) / 1e9 + 1 / o.rate);
    /* The target's mismatches count once: the client did not count the reset each caused
     * (target_claim). */
    uint64_t target_mm = 0;
    struct sources_summary srcs, *m = NULL;
    if (tg) {
        target_mm = target_mismatches(tg);
        sum.err[STATS_E_MISMATCH] += target_mm;
        target_stop(tg);
        if (target_sources(tg, &srcs) == 0)
            m = &srcs;
    }
    /* Streams are measured over the requested time, the rest until the last unit ended. */
    if (o.mode == MODE_THROUGHPUT && end > stop)
        end = stop;
    double secs = (double)(end - start) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    if (o.json)
        print_json(&o, &sum, secs, target_mm, m, &oc);
    else
        print_table(&o, &sum, secs, target_mm, m, &oc);
    if (ivf) {
        /* The rest of the last interval, then the whole run's line. */
        uint64_t t = stats_now_ns();
        if (t > iv_last + iv_ns / 20)
            interval_emit(ivf, iv_path, &o, &sum, iv_prev, scratch, start, iv_last, t);
        interval_emit(ivf, iv_path, &o, &sum, NULL, scratch, start, start, end);
        fclose(ivf);
    }
    if (tg)
        target_free(tg);
    free(ph);
    free(scratch);
    free(iv_prev);
    free(now);
    free(prev);
    free(tids);
    free(ctl);
    /* Work is finished units: bytes of a message that never completed are not. */
    return sum.units > 0 && stats_errors(&sum) == 0 && !tripped ? 0 : 1;
}
