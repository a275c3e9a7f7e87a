"""
cases_krb.py - the Kerberos realm fixture (krb.py) and the GSS-API acceptor module
(src/gssacc.c) against a real KDC and a real initiator: groundwork for issue #15, before
ringsocks offers method 0x01. The acceptor is driven through build/tests/gss-pair
(tests/tools/gss_pair.c), which is client and server in one process: the client side on
the credential cache kinit filled, the server side on the realm's keytab.

What must hold: alice's context completes and names alice@EXAMPLE.TEST (alice with the
realm stripped); messages wrap and unwrap both ways, a damaged or replayed one is refused;
a ticket for another service, or for a service the keytab holds but the acceptor was not
given, is refused; an expired ticket is refused (by the client library, and by the acceptor
when handed a token made while the ticket was valid); a replayed context token is refused;
a keytab without the service's keys fails at gssacc_cred_open, not at the first client.
"""

import os
import re
import signal
import subprocess
import time

from harness import (CONFIG, SANITIZER_MARKERS, Fail, Skip, _register_proc, case, check, free_port, need_tools,
                     stop_process, tail)
from krb import KrbRealm

ACCEPTED, REFUSED, BROKEN, INITIATOR = 0, 1, 2, 3


def gss_pair_path():
    path = os.path.join(os.path.dirname(os.path.abspath(CONFIG.binary)), "tests", "gss-pair")
    if not os.access(path, os.X_OK):
        raise Skip("%s not built (make %s)" % (path, os.path.relpath(path)))
    return path


