/*
 * opts.h - run-time options, filled by main() before any shard starts and
 * read-only afterwards (every thread may read them, none may write them).
 * Each field a setting fills is a row of options.c (its key, range,
 * default and reload class): a new setting is a field here and a row there.
 */
#ifndef RINGSOCKS_OPTS_H
#define RINGSOCKS_OPTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#define OPTS_MAX_LISTEN    16
#define OPTS_MAX_RESOLVERS 8
#define OPTS_MAX_EGRESS    64 /* entries of the global pool */
#define OPTS_EGRESS_LEN    2048
#define OPTS_FROM_LEN      1024

/* Client authentication methods a server offers at most (auth = [...]): gssapi, password. */
#define OPTS_AUTH_METHODS 2
/* gss_protection: protection levels 0-2 (RFC 1961 section 4; 0 is curl's "none"). */
#define OPTS_GSS_LEVELS   3

enum socks4_mode {
    SOCKS4_AUTO = 0, /* allowed without password auth, refused with it */
    SOCKS4_ON,
    SOCKS4_OFF,
};

enum log_format {
    LOG_LOGFMT = 0,
    LOG_JSON,
};

enum relay_engine {
    RELAY_SPLICE = 0,
    RELAY_COPY,
    RELAY_AUTO, /* copy per direction until a read fills a buffer, then splice */
};

#define OPTS_LIMITS_LEN 512

