/*
 * gssacc.h - the GSS-API acceptor (RFC 1961, SOCKS5 method 0x01; groundwork
 * for issue #15): a thin wrapper over MIT Kerberos' libgssapi_krb5. It holds
 * the service's credential (a principal's keys from a keytab), takes a
 * client's context tokens one at a time, names the client, and wraps and
 * unwraps buffers once the context is complete. RFC 1961's framing (version,
 * message type, 16-bit length) is not here: the caller frames the tokens.
 *
 * Threads: called ONLY from the auth worker thread, never from a shard. The
 * library blocks: gss_acquire_cred reads the keytab, gss_accept_sec_context
 * reads it again and writes the replay cache (a file under KRB5RCACHEDIR,
 * /var/tmp by default) and may log through syslog. A context belongs to one
 * connection and is used by one thread at a time; the credential is shared
 * by every context the worker accepts (MIT's credential handles may be used
 * from several threads).
 *
 * The module prefix is gssacc_ rather than gss_: RFC 2744 (section 3.1)
 * reserves gss_ and GSS_ for the API itself.
 *
 * Errors: int functions return >= 0 on success, -errno on failure: -EACCES
 * for a refusal by GSS-API (bad or expired ticket, wrong service, forged or
 * replayed token), -ENOMEM, -EMSGSIZE when a result does not fit the caller's
 * buffer, -EINVAL for a call out of order. Where an err buffer is passed, a
 * failure leaves the library's own words in it ("gss_accept_sec_context:
 * ...: Wrong principal in request"), for the operator's log.
 */
#ifndef RINGSOCKS_GSSACC_H
#define RINGSOCKS_GSSACC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GSSACC_TOKEN_MAX 65535 /* RFC 1961 section 3: a token's length is 16 bits */
#define GSSACC_ERR_MAX   256   /* a useful size for the err buffers */

struct gssacc_cred; /* the service's credential: opaque */
struct gssacc_ctx;  /* one client's security context: opaque */

/*
 * The acceptor credential of service, from keytab.
 * service: "rcmd/host" or "rcmd/host@REALM" (a Kerberos principal), "rcmd@host"
 *          (a host-based service name, RFC 2743 section 4.1), or NULL or "" for any
 *          principal the keytab holds keys for.
 * keytab:  a keytab path ("FILE:" prefix optional), or NULL for the library's default
 *          (KRB5_KTNAME, else default_keytab_name in krb5.conf, else /etc/krb5.keytab).
 * A missing or unreadable keytab, or one without the service's keys, fails here, at
 * start or reload, rather than at the first client. *out is owned by the caller:
 * gssacc_cred_free().
 *
 * A credential is counted: each context made with it (gssacc_new) holds it too, so
 * gssacc_cred_free() drops the caller's reference and the last one, from any thread,
 * releases it. A reload can open the new keytab while contexts of the old one finish.
 */
int gssacc_cred_open(struct gssacc_cred **out, const char *service, const char *keytab, char *err,
                     size_t errlen);
void gssacc_cred_free(struct gssacc_cred *cred);
/* One more reference on cred (any thread), dropped with gssacc_cred_free(). */
void gssacc_cred_ref(struct gssacc_cred *cred);

/* A context for one client, to be fed its tokens. Owned by the caller: gssacc_free(). */
int gssacc_new(struct gssacc_ctx **out, struct gssacc_cred *cred);
void gssacc_free(struct gssacc_ctx *c);

/*
 * One step of the context establishment: the client's token in, the token to send back
 * out (out_len 0: nothing to send). Returns 1 when the context is complete (the out token,
 * if any, must still be sent: RFC 1961 section 3.3, the client's mutual authentication),
 * 0 when another client token is needed, < 0 on failure (the context is dead: send the
 * failure message, type 0xff, and close; gssacc_free() it). A token the library would
 * answer with more than out_cap bytes is -EMSGSIZE.
 */
int gssacc_accept(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out,
                  size_t out_cap, size_t *out_len, char *err, size_t errlen);

/*
 * The client's principal, after gssacc_accept() returned 1: "alice@EXAMPLE.TEST", or
 * "alice" with strip_realm. Returns its length (written NUL-terminated to buf), -EINVAL
 * before completion, -EMSGSIZE if cap is too small.
 */
ssize_t gssacc_client_name(const struct gssacc_ctx *c, bool strip_realm, char *buf, size_t cap);

/* What the completed context can protect (GSS_C_INTEG_FLAG, GSS_C_CONF_FLAG). */
bool gssacc_can_integ(const struct gssacc_ctx *c);
bool gssacc_can_conf(const struct gssacc_ctx *c);

/*
 * Per-message protection (RFC 1961 sections 4 and 5) on a complete context.
 * gssacc_wrap: in -> out, encrypted too when conf (else integrity only); returns the
 * token's length. gssacc_unwrap: a peer's token -> its payload; *was_conf says whether it
 * had been encrypted (so a confidentiality tunnel refuses integrity-only messages); returns
 * the payload's length. A forged, damaged, replayed or out-of-order token is -EACCES.
 */
ssize_t gssacc_wrap(struct gssacc_ctx *c, bool conf, const uint8_t *in, size_t in_len, uint8_t *out,
                    size_t out_cap);
ssize_t gssacc_unwrap(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out,
                      size_t out_cap, bool *was_conf);
/* gssacc_unwrap() for a datagram (RFC 1961 section 5, UDP): a token after a gap (datagrams
 * lost) or out of order is taken; a duplicate or one too old to tell is still -EACCES. */
ssize_t gssacc_unwrap_dgram(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out,
                            size_t out_cap, bool *was_conf);
/* The largest payload whose wrapped token fits out_max bytes (e.g. GSSACC_TOKEN_MAX). */
ssize_t gssacc_wrap_limit(struct gssacc_ctx *c, bool conf, size_t out_max);

#endif
