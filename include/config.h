/*
 * config.h - the configuration file (libconfig syntax): every command-line
 * setting plus access rules, logging, the admin endpoint and privilege
 * drop. Control and main threads only; never on a shard.
 *
 * Keys (all optional; defaults are those of struct opts as main() sets them):
 *   listen = ["127.0.0.1:1080", "[::1]:1080"];     shards = 0;  (0: one per CPU)
 *   relay = "splice" | "copy";
 *   handshake_timeout = 10; connect_timeout = 10; idle_timeout = 7200; bind_timeout = 120;
 *   write_timeout = 120;  (0: never)
 *   drain_timeout = 30;     max_conns = 0;  (0: from RLIMIT_NOFILE)
 *   resolvers = ["127.0.0.53"];  pipe_size = 65536; buf_size = 32768; bufs = 1024;
 *   auth = "none" | "password";  users = "/etc/ringsocks/users";  socks4 = "auto"|"on"|"off";
 *   bind_ports = "40000-40999";  udp_ports = "50000-50999";  udp_advertise = "203.0.113.7";
 *   access_log = "stderr" | "syslog" | "off" | "/var/log/ringsocks/access.log";
 *   log_format = "logfmt" | "json";
 *   admin = "127.0.0.1:9180" | "off";
 *   user = "ringsocks"; group = "ringsocks";
 *   close_removed_users = true;   close_denied_on_reload = false;
 *   rules = (
 *     { action = "deny";  to = ["10.0.0.0/8", "169.254.0.0/16"]; },
 *     { action = "deny";  hosts = [".internal", "metadata.google.internal"]; },
 *     { action = "allow"; from = ["127.0.0.0/8", "::1"]; ports = ["80", "443", "8000-8999"];
 *       commands = ["connect", "udp"]; users = ["alice"]; }
 *   );
 * A file without a rules list gets the default rules: allow clients from
 * 127.0.0.0/8 and ::1, deny everyone else (never an open proxy by accident).
 * Unknown keys and wrong types are errors, so a typo is never silently
 * ignored.
 */
#ifndef RINGSOCKS_CONFIG_H
#define RINGSOCKS_CONFIG_H

#include <stddef.h>

#include "acl.h"
#include "opts.h"

/*
 * Read path into *o (which holds the defaults on entry; keys present in the
 * file overwrite them) and build its rules into a new *acl. On failure
 * returns -1, leaves *o and *acl unchanged, and writes every error found,
 * one per line as "FILE:LINE: message", into err (truncated to errlen).
 * Returns 0 on success, with the warnings ("FILE:LINE: warning: ...", one
 * per line) in err, or err empty.
 */
int config_load(const char *path, struct opts *o, struct acl **acl, char *err, size_t errlen);

/*
 * The built-in defaults, the same as the shipped conf/ringsocks.conf: what
 * struct opts holds before a file and the command line go on top.
 */
void config_defaults(struct opts *o);

/* "splice", "copy" or "auto": the name the config file and --relay use. */
const char *relay_name(enum relay_engine e);

/* The rules used without a configuration file: loopback clients only. */
struct acl *config_default_acl(void);

#endif
