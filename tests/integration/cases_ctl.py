"""
cases_ctl.py - the admin endpoint beyond loopback, and ringsocksctl.

The bearer token (admin_token_file): 401 without it or with a wrong one, the
same on the Unix socket, /healthz open, a reload that keeps or changes it; an
admin address beyond loopback refused without a token (-t and start); the
Unix socket (admin_socket): its mode, a stale file, its removal at exit.
ringsocksctl: its calls against a running server with a token, over TCP and
over the socket named by -c CONFIG; users add/passwd/del/set on a real users
file followed by SOCKS5 logins; the passwords it refuses.
"""

import os
import socket
import stat
import subprocess

from cases_control import sighup_reload, write_conf
from harness import (CONFIG, Fail, Skip, admin_addr, admin_request, case, check, make_hash,
                     need_option, need_ringsocks, open_proxy_socket, read_reply, recv_exact,
                     request, auth_msg, AUTH_GREETING, read_method_reply, expect_close, tail,
                     write_users, wait_until)

TOKEN = "Zm9vYmFyLXRva2VuLWZvci10ZXN0cw=="


def need_admin_sec():
    need_ringsocks()
    need_option("--admin-token-file", "--admin-socket", "--admin-socket-mode")


def ctl_binary():
    path = os.path.join(os.path.dirname(CONFIG.binary), "ringsocksctl")
    if not os.access(path, os.X_OK):
        raise Fail("%s is not built (make builds it next to ringsocks)" % path)
    return path


