/*
 * ringsocksctl - the operator's command line for a running ringsocks: the
 * admin API's calls (status, metrics, reload, drain, upgrade, connections, users) and
 * the users file's edits (users add, passwd, del, set) that hash the password
 * with yescrypt, replace the file atomically under a lock, then reload.
 *
 * One thread, one request: a plain HTTP/1.1 client over TCP or a Unix
 * socket (Connection: close, 5 s without progress is a timeout). It never
 * writes an empty password's hash, and never leaves a users file half
 * written: a temp file beside it, the same mode and owner, fsync, the
 * server's own parser run over it (users_load_flags()), rename, fsync of the
 * directory.
 *
 * Exit status: 0 done (2xx); 1 the server or the file refused (another
 * HTTP status, a name taken or unknown, a reload that failed); 2 usage,
 * connection or system errors.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "users.h"
#include "usersedit.h"

#define CTL_DEFAULT_ADMIN "http://127.0.0.1:9180"
#define CTL_TIMEOUT_MS    5000
#define CTL_BODY_MAX      (256u << 20)
#define CTL_PASSWORD_MAX  1024

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
    "usage: ringsocksctl [--admin URL] [--token-file FILE] [-c CONFIG] COMMAND [ARGS]\n"
    "  --admin URL        http://HOST:PORT or unix:/PATH (default " CTL_DEFAULT_ADMIN ", or what\n"
    "                     CONFIG's admin_socket or admin says)\n"
    "  --token-file FILE  the bearer token (else $RINGSOCKS_ADMIN_TOKEN_FILE, else CONFIG's\n"
    "                     admin_token_file)\n"
    "  -c CONFIG          read admin, admin_socket, admin_token_file and users from the\n"
    "                     ringsocks configuration file\n"
    "commands:\n"
    "  status | metrics | reload | drain | upgrade\n"
    "  connections [--user U] [--client ADDR] [--dest TEXT] [--limit N]\n"
    "  close ID | disconnect USER | block USER | unblock USER\n"
    "  users list | users show NAME\n"
    "  users add NAME [--stdin] [ATTR=VALUE...]    users passwd NAME [--stdin]\n"
    "  users del NAME                              users set NAME ATTR=VALUE...\n"
    "  (users add/passwd/del/set: [--users FILE] [--no-reload])\n";

struct ctl_opts {
    const char *admin;      /* --admin */
    const char *token_file; /* --token-file, env, config */
    const char *config;     /* -c */
    const char *users;      /* --users, config */
    bool username_params;   /* config: names with -session- / -ttl- are refused */
    bool no_reload;
    char admin_buf[PATH_MAX + 8];
    char token_buf[PATH_MAX];
    char users_buf[PATH_MAX];
};

static void
die_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("ringsocksctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(ringsocksctl --help lists the commands)\n", stderr);
    exit(EXIT_USAGE);
}

