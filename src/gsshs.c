/*
 * gsshs.c - SOCKS5 method 0x01 in the handshake (gsshs.h).
 *
 * One message at a time: read until gssframe says a whole one is in, hand
 * its token to the worker, write what it answers, and only then look at the
 * next. A client never has two of its messages answered at once (RFC 1961
 * is lock-step until the level is agreed), so one job, one input and one
 * output buffer per connection suffice. Both buffers are the connection's
 * own allocations, not the registered handshake slab: a Kerberos AP-REQ with
 * an Active Directory PAC is tens of KB (gssframe.h), the slab's input 8 KB.
 * The input grows to the size the frame's header announces, so a client
 * that says 65535 and sends nothing holds 64 KB only until the handshake
 * timeout.
 */
#include "gsshs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "gssframe.h"
#include "gssw.h"
#include "handshake_types.h"
#include "policy.h"
#include "ring.h"
#include "shard_types.h"
#include "socks5.h"

#define IN_FIRST 1024 /* the input's first size: the largest tokens grow it */

struct gsshs {
    struct gssw_sess *sess; /* NULL once handed over or ended */
    struct gssframe_sm sm;
    uint8_t *in;
    uint32_t in_len, in_off, in_cap;
    uint8_t *out;
    uint32_t out_len, out_off;
    bool reading, writing, at_worker;
    bool close_after; /* the abort is being written: close with c->end after it */
    uint8_t level;    /* agreed (PHASE_DATA, PHASE_CLEAR) */
    void (*done)(struct shard *sh, struct conn *c, const uint8_t *left, size_t n);
};

static void step(struct shard *sh, struct conn *c);

static void
end_session(struct shard *sh, struct gsshs *g)
{
    if (!g->sess)
        return;
    struct gssw_job *j = gssw_job_new(g->sess, GSSW_FREE, 0);
    /* Without memory for the job the session leaks rather than being freed here, where
     * its context may be in the worker's hands. */
    if (j)
        gssw_submit(sh, j);
    g->sess = NULL;
}

void
gsshs_release(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs ? c->hs->gss : NULL;
    if (!g)
        return;
    end_session(sh, g);
    free(g->in);
    free(g->out);
    free(g);
    c->hs->gss = NULL;
}

/* Queue bytes to the client: one message (and the method reply before the first). */
static bool
out_add(struct gsshs *g, const uint8_t *p, size_t n)
{
    uint8_t *o = realloc(g->out, g->out_len + n);
    if (!o)
        return false;
    memcpy(o + g->out_len, p, n);
    g->out = o;
    g->out_len += (uint32_t)n;
    return true;
}

static void
flush(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs->gss;
    if (g->writing || g->out_off == g->out_len)
        return;
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_GSS_WRITE, 0);
    io_uring_prep_send(sqe, c->cfd, g->out + g->out_off, g->out_len - g->out_off, MSG_NOSIGNAL);
    g->writing = true;
}

/* RFC 1961 section 3.8: "01 ff", then close (why goes to the access log). */
static void
abort_with(struct shard *sh, struct conn *c, enum conn_end why)
{
    struct gsshs *g = c->hs->gss;
    uint8_t a[GSSFRAME_ABORT_LEN];
    c->end = (uint8_t)why;
    end_session(sh, g);
    if (!out_add(g, a, gssframe_abort(a))) {
        conn_close(sh, c, why);
        return;
    }
    g->close_after = true;
    flush(sh, c);
}

static void
read_more(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs->gss;
    if (g->in_off) {
        memmove(g->in, g->in + g->in_off, g->in_len - g->in_off);
        g->in_len -= g->in_off;
        g->in_off = 0;
    }
    /* The header says how long the message is: room for all of it, no more. */
    uint32_t want = IN_FIRST;
    if (g->in_len >= GSSFRAME_HDR_LEN)
        want = GSSFRAME_HDR_LEN + ((uint32_t)g->in[2] << 8 | g->in[3]);
    if (want > g->in_cap) {
        uint8_t *p = realloc(g->in, want);
        if (!p) {
            abort_with(sh, c, END_RESOURCE);
            return;
        }
        g->in = p;
        g->in_cap = want;
    }
    if (g->in_len == g->in_cap) { /* cannot happen: a whole message would have parsed */
        abort_with(sh, c, END_PROTOCOL);
        return;
    }
    struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_GSS_READ, 0);
    io_uring_prep_recv(sqe, c->cfd, g->in + g->in_len, g->in_cap - g->in_len, 0);
    g->reading = true;
}

