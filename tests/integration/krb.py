"""
krb.py - a throw-away MIT Kerberos realm on loopback for the integration suite
(standard library only; groundwork for GSS-API, issue #15).

    realm = KrbRealm(ctx)             # EXAMPLE.TEST, its own KDC on a free loopback port
    realm.kinit("alice")              # alice's TGT into realm.ccache("alice")
    env = realm.client_env("alice")   # KRB5_CONFIG, KRB5CCNAME ... for a client tool
    env = realm.server_env()          # KRB5_CONFIG, KRB5_KTNAME ... for the acceptor

Everything lives in a directory of the test (ctx.path("krb")): krb5.conf (KRB5_CONFIG),
kdc.conf (KRB5_KDC_PROFILE), the database and its stash, the service keytab
(KRB5_KTNAME), one credential cache per user (KRB5CCNAME), the replay cache
(KRB5RCACHEDIR) and the KDC's log. /etc/krb5.conf, /etc/krb5kdc, /var/lib/krb5kdc and
the machine's credential caches are never read or written: every tool runs with an
environment that names the files above, and the system KDC the Debian package may
have installed is neither used nor stopped. The KDC (krb5kdc -n, no fork) is a child
of the test, stopped by PID at the test's cleanup.

Principals (password-less ones have random keys):
    alice@EXAMPLE.TEST, bob@EXAMPLE.TEST       users, passwords ALICE_PW / BOB_PW
    rcmd/localhost, rcmd/127.0.0.1             curl's default service (rcmd@PROXYHOST)
    socks/localhost, socks/127.0.0.1           the conventional SOCKS service name
    other/localhost                            a service the proxy has no key for
The keytab (realm.keytab) holds the rcmd/ and socks/ keys, not other/.

Host names are not canonicalised (rdns and dns_canonicalize_hostname off): a client
asking for the host-based service rcmd@127.0.0.1 gets a ticket for rcmd/127.0.0.1, and
rcmd@localhost one for rcmd/localhost, whatever /etc/hosts or DNS say. curl builds the
name from the proxy host exactly as given on its command line (lib/socks_gssapi.c).

clockskew is 1 s (the default 300 s would make the acceptor take a ticket that
expired less than five minutes ago): kinit(user, lifetime="2s") and a short wait give
an expired ticket.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

from harness import Fail, Skip, _register_proc, free_port, stop_process, tail

REALM = "EXAMPLE.TEST"
ALICE_PW = "alice-Kerb-pw1"
BOB_PW = "bob-Kerb-pw2"
MASTER_PW = "master-Kerb-pw0"
SERVICES = ("rcmd/localhost", "rcmd/127.0.0.1", "socks/localhost", "socks/127.0.0.1")
OTHER_SERVICE = "other/localhost"
TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist", "kdestroy", "kvno")
SBIN = ("/usr/sbin", "/sbin")
KDC_WAIT = 15.0


def _which(tool):
    found = shutil.which(tool)
    if found:
        return found
    for d in SBIN:
        p = os.path.join(d, tool)
        if os.access(p, os.X_OK):
            return p
    return None


def need_krb5():
    """Skip unless the MIT Kerberos tools are installed (tools/install-deps.sh test)."""
    missing = [t for t in TOOLS if not _which(t)]
    if missing:
        raise Skip("Kerberos tools missing: %s (krb5-kdc, krb5-admin-server, krb5-user)" % " ".join(missing))


def _free_port_both(host="127.0.0.1", tries=50):
    """A port free on host for both TCP and UDP (the KDC listens on both)."""
    for _ in range(tries):
        port = free_port(host)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise Fail("no port free for both TCP and UDP on %s" % host)


class KrbRealm:
    realm = REALM
    services = SERVICES
    other_service = OTHER_SERVICE

    def __init__(self, ctx, users=(("alice", ALICE_PW), ("bob", BOB_PW)), max_life="1h"):
        need_krb5()
        self.ctx = ctx
        self.dir = ctx.path("krb")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self.passwords = dict(users)
        self.port = _free_port_both()
        self.krb5_conf = self.path("krb5.conf")
        self.kdc_conf = self.path("kdc.conf")
        self.keytab = self.path("service.keytab")
        self.kdc_log = self.path("kdc.log")
        self.trace = self.path("trace.log")
        self.rcache_dir = self.path("rcache")
        os.makedirs(self.rcache_dir, mode=0o700, exist_ok=True)
        self.kdc = None
        self._write_configs(max_life)
        self._create_db()
        self._start_kdc()
        for user, pw in users:
            self.kadmin("addprinc -pw %s %s" % (pw, user))
        for svc in SERVICES + (OTHER_SERVICE,):
            self.kadmin("addprinc -randkey %s" % svc)
        self.kadmin("ktadd -k %s %s" % (self.keytab, " ".join(SERVICES)))

    # -- paths and environments

    def path(self, name):
        return os.path.join(self.dir, name)

    def principal(self, name):
        """alice -> alice@EXAMPLE.TEST, rcmd/localhost -> rcmd/localhost@EXAMPLE.TEST."""
        return name if "@" in name else "%s@%s" % (name, REALM)

    def ccache(self, user):
        return self.path("cc_" + user.replace("/", "_"))

    def _base_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5") and "proxy" not in k.lower()}
        env.update({
            "KRB5_CONFIG": self.krb5_conf,
            "KRB5_KDC_PROFILE": self.kdc_conf,
            "KRB5RCACHEDIR": self.rcache_dir,
            # No client keytab or default ccache of the machine's user is read.
            "KRB5_CLIENT_KTNAME": "FILE:" + self.path("no-client.keytab"),
            "KRB5CCNAME": "FILE:" + self.path("cc_none"),
        })
        return env

    def admin_env(self):
        return self._base_env()

    def client_env(self, user="alice", trace=False):
        """Environment of a client tool acting as user (after kinit(user))."""
        env = self._base_env()
        env["KRB5CCNAME"] = "FILE:" + self.ccache(user)
        if trace:
            env["KRB5_TRACE"] = self.trace
        return env

    def server_env(self, trace=False):
        """Environment of the acceptor: the service keytab, no credential cache of its own."""
        env = self._base_env()
        env["KRB5_KTNAME"] = "FILE:" + self.keytab
        if trace:
            env["KRB5_TRACE"] = self.trace
        return env

    # -- setup

    def _write_configs(self, max_life):
        with open(self.krb5_conf, "w") as f:
            f.write("""[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    clockskew = 1
    forwardable = false
    ticket_lifetime = 1h
    default_keytab_name = FILE:{keytab}
    default_ccache_name = FILE:{d}/cc_none

[realms]
    {realm} = {{
        kdc = tcp/127.0.0.1:{port}
        kdc = 127.0.0.1:{port}
    }}

[domain_realm]
    localhost = {realm}
    127.0.0.1 = {realm}
""".format(realm=REALM, port=self.port, keytab=self.keytab, d=self.dir))
        with open(self.kdc_conf, "w") as f:
            f.write("""[kdcdefaults]
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}