static int
fail(int status, const char *fmt, ...)
{
    va_list ap;
    fputs("ringsocksctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

/* ---- the configuration file: the few settings the CLI needs */

static void
copy_setting(const config_t *cfg, const char *key, char *buf, size_t cap, const char **dst)
{
    const char *v;
    if (config_lookup_string(cfg, key, &v) == CONFIG_TRUE && v[0]) {
        snprintf(buf, cap, "%s", v);
        *dst = buf;
    }
}

static int
read_config(struct ctl_opts *o)
{
    config_t cfg;
    const char *v;
    int b;
    config_init(&cfg);
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", o->config);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        config_set_include_dir(&cfg, dir[0] ? dir : "/");
    }
    if (config_read_file(&cfg, o->config) != CONFIG_TRUE) {
        int st = config_error_type(&cfg) == CONFIG_ERR_FILE_IO
                     ? fail(EXIT_USAGE, "%s: %s", o->config, strerror(errno))
                     : fail(EXIT_USAGE, "%s:%d: %s",
                            config_error_file(&cfg) ? config_error_file(&cfg) : o->config,
                            config_error_line(&cfg), config_error_text(&cfg));
        config_destroy(&cfg);
        return st;
    }
    if (!o->admin) {
        if (config_lookup_string(&cfg, "admin_socket", &v) == CONFIG_TRUE && v[0]) {
            snprintf(o->admin_buf, sizeof(o->admin_buf), "unix:%s", v);
            o->admin = o->admin_buf;
        } else if (config_lookup_string(&cfg, "admin", &v) == CONFIG_TRUE) {
            if (strcmp(v, "off") == 0) {
                config_destroy(&cfg);
                return fail(EXIT_USAGE, "%s: admin = \"off\" and no admin_socket: no endpoint",
                            o->config);
            }
            snprintf(o->admin_buf, sizeof(o->admin_buf), "http://%s", v);
            o->admin = o->admin_buf;
        }
    }
    if (!o->token_file)
        copy_setting(&cfg, "admin_token_file", o->token_buf, sizeof(o->token_buf), &o->token_file);
    if (!o->users)
        copy_setting(&cfg, "users", o->users_buf, sizeof(o->users_buf), &o->users);
    if (config_lookup_bool(&cfg, "username_params", &b) == CONFIG_TRUE)
        o->username_params = b;
    config_destroy(&cfg);
    return 0;
}

/* ---- the HTTP client */

struct target {
    bool unix_sock;
    char host[256]; /* TCP: the host as written (IPv6 without brackets) */
    char port[8];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char host_header[300];
};

static int
parse_admin(const char *url, struct target *t)
{
    memset(t, 0, sizeof(*t));
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (p[0] != '/' || strlen(p) >= sizeof(t->path))
            return -EINVAL;
        t->unix_sock = true;
        snprintf(t->path, sizeof(t->path), "%s", p);
        snprintf(t->host_header, sizeof(t->host_header), "localhost");
        return 0;
    }
    if (strncmp(url, "http://", 7) == 0)
        url += 7;
    size_t n = strcspn(url, "/");
    if (url[n] && strcmp(url + n, "/") != 0)
        return -EINVAL;
    const char *colon;
    if (url[0] == '[') {
        const char *rb = memchr(url, ']', n);
        if (!rb || rb[1] != ':')
            return -EINVAL;
        snprintf(t->host, sizeof(t->host), "%.*s", (int)(rb - url - 1), url + 1);
        colon = rb + 1;
    } else {
        colon = memchr(url, ':', n);
        if (!colon)
            return -EINVAL;
        snprintf(t->host, sizeof(t->host), "%.*s", (int)(colon - url), url);
    }
    size_t plen = (size_t)(url + n - colon - 1);
    if (!t->host[0] || plen == 0 || plen >= sizeof(t->port) ||
        strspn(colon + 1, "0123456789") < plen)
        return -EINVAL;
    snprintf(t->port, sizeof(t->port), "%.*s", (int)plen, colon + 1);
    snprintf(t->host_header, sizeof(t->host_header), "%.*s", (int)n, url);
    return 0;
}

static int
wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, CTL_TIMEOUT_MS);
        if (r == 1)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

/* A connected non-blocking socket, or -errno with why. */
static int
dial(const struct target *t, char *why, size_t cap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    const struct sockaddr *sa = (const struct sockaddr *)&sun;
    socklen_t salen = sizeof(sun);
    int family = AF_UNIX, fd = -1, ret;

    if (t->unix_sock) {
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", t->path);
    } else {
        int g = getaddrinfo(t->host, t->port, &hints, &ai);
        if (g != 0) {
            snprintf(why, cap, "%.100s: %s", t->host, gai_strerror(g));
            return -EINVAL;
        }
        sa = ai->ai_addr;
        salen = ai->ai_addrlen;
        family = ai->ai_family;
    }
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        ret = -errno;
        goto out;
    }
    if (connect(fd, sa, salen) == -1) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            ret = -errno;
            goto out;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        ret = wait_fd(fd, POLLOUT);
        if (ret == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
            ret = -soerr;
        if (ret < 0)
            goto out;
    }
    ret = fd;
    fd = -1;
