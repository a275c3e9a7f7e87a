/*
 * gss_client.h - the initiator side shared by the GSS-API test tools (gss_pair.c,
 * gss_pump.c): MIT's gss_init_sec_context on the credential cache KRB5CCNAME names,
 * and the tools' "ok/FAILED what" lines.
 */
#ifndef RINGSOCKS_TEST_GSS_CLIENT_H
#define RINGSOCKS_TEST_GSS_CLIENT_H

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_krb5.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct client {
    gss_name_t target;
    gss_ctx_id_t ctx;
};

static inline void
gss_words(const char *what, OM_uint32 major, OM_uint32 minor)
{
    OM_uint32 min2, more = 0;
    printf("initiator: %s", what);
    OM_uint32 codes[2] = {major, minor};
    int types[2] = {GSS_C_GSS_CODE, GSS_C_MECH_CODE};
    for (int i = 0; i < 2; i++) {
        do {
            gss_buffer_desc t = GSS_C_EMPTY_BUFFER;
            if (gss_display_status(&min2, codes[i], types[i], gss_mech_krb5, &more, &t) !=
                GSS_S_COMPLETE)
                break;
            printf(": %.*s", (int)t.length, (const char *)t.value);
            gss_release_buffer(&min2, &t);
        } while (more != 0);
    }
    printf("\n");
}

static inline int
client_open(struct client *cl, const char *target)
{
    gss_buffer_desc b = {strlen(target), (void *)target};
    gss_OID type = strchr(target, '/') ? (gss_OID)GSS_KRB5_NT_PRINCIPAL_NAME
                                       : (gss_OID)GSS_C_NT_HOSTBASED_SERVICE;
    OM_uint32 minor, major = gss_import_name(&minor, &b, type, &cl->target);
    cl->ctx = GSS_C_NO_CONTEXT;
    if (GSS_ERROR(major)) {
        gss_words("gss_import_name", major, minor);
        return -1;
    }
    return 0;
}

static inline void
client_close(struct client *cl)
{
    OM_uint32 minor;
    if (cl->ctx != GSS_C_NO_CONTEXT)
        gss_delete_sec_context(&minor, &cl->ctx, GSS_C_NO_BUFFER);
    gss_release_name(&minor, &cl->target);
}

/* One initiator step; returns the major status (the caller releases out). */
static inline OM_uint32
client_step(struct client *cl, const uint8_t *in, size_t in_len, gss_buffer_desc *out)
{
    gss_buffer_desc tin = {in_len, (void *)in};
    OM_uint32 minor;
    OM_uint32 flags = GSS_C_MUTUAL_FLAG | GSS_C_REPLAY_FLAG | GSS_C_SEQUENCE_FLAG |
                      GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG;
    OM_uint32 major = gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &cl->ctx, cl->target,
                                           gss_mech_krb5, flags, 0, GSS_C_NO_CHANNEL_BINDINGS,
                                           in_len ? &tin : GSS_C_NO_BUFFER, NULL, out, NULL, NULL);
    if (GSS_ERROR(major))
        gss_words("gss_init_sec_context", major, minor);
    return major;
}

static inline int
check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "ok" : "FAILED", what);
    return ok ? 0 : -1;
}

static inline double
ns_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e9 + (double)(b.tv_nsec - a->tv_nsec);
}

#endif
