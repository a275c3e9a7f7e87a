/*
 * sandbox.h - the seccomp filter (libseccomp) that main() installs once
 * start-up is over: every thread then may make only the system calls listed in
 * src/sandbox_syscalls.h. Option `seccomp` (default true) turns it off.
 *
 * What a call outside the list does: the calling thread gets SIGSYS
 * (SCMP_ACT_TRAP), whose handler writes one line naming the call's number to
 * stderr and then ends the whole process with SIGSYS (docs/design.md, "The
 * seccomp filter", says why a kill and not an error).
 */
#ifndef RINGSOCKS_SANDBOX_H
#define RINGSOCKS_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Install the filter on every thread of the process (SCMP_FLTATR_CTL_TSYNC),
 * with no_new_privs; threads made later inherit it, and so does a process
 * the server executes (a binary upgrade: its start-up runs under the list
 * too). Call once, from one thread, after start-up. 0, or -errno with a
 * message in err, or 1 with the reason in err when no filter was added:
 * upgraded (a binary upgrade's new process) and under a filter already, its
 * parent's (a second copy would only make every call run both), or the
 * architecture is not the one the list was traced on (x86-64), where it
 * would kill the server on a call it names differently. A filter that is not
 * a parent ringsocks' (systemd's SystemCallFilter=, a container runtime's
 * profile) gets this one on top.
 */
int sandbox_install(bool upgraded, char *err, size_t errlen);

/* How many system calls the list allows on this architecture. */
unsigned sandbox_count(void);

#endif