out:
    if (ret < 0)
        snprintf(why, cap, "%s", strerror(-ret));
    if (fd >= 0)
        close(fd);
    if (ai)
        freeaddrinfo(ai);
    return ret;
}

struct reply {
    int status;
    char reason[64];
    char *body; /* NUL-terminated */
    size_t len;
};

/*
 * One request: method path (already percent-encoded) to the admin endpoint.
 * 0 with the reply, or EXIT_USAGE after saying why (connection, timeout,
 * not HTTP).
 */
static int
http_call(const struct ctl_opts *o, const char *method, const char *path, struct reply *r)
{
    struct target t;
    char why[256], token[ADMIN_TOKEN_MAX + 1] = "", req[ADMIN_TOKEN_MAX + 1024];
    const char *admin = o->admin ? o->admin : CTL_DEFAULT_ADMIN;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ret = EXIT_USAGE, fd = -1;

    memset(r, 0, sizeof(*r));
    if (parse_admin(admin, &t) < 0)
        return fail(EXIT_USAGE, "--admin %s: not http://HOST:PORT or unix:/PATH", admin);
    if (o->token_file &&
        admin_token_load(o->token_file, token, sizeof(token), why, sizeof(why)) < 0)
        return fail(EXIT_USAGE, "token file %s", why);
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ringsocksctl\r\n%s%s%s"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     method, path, t.host_header, token[0] ? "Authorization: Bearer " : "", token,
                     token[0] ? "\r\n" : "");
    explicit_bzero(token, sizeof(token));
    if (n < 0 || (size_t)n >= sizeof(req))
        return fail(EXIT_USAGE, "request too long");
    fd = dial(&t, why, sizeof(why));
    if (fd < 0) {
        fail(EXIT_USAGE, "%s: %s", admin, why);
        goto out;
    }
    for (size_t sent = 0; sent < (size_t)n;) {
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w >= 0) {
            sent += (size_t)w;
            continue;
        }
        int err = errno == EAGAIN ? -wait_fd(fd, POLLOUT) : errno == EINTR ? 0 : errno;
        if (err) {
            fail(EXIT_USAGE, "%s: sending: %s", admin, strerror(err));
            goto out;
        }
    }
    explicit_bzero(req, sizeof(req));
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = cap <= CTL_BODY_MAX ? realloc(buf, cap) : NULL;
            if (!nb) {
                fail(EXIT_USAGE, "%s: the answer is too large", admin);
                goto out;
            }
            buf = nb;
        }
        ssize_t got = recv(fd, buf + len, cap - len - 1, 0);
        if (got > 0) {
            len += (size_t)got;
            continue;
        }
        if (got == 0)
            break;
        int err = errno == EAGAIN ? -wait_fd(fd, POLLIN) : errno == EINTR ? 0 : errno;
        if (err) {
            fail(EXIT_USAGE, "%s: %s %s: %s", admin, method, path,
                 err == ETIMEDOUT ? "no answer within 5 s" : strerror(err));
            goto out;
        }
    }
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.%*1[01] %3d %63[^\r]", &r->status, r->reason) < 1) {
        fail(EXIT_USAGE, "%s: %s %s: not an HTTP answer", admin, method, path);
        goto out;
    }
    r->len = len - (size_t)(end + 4 - buf);
    r->body = malloc(r->len + 1);
    if (!r->body) {
        fail(EXIT_USAGE, "out of memory");
        goto out;
    }
    memcpy(r->body, end + 4, r->len + 1);
    ret = 0;
