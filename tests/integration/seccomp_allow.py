"""
seccomp_allow.py - run a program under a seccomp filter that allows every call, as a
supervisor's filter leaves it (systemd's SystemCallFilter=, Docker's, Podman's and
Kubernetes' default profiles): /proc/PID/status then says Seccomp: 2, with no call
refused. Usage: python3 seccomp_allow.py PROGRAM ARGS... (execs PROGRAM, same pid).
cases_caps.py starts ringsocks under it: the capability drop must happen all the same.
"""

import ctypes
import os
import struct
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
BPF_RET_K, SECCOMP_RET_ALLOW = 0x06, 0x7fff0000


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    insn = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog = SockFprog(1, ctypes.cast(insn, ctypes.c_void_p))
    for what, args in (("no_new_privs", (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)),
                       ("the filter", (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0))):
        if libc.prctl(*args) != 0:
            sys.exit("seccomp_allow.py: %s: %s" % (what, os.strerror(ctypes.get_errno())))
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