[realms]
    {realm} = {{
        database_name = {d}/principal
        key_stash_file = {d}/stash
        acl_file = {d}/kadm5.acl
        admin_keytab = FILE:{d}/kadm5.keytab
        kdc_listen = 127.0.0.1:{port}
        kdc_tcp_listen = 127.0.0.1:{port}
        kadmind_listen = 127.0.0.1:{admin_port}
        max_life = {max_life}
        max_renewable_life = 0
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{log}
    admin_server = FILE:{d}/kadmin.log
    default = FILE:{d}/krb5lib.log
""".format(realm=REALM, port=self.port, d=self.dir, log=self.kdc_log, max_life=max_life,
           admin_port=free_port()))
        with open(self.path("kadm5.acl"), "w") as f:
            f.write("")

    def _tool(self, argv, input=None, env=None, timeout=30, ok=True):
        argv = [_which(argv[0]) or argv[0]] + list(argv[1:])
        r = self.ctx.run(argv, timeout=timeout, input=input, env=env or self.admin_env())
        if ok and r.returncode != 0:
            raise Fail("%s: exit %d" % (" ".join(argv[:3]), r.returncode),
                       "stdout: %s\nstderr: %s" % (r.stdout.decode("utf-8", "replace"),
                                                   r.stderr.decode("utf-8", "replace")))
        return r

    def _create_db(self):
        self._tool(["kdb5_util", "-r", REALM, "create", "-s", "-P", MASTER_PW])

    def kadmin(self, query):
        """One kadmin.local query on the realm's own database."""
        r = self._tool(["kadmin.local", "-r", REALM, "-q", query])
        err = r.stderr.decode("utf-8", "replace")
        # kadmin.local exits 0 even when the query failed; it says so on stderr.
        if "while " in err or "error" in err.lower():
            raise Fail("kadmin.local -q %r failed" % query, err)
        return r

    def _start_kdc(self):
        argv = [_which("krb5kdc"), "-n", "-r", REALM, "-P", self.path("kdc.pid")]
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=self.admin_env(), close_fds=True)
        _register_proc(p)
        self.kdc = p
        self.ctx.defer(self.stop)
        deadline = time.monotonic() + KDC_WAIT
        while True:
            if p.poll() is not None:
                out = p.stdout.read().decode("utf-8", "replace")
                raise Fail("krb5kdc exited at start: rc %s" % p.returncode, out + "\n" + self.log_tail())
            s = socket.socket()
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", self.port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise Fail("krb5kdc not listening on 127.0.0.1:%d after %gs" % (self.port, KDC_WAIT),
                               self.log_tail())
                time.sleep(0.05)
            finally:
                s.close()

    def stop(self):
        """Stop the KDC (SIGTERM by PID, SIGKILL if it lingers)."""
        if self.kdc is not None:
            stop_process(self.kdc, signal.SIGTERM, 10)
            if self.kdc.stdout:
                self.kdc.stdout.close()
            self.kdc = None

    def log_tail(self, lines=20):
        try:
            with open(self.kdc_log, errors="replace") as f:
                return "kdc.log:\n" + tail(f.read(), lines)
        except OSError:
            return "(no kdc.log)"

    # -- client credentials

    def kinit(self, user="alice", lifetime=None, password=None):
        """user's TGT into ccache(user); lifetime like "2s" for a ticket about to expire."""
        argv = ["kinit", "-c", "FILE:" + self.ccache(user)]
        if lifetime:
            argv += ["-l", lifetime]
        argv.append(self.principal(user))
        pw = password if password is not None else self.passwords[user]
        return self._tool(argv, input=(pw + "\n").encode(), env=self.client_env(user))

    def kinit_fails(self, user, password):
        r = self._tool(["kinit", "-c", "FILE:" + self.ccache(user), self.principal(user)],
                       input=(password + "\n").encode(), env=self.client_env(user), ok=False)
        return r.returncode != 0

    def kvno(self, user, service):
        """A service ticket for service (e.g. other/localhost) into user's ccache."""
        return self._tool(["kvno", self.principal(service)], env=self.client_env(user))

    def klist(self, user="alice"):
        r = self._tool(["klist", "-c", "FILE:" + self.ccache(user)], env=self.client_env(user), ok=False)
        return r.stdout.decode("utf-8", "replace")

    def keytab_principals(self):
        r = self._tool(["klist", "-k", "FILE:" + self.keytab], env=self.server_env())
        return sorted({line.split()[-1] for line in r.stdout.decode().splitlines()[3:] if line.strip()})

    def expire_soon(self, user="alice", lifetime="2s"):
        """kinit with a ticket that lives lifetime, then wait until it has expired
        (clockskew is 1 s in this realm's krb5.conf)."""
        self.kinit(user, lifetime=lifetime)
        secs = int(lifetime.rstrip("s"))
        time.sleep(secs + 2.5)