out:
    explicit_bzero(req, sizeof(req));
    if (fd >= 0)
        close(fd);
    free(buf);
    return ret;
}

/* Call, print the body (2xx: stdout; else the status and body on stderr). */
static int
call_print(const struct ctl_opts *o, const char *method, const char *path)
{
    struct reply r;
    int ret = http_call(o, method, path, &r);
    if (ret)
        return ret;
    if (r.status >= 200 && r.status < 300) {
        fwrite(r.body, 1, r.len, stdout);
        if (r.len && r.body[r.len - 1] != '\n')
            putchar('\n');
        ret = 0;
    } else {
        while (r.len && r.body[r.len - 1] == '\n')
            r.body[--r.len] = '\0';
        ret = fail(EXIT_REFUSED, "%s %s: %d %s%s%s", method, path, r.status, r.reason,
                   r.len ? ": " : "", r.body);
    }
    free(r.body);
    return fflush(stdout) == 0 ? ret : EXIT_USAGE;
}

/* s percent-encoded (RFC 3986 unreserved bytes kept) onto buf[*used..cap). */
static int
put_encoded(char *buf, size_t cap, size_t *used, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || strchr("-._~", *p);
        if (*used + 4 > cap)
            return -ENAMETOOLONG;
        if (keep) {
            buf[(*used)++] = (char)*p;
        } else {
            buf[(*used)++] = '%';
            buf[(*used)++] = hex[*p >> 4];
            buf[(*used)++] = hex[*p & 15];
        }
    }
    buf[*used] = '\0';
    return 0;
}

/* "/users/NAME/action" (action NULL: "/users/NAME") and call it. */
static int
call_named(const struct ctl_opts *o, const char *method, const char *base, const char *name,
           const char *action)
{
    char path[ADMIN_PATH_MAX];
    size_t used = (size_t)snprintf(path, sizeof(path), "%s/", base);
    if (put_encoded(path, sizeof(path), &used, name) < 0 ||
        used + (action ? strlen(action) + 1 : 0) >= sizeof(path))
        die_usage("'%s' is too long for a request", name);
    if (action)
        snprintf(path + used, sizeof(path) - used, "/%s", action);
    return call_print(o, method, path);
}

static int
cmd_connections(const struct ctl_opts *o, int argc, char **argv)
{
    static const char *const keys[] = {"user", "client", "dest", "limit"};
    char path[ADMIN_PATH_MAX] = "/connections";
    size_t used = strlen(path);
    for (int i = 0; i < argc; i += 2) {
        size_t k = 0;
        while (k < 4 && !(strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, keys[k]) == 0))
            k++;
        if (k == 4 || i + 1 == argc)
            die_usage("connections: %s %s", argv[i],
                      k == 4 ? "is not --user, --client, --dest or --limit" : "needs a value");
        if (used + strlen(keys[k]) + 3 >= sizeof(path))
            die_usage("connections: the filters are too long");
        used += (size_t)snprintf(path + used, sizeof(path) - used, "%c%s=", i ? '&' : '?', keys[k]);
        if (put_encoded(path, sizeof(path), &used, argv[i + 1]) < 0)
            die_usage("connections: the filters are too long");
    }
    return call_print(o, "GET", path);
}

/* ---- passwords */

static struct termios tty_saved;
static int tty_fd = -1;

static void
tty_restore(int sig)
{
    if (tty_fd >= 0)
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    if (sig) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/* One line from fd into buf (cap with the NUL), line end dropped: its length, or -errno. */
static int
read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            return -errno;
        if (r == 0 || ch == '\n')
            break;
        if (n + 1 >= cap)
            return -E2BIG;
        buf[n++] = ch;
    }
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (int)n;
}

static int
prompt(const char *text, char *buf, size_t cap)
{
    struct termios t = tty_saved;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    if (write(tty_fd, text, strlen(text)) < 0 || tcsetattr(tty_fd, TCSAFLUSH, &t) == -1)
        return -errno;
    int n = read_line(tty_fd, buf, cap);
    tty_restore(0);
    if (write(tty_fd, "\n", 1) < 0)
        return -errno;
    return n;
}