def token_file(ctx, text=TOKEN + "\n", mode=0o600, name="admin.token"):
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def unix_request(path, method, target, headers=None, timeout=10.0):
    """One HTTP/1.1 request over a Unix socket: (status, body text, headers dict)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        head = "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" % (method, target)
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        s.sendall((head + "\r\n").encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, body.decode("utf-8", "replace"), hdrs


def bearer(tok=TOKEN):
    return {"Authorization": "Bearer " + tok}


def expect_auth(ask, what):
    """ask(method, path, headers) -> (status, body, headers): the token rules."""
    st, body, h = ask("GET", "/metrics", None)
    check(st == 401, "%s: GET /metrics without a token answered %d, expected 401" % (what, st))
    check(h.get("www-authenticate", "").startswith("Bearer"),
          "%s: the 401 has no WWW-Authenticate: Bearer (%r)" % (what, h))
    check(TOKEN not in body, "%s: the 401 body shows the token" % what)
    missing = body
    st, body, _ = ask("GET", "/metrics", bearer("wrong-token-0123456789"))
    check(st == 401, "%s: a wrong token answered %d, expected 401" % (what, st))
    check(body == missing, "%s: a wrong token and no token are answered differently: %r / %r"
          % (what, missing, body))
    st, body, _ = ask("GET", "/metrics", bearer(TOKEN[:-3]))
    check(st == 401, "%s: a prefix of the token answered %d, expected 401" % (what, st))
    st, body, _ = ask("GET", "/metrics", {"Authorization": "Basic " + TOKEN})
    check(st == 401, "%s: the Basic scheme answered %d, expected 401" % (what, st))
    st, body, _ = ask("POST", "/drain", None)
    check(st == 401, "%s: POST /drain without a token answered %d, expected 401" % (what, st))
    st, body, _ = ask("GET", "/metrics", bearer())
    check(st == 200 and "ringsocks_" in body,
          "%s: the right token answered %d %r, expected 200 and metrics" % (what, st, body[:200]))
    st, body, _ = ask("GET", "/healthz", None)
    check(st == 200, "%s: GET /healthz without a token answered %d, expected 200" % (what, st))


def tcp_ask(admin):
    def ask(method, path, headers):
        return admin_request(admin, method, path, headers=headers)
    return ask


def sock_ask(path):
    def ask(method, target, headers):
        return unix_request(path, method, target, headers)
    return ask


@case("admin_token_required")
def admin_token_required(ctx):
    """A token: 401 (with WWW-Authenticate: Bearer) without it, with a wrong one,
    a prefix of it or another scheme; 200 with it; /healthz open. The same on
    the Unix socket, where a configured token applies too. The token is in no
    log line."""
    need_admin_sec()
    tok = token_file(ctx)
    sock = ctx.path("admin.sock")
    p = ctx.proxy(args=["--admin-token-file", tok, "--admin-socket", sock])
    expect_auth(tcp_ask(admin_addr(p)), "TCP")
    expect_auth(sock_ask(sock), "Unix socket")
    check(TOKEN not in p.stderr(), "the token shows in the server's stderr", tail(p.stderr()))
    st, _, _ = admin_request(admin_addr(p), "POST", "/reload", headers=bearer())
    check(st == 200, "POST /reload with the token answered %d" % st)


@case("admin_token_reload")
def admin_token_reload(ctx):
    """The token file is read again on reload: a bad one (mode 0644, too short)
    fails the reload and keeps the old token; a new one replaces it."""
    need_admin_sec()
    tok = token_file(ctx)
    p = ctx.proxy(args=["--admin-token-file", tok])
    admin = admin_addr(p)
    os.chmod(tok, 0o644)
    line = sighup_reload(p)
    check("reload failed" in line, "reload with a 0644 token file: %r, expected a failure" % line)
    check("0644" in p.stderr() and tok in p.stderr(),
          "the failed reload does not name the token file and its mode", tail(p.stderr()))
    st, _, _ = admin_request(admin, "GET", "/metrics", headers=bearer())
    check(st == 200, "after the failed reload the old token answered %d, expected 200" % st)
    token_file(ctx, "short\n")
    line = sighup_reload(p)
    check("reload failed" in line, "reload with a 6-byte token: %r, expected a failure" % line)
    new = "bmV3LXRva2VuLWFmdGVyLXJlbG9hZA"
    token_file(ctx, new + "\n")
    line = sighup_reload(p)
    check("reloaded" in line, "reload with a new token file: %r" % line, tail(p.stderr()))
    st, _, _ = admin_request(admin, "GET", "/metrics", headers=bearer(new))
    check(st == 200, "the new token answered %d, expected 200" % st)
    st, _, _ = admin_request(admin, "GET", "/metrics", headers=bearer())
    check(st == 401, "the old token answered %d after the reload, expected 401" % st)
    check(TOKEN not in p.stderr() and new not in p.stderr(), "a token shows in stderr")


@case("admin_beyond_loopback_needs_token")
def admin_beyond_loopback_needs_token(ctx):
    """admin on an address beyond loopback without admin_token_file: an error
    naming the setting for -t and at start (nothing listens); with a token it
    starts (in its own network namespace, so it is reachable from nowhere).
    Loopback without a token still works. A token file group or others may
    read is refused, naming the file and its mode."""
    need_admin_sec()
    conf = write_conf(ctx, 'admin = "0.0.0.0:9181";\n')
    r = ctx.run([CONFIG.binary, "-t", "-c", conf], timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == 1 and "admin_token_file" in err and "0.0.0.0:9181" in err
          and conf + ":1:" in err,
          "-t with admin = \"0.0.0.0:9181\" and no token: exit %d, expected 1 with %s:1 and "
          "admin_token_file" % (r.returncode, conf), err)
    r = ctx.run([CONFIG.binary, "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0"], timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0 and "admin_token_file" in err and "listening on" not in err,
          "start with --admin 0.0.0.0:0 and no token: exit %d, expected an error" % r.returncode,
          err)
    loose = token_file(ctx, mode=0o640, name="loose.token")
    r = ctx.run([CONFIG.binary, "-t", "--admin-token-file", loose], timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == 1 and loose in err and "0640" in err and TOKEN not in err,
          "-t with a 0640 token file: exit %d, expected 1 naming the file and 0640"
          % r.returncode, err)
    p = ctx.proxy()
    admin_addr(p)
    tok = token_file(ctx)
    r = ctx.run(["unshare", "--net", "true"], timeout=20)
    if r.returncode != 0:
        raise Skip("no network namespace (unshare --net: %s)" % r.stderr.decode().strip())
    wide = ctx.proxy(listen=("0.0.0.0:0",), args=["--admin", "0.0.0.0:0", "--admin-token-file",
                                                   tok], wrap=("unshare", "--net", "--"))
    admin_addr(wide)
    check("(bearer token)" in wide.stderr(), "the admin line does not say it has a token",
          tail(wide.stderr()))


@case("admin_unix_socket")
def admin_unix_socket(ctx):
    """admin_socket: made with admin_socket_mode (0660 by default), served
    without a token, removed at exit; a stale socket file is replaced at
    start; a regular file at the path is an error and is left alone."""
    need_admin_sec()
    sock = ctx.path("admin.sock")
    p = ctx.proxy(args=["--admin-socket", sock])
    st = os.lstat(sock)
    check(stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660,
          "admin_socket mode %o, expected a socket with 0660" % st.st_mode)
    code, body, _ = unix_request(sock, "GET", "/metrics")
    check(code == 200 and "ringsocks_" in body, "GET /metrics on the socket: %d %r" % (code, body))
    code, body, _ = unix_request(sock, "GET", "/metrics", {"Origin": "http://evil.example"})
    check(code == 403, "a cross-origin request on the socket answered %d, expected 403" % code)
    p.stop()
    check(not os.path.lexists(sock), "the socket file is left after the server stopped")

    # A socket file as a crash leaves it.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock)
    s.close()
    p = ctx.proxy(args=["--admin-socket", sock, "--admin-socket-mode", "0600"])
    st = os.lstat(sock)
    check(stat.S_IMODE(st.st_mode) == 0o600, "--admin-socket-mode 0600 made mode %o"
          % stat.S_IMODE(st.st_mode))
    code, _, _ = unix_request(sock, "GET", "/healthz")
    check(code == 200, "GET /healthz on a socket that replaced a stale one: %d" % code)
    p.stop()

    with open(sock, "w") as f:
        f.write("not a socket\n")
    r = ctx.run([CONFIG.binary, "--listen", "127.0.0.1:0", "--admin", "off", "--admin-socket",
                 sock], timeout=20)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode != 0 and sock in err and "not a socket" in err,
          "start with a regular file at admin_socket: exit %d" % r.returncode, err)
    check(os.path.isfile(sock), "the regular file at admin_socket was removed")


# ---------------------------------------------------------------- ringsocksctl

def ctl(ctx, args, stdin=None, env=None, setsid=False):
    argv = (["setsid", "-w"] if setsid else []) + [ctl_binary()] + list(args)
    e = dict(os.environ)
    e.pop("RINGSOCKS_ADMIN_TOKEN_FILE", None)
    e.update(env or {})
    r = ctx.run(argv, timeout=30, input=stdin, env=e)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def login_ok(ctx, p, user, password):
    s = open_proxy_socket(ctx, p)
    s.sendall(AUTH_GREETING)
    m = read_method_reply(s)
    check(m == b"\x05\x02", "method selection reply %r, expected 05 02" % m)
    s.sendall(auth_msg(user, password))
    st = recv_exact(s, 2, "RFC 1929 status")
    if st != b"\x01\x00":
        expect_close(s, after="failed login")
        return False
    echo = ctx.echo_server()
    s.sendall(request("127.0.0.1", echo.port))
    r = read_reply(s)
    check(r.rep == 0, "CONNECT after the login of %r: REP %d" % (user, r.rep))
    s.close()
    return True


@case("ctl_calls")
def ctl_calls(ctx):
    """ringsocksctl status, metrics, reload, drain against a server with a
    token: exit 0 and the body with the token (--token-file or the
    environment), 1 and the status on stderr without it, 2 when nothing
    listens or the command is unknown. -c CONFIG finds the Unix socket and
    the token file. connections: JSON once the route exists (404 before)."""
    need_admin_sec()
    tok = token_file(ctx)
    sock = ctx.path("admin.sock")
    conf = write_conf(ctx, 'admin_socket = "%s";\nadmin_token_file = "%s";\n' % (sock, tok))
    p = ctx.proxy(args=["-c", conf])
    url = "http://%s:%d" % admin_addr(p)
    rc, out, err = ctl(ctx, ["--admin", url, "--token-file", tok, "status"])
    check(rc == 0 and out == "ok\n", "status: exit %d, out %r" % (rc, out), err)
    rc, out, err = ctl(ctx, ["--admin", url, "metrics"], env={"RINGSOCKS_ADMIN_TOKEN_FILE": tok})
    check(rc == 0 and "ringsocks_" in out, "metrics with the token from the environment: exit %d"
          % rc, err)
    rc, out, err = ctl(ctx, ["--admin", url, "metrics"])
    check(rc == 1 and "401" in err and not out, "metrics without a token: exit %d, expected 1 "
          "and 401 on stderr" % rc, err)
    rc, out, err = ctl(ctx, ["-c", conf, "reload"])
    check(rc == 0 and "reloaded" in out, "reload through -c CONFIG (Unix socket): exit %d, out %r"
          % (rc, out), err)
    rc, out, err = ctl(ctx, ["-c", conf, "connections", "--user", "a b", "--limit", "5"])
    check(rc == 0 or (rc == 1 and "404" in err), "connections: exit %d" % rc, err)
    if rc == 0:
        import json
        json.loads(out)
    rc, out, err = ctl(ctx, ["--admin", "http://127.0.0.1:1", "status"])
    check(rc == 2 and "127.0.0.1:1" in err, "status against a closed port: exit %d" % rc, err)
    rc, out, err = ctl(ctx, ["frobnicate"])
    check(rc == 2, "an unknown command: exit %d, expected 2" % rc, err)
    p.exit_expected = True  # no tunnel open: the drain ends at once
    rc, out, err = ctl(ctx, ["-c", conf, "drain"])
    check(rc == 0 and "draining" in out, "drain: exit %d, out %r" % (rc, out), err)


@case("ctl_users_edit")
def ctl_users_edit(ctx):
    """users add alice --stdin, then a SOCKS5 login as alice works; passwd
    changes it (the old password is refused after); set keeps the hash; del
    removes her (login refused). Every other line of the file stays as it
    was. An empty password, no terminal without --stdin, a taken or unknown
    name and a bad name are refused and change nothing."""
    need_admin_sec()
    head = ["# the users of this test", "", "bob:%s" % make_hash("bobpw"), "  # a comment"]
    users = write_users(ctx, head)
    os.chmod(users, 0o640)
    p = ctx.proxy(args=["--auth", "password", "--users", users])
    base = ["--admin", "http://%s:%d" % admin_addr(p), "--users", users]

    def text():
        with open(users) as f:
            return f.read()

    before = text()
    rc, out, err = ctl(ctx, base + ["users", "add", "alice", "--stdin"], stdin=b"pw-one\n")
    check(rc == 0, "users add alice --stdin: exit %d" % rc, err)
    after = text()
    check(after.startswith(before) and after[len(before):].startswith("alice:$y$"),
          "users add changed other lines or wrote no yescrypt line", after)
    check(stat.S_IMODE(os.stat(users).st_mode) == 0o640, "users add changed the file's mode")
    check(wait_until(lambda: login_ok(ctx, p, "alice", "pw-one"), 5, 0.1),
          "login as alice after users add failed", tail(p.stderr()))

    rc, out, err = ctl(ctx, base + ["users", "passwd", "alice", "--stdin"], stdin=b"pw-two\n")
    check(rc == 0, "users passwd alice: exit %d" % rc, err)
    check(not login_ok(ctx, p, "alice", "pw-one"), "the old password still works after passwd")
    check(login_ok(ctx, p, "alice", "pw-two"), "the new password does not work after passwd")

    rc, out, err = ctl(ctx, base + ["users", "set", "alice", "max_conns=5"])
    check(rc == 0 and text().splitlines()[-1].endswith(" max_conns=5"),
          "users set alice max_conns=5: exit %d" % rc, err + text())
    check(login_ok(ctx, p, "alice", "pw-two"), "users set lost alice's password")

    edited = text()
    for args, stdin, setsid, want, what in (
            (["users", "passwd", "alice", "--stdin"], b"\n", False, 1, "an empty password"),
            (["users", "add", "carol", "--stdin"], b"", False, 1, "an empty stdin"),
            (["users", "add", "carol"], None, True, 2, "no terminal and no --stdin"),
            (["users", "add", "alice", "--stdin"], b"x\n", False, 1, "a name taken"),
            (["users", "del", "carol"], None, False, 1, "an unknown name"),
            (["users", "add", "ca:rol", "--stdin"], b"x\n", False, 2, "a name with ':'"),
            (["users", "set", "alice", "rate=fast"], None, False, 1, "a bad attribute")):
        rc, out, err = ctl(ctx, base + args, stdin=stdin, setsid=setsid)
        check(rc == want, "%s (%s): exit %d, expected %d" % (what, " ".join(args), rc, want), err)
        check(text() == edited, "%s changed the users file" % what, text())
    check(login_ok(ctx, p, "alice", "pw-two"), "a refused edit changed alice's password")

    rc, out, err = ctl(ctx, base + ["users", "del", "alice"])
    check(rc == 0 and text() == before, "users del alice: exit %d, file not as before" % rc,
          err + text())
    check(not login_ok(ctx, p, "alice", "pw-two"), "alice can still log in after users del")
    check(login_ok(ctx, p, "bob", "bobpw"), "bob cannot log in any more")

    # --no-reload edits only; a failed reload is exit 1 with the file edited.
    rc, out, err = ctl(ctx, base + ["users", "add", "dave", "--stdin", "--no-reload"],
                       stdin=b"pw\n")
    check(rc == 0 and "dave:$y$" in text(), "users add --no-reload: exit %d" % rc, err)
    check(not login_ok(ctx, p, "dave", "pw"), "dave logs in without a reload")
    p.stop()
    rc, out, err = ctl(ctx, base + ["users", "del", "dave"])
    check(rc == 2 and "dave" not in text() and "reload" in err,
          "users del with the server gone: exit %d, expected 2, the file edited" % rc, err)


@case("ctl_users_concurrent")
def ctl_users_concurrent(ctx):
    """24 users set runs at once on one file, each on its own user (--no-reload;
    no hashing, so they all read and write at the same moment): the flock makes
    each wait for the one before, so no edit is lost and the other lines stay."""
    need_admin_sec()
    n = 24
    h = make_hash("pw")
    head = ["# concurrent edits"] + ["u%d:%s" % (i, h) for i in range(n)]
    users = write_users(ctx, head)
    procs = [subprocess.Popen([ctl_binary(), "--users", users, "users", "set", "u%d" % i,
                               "max_conns=%d" % (i + 1), "--no-reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(n)]
    errs = []
    for pr in procs:
        _, err = pr.communicate(timeout=60)
        if pr.returncode != 0:
            errs.append(err.decode("utf-8", "replace"))
    check(not errs, "%d of %d concurrent users set failed" % (len(errs), n), "\n".join(errs))
    with open(users) as f:
        lines = f.read().splitlines()
    want = [head[0]] + ["%s max_conns=%d" % (head[i + 1], i + 1) for i in range(n)]
    lost = [w.split(":")[0] for w, l in zip(want, lines) if w != l]
    check(lines == want, "after %d concurrent edits, lost: %s" % (n, lost), "\n".join(lines))


@case("ctl_tunnel_calls")
def ctl_tunnel_calls(ctx):
    """ringsocksctl connections, close, users list/show, disconnect, block and
    unblock against the live-control routes, with a token: the server's JSON
    on stdout and exit 0, or its status on stderr and exit 1 (404 for an
    unknown user or connection)."""
    import json
    from cases_auth import ALICE, auth_proxy
    from cases_conns import login_tunnel, sees_eof
    need_admin_sec()
    tok = token_file(ctx)
    p = auth_proxy(ctx, extra=["--admin-token-file", tok])
    base = ["--admin", "http://%s:%d" % admin_addr(p), "--token-file", tok]
    echo = ctx.echo_server()

    def call(*args, want=0):
        rc, out, err = ctl(ctx, base + list(args))
        check(rc == want, "ringsocksctl %s: exit %d, expected %d" % (" ".join(args), rc, want),
              err + out)
        return json.loads(out) if rc == 0 else err

    s = login_tunnel(ctx, p, ALICE, echo.port)
    body = call("connections", "--user", ALICE[0])
    check(len(body["connections"]) == 1 and body["connections"][0]["user"] == ALICE[0],
          "connections --user alice: %r" % body)
    cid = body["connections"][0]["id"]
    body = call("users", "list")
    check(ALICE[0] in [u["user"] for u in body["users"]], "users list lacks alice: %r" % body)
    body = call("users", "show", ALICE[0])
    check(body["user"] == ALICE[0], "users show alice: %r" % body)
    err = call("users", "show", "nobody here", want=1)
    check("404" in err and "nobody%20here" in err, "users show of an unknown name: %r" % err)
    body = call("close", cid)
    check(body == {"closed": 1} and sees_eof(s), "close %s: %r" % (cid, body))
    call("close", cid, want=1)
    s = login_tunnel(ctx, p, ALICE, echo.port)
    body = call("disconnect", ALICE[0])
    check(body.get("closed") == 1 and sees_eof(s), "disconnect alice: %r" % body)
    body = call("block", ALICE[0])
    check(body.get("blocked") is True, "block alice: %r" % body)
    body = call("unblock", ALICE[0])
    check(body == {"blocked": False}, "unblock alice: %r" % body)
    s = login_tunnel(ctx, p, ALICE, echo.port)
    s.close()
