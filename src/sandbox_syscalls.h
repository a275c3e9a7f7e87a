/*
 * sandbox_syscalls.h - the system calls ringsocks may make once start-up is
 * over (sandbox.h), one SANDBOX_CALL(name) per line with why. The only list:
 * sandbox.c includes it, and docs/security.md says how it was made.
 *
 * Made from traced runs (strace -f of every integration suite, the calls
 * after the filter's own seccomp() counted; docs/security.md has the recipe),
 * then reviewed: each call is here because a named part of the server makes
 * it after start-up. A binary upgrade's new process starts under this filter
 * (filters survive execve()), so its start-up calls are here too, marked
 * "upgrade". A name this architecture lacks (or libseccomp does not know) is
 * skipped. Not here, on purpose: anything that changes identity or adds
 * privileges (setuid, setgid, ...), mounts, modules, ptrace (but under the
 * sanitizers), kexec, reboot, namespaces, bpf, perf, keyctl.
 */

/* file and fd I/O: the control thread's reloads (config, users, keytab, /etc/hosts), the access
 * log and its reopen, the accounting lines and state file, /metrics' /proc reads */
SANDBOX_CALL(read)           /* files, eventfds, the signalfd, sockets (admin, Redis, DNS) */
SANDBOX_CALL(write)          /* log writer, state file, eventfd wake-ups, stderr */
SANDBOX_CALL(writev)         /* c-ares' TCP queries, stdio */
SANDBOX_CALL(pread64)        /* upgrade: ld.so reading the libraries' headers */
SANDBOX_CALL(lseek)          /* stdio on files (config, users, state file) */
SANDBOX_CALL(open)           /* upgrade: jemalloc's start-up reads /proc/sys/vm/overcommit_memory */
SANDBOX_CALL(openat)         /* every file read or written after start-up */
SANDBOX_CALL(close)          /* every fd: tunnels' sockets, pipes, files */
SANDBOX_CALL(newfstatat)     /* stat() of config, users file, keytab; glibc's fstat() */
SANDBOX_CALL(readlink)       /* /proc/self/exe before an upgrade; jemalloc's /etc/malloc.conf */
SANDBOX_CALL(getdents64)     /* /proc/self/fd counted for /metrics */
SANDBOX_CALL(access)         /* Kerberos probing krb5.conf at a reload; ld.so (upgrade) */
SANDBOX_CALL(fcntl)          /* O_NONBLOCK, F_SETPIPE_SZ, F_GETFL, Kerberos replay cache locks */
SANDBOX_CALL(ioctl)          /* FIONREAD of c-ares on its UDP sockets */
SANDBOX_CALL(dup2)           /* posix_spawn(): the upgrade's socket pair as fd 3 */
SANDBOX_CALL(pipe2)          /* splice engine's pipe pool */
SANDBOX_CALL(fsync)          /* the state file and the pid file (upgrade) before rename */
SANDBOX_CALL(fchmod)         /* the state file and pid file keep their mode */
SANDBOX_CALL(chmod)          /* upgrade: an admin_socket the new process makes anew */
SANDBOX_CALL(chown)          /* upgrade: the same socket, to the user run as (its own) */
SANDBOX_CALL(rename)         /* atomic replace of the state file */
SANDBOX_CALL(unlink)         /* the pid file and admin_socket at exit, a failed temporary file */
SANDBOX_CALL(umask)          /* upgrade: admin_socket made with mode 0600 first */
SANDBOX_CALL(splice)         /* the splice engine's non-blocking splices from the shard */

/* sockets: c-ares, hiredis, Kerberos, syslog, $NOTIFY_SOCKET, the admin endpoint, BIND, UDP,
 * egress checks; most of the data path goes through the ring instead */