/* The new password, from stdin or twice from the terminal: 0, or an exit status after saying. */
static int
get_password(const char *name, bool from_stdin, char *pw, size_t cap)
{
    int n;
    if (from_stdin) {
        n = read_line(STDIN_FILENO, pw, cap);
        if (n < 0)
            return fail(EXIT_USAGE, "reading the password from stdin: %s",
                        n == -E2BIG ? "longer than 1023 bytes" : strerror(-n));
        if (n == 0)
            return fail(EXIT_REFUSED, "empty password refused (stdin held an empty line)");
        return 0;
    }
    tty_fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (tty_fd == -1 || tcgetattr(tty_fd, &tty_saved) == -1)
        return fail(EXIT_USAGE, "no terminal to ask for the password (%s): use --stdin",
                    strerror(errno));
    signal(SIGINT, tty_restore);
    signal(SIGTERM, tty_restore);
    signal(SIGHUP, tty_restore);
    char again[CTL_PASSWORD_MAX], text[300];
    snprintf(text, sizeof(text), "New password for %s: ", name);
    int status = 0;
    if ((n = prompt(text, pw, cap)) < 0)
        status = fail(EXIT_USAGE, "reading the password: %s", strerror(-n));
    else if (n == 0)
        status = fail(EXIT_REFUSED, "empty password refused");
    else if ((n = prompt("Again: ", again, sizeof(again))) < 0)
        status = fail(EXIT_USAGE, "reading the password: %s", strerror(-n));
    else if (strcmp(pw, again) != 0)
        status = fail(EXIT_REFUSED, "the passwords differ; nothing changed");
    explicit_bzero(again, sizeof(again));
    close(tty_fd);
    tty_fd = -1;
    return status;
}

/* yescrypt through libcrypt: "$y$..." into hash (CRYPT_OUTPUT_SIZE), or an exit status. */
static int
hash_password(const char *pw, char *hash, size_t cap)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    int status = 0;
    if (!cd)
        return fail(EXIT_USAGE, "out of memory");
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt))) {
        status = fail(EXIT_USAGE, "crypt_gensalt_rn($y$): %s", strerror(errno));
    } else {
        const char *h = crypt_rn(pw, salt, cd, sizeof(*cd));
        if (!h || h[0] == '*' || strncmp(h, "$y$", 3) != 0 || strlen(h) >= cap)
            status = fail(EXIT_USAGE, "crypt_rn: no yescrypt hash (%s)", strerror(errno));
        else
            snprintf(hash, cap, "%s", h);
    }
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return status;
}

/* ---- the users file */