def gss_pair(ctx, realm, mode, user="alice", input=None, **opts):
    argv = [gss_pair_path(), mode]
    for k, v in opts.items():
        argv += ["--" + k, v]
    r = ctx.run(argv, timeout=30, input=input, env=realm.client_env(user))
    out = r.stdout.decode("utf-8", "replace")
    err = r.stderr.decode("utf-8", "replace")
    if any(m in err for m in SANITIZER_MARKERS):
        raise Fail("gss-pair %s: sanitizer report" % mode, tail(err, 40))
    if r.returncode == BROKEN or r.returncode < 0:
        raise Fail("gss-pair %s: exit %d" % (mode, r.returncode),
                   "argv: %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(argv), out, err))
    return r.returncode, out


def expect(rc, out, want, pattern, what):
    names = {ACCEPTED: "accepted", REFUSED: "refused by the acceptor", INITIATOR: "refused by the client"}
    check(rc == want, "%s: %s, expected %s" % (what, names.get(rc, rc), names[want]), out)
    check(re.search(pattern, out), "%s: no %r in gss-pair's output" % (what, pattern), out)


@case("krb_realm_fixture")
def t_realm_fixture(ctx):
    realm = KrbRealm(ctx)
    check(realm.keytab_principals() == sorted(realm.principal(s) for s in realm.services),
          "keytab holds %s" % realm.keytab_principals())
    realm.kinit("alice")
    check("Default principal: alice@EXAMPLE.TEST" in realm.klist("alice"), "kinit alice", realm.klist("alice"))
    check(realm.kinit_fails("bob", "not-bobs-password"), "kinit bob with a wrong password succeeded")
    # Nothing of the machine's Kerberos state is used: every path is the test's own.
    for k, v in realm.server_env().items():
        if k.startswith("KRB5"):
            check(realm.dir in v, "%s=%s is outside the realm's directory" % (k, v))
    realm.stop()
    check(realm.kinit_fails("alice", "x"), "kinit works with the KDC stopped")


@case("krb_gss_accept")
def t_gss_accept(ctx):
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    for service, target in (("rcmd/localhost", "rcmd@localhost"), ("socks/127.0.0.1", "socks@127.0.0.1"),
                            ("rcmd@localhost", "rcmd/localhost")):
        rc, out = gss_pair(ctx, realm, "pair", service=service, target=target, keytab=realm.keytab)
        what = "acceptor %s, client asks for %s" % (service, target)
        expect(rc, out, ACCEPTED, r"accepted name=alice@EXAMPLE\.TEST short=alice integ=1 conf=1", what)
        for line in out.splitlines():
            check(not line.startswith("FAILED"), "%s: %s" % (what, line), out)
    # No keytab named: the library's default, here the realm's krb5.conf default_keytab_name.
    rc, out = gss_pair(ctx, realm, "pair", service="rcmd/localhost", target="rcmd@localhost")
    expect(rc, out, ACCEPTED, r"accepted name=alice@EXAMPLE\.TEST", "default keytab")


@case("krb_gss_wrong_service")
def t_gss_wrong_service(ctx):
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    # A service the proxy has no key for.
    rc, out = gss_pair(ctx, realm, "pair", service="rcmd/localhost", target=realm.other_service,
                       keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: .*other/localhost", "ticket for %s" % realm.other_service)
    # A service in the same keytab, but not the one the acceptor serves.
    rc, out = gss_pair(ctx, realm, "pair", service="rcmd/localhost", target="socks/localhost",
                       keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: .*socks/localhost", "ticket for socks/localhost at rcmd/localhost")
    # Any key of the keytab (service "") takes either, but still not other/.
    rc, out = gss_pair(ctx, realm, "pair", service="", target="socks/localhost", keytab=realm.keytab)
    expect(rc, out, ACCEPTED, r"accepted name=alice@", "any keytab principal, socks/localhost")
    rc, out = gss_pair(ctx, realm, "pair", service="", target=realm.other_service, keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: .*not found in keytab", "any keytab principal, other/localhost")
    # A keytab without the service, and a missing keytab: refused when the credential is made.
    rc, out = gss_pair(ctx, realm, "pair", service="nfs/localhost", target="rcmd@localhost", keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: cred: gss_acquire_cred: .*nfs/localhost", "service not in the keytab")
    rc, out = gss_pair(ctx, realm, "pair", service="rcmd/localhost", target="rcmd@localhost",
                       keytab=realm.path("missing.keytab"))
    expect(rc, out, REFUSED, r"refused: cred: .*missing\.keytab", "missing keytab")


@case("krb_gss_expired_and_replayed", timeout=60)
def t_gss_expired(ctx):
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    realm.kinit("bob", lifetime="2s")
    good = gss_pair(ctx, realm, "token", user="alice", target="rcmd/localhost")
    stale = gss_pair(ctx, realm, "token", user="bob", target="rcmd/localhost")
    check(good[0] == 0 and stale[0] == 0, "client tokens", good[1] + stale[1])
    # A context token accepted once is a replay the second time (the replay cache).
    rc, out = gss_pair(ctx, realm, "accept", input=good[1].encode(), service="rcmd/localhost",
                       keytab=realm.keytab)
    expect(rc, out, ACCEPTED, r"accepted name=alice@EXAMPLE\.TEST \(1\)", "fresh token")
    rc, out = gss_pair(ctx, realm, "accept", input=good[1].encode(), service="rcmd/localhost",
                       keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: .*[Rr]eplay", "the same token again")
    time.sleep(2 + 2.5)     # bob's ticket has expired (the realm's clockskew is 1 s)
    rc, out = gss_pair(ctx, realm, "accept", input=stale[1].encode(), service="rcmd/localhost",
                       keytab=realm.keytab)
    expect(rc, out, REFUSED, r"refused: .*[Ee]xpired", "token made with a ticket since expired")
    rc, out = gss_pair(ctx, realm, "pair", user="bob", service="rcmd/localhost", target="rcmd@localhost",
                       keytab=realm.keytab)
    expect(rc, out, INITIATOR, r"initiator: .*[Ee]xpired", "client with an expired ticket")


def curl_version():
    r = subprocess.run(["curl", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
    first = r.stdout.decode("utf-8", "replace").splitlines()[0]
    m = re.match(r"curl (\d+)\.(\d+)", first)
    feats = r.stdout.decode("utf-8", "replace")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0), "GSS-API" in feats


def start_serve(ctx, realm, service, level=None, prefix=()):
    """gss-pair serve (one RFC 1961 client) on a free port: (process, port)."""
    port = free_port()
    argv = [gss_pair_path(), "serve", "--service", service, "--keytab", realm.keytab, "--port", str(port)]
    if level is not None:
        argv += ["--level", str(level)]
    srv = subprocess.Popen(list(prefix) + argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=realm.server_env(), close_fds=True)
    _register_proc(srv)
    ctx.defer(lambda: stop_process(srv, signal.SIGKILL, 5))
    check(srv.stdout.readline().strip() == b"listening", "gss-pair serve did not start")
    return srv, port


def serve_output(srv):
    """What gss-pair serve printed, once it is done (stopped after 15 s)."""
    try:
        out = srv.communicate(timeout=15)[0].decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        stop_process(srv, signal.SIGKILL, 5)
        out = srv.communicate()[0].decode("utf-8", "replace")
    stop_process(srv, signal.SIGKILL, 5)
    if any(m in out for m in SANITIZER_MARKERS):
        raise Fail("gss-pair serve: sanitizer report", tail(out, 40))
    return out


def curl_through_serve(ctx, realm, host, service, curl_args=(), level=None):
    """gss-pair serve as the SOCKS5 server, curl as its client: (what the server saw, curl's stderr)."""
    # Both on one CPU, curl niced: the server, woken by curl's connect, runs before curl
    # reads (see CURL_RACE).
    cpu = str(min(os.sched_getaffinity(0)))
    srv, port = start_serve(ctx, realm, service, level, prefix=["taskset", "-c", cpu])
    r = ctx.run(["nice", "-n", "19", "taskset", "-c", cpu, "curl", "-sS", "-v", "-m", "10", "--socks5-hostname", "%s:%d" % (host, port)] + list(curl_args)
                + ["http://target.test/"], env=realm.client_env("alice"))
    return serve_output(srv), r.stderr.decode("utf-8", "replace")


# curl up to 8.16 (Debian 12 has 7.88.1) keeps "may I use GSS-API" in a local variable of
# do_SOCKS5() (lib/socks.c) set only in the state that sends the greeting: when the server's
# method choice is not there at its first read, curl comes back in a later state and fails
# with "SOCKS5 GSSAPI per-message authentication is not supported". A timing race, lost most
# of the time on a busy machine even though gss-pair serve answers before reading the greeting:
# curl_through_serve() runs both on one CPU with curl niced, and a lost race is retried.
CURL_RACE = "per-message authentication is not supported"
RACE_TRIES = 20


@case("krb_curl_wire", timeout=120)
def t_curl_wire(ctx):
    """What curl sends through RFC 1961, against gss-pair serve (the acceptor module)."""
    need_tools("curl", "taskset", "nice")
    version, gss = curl_version()
    if not gss:
        raise Skip("curl without GSS-API")
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    # A plain --socks5 offers GSS-API too (libcurl's default CURLOPT_SOCKS5_AUTH is BASIC|GSSAPI).
    for host, service, args, level, want in (
            ("127.0.0.1", "rcmd/127.0.0.1", [], None, r"protection level asked 0, wrapped"),
            ("localhost", "rcmd/localhost", [], 2, r"protection level asked 0, wrapped"),
            ("127.0.0.1", "socks/127.0.0.1", ["--socks5-gssapi-service", "socks"], None,
             r"protection level asked 0, wrapped"),
            ("127.0.0.1", "rcmd/127.0.0.1", ["--socks5-gssapi-nec"], 1,
             r"protection level asked 0, unwrapped \(NEC\)")):
        what = "curl %s via %s" % (" ".join(args) or "--socks5", host)
        for attempt in range(RACE_TRIES):
            out, err = curl_through_serve(ctx, realm, host, service, args, level)
            check("greeting ver 5 methods 00 01" in out, "%s: greeting" % what, out + err)
            if CURL_RACE not in err:
                break
        else:
            # curl's own bug (see CURL_RACE), not ours: on a machine too busy for the
            # pinning to win it, say so rather than fail the suite.
            raise Skip("%s: curl lost its own method race %d times (curl < 8.17)" % (what, RACE_TRIES))
        check("accepted name=alice@EXAMPLE.TEST" in out, "%s: context not established" % what, out + err)
        check(re.search(want, out), "%s: expected %r" % (what, want), out)
        if version < (8, 17):
            # After a complete negotiation curl 7.88 falls out of its GSS-API branch into
            # "Undocumented SOCKS5 mode" and never sends the request: no client tunnel at all.
            check("Undocumented SOCKS5 mode" in err and "then 0 bytes" in out,
                  "%s: curl %d.%d did something else after GSS-API" % ((what,) + version), out + err)


@case("krb_gss_socks_client")
def t_gss_socks_client(ctx):
    """Our own RFC 1961 client (gss-pair client: Debian's curl cannot finish a GSS-API SOCKS5
    connection) against gss-pair serve: the context, the protection level wrapped and bare
    (NEC), what the server grants, then the SOCKS request in the clear."""
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    for ask, nec, answer, note in ((0, False, None, ""), (2, False, None, ""), (1, True, None, " \\(bare\\)"),
                                   (2, False, 0, "")):
        what = "level %d%s answered %s" % (ask, " bare" if nec else "", "as asked" if answer is None else answer)
        srv, port = start_serve(ctx, realm, "rcmd/localhost", answer)
        rc, out = gss_pair(ctx, realm, "client", target="rcmd/localhost", port=str(port), level=str(ask),
                           nec="1" if nec else "0")
        seen = serve_output(srv)
        granted = ask if answer is None else answer
        check(rc == ACCEPTED and "context established" in out and
              re.search(r"granted %d%s\n" % (granted, note), out) and "reply rep 1" in out,
              "%s: the client says" % what, out)
        check("accepted name=alice@EXAMPLE.TEST" in seen and
              re.search(r"protection level asked %d, %s" % (ask, "unwrapped \\(NEC\\)" if nec else "wrapped"),
                        seen), "%s: the server saw" % what, seen)
    # A ticket for a service the server has no key for: refused at the first token.
    srv, port = start_serve(ctx, realm, "rcmd/localhost")
    rc, out = gss_pair(ctx, realm, "client", target="other/localhost", port=str(port))
    seen = serve_output(srv)
    check(rc == REFUSED and "refused by the server" in out, "a ticket for other/localhost was accepted", out + seen)


def gss_pump_path():
    path = os.path.join(os.path.dirname(os.path.abspath(CONFIG.binary)), "tests", "gss-pump")
    if not os.access(path, os.X_OK):
        raise Skip("%s not built (make %s)" % (path, os.path.relpath(path)))
    return path


@case("krb_gss_worker", timeout=240)
def t_gss_worker(ctx):
    """The shard's GSS-API worker (src/gssw.c) through build/tests/gss-pump (tests/tools/gss_pump.c):
    the real worker thread and its queues, a real io_uring for the answers, a real initiator.
    Protection-level grants (wrapped and NEC) against allowed masks; protected tunnels at levels
    1 and 2 with checksums both ways and half-closes in both orders; bytes sent before the
    hand-over; damaged, integrity-only (level 2), replayed, empty, garbage, foreign-version and
    truncated frames ending the tunnel; the shard closing its end with a client that reads (the
    answer then EOF) and with one that does not (gone within the 30 s grace)."""
    realm = KrbRealm(ctx)
    realm.kinit("alice")
    argv = [gss_pump_path(), "--service", "rcmd/localhost", "--target", "rcmd@localhost",
            "--keytab", realm.keytab, "--mib", "4"]
    r = ctx.run(argv, timeout=200, env=realm.client_env("alice"))
    out = r.stdout.decode("utf-8", "replace")
    err = r.stderr.decode("utf-8", "replace")
    if any(m in err for m in SANITIZER_MARKERS):
        raise Fail("gss-pump: sanitizer report", tail(err, 40))
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    check(r.returncode == 0 and not failed, "gss-pump: exit %d, %d checks failed: %s" %
          (r.returncode, len(failed), "; ".join(failed[:5])), out + err)
    check(re.search(r"level 2 up first: up [0-9.]+ MB/s", out), "gss-pump printed no figures", out)
    for line in out.splitlines():
        if "MB/s" in line or "largest" in line or "tunnel gone" in line:
            print("    info krb_gss_worker: " + line)
