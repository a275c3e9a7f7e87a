/*
 * gssacc.c - the GSS-API acceptor over MIT Kerberos (gssacc.h). Only the
 * auth worker thread calls it: every call may block on the keytab, the
 * replay cache or syslog. Never called from a shard.
 */
#include "gssacc.h"

#include <errno.h>
#include <stdatomic.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gssacc_cred {
    gss_cred_id_t cred;
    atomic_uint refs; /* the opener's, and one per context made with it */
};

struct gssacc_ctx {
    struct gssacc_cred *cred;
    gss_ctx_id_t ctx;
    OM_uint32 flags; /* ret_flags of the completed context */
    bool done;
    char *name; /* the client's display name, once done */
};

/* "what: major words: minor words" into err. */
static void
say_status(char *err, size_t errlen, const char *what, OM_uint32 major, OM_uint32 minor)
{
    if (err == NULL || errlen == 0)
        return;
    size_t used = (size_t)snprintf(err, errlen, "%s", what);
    const struct {
        OM_uint32 code;
        int type;
    } parts[] = {{major, GSS_C_GSS_CODE}, {minor, GSS_C_MECH_CODE}};
    for (size_t i = 0; i < 2 && used < errlen; i++) {
        if (parts[i].type == GSS_C_MECH_CODE && minor == 0)
            break;
        OM_uint32 more = 0, min2;
        do {
            gss_buffer_desc text = GSS_C_EMPTY_BUFFER;
            if (gss_display_status(&min2, parts[i].code, parts[i].type, gss_mech_krb5, &more,
                                   &text) != GSS_S_COMPLETE)
                break;
            used += (size_t)snprintf(err + used, errlen - used, ": %.*s", (int)text.length,
                                     (const char *)text.value);
            gss_release_buffer(&min2, &text);
        } while (more != 0 && used < errlen);
    }
}

static void
say(char *err, size_t errlen, const char *text)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", text);
}

/* A name with a '/' is a Kerberos principal ("rcmd/host[@REALM]"), as curl's
 * --socks5-gssapi-service reads it; else a host-based service ("rcmd@host"). */
static int
import_service(const char *service, gss_name_t *name, char *err, size_t errlen)
{
    *name = GSS_C_NO_NAME;
    if (service == NULL || service[0] == '\0')
        return 0;
    gss_buffer_desc buf = {strlen(service), (void *)service};
    gss_OID type = strchr(service, '/') ? (gss_OID)GSS_KRB5_NT_PRINCIPAL_NAME
                                        : (gss_OID)GSS_C_NT_HOSTBASED_SERVICE;
    OM_uint32 minor;
    OM_uint32 major = gss_import_name(&minor, &buf, type, name);
    if (GSS_ERROR(major)) {
        say_status(err, errlen, "gss_import_name", major, minor);
        return -EINVAL;
    }
    return 0;
}

int
gssacc_cred_open(struct gssacc_cred **out, const char *service, const char *keytab, char *err,
                 size_t errlen)
{
    *out = NULL;
    gss_name_t name;
    int rc = import_service(service, &name, err, errlen);
    if (rc < 0)
        return rc;
    struct gssacc_cred *cred = calloc(1, sizeof(*cred));
    if (cred == NULL) {
        rc = -ENOMEM;
        say(err, errlen, "out of memory");
        goto out;
    }
    /* Only the Kerberos 5 mechanism: no SPNEGO, no other mechanism's plug-in. */
    gss_OID_set_desc krb5_only = {1, gss_mech_krb5};
    gss_key_value_element_desc kv = {"keytab", keytab};
    gss_key_value_set_desc store = {1, &kv};
    OM_uint32 minor;
    OM_uint32 major =
        gss_acquire_cred_from(&minor, name, GSS_C_INDEFINITE, &krb5_only, GSS_C_ACCEPT,
                              keytab ? &store : GSS_C_NO_CRED_STORE, &cred->cred, NULL, NULL);
    if (GSS_ERROR(major)) {
        say_status(err, errlen, "gss_acquire_cred", major, minor);
        free(cred);
        rc = -EACCES;
        goto out;
    }
    atomic_init(&cred->refs, 1);
    *out = cred;
out:
    if (name != GSS_C_NO_NAME)
        gss_release_name(&minor, &name);
    return rc;
}