static void
submit(struct shard *sh, struct conn *c, uint8_t kind, const uint8_t *tok, size_t n, bool nec)
{
    struct gsshs *g = c->hs->gss;
    struct gssw_job *j = gssw_job_new(g->sess, kind, conn_ref(c, 0));
    if (!j) {
        abort_with(sh, c, END_RESOURCE);
        return;
    }
    memcpy(j->in, tok, n);
    j->in_len = (uint32_t)n;
    j->strip_realm = sh->pol->gss_strip_realm;
    j->levels = sh->pol->gss_levels;
    j->nec = nec;
    g->at_worker = true;
    gssw_submit(sh, j);
}

/* Levels 1 and 2: the client's socket goes to the worker, ours is a socketpair's end. */
static bool
protect(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs->gss;
    union sockaddr_inx local;
    int sp[2];
    size_t left = g->in_len - g->in_off;
    if (left > GSSACC_TOKEN_MAX) {
        abort_with(sh, c, END_PROTOCOL);
        return false;
    }
    /* Where the client reached us, kept before its socket is gone (egress, BIND, UDP). */
    conn_local(c, &local);
    struct gssw_job *j = gssw_job_new(g->sess, GSSW_PROTECT, conn_ref(c, 0));
    if (!j || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) == -1) {
        gssw_job_free(j);
        abort_with(sh, c, END_RESOURCE);
        return false;
    }
    /* A hang-up watch on the old socket would speak of a socket no longer ours. */
    if (c->flags & CONN_F_HUP_ARMED) {
        struct io_uring_sqe *sqe = conn_sqe(sh, c, OP_CANCEL, 0);
        io_uring_prep_cancel64(sqe, conn_ud(c, OP_HUP, 0), 0);
    }
    memcpy(j->in, g->in + g->in_off, left);
    j->in_len = (uint32_t)left;
    g->in_off = g->in_len;
    j->cfd = c->cfd;
    j->pfd = sp[1];
    c->cfd = sp[0];
    /* The tunnel takes the session; a UDP ASSOCIATE request would need it for its
     * datagrams, so the handshake keeps a reference until it knows (gssw.h). */
    gssw_sess_ref(g->sess);
    c->hs->gss_sess = g->sess;
    g->sess = NULL; /* the worker's now */
    gssw_submit(sh, j);
    return true;
}

/* The level reply is written: the request follows, as the level says. */
static void
finish(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs->gss;
    c->gss = (uint8_t)(g->level + 1);
    if (g->level != GSSFRAME_LEVEL_NONE) {
        if (!protect(sh, c))
            return;
    } else {
        end_session(sh, g);
    }
    void (*done)(struct shard *, struct conn *, const uint8_t *, size_t) = g->done;
    /* What the client sent after its level message (level 0) outlives this state: the
     * handshake copies it. */
    uint8_t *in = g->in;
    uint32_t off = g->in_off, left = g->in_len - g->in_off;
    g->in = NULL;
    gsshs_release(sh, c);
    done(sh, c, in + off, left);
    free(in);
}

/* Act on what is in: the next whole message, or read on. */
static void
step(struct shard *sh, struct conn *c)
{
    struct gsshs *g = c->hs->gss;
    if (g->at_worker || g->reading || g->writing || g->close_after)
        return;
    if (g->sm.phase == GSSFRAME_PHASE_DATA || g->sm.phase == GSSFRAME_PHASE_CLEAR) {
        finish(sh, c);
        return;
    }
    struct gssframe f;
    const uint8_t *p = g->in + g->in_off;
    ssize_t r = gssframe_sm_feed(&g->sm, &f, p, g->in_len - g->in_off);
    if (r == 0) {
        read_more(sh, c);
        return;
    }
    if (r < 0) {
        abort_with(sh, c, END_PROTOCOL);
        return;
    }
    g->in_off += (uint32_t)r;
    /* A context token, or the protection level: wrapped, or the NEC form's bare octet. */
    uint8_t kind = g->sm.phase == GSSFRAME_PHASE_CTX ? GSSW_ACCEPT : GSSW_LEVEL;
    submit(sh, c, kind, p + GSSFRAME_HDR_LEN, f.len, kind == GSSW_LEVEL && gssframe_is_nec(&f));
}

