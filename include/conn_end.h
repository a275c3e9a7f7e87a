/*
 * conn_end.h - why a connection ended: one reason each, named once. The
 * access log and the metrics use the names; only the slot layer sets the
 * reason. Pure: any thread.
 */
#ifndef RINGSOCKS_CONN_END_H
#define RINGSOCKS_CONN_END_H

enum conn_end {
    END_NONE = 0,
    END_DONE,          /* both directions finished */
    END_CLIENT_EOF,    /* client left during the handshake or a wait */
    END_CLIENT_ERR,    /* client socket error */
    END_TARGET_ERR,    /* target socket error */
    END_PROTOCOL,      /* malformed handshake */
    END_REPLY_ERR,     /* an error reply was sent */
    END_HS_TIMEOUT,    /* handshake timeout */
    END_IDLE_TIMEOUT,  /* relay or UDP association idle timeout */
    END_WRITE_TIMEOUT, /* relay: bytes waited write_timeout for a destination that took none */
    END_RESOURCE,      /* out of slots, fds, pipes or memory */
    END_AUTH_FAILED,   /* RFC 1929 credentials, a GSS-API ticket or its level refused */
    END_DENIED,        /* refused by the access rules */
    END_REVOKED,       /* closed on reload: user removed or rule now denies */
    END_BIND_TIMEOUT,  /* BIND: nobody connected in time */
    END_SHUTDOWN,      /* server stopping */
    END_BAD_NAME,      /* the request named a host no host name can be */
    END_CLIENT_LIMIT,  /* a per-client-address limit (handshakes, BINDs, UDP associations) */
    END_LIMIT_CONNS,   /* the user's or client address's max_conns (lim.h) */
    END_LIMIT_RATE,    /* the user's or client address's new-tunnel rate */
    END_QUOTA,         /* the user is over its traffic quota */
    END_BLOCKED,       /* the user is blocked by the admin */
    END_ADMIN,         /* closed through the admin endpoint */
    END_AUTH_LOCKED,   /* RFC 1929 login refused unchecked: its pair or address is locked out */
    END_PROXY_REFUSED, /* a proxy_protocol listener's peer is not in its from */
    END_PROXY_BAD,     /* a malformed PROXY protocol header */
    END_PROXY_LOCAL,   /* a PROXY v2 LOCAL (v1 UNKNOWN) header: the balancer's health check */
    END_PARENT,        /* upstream chaining: no parent could carry the tunnel */
    END_LOOP,          /* a transparent connection whose destination is the proxy itself */
    END_FAULT,         /* a fault committed on purpose (fault.h) ended it */
    END__COUNT,
};

/* The reason's name ("client_eof"), "unknown" out of range. */
const char *conn_end_str(enum conn_end why);

#endif
