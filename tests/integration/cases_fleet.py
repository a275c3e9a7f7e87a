"""
cases_fleet.py - the parts a fleet is built from (issue #13 item 4): the Prometheus
scrape configuration and alert rules pass promtool, and every metric the rules and the
Grafana dashboard name is one a running ringsocks exports (so neither rots when a metric
is renamed).
"""

import json
import os
import re
import shutil

from harness import Skip, admin_request, case, check, free_port, need_ringsocks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(ROOT, "conf", "prometheus", "ringsocks-alerts.yml")
SCRAPE = os.path.join(ROOT, "conf", "prometheus", "prometheus.yml")
DASHBOARD = os.path.join(ROOT, "conf", "grafana", "ringsocks-dashboard.json")
NAME = re.compile(r"\b((?:ringsocks|process)_[a-z0-9_]+)")


def output(r):
    out = r.stdout + r.stderr
    return (out.decode(errors="replace") if isinstance(out, bytes) else out)[-600:]


def need_promtool():
    if not shutil.which("promtool"):
        raise Skip("promtool not installed (Debian package prometheus)")


@case("fleet_promtool")
def fleet_promtool(ctx):
    """The alert rules and the scrape configuration pass promtool."""
    need_promtool()
    r = ctx.run(["promtool", "check", "rules", RULES], timeout=60)
    check(r.returncode == 0, "promtool check rules %s: exit %d: %s" % (RULES, r.returncode, output(r)))
    r = ctx.run(["promtool", "check", "config", "--syntax-only", SCRAPE], timeout=60)
    check(r.returncode == 0, "promtool check config %s: exit %d: %s" % (SCRAPE, r.returncode, output(r)))


def exported(p):
    body = admin_request(p, "GET", "/metrics")[1]
    text = body.decode() if isinstance(body, bytes) else body
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


@case("fleet_metric_names")
def fleet_metric_names(ctx):
    """Every ringsocks_* and process_* name in the alert rules and the dashboard is exported."""
    need_ringsocks()
    # A fleet's node (nothing listens at its Redis: the series are there all the same).
    p = ctx.proxy(args=["--redis", "127.0.0.1:%d" % free_port()])
    have = exported(p)
    with open(RULES) as f:
        rules = f.read()
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for panel in dash["panels"] for t in panel.get("targets", [])]
    check(len(exprs) >= 9, "the dashboard has %d queries" % len(exprs))
    for where, text in [("alert rules", rules)] + [("dashboard", e) for e in exprs]:
        for name in NAME.findall(text):
            check(name in have, "%s name %s, which /metrics does not export" % (where, name))
