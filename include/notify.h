/*
 * notify.h - the systemd readiness protocol (sd_notify(3)), without
 * libsystemd: one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or an abstract name when it starts with '@'). Control thread and
 * main() only.
 */
#ifndef RINGSOCKS_NOTIFY_H
#define RINGSOCKS_NOTIFY_H

/*
 * Send fmt (e.g. "READY=1\nMAINPID=%d") when $NOTIFY_SOCKET is set. 0 (sent,
 * or nobody listens for it), or -errno, which the caller may ignore: a
 * service manager that does not hear us is no reason to stop serving.
 */
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
