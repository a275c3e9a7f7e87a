"""
cases_cli.py - the command line and the process: --help, unknown flags,
a listen address already in use, SIGTERM.
"""

import socket
import subprocess

from harness import (CONFIG, case, check, echo_roundtrip, fmt_status, need_ringsocks, socks_connect,
                     tail)


def run_binary(ctx, args, timeout=15):
    return ctx.run([CONFIG.binary] + list(args), timeout=timeout, env=None)


@case("cli_help")
def cli_help(ctx):
    need_ringsocks()
    r = run_binary(ctx, ["--relay", ctx.relay, "--help"])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0, "--help: %s, expected exit 0; output: %s" % (fmt_status(r.returncode), out[:300]))
    check("usage" in out.lower(), "--help printed no usage text: %r" % out[:300])
    check("--listen" in out, "--help does not mention --listen: %r" % out[:300])


@case("cli_version")
def cli_version(ctx):
    need_ringsocks()
    r = run_binary(ctx, ["--version"])
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    check(r.returncode == 0, "--version: %s, expected exit 0; output: %r" % (fmt_status(r.returncode), out[:300]))
    check("ringsocks" in out and any(c.isdigit() for c in out),
          "--version printed no name and version: %r" % out[:300])


@case("cli_unknown_flag")
def cli_unknown_flag(ctx):
    need_ringsocks()
    r = run_binary(ctx, ["--relay", ctx.relay, "--no-such-flag"])
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode is not None and r.returncode > 0,
          "unknown flag: %s, expected a non-zero exit; stderr: %r" % (fmt_status(r.returncode), err[:300]))
    check("no-such-flag" in err, "unknown flag: stderr does not name the flag: %r" % err[:300])


@case("cli_listen_in_use")
def cli_listen_in_use(ctx):
    need_ringsocks()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT
    ctx.defer(blocker.close)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(16)
    port = blocker.getsockname()[1]
    p = ctx.proxy(listen=["127.0.0.1:%d" % port], wait_listen=False)
    p.exit_expected = True
    try:
        rc = p.proc.wait(15)
    except subprocess.TimeoutExpired:
        rc = None
    err = p.stderr()
    check(rc is not None, "ringsocks still running 15 s after being started on a port in use; stderr: %r"
          % tail(err, 5))
    check(rc > 0, "listen on a port in use: %s, expected a non-zero exit; stderr: %r"
          % (fmt_status(rc), tail(err, 5)))
    check("ringsocks: listening on" not in err, "printed a listening line for a port in use: %r" % tail(err, 5))
    addr = "127.0.0.1:%d" % port
    check(addr in err or ("127.0.0.1" in err and str(port) in err),
          "the error message does not mention %s: %r" % (addr, tail(err, 5)))
    p.stop()  # scans stderr for sanitizer reports


@case("sigterm_exit_status")
def sigterm_exit_status(ctx):
    need_ringsocks("microsocks dies by the signal")
    p = ctx.proxy()
    echo = ctx.echo_server()
    s, _ = socks_connect(ctx, p, "127.0.0.1", echo.port)
    echo_roundtrip(s)
    s.close()
    rc = p.stop()
    check(p.problems == [], "; ".join(p.problems))
    check(rc == 0, "after SIGTERM: %s, expected exit 0" % fmt_status(rc))