void
gsshs_start(struct shard *sh, struct conn *c, const uint8_t *p, size_t len,
            void (*done)(struct shard *sh, struct conn *c, const uint8_t *left, size_t n))
{
    uint8_t m[2];
    struct gsshs *g = calloc(1, sizeof(*g));
    if (!g) {
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    c->hs->gss = g;
    g->done = done;
    gssframe_sm_init(&g->sm);
    g->in_cap = len > IN_FIRST ? (uint32_t)len : IN_FIRST;
    g->in = malloc(g->in_cap);
    g->sess = sh->pol->gss_cred ? gssw_sess_new(sh->pol->gss_cred) : NULL;
    if (!g->in || !g->sess || !out_add(g, m, socks5_method_reply(m, SOCKS5_METHOD_GSSAPI))) {
        conn_close(sh, c, END_RESOURCE);
        return;
    }
    memcpy(g->in, p, len);
    g->in_len = (uint32_t)len;
    flush(sh, c);
    step(sh, c);
}

void
gsshs_on_cqe(struct shard *sh, struct conn *c, const struct io_uring_cqe *cqe)
{
    struct gsshs *g = c->hs ? c->hs->gss : NULL;
    int res = cqe->res;
    if (c->state == CONN_CLOSING || !g)
        return;
    if (ud_op(cqe->user_data) == OP_GSS_READ) {
        g->reading = false;
        if (res <= 0) {
            conn_close(sh, c, res == 0 ? END_CLIENT_EOF : END_CLIENT_ERR);
            return;
        }
        g->in_len += (uint32_t)res;
        step(sh, c);
        return;
    }
    g->writing = false;
    if (res <= 0) {
        conn_close(sh, c, END_CLIENT_ERR);
        return;
    }
    g->out_off += (uint32_t)res;
    if (g->out_off < g->out_len) {
        flush(sh, c);
        return;
    }
    g->out_off = g->out_len = 0;
    if (g->close_after) {
        conn_close(sh, c, (enum conn_end)c->end);
        return;
    }
    step(sh, c);
}

/* The token the worker answered with, framed as mtyp (the level reply bare in NEC form). */
static bool
answer_token(struct gsshs *g, uint8_t mtyp, const struct gssw_job *j)
{
    uint8_t h[GSSFRAME_HDR_LEN];
    if (gssframe_header(h, mtyp, j->out_len) != GSSFRAME_HDR_LEN)
        return false;
    return out_add(g, h, sizeof(h)) && out_add(g, j->out, j->out_len);
}

/* An answer dealt with: j goes; the reply queued (ok) is written and the next message read,
 * or (no memory for the reply, the name) the client gets the abort. */
static void
answered(struct shard *sh, struct conn *c, struct gssw_job *j, bool ok)
{
    gssw_job_free(j);
    if (!ok) {
        abort_with(sh, c, END_RESOURCE);
        return;
    }
    flush(sh, c);
    step(sh, c);
}

void
gsshs_on_answer(struct shard *sh, struct conn *c, struct gssw_job *j)
{
    struct gsshs *g = c->hs ? c->hs->gss : NULL;
    if (!g || !g->at_worker || c->state != CONN_HANDSHAKE) {
        gssw_job_free(j);
        return;
    }
    g->at_worker = false;
    if (j->kind == GSSW_ACCEPT) {
        if (j->res < 0) {
            STAT_INC(sh->st.auth_failures);
            gssw_job_free(j);
            abort_with(sh, c, END_AUTH_FAILED);
            return;
        }
        /* Section 3.3: the last token (the client's mutual authentication) goes out even
         * when the context is complete; an empty one says "complete" where there is none. */
        bool ok = (j->out_len == 0 && j->res == 0) || answer_token(g, GSSFRAME_MTYP_CTX, j);
        if (ok && j->res == 1) {
            gssframe_sm_complete(&g->sm);
            free(c->user);
            c->user = strdup(j->name); /* NULL when out of memory: refused below */
            ok = c->user != NULL;
        }
        answered(sh, c, j, ok);
        return;
    }
    /* GSSW_LEVEL */
    if (j->res < 0) {
        gssw_job_free(j);
        abort_with(sh, c, END_AUTH_FAILED);
        return;
    }
    g->level = (uint8_t)j->res;
    answered(sh, c, j,
             answer_token(g, GSSFRAME_MTYP_LEVEL, j) && gssframe_sm_agreed(&g->sm, g->level));
}