/* The whole of fd into *buf (malloc'ed, NUL-terminated): its length, or -errno. */
static ssize_t
slurp(int fd, char **buf)
{
    size_t len = 0, cap = 65536;
    char *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    for (;;) {
        if (len + 1 == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + len, cap - len - 1);
        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1) {
            int err = errno;
            free(b);
            return -err;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    b[len] = '\0';
    *buf = b;
    return (ssize_t)len;
}

/*
 * Open path and hold flock(LOCK_EX) on the file that is at path now (a
 * rename by another run while we waited replaces it: lock the new one).
 */
static int
lock_users(const char *path)
{
    for (;;) {
        struct stat a, b;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd == -1)
            return -errno;
        if (flock(fd, LOCK_EX) == -1 || fstat(fd, &a) == -1) {
            int err = errno;
            close(fd);
            return -err;
        }
        if (stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            return fd;
        close(fd);
    }
}

static void
replace_all(char *s, size_t cap, const char *from, const char *to)
{
    char out[8192];
    size_t used = 0, flen = strlen(from);
    for (const char *p = s; *p && used + 1 < sizeof(out);) {
        if (flen && strncmp(p, from, flen) == 0) {
            used += (size_t)snprintf(out + used, sizeof(out) - used, "%s", to);
            p += flen;
        } else {
            out[used++] = *p++;
        }
    }
    out[used < sizeof(out) ? used : sizeof(out) - 1] = '\0';
    snprintf(s, cap, "%s", out);
}

/*
 * Write text as the new content of path (whose fd st describes): a temp file
 * beside it with its mode and owner, checked by the server's parser, fsync,
 * rename, fsync of the directory. 0 or an exit status after saying why.
 */
static int
write_users(const struct ctl_opts *o, const char *path, const struct stat *st, const char *text,
            size_t len)
{
    char tmp[PATH_MAX], dir[PATH_MAX], err[8192];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        snprintf(dir, sizeof(dir), ".");
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.ringsocksctl.XXXXXX", path) >= sizeof(tmp))
        return fail(EXIT_USAGE, "%s: path too long", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd == -1)
        return fail(EXIT_USAGE, "%s: cannot create a temp file beside it: %s", path,
                    strerror(errno));
    int status = EXIT_USAGE;
    const char *what = "fchown";
    if (fchown(fd, st->st_uid, st->st_gid) == -1 &&
        (st->st_uid != geteuid() || st->st_gid != getegid()))
        goto sys;
    what = "fchmod";
    if (fchmod(fd, st->st_mode & 07777) == -1)
        goto sys;
    what = "write";
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w == -1 && errno == EINTR)
            continue;
        if (w == -1)
            goto sys;
        off += (size_t)w;
    }
    what = "fsync";
    if (fsync(fd) == -1)
        goto sys;
    /* The server's own reading of the result, before it replaces anything. */
    struct users *u =
        users_load_flags(tmp, o->username_params ? USERS_F_PARAMS : 0, err, sizeof(err));
    if (!u) {
        replace_all(err, sizeof(err), tmp, path);
        status = fail(EXIT_REFUSED, "%s; nothing changed", err);
        goto out;
    }
    users_free(u);
    what = "rename";
    if (rename(tmp, path) == -1)
        goto sys;
    close(fd);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1 || fsync(fd) == -1) {
        fail(EXIT_USAGE, "%s: fsync: %s (the file is replaced)", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return EXIT_USAGE;
    }
    close(fd);
    return 0;
sys:
    status = fail(EXIT_USAGE, "%s: %s of the temp file: %s; nothing changed", path, what,
                  strerror(errno));
out:
    unlink(tmp);
    close(fd);
    return status;
}

/* Edit the users file under its lock. */
static int
edit_users(const struct ctl_opts *o, enum usersedit_op op, const char *name, const char *hash,
           const char *attrs)
{
    char *in = NULL, *out = NULL;
    size_t outlen = 0;
    unsigned line;
    struct stat st;
    int status;
    int fd = lock_users(o->users);
    if (fd < 0)
        return fail(EXIT_USAGE, "%s: %s", o->users, strerror(-fd));
    ssize_t len = fstat(fd, &st) == 0 ? slurp(fd, &in) : -errno;
    if (len < 0) {
        status = fail(EXIT_USAGE, "%s: %s", o->users, strerror((int)-len));
        goto out;
    }
    int ret = usersedit_apply(in, (size_t)len, op, name, hash, attrs, &out, &outlen, &line);
    if (ret == -EEXIST)
        status = fail(EXIT_REFUSED, "%s:%u: user '%s' exists (users passwd changes a password)",
                      o->users, line, name);
    else if (ret == -ENOENT)
        status = fail(EXIT_REFUSED, "%s: no user '%s'", o->users, name);
    else if (ret < 0)
        status = fail(EXIT_USAGE, "%s: %s", o->users, strerror(-ret));
    else
        status = write_users(o, o->users, &st, out, outlen);
    if (status == 0)
        fprintf(stderr, "ringsocksctl: %s:%u: %s %s\n", o->users, line, name,
                op == USERSEDIT_ADD      ? "added"
                : op == USERSEDIT_PASSWD ? "has a new password"
                : op == USERSEDIT_DEL    ? "removed"
                                         : "changed");
out:
    close(fd);
    free(in);
    free(out);
    return status;
}