SANDBOX_CALL(socket)         /* outgoing tunnels, BIND and UDP sockets, DNS, Redis, syslog */
SANDBOX_CALL(socketpair)     /* the upgrade's channel to the new process */
SANDBOX_CALL(connect)        /* DNS (c-ares), Redis (hiredis), syslog, $NOTIFY_SOCKET */
SANDBOX_CALL(bind)           /* egress address before connect, BIND, UDP ASSOCIATE, the
                                local-address test of egress; upgrade: new listen addresses */
SANDBOX_CALL(listen)         /* BIND's listening socket; upgrade: new listen addresses */
SANDBOX_CALL(accept4)        /* the admin endpoint; a drained listener's backlog at an upgrade */
SANDBOX_CALL(getsockname)    /* reply addresses (BND.ADDR), the admin address */
SANDBOX_CALL(getpeername)    /* client and target addresses */
SANDBOX_CALL(setsockopt)     /* per-tunnel options (keepalive, user timeout, mark, egress) */
SANDBOX_CALL(getsockopt)     /* SO_ERROR of async connects (hiredis), SO_PEERCRED, TCP_INFO */
SANDBOX_CALL(shutdown)       /* half-close, drain, faults */
SANDBOX_CALL(sendto)         /* DNS queries, syslog, $NOTIFY_SOCKET, admin answers */
SANDBOX_CALL(recvfrom)       /* DNS answers, admin requests, Redis */
SANDBOX_CALL(sendmsg)        /* SCM_RIGHTS of an upgrade, UDP datagrams */
SANDBOX_CALL(recvmsg)        /* the upgrade's channel, UDP datagrams, Kerberos */
SANDBOX_CALL(sendmmsg)       /* UDP ASSOCIATE: datagrams to targets in batches */
SANDBOX_CALL(recvmmsg)       /* UDP datagrams in batches */

/* io_uring: the data path. What the ring does inside io_uring_enter() is not filtered by
 * seccomp (docs/security.md) */
SANDBOX_CALL(io_uring_enter)    /* every shard loop */
SANDBOX_CALL(io_uring_register) /* upgrade: each new shard's ring gets the handshake's fixed
                                   buffers, the relay's provided-buffer ring, its restrictions,
                                   then is enabled (running shards did it before the filter) */
SANDBOX_CALL(io_uring_setup)    /* upgrade: the new process's shards */

/* waiting and waking */
SANDBOX_CALL(poll)           /* the control thread's wait (signals, admin, upgrade), hiredis */
SANDBOX_CALL(epoll_create1)  /* the GSS-API worker's set; upgrade */
SANDBOX_CALL(epoll_ctl)      /* the GSS-API worker's set */
SANDBOX_CALL(epoll_wait)     /* the GSS-API worker's wait */
SANDBOX_CALL(eventfd2)       /* wake-ups (shards, workers, fleet); upgrade */
SANDBOX_CALL(signalfd4)      /* the control thread's signals */
SANDBOX_CALL(futex)          /* mutexes, condition variables, semaphores, thread joins */
SANDBOX_CALL(sched_yield)    /* spinning waits (jemalloc; LeakSanitizer's exit check) */
SANDBOX_CALL(clock_gettime)  /* time, when the vDSO cannot answer */
SANDBOX_CALL(clock_getres)   /* the same */
SANDBOX_CALL(gettimeofday)   /* the same, older callers */
SANDBOX_CALL(time)           /* the same, older callers */
SANDBOX_CALL(clock_nanosleep) /* the auth worker's and fleet's waits, drain's waits */

/* memory: jemalloc (and glibc malloc under the sanitizers), crypt(3)'s scratch memory, thread
 * stacks */
SANDBOX_CALL(mmap)           /* jemalloc extents, yescrypt's memory, thread stacks */
SANDBOX_CALL(munmap)         /* the same, given back */
SANDBOX_CALL(madvise)        /* jemalloc purging, glibc freeing a thread's stack */
SANDBOX_CALL(mincore)        /* /metrics: the copy buffers in memory (relay_bufs_resident) */
SANDBOX_CALL(mprotect)       /* guard pages of a stack; upgrade: ld.so */
SANDBOX_CALL(brk)            /* glibc malloc (libraries' early allocations, sanitizer builds) */