void
gssacc_cred_free(struct gssacc_cred *cred)
{
    if (cred == NULL || atomic_fetch_sub_explicit(&cred->refs, 1, memory_order_acq_rel) != 1)
        return;
    OM_uint32 minor;
    gss_release_cred(&minor, &cred->cred);
    free(cred);
}

void
gssacc_cred_ref(struct gssacc_cred *cred)
{
    atomic_fetch_add_explicit(&cred->refs, 1, memory_order_relaxed);
}

int
gssacc_new(struct gssacc_ctx **out, struct gssacc_cred *cred)
{
    struct gssacc_ctx *c = calloc(1, sizeof(*c));
    *out = c;
    if (c == NULL)
        return -ENOMEM;
    atomic_fetch_add_explicit(&cred->refs, 1, memory_order_relaxed);
    c->cred = cred;
    c->ctx = GSS_C_NO_CONTEXT;
    return 0;
}

void
gssacc_free(struct gssacc_ctx *c)
{
    if (c == NULL)
        return;
    OM_uint32 minor;
    if (c->ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&minor, &c->ctx, GSS_C_NO_BUFFER);
    free(c->name);
    gssacc_cred_free(c->cred);
    free(c);
}

/* The display name of the context's initiator, kept in c->name. */
static int
keep_name(struct gssacc_ctx *c, gss_name_t src, char *err, size_t errlen)
{
    OM_uint32 minor;
    gss_buffer_desc text = GSS_C_EMPTY_BUFFER;
    OM_uint32 major = gss_display_name(&minor, src, &text, NULL);
    if (GSS_ERROR(major)) {
        say_status(err, errlen, "gss_display_name", major, minor);
        return -EACCES;
    }
    c->name = strndup(text.value, text.length);
    gss_release_buffer(&minor, &text);
    if (c->name == NULL) {
        say(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

int
gssacc_accept(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
              size_t *out_len, char *err, size_t errlen)
{
    *out_len = 0;
    if (c->done) {
        say(err, errlen, "gssacc_accept: the context is complete already");
        return -EINVAL;
    }
    gss_buffer_desc tok_in = {in_len, (void *)in};
    gss_buffer_desc tok_out = GSS_C_EMPTY_BUFFER;
    gss_name_t src = GSS_C_NO_NAME;
    OM_uint32 minor, flags = 0;
    /* No delegated credential is asked for: a forwarded TGT is dropped by the library. */
    OM_uint32 major =
        gss_accept_sec_context(&minor, &c->ctx, c->cred->cred, &tok_in, GSS_C_NO_CHANNEL_BINDINGS,
                               &src, NULL, &tok_out, &flags, NULL, NULL);
    int rc;
    /* Anything but COMPLETE or CONTINUE_NEEDED is a refusal, the supplementary bits
     * (duplicate, old or out-of-order token) included: TCP delivers in order, once. */
    if (GSS_ERROR(major) || (major & ~(OM_uint32)GSS_S_CONTINUE_NEEDED) != 0) {
        say_status(err, errlen, "gss_accept_sec_context", major, minor);
        rc = -EACCES;
        goto out;
    }
    if (tok_out.length > out_cap) {
        say(err, errlen, "gss_accept_sec_context: reply token too long");
        rc = -EMSGSIZE;
        goto out;
    }
    if (tok_out.length > 0)
        memcpy(out, tok_out.value, tok_out.length);
    *out_len = tok_out.length;
    if (major & GSS_S_CONTINUE_NEEDED) {
        rc = 0;
        goto out;
    }
    rc = keep_name(c, src, err, errlen);
    if (rc < 0) {
        *out_len = 0;
        goto out;
    }
    c->flags = flags;
    c->done = true;
    rc = 1;
out:
    gss_release_buffer(&minor, &tok_out);
    if (src != GSS_C_NO_NAME)
        gss_release_name(&minor, &src);
    return rc;
}

/* The '@' that starts the realm: the last one not escaped by a backslash
 * (a principal's components may hold "\@"). */
static const char *
realm_at(const char *name)
{
    const char *at = NULL;
    for (const char *p = name; *p != '\0'; p++) {
        if (*p == '\\' && p[1] != '\0')
            p++;
        else if (*p == '@')
            at = p;
    }
    return at;
}

ssize_t
gssacc_client_name(const struct gssacc_ctx *c, bool strip_realm, char *buf, size_t cap)
{
    if (!c->done || c->name == NULL)
        return -EINVAL;
    size_t len = strlen(c->name);
    const char *at = strip_realm ? realm_at(c->name) : NULL;
    if (at != NULL)
        len = (size_t)(at - c->name);
    if (len + 1 > cap)
        return -EMSGSIZE;
    memcpy(buf, c->name, len);
    buf[len] = '\0';
    return (ssize_t)len;
}

bool
gssacc_can_integ(const struct gssacc_ctx *c)
{
    return c->done && (c->flags & GSS_C_INTEG_FLAG);
}

bool
gssacc_can_conf(const struct gssacc_ctx *c)
{
    return c->done && (c->flags & GSS_C_CONF_FLAG);
}

/* Copy a library buffer into the caller's, releasing it either way. */
static ssize_t
give(gss_buffer_desc *b, uint8_t *out, size_t out_cap)
{
    OM_uint32 minor;
    ssize_t rc = -EMSGSIZE;
    if (b->length <= out_cap) {
        if (b->length > 0)
            memcpy(out, b->value, b->length);
        rc = (ssize_t)b->length;
    }
    gss_release_buffer(&minor, b);
    return rc;
}

ssize_t
gssacc_wrap(struct gssacc_ctx *c, bool conf, const uint8_t *in, size_t in_len, uint8_t *out,
            size_t out_cap)
{
    if (!c->done)
        return -EINVAL;
    gss_buffer_desc msg = {in_len, (void *)in};
    gss_buffer_desc tok = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    int conf_state = 0;
    OM_uint32 major = gss_wrap(&minor, c->ctx, conf, GSS_C_QOP_DEFAULT, &msg, &conf_state, &tok);
    if (GSS_ERROR(major))
        return -EACCES;
    if (conf && !conf_state) { /* asked for confidentiality, would send in the clear */
        gss_release_buffer(&minor, &tok);
        return -EACCES;
    }
    return give(&tok, out, out_cap);
}

/* gss_unwrap; a supplementary status bit outside allowed refuses the token. */
static ssize_t
unwrap(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
       bool *was_conf, OM_uint32 allowed)
{
    *was_conf = false;
    if (!c->done)
        return -EINVAL;
    gss_buffer_desc tok = {in_len, (void *)in};
    gss_buffer_desc msg = GSS_C_EMPTY_BUFFER;
    OM_uint32 minor;
    int conf_state = 0;
    OM_uint32 major = gss_unwrap(&minor, c->ctx, &tok, &msg, &conf_state, NULL);
    if ((major & ~allowed) != GSS_S_COMPLETE) {
        gss_release_buffer(&minor, &msg);
        return -EACCES;
    }
    *was_conf = conf_state != 0;
    return give(&msg, out, out_cap);
}

ssize_t
gssacc_unwrap(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
              bool *was_conf)
{
    /* GSS_S_DUPLICATE_TOKEN, OLD_TOKEN, UNSEQ_TOKEN, GAP_TOKEN are supplementary bits,
     * not errors to GSS_ERROR(): on a stream every one of them is an attack. */
    return unwrap(c, in, in_len, out, out_cap, was_conf, 0);
}

ssize_t
gssacc_unwrap_dgram(struct gssacc_ctx *c, const uint8_t *in, size_t in_len, uint8_t *out,
                    size_t out_cap, bool *was_conf)
{
    /* Datagrams are lost and reordered: a gap or a late one is no attack, a replay is. */
    return unwrap(c, in, in_len, out, out_cap, was_conf, GSS_S_GAP_TOKEN | GSS_S_UNSEQ_TOKEN);
}

ssize_t
gssacc_wrap_limit(struct gssacc_ctx *c, bool conf, size_t out_max)
{
    if (!c->done)
        return -EINVAL;
    OM_uint32 minor, max_in = 0;
    OM_uint32 major =
        gss_wrap_size_limit(&minor, c->ctx, conf, GSS_C_QOP_DEFAULT, (OM_uint32)out_max, &max_in);
    if (GSS_ERROR(major))
        return -EINVAL;
    return (ssize_t)max_in;
}