static int
reload_after_edit(const struct ctl_opts *o)
{
    struct reply r;
    if (o->no_reload)
        return 0;
    if (http_call(o, "POST", "/reload", &r)) {
        fprintf(stderr, "ringsocksctl: the users file is edited; reload it with SIGHUP or "
                        "ringsocksctl reload\n");
        return EXIT_USAGE;
    }
    int status = 0;
    while (r.len && r.body[r.len - 1] == '\n')
        r.body[--r.len] = '\0';
    if (r.status >= 200 && r.status < 300)
        fprintf(stderr, "ringsocksctl: %s\n", r.body);
    else
        status = fail(EXIT_REFUSED, "the users file is edited, but the reload failed: %d %s: %s",
                      r.status, r.reason, r.body);
    free(r.body);
    return status;
}

static int
cmd_users_edit(struct ctl_opts *o, const char *sub, int argc, char **argv)
{
    enum usersedit_op op = strcmp(sub, "add") == 0      ? USERSEDIT_ADD
                           : strcmp(sub, "passwd") == 0 ? USERSEDIT_PASSWD
                           : strcmp(sub, "del") == 0    ? USERSEDIT_DEL
                                                        : USERSEDIT_SET;
    const char *name = NULL, *why;
    char attrs[4096] = "";
    size_t used = 0;
    bool from_stdin = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--stdin") == 0 && (op == USERSEDIT_ADD || op == USERSEDIT_PASSWD)) {
            from_stdin = true;
        } else if (strcmp(argv[i], "--no-reload") == 0) {
            o->no_reload = true;
        } else if (strcmp(argv[i], "--users") == 0 && i + 1 < argc) {
            o->users = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            die_usage("users %s: unknown option %s", sub, argv[i]);
        } else if (!name) {
            name = argv[i];
        } else if (op == USERSEDIT_ADD || op == USERSEDIT_SET) {
            if ((why = usersedit_attr_problem(argv[i])))
                die_usage("users %s: attribute '%s' %s", sub, argv[i], why);
            if (used + strlen(argv[i]) + 2 > sizeof(attrs))
                die_usage("users %s: the attributes are too long", sub);
            used += (size_t)snprintf(attrs + used, sizeof(attrs) - used, "%s%s", used ? " " : "",
                                     argv[i]);
        } else {
            die_usage("users %s: one NAME only", sub);
        }
    }
    if (!name)
        die_usage("users %s: which user?", sub);
    if (op == USERSEDIT_SET && !attrs[0])
        die_usage("users set: no ATTR=VALUE given");
    if ((why = usersedit_name_problem(name)))
        die_usage("users %s: the name '%s' %s", sub, name, why);
    if (!o->users)
        die_usage("users %s: which users file? (--users FILE, or -c CONFIG with users = ...)", sub);

    char pw[CTL_PASSWORD_MAX], hash[CRYPT_OUTPUT_SIZE] = "";
    int status = 0;
    if (op == USERSEDIT_ADD || op == USERSEDIT_PASSWD) {
        /* Refuse before asking for a password the edit would not use. */
        char *in = NULL, *out = NULL;
        size_t outlen;
        unsigned line;
        int fd = open(o->users, O_RDONLY | O_CLOEXEC);
        if (fd == -1)
            return fail(EXIT_USAGE, "%s: %s", o->users, strerror(errno));
        ssize_t len = slurp(fd, &in);
        close(fd);
        if (len < 0)
            return fail(EXIT_USAGE, "%s: %s", o->users, strerror((int)-len));
        int ret = usersedit_apply(in, (size_t)len, op, name, "x", attrs, &out, &outlen, &line);
        free(in);
        free(out);
        if (ret == -EEXIST)
            return fail(EXIT_REFUSED, "%s:%u: user '%s' exists (users passwd changes a password)",
                        o->users, line, name);
        if (ret == -ENOENT)
            return fail(EXIT_REFUSED, "%s: no user '%s'", o->users, name);
        status = get_password(name, from_stdin, pw, sizeof(pw));
        if (status == 0)
            status = hash_password(pw, hash, sizeof(hash));
        explicit_bzero(pw, sizeof(pw));
        if (status)
            return status;
    }
    status = edit_users(o, op, name, hash, attrs);
    return status ? status : reload_after_edit(o);
}

