/*
 * main.c - options, start and stop order; the only place that exits.
 *
 * Start: parse options, raise RLIMIT_NOFILE, bind every listener once per
 * shard (SO_REUSEPORT), start the shards, report the addresses. Then the
 * main thread waits for SIGINT/SIGTERM with every signal blocked in the
 * shards, stops them, joins them and exits 0.
 */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "dns.h"
#include "hosts.h"
#include "opts.h"
#include "shard.h"
#include "sock.h"
#include "users.h"
#include "version.h"
#include "acl.h"
#include "admin.h"
#include "config.h"
#include "ctl.h"
#include "log.h"
#include "policy.h"


#define LISTEN_BACKLOG    4096

static const char usage[] =
    "usage: ringsocks [-c FILE] [-t] [options]\n"
    "  -c, --config FILE         configuration file (command-line options override it)\n"
    "  -t, --test                check the configuration (and users file), then exit\n"
    "  --listen HOST:PORT        listen address, repeatable (default 127.0.0.1:1080;\n"
    "                            IPv6 as [::1]:1080; port 0 picks a free port)\n"
    "  --shards N                shard threads (default: one per online CPU)\n"
    "  --relay auto|splice|copy  relay engine (default auto: copy, splice once a read fills\n"
    "                            a buffer)\n"
    "  --handshake-timeout SEC   close clients that have not sent a request (default 10)\n"
    "  --connect-timeout SEC     give up resolving and connecting (default 10)\n"
    "  --idle-timeout SEC        close tunnels idle this long, 0 = never (default 7200)\n"
    "  --write-timeout SEC       close tunnels whose pending bytes a side has taken none of\n"
    "                            for this long, 0 = never (default 120)\n"
    "  --max-conns N             connections at once, all shards together\n"
    "                            (default: what RLIMIT_NOFILE allows)\n"
    "  --resolver IP[:PORT]      DNS server, repeatable (default: /etc/resolv.conf)\n"
    "  --pipe-size BYTES         splice pipe size (default 65536)\n"
    "  --buf-size BYTES          copy engine buffer size (default 32768)\n"
    "  --bufs N                  copy engine buffers per shard, power of two (default 256)\n"
    "  --handshake-slots N       handshakes in progress per shard (default min(max-conns, 4096));\n"
    "                            more new clients wait for a free slot\n"
    "  --auth none|password      client authentication (default none)\n"
    "  --users FILE              user:crypt-hash lines for --auth password\n"
    "  --auth-fail-budget N      per client address and shard: failed plus queued password\n"
    "                            checks before its checks wait behind others' (default 16;\n"
    "                            0: no budget)\n"
    "  --socks4 auto|on|off      SOCKS4/4a: auto allows it only without password auth\n"
    "  --bind-timeout SEC        BIND waits this long for its connection (default 120)\n"
    "  --bind-ports LO-HI        port range for BIND listeners (default: any)\n"
    "  --udp-ports LO-HI         port range for UDP ASSOCIATE sockets (default: any)\n"
    "  --udp-advertise IP        address in UDP ASSOCIATE replies (default: the address\n"
    "                            the client's TCP connection reached)\n"
    "  --admin HOST:PORT|off     admin endpoint: /metrics /healthz /reload /drain\n"
    "                            (default 127.0.0.1:9180)\n"
    "  --admin-host NAME         a host name the admin endpoint answers to, repeatable\n"
    "                            (addresses and localhost always; other names refused)\n"
    "  --access-log TARGET       stderr, syslog, off or a file path (default stderr)\n"
    "  --log-format logfmt|json  access-log format (default logfmt)\n"
    "  --drain-timeout SEC       on SIGTERM, tunnels get this long to finish (default 30)\n"
    "  --busy-poll USEC          after work, look for more for this long before sleeping\n"
    "                            (lower latency, more CPU; default 0: off)\n"
    "  --keepalive-idle SEC      TCP keepalive on both sockets of a tunnel after this idle\n"
    "                            time, 0 = off (default 120)\n"
    "  --keepalive-interval SEC  between keepalive probes (default 30)\n"
    "  --keepalive-count N       unanswered probes before the tunnel ends (default 4)\n"
    "  --tcp-user-timeout SEC    end a tunnel whose sent data stays unacknowledged this long,\n"
    "                            0 = the kernel's default (default 120)\n"
    "  --client-max-handshakes N handshakes per client address and shard before its new ones\n"
    "                            wait last and its slow ones make room for others (default 64)\n"
    "  --client-max-binds N      BINDs waiting per client address and shard (default 64)\n"
    "  --client-max-udp N        UDP associations per client address and shard (default 256)\n"
    "  --user USER, --group GROUP  drop privileges to these after binding\n"
    "  --help                    this text\n"
    "  --version                 print the version\n";