/* threads, signals, process */
SANDBOX_CALL(getpid)         /* log lines, raise(), the upgrade */
SANDBOX_CALL(gettid)         /* thread ids for libraries' logs and raise() */
SANDBOX_CALL(getuid)         /* Kerberos (the default credential cache), preflight checks */
SANDBOX_CALL(geteuid)        /* the same; upgrade: the identity check before the drop */
SANDBOX_CALL(getgid)         /* the same */
SANDBOX_CALL(getegid)        /* the same */
SANDBOX_CALL(getppid)        /* upgrade: the new process's parent */
SANDBOX_CALL(getrandom)      /* libsodium (cache keys at a reload), Kerberos, c-ares ids */
SANDBOX_CALL(uname)          /* Kerberos and c-ares host names; upgrade */
SANDBOX_CALL(rt_sigprocmask) /* threads leaving, posix_spawn(), abort() */
SANDBOX_CALL(rt_sigaction)   /* posix_spawn() resetting dispositions, abort(), the SIGSYS
                                handler's reset; upgrade */
SANDBOX_CALL(rt_sigreturn)   /* the end of any signal handler */
SANDBOX_CALL(restart_syscall) /* the kernel resuming a sleep stopped by SIGSTOP or a debugger */
SANDBOX_CALL(sigaltstack)    /* threads leaving with an alternate signal stack (sanitizers) */
SANDBOX_CALL(tgkill)         /* raise() and abort(): the SIGSYS handler's end, BUG_ON() */
SANDBOX_CALL(kill)           /* an upgrade's silent new process is killed by PID */
SANDBOX_CALL(wait4)          /* an upgrade's new process reaped */
SANDBOX_CALL(clone)          /* posix_spawn() and threads where clone3 is missing; LeakSanitizer */
SANDBOX_CALL(clone3)         /* posix_spawn() of an upgrade, threads */
SANDBOX_CALL(execve)         /* upgrade: the new binary (docs/security.md: the trade-off) */
SANDBOX_CALL(exit)           /* a thread ends */
SANDBOX_CALL(exit_group)     /* the process ends */
SANDBOX_CALL(set_robust_list) /* every new thread; upgrade */
SANDBOX_CALL(rseq)           /* every new thread; upgrade */
SANDBOX_CALL(prctl)          /* thread names (PR_SET_NAME); upgrade: no_new_privs of its filter,
                                the bounding and ambient sets read (caps.c) */
SANDBOX_CALL(capget)         /* upgrade: the new process reads the capabilities it was given
                                (caps.c) */
SANDBOX_CALL(capset)         /* upgrade: the new process cuts its sets to what its configuration
                                needs (caps.c). Only narrows: CAP_SETPCAP is never kept, and
                                without it permitted never grows and inheritable stays within
                                the old inheritable | permitted */
SANDBOX_CALL(seccomp)        /* upgrade: the new process adds its filter (it can only narrow) */
SANDBOX_CALL(prlimit64)      /* upgrade: RLIMIT_NOFILE raised; getrlimit() at /metrics */
SANDBOX_CALL(sched_getaffinity) /* upgrade: sysconf(_SC_NPROCESSORS_ONLN) */
SANDBOX_CALL(sched_setaffinity) /* upgrade: each shard pinned to its core */
SANDBOX_CALL(arch_prctl)     /* upgrade: ld.so's thread pointer */
SANDBOX_CALL(set_tid_address) /* upgrade: ld.so */

#if defined(__SANITIZE_ADDRESS__)
/* AddressSanitizer and LeakSanitizer (SAN=1 builds only): the leak check at exit stops the
 * world with a tracer thread */
SANDBOX_CALL(ptrace)         /* LeakSanitizer's StopTheWorld */
SANDBOX_CALL(getdents)       /* the same, listing /proc/PID/task (not getdents64 on x86-64) */
#endif
