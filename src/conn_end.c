/*
 * conn_end.c - the one table of end-reason names (conn_end.h). Pure.
 */
#include "conn_end.h"

static const char *const end_names[END__COUNT] = {
    [END_NONE] = "none",
    [END_DONE] = "done",
    [END_CLIENT_EOF] = "client_eof",
    [END_CLIENT_ERR] = "client_error",
    [END_TARGET_ERR] = "target_error",
    [END_PROTOCOL] = "protocol_error",
    [END_REPLY_ERR] = "error_reply",
    [END_HS_TIMEOUT] = "handshake_timeout",
    [END_IDLE_TIMEOUT] = "idle_timeout",
    [END_WRITE_TIMEOUT] = "write_timeout",
    [END_RESOURCE] = "resource_limit",
    [END_AUTH_FAILED] = "auth_failed",
    [END_DENIED] = "denied",
    [END_REVOKED] = "revoked",
    [END_BIND_TIMEOUT] = "bind_timeout",
    [END_SHUTDOWN] = "shutdown",
    [END_BAD_NAME] = "bad_name",
    [END_CLIENT_LIMIT] = "client_limit",
    [END_LIMIT_CONNS] = "limit_conns",
    [END_LIMIT_RATE] = "limit_rate",
    [END_QUOTA] = "quota",
    [END_BLOCKED] = "blocked",
    [END_ADMIN] = "admin_close",
    [END_AUTH_LOCKED] = "auth_locked",
    [END_PROXY_REFUSED] = "proxy_refused",
    [END_PROXY_BAD] = "proxy_bad",
    [END_PROXY_LOCAL] = "proxy_local",
    [END_PARENT] = "parent_failed",
    [END_LOOP] = "loop",
    [END_FAULT] = "fault",
};

const char *
conn_end_str(enum conn_end why)
{
    return (unsigned)why < END__COUNT && end_names[why] ? end_names[why] : "unknown";
}