struct opts {
    struct sockaddr_storage listen[OPTS_MAX_LISTEN];
    unsigned n_listen;
    unsigned shards;
    enum relay_engine relay;
    unsigned handshake_timeout_s;
    unsigned connect_timeout_s;
    unsigned
        happy_eyeballs_delay_ms; /* before the next address joins a connect; 0: one at a time */
    unsigned via_retry_s;        /* a failed parent (rule key via) is skipped this long; 0: never */
    unsigned idle_timeout_s;     /* 0: never */
    unsigned write_timeout_s;    /* relay bytes a destination takes none of this long: 0 never */
    unsigned max_conns;          /* whole process: all shards together */
    char resolvers[256];         /* c-ares "host:port,host:port" list; empty: /etc/resolv.conf */
    unsigned pipe_size;          /* bytes per splice pipe */
    unsigned pipe_size_max;      /* a bulk direction's pipe grows to this; <= pipe_size: never */
    unsigned pipe_bulk_budget;   /* bytes of such large pipes, all shards together */
    unsigned buf_size;           /* bytes per copy-engine buffer */
    unsigned buf_count;          /* copy-engine buffers per shard, a power of two */
    unsigned hs_slots;           /* handshake contexts per shard; 0: min(max_conns, 4096) */
    /* Client authentication, in preference order: "none", or "gssapi" and/or "password"
     * as a comma-separated list (options_auth_methods() reads it). */
    char auth[24];
    /* GSS-API (RFC 1961): the acceptor's service and keytab (empty: the library's default),
     * the client's name without its realm, and the protection levels that may be granted. */
    char gss_service[256];
    char gss_keytab[4096];
    bool gss_strip_realm;
    char gss_protection[8];    /* "LO-HI" or "N" within 0-2 (options_gss_levels()) */
    unsigned auth_fail_budget; /* per client address and shard; 0: no budget */
    /* Failed-login lockout (lockout.h), reloadable: thresholds (0: off) and seconds. */
    unsigned auth_lockout_failures, auth_lockout_address_failures;
    unsigned auth_lockout_window_s, auth_lockout_duration_s;
    enum socks4_mode socks4;
    bool http_connect; /* HTTP CONNECT requests on the SOCKS ports */
    unsigned bind_timeout_s;
    uint16_t bind_port_lo, bind_port_hi; /* 0, 0: any port */
    uint16_t udp_port_lo, udp_port_hi;
    unsigned udp_buffer; /* SO_RCVBUF/SO_SNDBUF of UDP association sockets; 0: the kernel's */
    struct sockaddr_storage udp_advertise; /* family AF_UNSPEC: the control connection's address */
    unsigned drain_timeout_s;
    unsigned upgrade_timeout_s; /* a new binary not serving this long after SIGUSR2 is killed */
    char upgrade_binary[4096];  /* what SIGUSR2 starts; "": this binary's path at start */
    unsigned ring_entries;      /* submission queue entries per shard ring, a power of two */
    unsigned busy_poll_us;      /* spin this long for more completions before sleeping; 0: never */
    unsigned defer_accept_s;    /* TCP_DEFER_ACCEPT on SOCKS listeners; 0: off */
    char users_file[4096];      /* the users file; "": none */
    char access_log[4096];      /* "stderr", "syslog", "off" or a file path */
    char pid_file[4096];        /* written once listening, removed at exit; "": none */
    enum log_format log_format;
    struct sockaddr_storage admin; /* family AF_UNSPEC: no admin endpoint */
    char admin_hosts[1024];      /* "a,b": names its Host may carry besides addresses, localhost */
    char admin_token_file[4096]; /* the bearer token's file; "": no token */
    char admin_socket[108];      /* a Unix socket path for the admin endpoint; "": none */
    char admin_socket_mode[8];   /* its mode, octal text: "0660" */
    /* Set by the loader from admin_token_file (never by a row): the token's digest
     * (admin_token_digest()), so the token itself is kept nowhere. */
    bool has_admin_token;
    unsigned char admin_token[32];
    char user[64], group[64]; /* drop to these after binding; empty: stay */
    bool close_removed_users; /* on reload, close tunnels of users no longer in the file */
    bool close_denied;        /* on reload, close tunnels the new rules deny */
    /* TCP liveness on both sockets of a tunnel (restart to change). */
    unsigned keepalive_idle_s; /* 0: no keepalive */
    unsigned keepalive_interval_s;
    unsigned keepalive_count;
    unsigned user_timeout_s; /* TCP_USER_TIMEOUT; 0: the kernel's default */
    /* Per client address on each shard (reloadable); 0: no limit. */
    unsigned client_max_handshakes; /* beyond it, waits last and may be evicted when contended */
    unsigned client_max_binds;
    unsigned client_max_udp;
    /* Limits (lim.h) as "key=value ..." words, checked when set (reloadable): every user's
     * unless its users-file line says otherwise, and each client address's. */
    char user_limits[OPTS_LIMITS_LEN];
    char client_limits[OPTS_LIMITS_LEN];
    /* Egress (egress.h): where tunnels leave from when no user or rule says (reloadable). */
    char egress[OPTS_EGRESS_LEN]; /* pool entries "a,b/64"; "": the kernel chooses */
    bool egress_fallback;         /* no pool address of the family: the kernel chooses */
    bool username_params;         /* "alice-session-ID[-ttl-N]" names a sticky session */
    unsigned session_ttl_s, session_ttl_max_s;
    char session_key[256]; /* secret of the sticky hash; the same on every node */
    /* Accounting and quotas (acctctl.h). */
    char state_file[4096];          /* quota counts and blocks kept across restarts; "": none */
    unsigned state_interval_s;      /* written at least this often (reloadable) */
    char accounting_log[4096];      /* JSON lines per user and interval; "off": none */
    unsigned accounting_interval_s; /* reloadable */
    unsigned metrics_users;         /* users with series of their own; 0: none (reloadable) */
    /* A fleet's shared state (fleet.h); restart to change. */
    char redis[160];                /* "IP:PORT" or "unix:/path"; "": no fleet */
    char redis_password_file[4096]; /* AUTH's password, read at start; "": none */
    char redis_prefix[64];          /* of every key */
    char redis_node[128];           /* this node's name in Redis; "": the host name */
    unsigned redis_interval_ms;     /* lease and quota rounds */
    unsigned redis_fallback;        /* 0: open, 1: closed (asks while Redis is away) */
    bool redis_users;               /* the users table is Redis's */
    bool seccomp;                   /* sandbox.h: the filter after start-up */
    /* Listener groups of the file: { address = ...; egress = "same" | [...];
     * proxy_protocol = true; from = [...]; mode = "transparent"; }. Kept by
     * address, not by index, so a command line that replaces the listeners drops nothing
     * silently and adds nothing wrongly. */
    struct opts_listen_out {
        struct sockaddr_storage addr;
        unsigned idx;                 /* its place in listen[] (a port 0 binds at start) */
        char egress[OPTS_EGRESS_LEN]; /* "same", pool entries, or "": the default */
        /* PROXY protocol (proxyproto.h): the balancer's header comes first, and only
         * from the networks in from ("a/24,b", never empty when proxy_protocol is on). */
        bool proxy_protocol;
        char from[OPTS_FROM_LEN];
        /* mode = "transparent": connections the kernel redirected (nftables redirect or
         * tproxy); the original destination is the request, no byte is read first. The
         * socket gets IP_TRANSPARENT at bind, so it is fixed until a restart. */
        bool transparent;
        /* auth = "none" on a transparent listener: its clients (who cannot authenticate)
         * may be admitted by the rules alone under auth = "password". */
        bool auth_none;
    } listen_out[OPTS_MAX_LISTEN];
    unsigned n_listen_out;
    /* Set by main() after binding, never by a file: the proxy's own listening and admin
     * addresses, ports resolved, which a CONNECT must not reach unless a rule names them. */
    struct sockaddr_storage self[OPTS_MAX_LISTEN + 1];
    unsigned n_self;
    /* Set by main() before binding, never by a file: listen[i] is mode = "transparent"
     * (its group's, matched by address as the policy does). Fixed until a restart. */
    bool listen_transparent[OPTS_MAX_LISTEN];
};

#endif