static int
cmd_users(struct ctl_opts *o, int argc, char **argv)
{
    if (argc < 1)
        die_usage("users: list, show, add, passwd, del or set?");
    const char *sub = argv[0];
    if (strcmp(sub, "list") == 0 && argc == 1)
        return call_print(o, "GET", "/users");
    if (strcmp(sub, "show") == 0 && argc == 2)
        return call_named(o, "GET", "/users", argv[1], NULL);
    if (strcmp(sub, "add") == 0 || strcmp(sub, "passwd") == 0 || strcmp(sub, "del") == 0 ||
        strcmp(sub, "set") == 0)
        return cmd_users_edit(o, sub, argc - 1, argv + 1);
    die_usage("users %s: not a users command, or the wrong arguments", sub);
    return EXIT_USAGE;
}

int
main(int argc, char **argv)
{
    struct ctl_opts o = {0};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (i + 1 == argc)
            die_usage("%s needs a value", a);
        if (strcmp(a, "--admin") == 0)
            o.admin = argv[++i];
        else if (strcmp(a, "--token-file") == 0)
            o.token_file = argv[++i];
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            o.config = argv[++i];
        else if (strcmp(a, "--users") == 0)
            o.users = argv[++i];
        else
            die_usage("unknown option %s", a);
    }
    if (i == argc)
        die_usage("no command");
    if (!o.token_file && getenv("RINGSOCKS_ADMIN_TOKEN_FILE") &&
        getenv("RINGSOCKS_ADMIN_TOKEN_FILE")[0])
        o.token_file = getenv("RINGSOCKS_ADMIN_TOKEN_FILE");
    if (o.config) {
        int st = read_config(&o);
        if (st)
            return st;
    }
    const char *cmd = argv[i++];
    int left = argc - i;
    static const struct {
        const char *name, *method, *path;
    } plain[] = {
        {"status", "GET", "/healthz"},   {"metrics", "GET", "/metrics"},
        {"reload", "POST", "/reload"},   {"drain", "POST", "/drain"},
        {"upgrade", "POST", "/upgrade"},
    };
    for (size_t k = 0; k < sizeof(plain) / sizeof(plain[0]); k++) {
        if (strcmp(cmd, plain[k].name) != 0)
            continue;
        if (left)
            die_usage("%s takes no arguments", cmd);
        return call_print(&o, plain[k].method, plain[k].path);
    }
    if (strcmp(cmd, "connections") == 0)
        return cmd_connections(&o, left, argv + i);
    if (strcmp(cmd, "close") == 0 && left == 1)
        return call_named(&o, "POST", "/connections", argv[i], "close");
    if ((strcmp(cmd, "disconnect") == 0 || strcmp(cmd, "block") == 0 ||
         strcmp(cmd, "unblock") == 0) &&
        left == 1)
        return call_named(&o, "POST", "/users", argv[i], cmd);
    if (strcmp(cmd, "users") == 0)
        return cmd_users(&o, left, argv + i);
    die_usage("%s: not a command, or the wrong arguments", cmd);
    return EXIT_USAGE;
}
