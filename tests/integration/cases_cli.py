"""
cases_cli.py - the command line and the process: --help, unknown flags,
a listen address already in use, SIGTERM.
"""

import re
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


def _dump(ctx, args):
    """ringsocks -T ARGS: (exit status, stdout, stderr)."""
    r = run_binary(ctx, ["-T"] + list(args))
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def _settings(text):
    """The key = value; lines of a -T dump, as a dict."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(" = ")
        if sep and not line.startswith(("#", " ", "rules")):
            out[k] = v.rstrip(";")
    return out


@case("cli_options_from_table")
def cli_options_from_table(ctx):
    """Every key is an option with the file's values: 0 = auto for shards,
    max_conns and handshake_slots (the command line used to refuse it),
    booleans as true|false, the old spellings --resolver and --admin-host, and
    a refusal that names the option."""
    need_ringsocks()
    rc, out, err = _dump(ctx, ["--shards", "0", "--max-conns", "0", "--handshake-slots", "0",
                               "--close-denied-on-reload", "true", "--close-removed-users", "false",
                               "--resolver", "192.0.2.53", "--resolvers", "192.0.2.54:5353",
                               "--admin-host", "node1.example", "--bind-ports", "40000-40099",
                               "--listen", "127.0.0.1:1081", "--listen", "[::1]:1081"])
    check(rc == 0, "-T with options: %s" % fmt_status(rc), err)
    got = _settings(out)
    want = {"shards": "0", "max_conns": "0", "handshake_slots": "0", "close_denied_on_reload": "true",
            "close_removed_users": "false", "resolvers": '["192.0.2.53:53", "192.0.2.54:5353"]',
            "admin_hosts": '["node1.example"]', "bind_ports": '"40000-40099"',
            "listen": '["127.0.0.1:1081", "[::1]:1081"]'}
    for k, v in want.items():
        check(got.get(k) == v, "-T printed %s = %s, expected %s" % (k, got.get(k), v), out)
    for args, name in ((["--shards", "2000"], "--shards: 2000 is not in 0..1024"),
                       (["--close-denied-on-reload", "yes"], "--close-denied-on-reload: 'yes' is neither"),
                       (["--access-log", "relative.log"], "--access-log: 'relative.log' is not"),
                       (["--resolver", "dns.example"], "--resolver: 'dns.example' is not IP[:PORT]")):
        r = run_binary(ctx, ["-t"] + args)
        e = r.stderr.decode("utf-8", "replace")
        check(r.returncode == 2, "%s: %s, expected exit 2 (a bad option)" % (" ".join(args), fmt_status(r.returncode)), e)
        check(name in e, "%s: the message does not say %r" % (" ".join(args), name), e)


@case("cli_dump_config")
def cli_dump_config(ctx):
    """-T prints the configuration in force (defaults, file, command line),
    every key, in the file's syntax: checked with -t it passes, and dumped
    again it prints the same."""
    need_ringsocks()
    src = ctx.path("in.conf")
    with open(src, "w") as f:
        f.write('relay = "copy";\nidle_timeout = 600;\nresolvers = "192.0.2.1";\n'
                'access_log = "%s";\n'
                'rules = (\n  { action = "deny"; to = ["10.0.0.0/8"]; ports = (25, "8000-8999"); },\n'
                '  { action = "allow"; from = ["127.0.0.0/8", "::1"]; users = ["alice"]; }\n);\n'
                % ctx.path("access.log"))
    rc, first, err = _dump(ctx, ["-c", src, "--idle-timeout", "900", "--admin", "off"])
    check(rc == 0, "-T -c in.conf: %s" % fmt_status(rc), err)
    check("configuration ok" not in first and "configuration ok" in err,
          "-T: the check's verdict must go to stderr, the configuration alone to stdout", first)
    got = _settings(first)
    for k, v in (("relay", '"copy"'), ("idle_timeout", "900"), ("admin", '"off"'),
                 ("resolvers", '["192.0.2.1:53"]'), ("handshake_timeout", "10")):
        check(got.get(k) == v, "-T printed %s = %s, expected %s" % (k, got.get(k), v), first)
    # Every key of the --help text is in the dump, set or commented as unset.
    keys = set(re.findall(r"^  --([a-z-]+) ", run_binary(ctx, ["--help"]).stdout.decode(), re.M))
    for k in keys:
        key = k.replace("-", "_")
        check(key in got or ("# %s is unset" % key) in first, "-T does not print %s" % key, first)
    check("rules = (" in first and '"8000-8999"' in first and 'users = ["alice"]' in first,
          "-T does not print the file's rules", first)
    dumped = ctx.path("dumped.conf")
    with open(dumped, "w") as f:
        f.write(first)
    r = run_binary(ctx, ["-t", "-c", dumped])
    check(r.returncode == 0, "-t -c on -T's output: %s" % fmt_status(r.returncode),
          (r.stdout + r.stderr).decode("utf-8", "replace"))
    rc, second, err = _dump(ctx, ["-c", dumped])
    check(rc == 0, "-T -c dumped.conf: %s" % fmt_status(rc), err)
    body = lambda t: [l for l in t.splitlines() if not l.startswith("# ringsocks -T")]
    check(body(first) == body(second), "-T of -T's output differs from the first dump",
          "first:\n%s\nsecond:\n%s" % (first, second))