static int
parse_uint(const char *name, const char *s, unsigned long min, unsigned long max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
        fprintf(stderr, "ringsocks: --%s: '%s' is not a number in %lu..%lu\n", name, s, min, max);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* "LO-HI", 1 <= LO <= HI <= 65535. */
static int
parse_range(const char *name, const char *s, uint16_t *lo, uint16_t *hi)
{
    unsigned a, b;
    char tail;
    if (sscanf(s, "%u-%u%c", &a, &b, &tail) != 2 || a < 1 || a > b || b > 65535) {
        fprintf(stderr, "ringsocks: --%s: '%s' is not a port range LO-HI within 1-65535\n", name,
                s);
        return -1;
    }
    *lo = (uint16_t)a;
    *hi = (uint16_t)b;
    return 0;
}

struct cli {
    const char *config; /* -c FILE */
    bool test;          /* -t */
};

/*
 * Apply the command line to o. Called on top of the defaults (or of a
 * configuration file): a list option given on the command line replaces
 * the file's list rather than adding to it.
 */
static int
parse_args(int argc, char **argv, struct opts *o, struct cli *cli)
{
    bool listen_set = false, resolvers_set = false, admin_hosts_set = false;
    enum {
        O_LISTEN = 256,
        O_SHARDS,
        O_RELAY,
        O_HS_TIMEOUT,
        O_CONNECT_TIMEOUT,
        O_IDLE_TIMEOUT,
        O_WRITE_TIMEOUT,
        O_MAX_CONNS,
        O_RESOLVER,
        O_PIPE_SIZE,
        O_BUF_SIZE,
        O_BUFS,
        O_HS_SLOTS,
        O_AUTH,
        O_USERS,
        O_AUTH_FAIL_BUDGET,
        O_SOCKS4,
        O_BIND_TIMEOUT,
        O_BIND_PORTS,
        O_UDP_PORTS,
        O_UDP_ADVERTISE,
        O_ADMIN,
        O_ADMIN_HOST,
        O_ACCESS_LOG,
        O_LOG_FORMAT,
        O_DRAIN_TIMEOUT,
        O_BUSY_POLL,
        O_USER,
        O_GROUP,
        O_KA_IDLE,
        O_KA_INTERVAL,
        O_KA_COUNT,
        O_USER_TIMEOUT,
        O_CLIENT_HS,
        O_CLIENT_BINDS,
        O_CLIENT_UDP,
        O_HELP,
        O_VERSION,
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, O_LISTEN},
        {"shards", required_argument, NULL, O_SHARDS},
        {"relay", required_argument, NULL, O_RELAY},
        {"handshake-timeout", required_argument, NULL, O_HS_TIMEOUT},
        {"connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT},
        {"idle-timeout", required_argument, NULL, O_IDLE_TIMEOUT},
        {"write-timeout", required_argument, NULL, O_WRITE_TIMEOUT},
        {"max-conns", required_argument, NULL, O_MAX_CONNS},
        {"resolver", required_argument, NULL, O_RESOLVER},
        {"pipe-size", required_argument, NULL, O_PIPE_SIZE},
        {"buf-size", required_argument, NULL, O_BUF_SIZE},
        {"bufs", required_argument, NULL, O_BUFS},
        {"handshake-slots", required_argument, NULL, O_HS_SLOTS},
        {"auth", required_argument, NULL, O_AUTH},
        {"users", required_argument, NULL, O_USERS},
        {"auth-fail-budget", required_argument, NULL, O_AUTH_FAIL_BUDGET},
        {"socks4", required_argument, NULL, O_SOCKS4},
        {"bind-timeout", required_argument, NULL, O_BIND_TIMEOUT},
        {"bind-ports", required_argument, NULL, O_BIND_PORTS},
        {"udp-ports", required_argument, NULL, O_UDP_PORTS},
        {"udp-advertise", required_argument, NULL, O_UDP_ADVERTISE},
        {"admin", required_argument, NULL, O_ADMIN},
        {"admin-host", required_argument, NULL, O_ADMIN_HOST},
        {"access-log", required_argument, NULL, O_ACCESS_LOG},
        {"log-format", required_argument, NULL, O_LOG_FORMAT},
        {"drain-timeout", required_argument, NULL, O_DRAIN_TIMEOUT},
        {"busy-poll", required_argument, NULL, O_BUSY_POLL},
        {"user", required_argument, NULL, O_USER},
        {"group", required_argument, NULL, O_GROUP},
        {"keepalive-idle", required_argument, NULL, O_KA_IDLE},
        {"keepalive-interval", required_argument, NULL, O_KA_INTERVAL},
        {"keepalive-count", required_argument, NULL, O_KA_COUNT},
        {"tcp-user-timeout", required_argument, NULL, O_USER_TIMEOUT},
        {"client-max-handshakes", required_argument, NULL, O_CLIENT_HS},
        {"client-max-binds", required_argument, NULL, O_CLIENT_BINDS},
        {"client-max-udp", required_argument, NULL, O_CLIENT_UDP},
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    struct sockaddr_storage ss;
    int c;

    opterr = 0;
    optind = 0; /* glibc: a full re-initialisation, so the command line can be parsed again */
    while ((c = getopt_long(argc, argv, "c:t", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            cli->config = optarg;
            break;
        case 't':
            cli->test = true;
            break;
        case O_LISTEN:
            if (!listen_set) {
                o->n_listen = 0;
                listen_set = true;
            }
            if (o->n_listen == OPTS_MAX_LISTEN) {
                fprintf(stderr, "ringsocks: at most %d --listen addresses\n", OPTS_MAX_LISTEN);
                return -1;
            }
            if (addr_parse(optarg, -1, &o->listen[o->n_listen]) < 0) {
                fprintf(stderr, "ringsocks: --listen: '%s' is not IP:PORT or [IPv6]:PORT\n",
                        optarg);
                return -1;
            }
            o->n_listen++;
            break;
        case O_SHARDS:
            if (parse_uint("shards", optarg, 1, 1024, &o->shards) < 0)
                return -1;
            break;
        case O_RELAY:
            if (strcmp(optarg, "splice") == 0) {
                o->relay = RELAY_SPLICE;
            } else if (strcmp(optarg, "copy") == 0) {
                o->relay = RELAY_COPY;
            } else if (strcmp(optarg, "auto") == 0) {
                o->relay = RELAY_AUTO;
            } else {
                fprintf(stderr, "ringsocks: --relay: '%s' is not splice, copy or auto\n", optarg);
                return -1;
            }
            break;
        case O_HS_TIMEOUT:
            if (parse_uint("handshake-timeout", optarg, 1, 3600, &o->handshake_timeout_s) < 0)
                return -1;
            break;
        case O_CONNECT_TIMEOUT:
            if (parse_uint("connect-timeout", optarg, 1, 3600, &o->connect_timeout_s) < 0)
                return -1;
            break;
        case O_IDLE_TIMEOUT:
            if (parse_uint("idle-timeout", optarg, 0, 86400 * 365, &o->idle_timeout_s) < 0)
                return -1;
            break;
        case O_WRITE_TIMEOUT:
            if (parse_uint("write-timeout", optarg, 0, 86400, &o->write_timeout_s) < 0)
                return -1;
            break;
        case O_MAX_CONNS:
            if (parse_uint("max-conns", optarg, 1, 16000000, &o->max_conns) < 0)
                return -1;
            break;
        case O_RESOLVER: {
            if (!resolvers_set) {
                o->resolvers[0] = '\0';
                resolvers_set = true;
            }
            if (addr_parse(optarg, 53, &ss) < 0) {
                fprintf(stderr, "ringsocks: --resolver: '%s' is not IP[:PORT]\n", optarg);
                return -1;
            }
            char text[ADDR_STRLEN];
            size_t used = strlen(o->resolvers);
            addr_format((struct sockaddr *)&ss, text, sizeof(text));
            if (used + strlen(text) + 2 > sizeof(o->resolvers)) {
                fprintf(stderr, "ringsocks: too many --resolver addresses\n");
                return -1;
            }
            snprintf(o->resolvers + used, sizeof(o->resolvers) - used, "%s%s", used ? "," : "",
                     text);
            break;
        }
        case O_PIPE_SIZE:
            if (parse_uint("pipe-size", optarg, 4096, 64 << 20, &o->pipe_size) < 0)
                return -1;
            break;
        case O_BUF_SIZE:
            if (parse_uint("buf-size", optarg, 1024, 1 << 20, &o->buf_size) < 0)
                return -1;
            break;
        case O_BUFS:
            if (parse_uint("bufs", optarg, 1, 32768, &o->buf_count) < 0)
                return -1;
            if (o->buf_count & (o->buf_count - 1)) {
                fprintf(stderr, "ringsocks: --bufs: %u is not a power of two\n", o->buf_count);
                return -1;
            }
            break;
        case O_HS_SLOTS:
            if (parse_uint("handshake-slots", optarg, 1, 1 << 20, &o->hs_slots) < 0)
                return -1;
            break;
        case O_AUTH:
            if (strcmp(optarg, "none") == 0) {
                o->auth = AUTH_NONE;
            } else if (strcmp(optarg, "password") == 0) {
                o->auth = AUTH_PASSWORD;
            } else {
                fprintf(stderr, "ringsocks: --auth: '%s' is neither none nor password\n", optarg);
                return -1;
            }
            break;
        case O_AUTH_FAIL_BUDGET:
            if (parse_uint("auth-fail-budget", optarg, 0, 1000000, &o->auth_fail_budget) < 0)
                return -1;
            break;
        case O_USERS:
            snprintf(o->users_file, sizeof(o->users_file), "%s", optarg);
            o->users_path = o->users_file;
            break;
        case O_SOCKS4:
            if (strcmp(optarg, "auto") == 0) {
                o->socks4 = SOCKS4_AUTO;
            } else if (strcmp(optarg, "on") == 0) {
                o->socks4 = SOCKS4_ON;
            } else if (strcmp(optarg, "off") == 0) {
                o->socks4 = SOCKS4_OFF;
            } else {
                fprintf(stderr, "ringsocks: --socks4: '%s' is not auto, on or off\n", optarg);
                return -1;
            }
            break;
        case O_BIND_TIMEOUT:
            if (parse_uint("bind-timeout", optarg, 1, 86400, &o->bind_timeout_s) < 0)
                return -1;
            break;
        case O_BIND_PORTS:
            if (parse_range("bind-ports", optarg, &o->bind_port_lo, &o->bind_port_hi) < 0)
                return -1;
            break;
        case O_UDP_PORTS:
            if (parse_range("udp-ports", optarg, &o->udp_port_lo, &o->udp_port_hi) < 0)
                return -1;
            break;
        case O_UDP_ADVERTISE:
            if (addr_parse(optarg, 0, &o->udp_advertise) < 0) {
                fprintf(stderr, "ringsocks: --udp-advertise: '%s' is not an IP address\n", optarg);
                return -1;
            }
            break;
        case O_ADMIN:
            if (strcmp(optarg, "off") == 0) {
                memset(&o->admin, 0, sizeof(o->admin));
            } else if (addr_parse(optarg, -1, &o->admin) < 0) {
                fprintf(stderr, "ringsocks: --admin: '%s' is not IP:PORT, [IPv6]:PORT or off\n",
                        optarg);
                return -1;
            }
            break;
        case O_ADMIN_HOST: {
            if (!admin_hosts_set) {
                o->admin_hosts[0] = '\0';
                admin_hosts_set = true;
            }
            int ret = admin_hosts_add(o->admin_hosts, sizeof(o->admin_hosts), optarg);
            if (ret == -ENOSPC) {
                fprintf(stderr, "ringsocks: too many --admin-host names\n");
                return -1;
            }
            if (ret < 0) {
                fprintf(stderr,
                        "ringsocks: --admin-host: '%s' is not a host name (letters, digits, "
                        "'-', '_', '.'; no port)\n",
                        optarg);
                return -1;
            }
            break;
        }
        case O_ACCESS_LOG:
            snprintf(o->access_log, sizeof(o->access_log), "%s", optarg);
            break;
        case O_LOG_FORMAT:
            if (strcmp(optarg, "logfmt") == 0) {
                o->log_format = LOG_LOGFMT;
            } else if (strcmp(optarg, "json") == 0) {
                o->log_format = LOG_JSON;
            } else {
                fprintf(stderr, "ringsocks: --log-format: '%s' is neither logfmt nor json\n",
                        optarg);
                return -1;
            }
            break;
        case O_BUSY_POLL:
            if (parse_uint("busy-poll", optarg, 0, 100000, &o->busy_poll_us) < 0)
                return -1;
            break;
        case O_DRAIN_TIMEOUT:
            if (parse_uint("drain-timeout", optarg, 0, 86400, &o->drain_timeout_s) < 0)
                return -1;
            break;
        case O_USER:
            snprintf(o->user, sizeof(o->user), "%s", optarg);
            break;
        case O_GROUP:
            snprintf(o->group, sizeof(o->group), "%s", optarg);
            break;
        case O_KA_IDLE:
            if (parse_uint("keepalive-idle", optarg, 0, 86400, &o->keepalive_idle_s) < 0)
                return -1;
            break;
        case O_KA_INTERVAL:
            if (parse_uint("keepalive-interval", optarg, 1, 86400, &o->keepalive_interval_s) < 0)
                return -1;
            break;
        case O_KA_COUNT:
            if (parse_uint("keepalive-count", optarg, 1, 127, &o->keepalive_count) < 0)
                return -1;
            break;
        case O_USER_TIMEOUT:
            if (parse_uint("tcp-user-timeout", optarg, 0, 86400, &o->user_timeout_s) < 0)
                return -1;
            break;
        case O_CLIENT_HS:
            if (parse_uint("client-max-handshakes", optarg, 0, 1 << 20, &o->client_max_handshakes) < 0)
                return -1;
            break;
        case O_CLIENT_BINDS:
            if (parse_uint("client-max-binds", optarg, 0, 1 << 20, &o->client_max_binds) < 0)
                return -1;
            break;
        case O_CLIENT_UDP:
            if (parse_uint("client-max-udp", optarg, 0, 1 << 20, &o->client_max_udp) < 0)
                return -1;
            break;
        case O_HELP:
            fputs(usage, stdout);
            exit(0);
        case O_VERSION:
            printf("ringsocks %s\n", RINGSOCKS_VERSION);
            exit(0);
        default:
            if (optopt)
                fprintf(stderr, "ringsocks: option needs a value or is unknown: %s\n",
                        argv[optind - 1]);
            else
                fprintf(stderr, "ringsocks: unknown option: %s\n", argv[optind - 1]);
            fputs(usage, stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringsocks: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Raise the soft fd limit to the hard one; returns the limit in force. */
static rlim_t
raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int
listen_one(const struct sockaddr *sa, bool reuseport, const struct opts *o)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1)
        goto fail;
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* Accepted sockets inherit TCP_NODELAY, keepalive and the user timeout from the
     * listener: no setsockopt per client. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sock_set_liveness(fd, o);
    if (bind(fd, sa, addr_len(sa)) == -1)
        goto fail;
    if (reuseport && listen(fd, LISTEN_BACKLOG) == -1)
        goto fail;
    return fd;
fail:;
    int err = -errno;
    close(fd);
    return err;
}

/*
 * fds[shard * n_listen + i]: one socket per listen address per shard. A
 * probe without SO_REUSEPORT first, so a port held by anyone (even another
 * ringsocks of the same user, which SO_REUSEPORT would silently share with)
 * is reported as in use; it also fixes the port when 0 was asked for.
 */
static int
bind_all(struct opts *o, int *fds)
{
    char text[ADDR_STRLEN];
    for (unsigned i = 0; i < o->n_listen; i++) {
        struct sockaddr *sa = (struct sockaddr *)&o->listen[i];
        int probe = listen_one(sa, false, o);
        if (probe < 0) {
            fprintf(stderr, "ringsocks: cannot listen on %s: %s\n",
                    addr_format(sa, text, sizeof(text)), strerror(-probe));
            return -1;
        }
        socklen_t len = sizeof(o->listen[i]);
        getsockname(probe, sa, &len);
        close(probe);
        for (unsigned s = 0; s < o->shards; s++) {
            int fd = listen_one(sa, true, o);
            if (fd < 0) {
                fprintf(stderr, "ringsocks: cannot listen on %s: %s\n",
                        addr_format(sa, text, sizeof(text)), strerror(-fd));
                return -1;
            }
            fds[s * o->n_listen + i] = fd;
        }
    }
    return 0;
}

/* What a reload re-reads: the command line as started, and the file it named. */
struct loader {
    int argc;
    char **argv;
    const char *config;
};

/*
 * defaults -> file -> command line, then the users file and the rules, into
 * a new policy snapshot. Nothing is kept on failure; every error is in err.
 */
static int
load_all(void *arg, struct opts *o, struct policy **pol, uint64_t gen, char *err, size_t errlen)
{
    const struct loader *ld = arg;
    struct acl *acl = NULL;
    struct users *users = NULL;
    struct cli cli = {0};

    config_defaults(o);
    if (ld->config) {
        if (config_load(ld->config, o, &acl, err, errlen) < 0)
            return -1;
        if (err[0])
            fprintf(stderr, "%s\n", err); /* warnings: the file is still good */
    } else {
        acl = config_default_acl();
        if (!acl) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (parse_args(ld->argc, ld->argv, o, &cli) < 0) {
        snprintf(err, errlen, "bad command line");
        acl_free(acl);
        return -1;
    }
    if (o->auth == AUTH_PASSWORD && !o->users_path) {
        snprintf(err, errlen, "auth = password needs a users file (--users or users = \"...\")");
        acl_free(acl);
        return -1;
    }
    if (o->users_path) {
        users = users_load(o->users_path, err, errlen);
        if (!users) {
            acl_free(acl);
            return -1;
        }
    }
    *pol = policy_new(o, acl, users, gen);
    if (!*pol) {
        acl_free(acl);
        users_free(users);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Bind done, files open: become the configured user and group for good. */
static int
drop_privileges(const struct opts *o)
{
    if (!o->user[0] && !o->group[0])
        return 0;
    gid_t gid = getgid();
    uid_t uid = getuid();
    if (o->group[0]) {
        struct group *gr = getgrnam(o->group);
        if (!gr) {
            fprintf(stderr, "ringsocks: group '%s' does not exist\n", o->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    if (o->user[0]) {
        struct passwd *pw = getpwnam(o->user);
        if (!pw) {
            fprintf(stderr, "ringsocks: user '%s' does not exist\n", o->user);
            return -1;
        }
        uid = pw->pw_uid;
        if (!o->group[0])
            gid = pw->pw_gid;
    }
    if (setgroups(1, &gid) == -1 || setgid(gid) == -1 || setuid(uid) == -1) {
        fprintf(stderr, "ringsocks: cannot drop privileges to %s:%s: %s\n",
                o->user[0] ? o->user : "-", o->group[0] ? o->group : "-", strerror(errno));
        return -1;
    }
    if (uid != 0 && setuid(0) == 0) {
        fprintf(stderr, "ringsocks: privileges could be regained after dropping them\n");
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct opts o;
    struct cli cli = {0};
    char err[8192];

    /* A first pass for -c and -t (and bad flags, --help, --version). */
    config_defaults(&o);
    if (parse_args(argc, argv, &o, &cli) < 0)
        return 2;
    struct loader ld = {.argc = argc, .argv = argv, .config = cli.config};
    struct policy *pol = NULL;
    if (sodium_init() < 0) {
        fprintf(stderr, "ringsocks: libsodium initialisation failed\n");
        return 1;
    }
    if (load_all(&ld, &o, &pol, 1, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return cli.test ? 1 : 2;
    }
    struct opts loaded = o;
    if (cli.test) {
        printf("%s: configuration ok (%zu rules, %zu users)\n", cli.config ? cli.config : "(none)",
               acl_count(pol->acl), users_count(pol->users));
        policy_free(pol);
        return 0;
    }
    if (o.n_listen == 0)
        addr_parse("127.0.0.1:1080", -1, &o.listen[o.n_listen++]);
    if (o.shards == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.shards = n > 0 ? (unsigned)n : 1;
    }
    rlim_t nofile = raise_nofile();
    /* Two fds per tunnel; keep room for pipes in flight, DNS and listeners. */
    rlim_t reserve = nofile > 4096 ? 1024 : nofile / 4;
    unsigned fit = (unsigned)((nofile - reserve) / 2);
    if (o.max_conns == 0)
        o.max_conns = fit;
    else if (o.max_conns > fit)
        fprintf(stderr,
                "ringsocks: warning: --max-conns %u exceeds what RLIMIT_NOFILE %llu allows "
                "(about %u); accepting will pause when fds run out\n",
                o.max_conns, (unsigned long long)nofile, fit);
    /* Handshakes in progress per shard; any shard may take most connections. */
    if (o.hs_slots == 0)
        o.hs_slots = o.max_conns < 4096 ? o.max_conns : 4096;

    /* Every thread inherits this mask; only the control thread takes signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    int *fds = calloc((size_t)o.shards * o.n_listen, sizeof(int));
    struct shard *shards = calloc(o.shards, sizeof(struct shard));
    struct hosts *hosts = NULL;
    struct logger *lg = NULL;
    struct admin *admin = NULL;
    struct ctl ctl;
    unsigned started = 0, inited = 0;
    memset(&ctl, 0, sizeof(ctl));
    ctl.pol = pol;
    if (!fds || !shards) {
        fprintf(stderr, "ringsocks: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < (size_t)o.shards * o.n_listen; i++)
        fds[i] = -1;
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        fprintf(stderr, "ringsocks: c-ares initialisation failed\n");
        goto out;
    }
    hosts = hosts_load("/etc/hosts");
    if (!hosts) {
        fprintf(stderr, "ringsocks: out of memory reading /etc/hosts\n");
        goto out_ares;
    }
    if (bind_all(&o, fds) < 0)
        goto out_fds;
    if (o.admin.ss_family != AF_UNSPEC) {
        admin = admin_open((struct sockaddr *)&o.admin, o.admin_hosts, err, sizeof(err));
        if (!admin) {
            fprintf(stderr, "ringsocks: admin endpoint: %s\n", err);
            goto out_fds;
        }
    }
    /* What CONNECT must not reach unless a rule names it: ourselves (issue #9: a client
     * built thousands of nested tunnels through the proxy, and the admin endpoint trusts
     * whoever reaches it). */
    for (unsigned i = 0; i < o.n_listen; i++)
        o.self[o.n_self++] = o.listen[i];
    if (admin) {
        socklen_t len = sizeof(o.self[o.n_self]);
        if (getsockname(admin_fd(admin), (struct sockaddr *)&o.self[o.n_self], &len) == 0)
            o.n_self++;
    }
    lg = log_start(o.access_log, o.log_format, o.shards, 4096, err, sizeof(err));
    if (!lg) {
        fprintf(stderr, "ringsocks: access log: %s\n", err);
        goto out_fds;
    }
    if (drop_privileges(&o) < 0)
        goto out_fds;
    for (; inited < o.shards; inited++) {
        int ret = shard_init(&shards[inited], inited, &o, hosts, &ctl.pol, lg,
                             fds + inited * o.n_listen, o.n_listen);
        /* The shard owns its listeners from here on, even when init failed. */
        for (unsigned i = 0; i < o.n_listen; i++)
            fds[inited * o.n_listen + i] = -1;
        if (ret < 0) {
            fprintf(stderr, "ringsocks: shard %u: %s\n", inited, strerror(-ret));
            inited++;
            goto out_shards;
        }
    }
    shard_set_peers(shards, o.shards);
    for (; started < o.shards; started++) {
        int ret = shard_start(&shards[started]);
        if (ret < 0) {
            fprintf(stderr, "ringsocks: shard %u: io_uring setup failed: %s%s\n", started,
                    strerror(-ret),
                    ret == -ENOSYS || ret == -EPERM ? " (is io_uring disabled by sysctl?)" : "");
            goto out_shards;
        }
    }
    for (unsigned i = 0; i < o.n_listen; i++) {
        char text[ADDR_STRLEN];
        fprintf(stderr, "ringsocks: listening on %s\n",
                addr_format((struct sockaddr *)&o.listen[i], text, sizeof(text)));
    }
    if (admin) {
        char text[ADDR_STRLEN];
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        getsockname(admin_fd(admin), (struct sockaddr *)&ss, &len);
        fprintf(stderr, "ringsocks: admin on http://%s/\n",
                addr_format((struct sockaddr *)&ss, text, sizeof(text)));
        /* Browsers are kept out (admin.h); whoever else reaches it can reload and drain. */
        if (!admin_addr_is_loopback((struct sockaddr *)&ss))
            fprintf(stderr, "ringsocks: warning: the admin endpoint on %s is reachable beyond this "
                            "host and has no authentication: anyone who reaches it can reload "
                            "and drain\n",
                    text);
    }
    fprintf(stderr, "ringsocks %s: %u shards, relay %s, max %u connections, auth %s",
            RINGSOCKS_VERSION, o.shards, relay_name(o.relay), o.max_conns,
            o.auth == AUTH_PASSWORD ? "password" : "none");
    if (o.auth == AUTH_PASSWORD)
        fprintf(stderr, " (%zu users)", users_count(pol->users));
    fprintf(stderr, ", %zu rules\n", acl_count(pol->acl));

    ctl.o = &o;
    ctl.loaded = loaded;
    ctl.shards = shards;
    ctl.n_shards = o.shards;
    ctl.lg = lg;
    ctl.admin = admin;
    ctl.load = load_all;
    ctl.load_arg = &ld;
    ctl_run(&ctl);
    rc = 0;
out_shards:
    for (unsigned i = 0; i < started; i++)
        shard_stop(&shards[i]);
    for (unsigned i = 0; i < inited; i++)
        shard_join(&shards[i]);
out_fds:
    for (size_t i = 0; i < (size_t)o.shards * o.n_listen; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    log_stop(lg);
    admin_close(admin);
    hosts_free(hosts);
out_ares:
    ares_library_cleanup();
out:
    policy_free(ctl.pol);
    free(fds);
    free(shards);
    return rc;
}
