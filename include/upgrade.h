/*
 * upgrade.h - the zero-downtime binary upgrade's mechanism: starting the new
 * binary with one end of a socket pair, handing it the listening sockets
 * (SCM_RIGHTS) and hearing that it serves. No policy: ctl_upgrade.c decides
 * when, main.c what the new process does with what it received.
 *
 * The protocol, over an AF_UNIX SOCK_SEQPACKET pair (message boundaries
 * kept), every message starting with struct upgrade_hdr:
 *   old -> new  UPGRADE_MSG_FDS    records (struct upgrade_rec) with as many fds in
 *                                  SCM_RIGHTS, at most UPGRADE_FDS_PER_MSG per message
 *   old -> new  UPGRADE_MSG_END    n = the number of records sent, arg = the old shard count
 *   new -> old  UPGRADE_MSG_READY  arg = the new pid: its shards run, the old may stop;
 *                                  n = UPGRADE_READY_* flags
 *   old -> new  UPGRADE_MSG_USED   at the old process's exit: the quota bytes each user
 *                                  used there since the upgrade began, then EOF
 * The new process finds its end in the environment, UPGRADE_ENV (a decimal fd).
 */
#ifndef RINGSOCKS_UPGRADE_H
#define RINGSOCKS_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#define UPGRADE_ENV         "RINGSOCKS_UPGRADE_FD"
/* The fd number the new process's end is dup2()ed to. */
#define UPGRADE_CHILD_FD    3
#define UPGRADE_MAGIC       0x52535550u /* "RSUP" */
/* Below SCM_MAX_FD (253). */
#define UPGRADE_FDS_PER_MSG 200

enum upgrade_msg {
    UPGRADE_MSG_FDS = 1,
    UPGRADE_MSG_END = 2,
    UPGRADE_MSG_READY = 3,
    UPGRADE_MSG_USED = 4,
};

/* READY's flags: the new process serves on the admin Unix socket it was handed (its file stays). */
#define UPGRADE_READY_ADMIN_UNIX 1u

/* The payload of a USED message: entries of u64 bytes, u16 name length, the name (no NUL). */
#define UPGRADE_USED_MAX (60 * 1024)
#define UPGRADE_NAME_MAX 1024

enum upgrade_kind {
    UPGRADE_FD_LISTEN = 1,     /* a SOCKS listener: addr, shard */
    UPGRADE_FD_ADMIN = 2,      /* the TCP admin endpoint: addr */
    UPGRADE_FD_ADMIN_UNIX = 3, /* the admin endpoint's Unix socket: path */
};

struct upgrade_hdr {
    uint32_t magic;
    uint32_t type; /* enum upgrade_msg */
    uint32_t n;    /* records that follow (FDS), records sent in all (END) */
    uint32_t arg;  /* END: the old shard count; READY: the new pid */
};

/* One handed-over socket as sent (the fd travels in SCM_RIGHTS, in record order). */
struct upgrade_rec {
    uint32_t kind;  /* enum upgrade_kind */
    uint32_t shard; /* UPGRADE_FD_LISTEN: the shard that held it */
    struct sockaddr_storage addr;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* ... and as received: the record with its fd (-1 once taken). */
struct upgrade_fd {
    int fd;
    struct upgrade_rec rec;
};

/* ---- pure parts */

/*
 * Take the fd of kind for the listen address want (and shard, for
 * UPGRADE_FD_LISTEN; path for UPGRADE_FD_ADMIN_UNIX, want NULL). An address
 * matches the same family, IP and port; want with port 0 (the command line's
 * "any port", which the old process resolved) matches the same IP with any
 * port, the first not taken. The fd is the caller's from here on (its entry
 * is set to -1). Returns it, or -1 when nothing matches.
 */
int upgrade_take(struct upgrade_fd *fds, size_t n, enum upgrade_kind kind,
                 const struct sockaddr *want, const char *path, unsigned shard);
/* Close every fd nobody took; returns how many there were. */
size_t upgrade_close_rest(struct upgrade_fd *fds, size_t n);
/*
 * Append one user's bytes to a USED payload p (*len bytes so far, cap in
 * all). false when it does not fit (send p and start again) or the name is
 * longer than UPGRADE_NAME_MAX (never the case for a users-file name).
 */
bool upgrade_used_add(uint8_t *p, size_t *len, size_t cap, const char *name, uint64_t bytes);
/*
 * Call fn(arg, name, bytes) for each entry of a USED payload. 0, or -EPROTO
 * for a payload cut in the middle of an entry (the entries before it count).
 */
int upgrade_used_parse(const uint8_t *p, size_t len,
                       void (*fn)(void *arg, const char *name, uint64_t bytes), void *arg);

/* ---- old process */

/*
 * At start, before anything can replace it: the path of the running binary
 * (/proc/self/exe, without the " (deleted)" the kernel appends once the file
 * is replaced). 0 or -errno.
 */
int upgrade_self_exe(char *buf, size_t cap);
/*
 * Start exe with argv and the environment plus UPGRADE_ENV=UPGRADE_CHILD_FD,
 * with child_fd as that fd, every signal unblocked and at its default:
 * posix_spawn(), not fork() in a threaded process. 0 and *pid, or -errno.
 */
int upgrade_spawn(const char *exe, char *const argv[], int child_fd, pid_t *pid);
/*
 * Send the records (each fd in the same SCM_RIGHTS batch as its record),
 * then UPGRADE_MSG_END with n_shards. sock blocks (with a send timeout set
 * by the caller). 0 or -errno.
 */
int upgrade_send_fds(int sock, const struct upgrade_fd *fds, size_t n, unsigned n_shards);
/*
 * One message from the new process, sock non-blocking: 1 with *pid and *flags on READY,
 * 0 on EOF (it closed its end: it exited or gave up), -EAGAIN nothing yet,
 * -EPROTO a message that is not READY, else -errno.
 */
int upgrade_recv_ready(int sock, pid_t *pid, unsigned *flags);

/* One USED message with payload p[0..len): sock blocks (a send timeout set by the caller). */
int upgrade_send_used(int sock, const uint8_t *p, size_t len);

/* ---- new process */

/*
 * The fd named by UPGRADE_ENV, removed from the environment (so nothing this
 * process starts inherits it); -1 when not set (a normal start) or invalid.
 */
int upgrade_child_fd(void);
/*
 * Receive every record until UPGRADE_MSG_END, waiting up to timeout_ms in
 * all: *out (malloc'ed; the caller frees it after upgrade_close_rest()),
 * *n, and the old shard count. 0, or -errno (-EPROTO: a bad message or
 * count) with every fd received closed.
 */
int upgrade_recv_fds(int sock, int timeout_ms, struct upgrade_fd **out, size_t *n,
                     unsigned *old_shards);
/* Tell the old process this one serves (flags: UPGRADE_READY_*). 0 or -errno. */
int upgrade_send_ready(int sock, unsigned flags);
/*
 * After READY: one message from the old process, sock non-blocking. 1 with
 * a USED payload in buf (cap at least UPGRADE_USED_MAX) and *len, 0 on EOF
 * (it exited), -EAGAIN nothing yet, -EPROTO another message, else -errno.
 */
int upgrade_recv_used(int sock, uint8_t *buf, size_t cap, size_t *len);

#endif
