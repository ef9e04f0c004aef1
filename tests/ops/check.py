#!/usr/bin/env python3
"""Checks the dashboard and the alert rules against a real Prometheus that
scrapes a running engine (scripts/test-ops.sh starts both).

Fails when a PromQL expression of deploy/grafana/cvm.json or
deploy/prometheus/alerts.yml references a metric the engine does not export,
when a dashboard query returns no series (every panel has data in the demo),
when Prometheus reports a rule unhealthy, when an alert's runbook link names
no section of docs/runbook.md, or when an alert is not in the state the demo
calls for (see EXPECTED_STATES). Prints the series count
of every panel.

Only the standard library: it runs wherever python3 does.
"""

import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/cvm.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
RUNBOOK = ROOT / "docs/runbook.md"

# Grafana's variables, as an instant query over a short demo needs them.
VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "${datasource}": ""}

# Alerts the demo must set off, and in what state (every other one must stay
# inactive): it publishes a broken edit of an offer, which is rejected while
# version 1 keeps running (fires at once); and its synthetic history starts
# from nothing, so the model's history features (app opens, orders, revenue)
# grow through the run and the last drift windows are far from the training
# mix (PSI > 1): the model drifts and falls back, which the alert waits 30
# minutes to report (pending).
EXPECTED_STATES = {"CvmConfigDocumentRejected": "firing", "CvmModelDriftFallback": "pending"}

# PromQL words that are not metric names: aggregations, modifiers, keywords.
KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "inf", "nan",
}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def self_test():
    """The extractor on expressions whose answer is known."""
    cases = {
        'sum by (result) (rate(cvm_events_ingested_total[30s]))': {"cvm_events_ingested_total"},
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[5m])))': {"a_bucket"},
        'up{job="cvm"} == 0': {"up"},
        'x / clamp_min(y + z, 1e-9) > 0.01': {"x", "y", "z"},
        'a > 1 and on (instance) b or c unless d': {"a", "b", "c", "d"},
        'time() - max(process_start_time_seconds{job="cvm"})': {"process_start_time_seconds"},
        'sum without (topic, reason) (rate(dlq[10m])) offset 5m': {"dlq"},
    }
    for expr, want in cases.items():
        got = metric_names(expr)
        assert got == want, f"metric_names({expr!r}) = {got}, want {want}"


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr):
        data = self.get("/api/v1/query", query=expr)
        return data["result"] if data["resultType"] in ("vector", "matrix") else [data["result"]]


def dashboard_targets():
    """(panel title, expression) of every query, variables substituted."""
    out = []
    for p in json.loads(DASHBOARD.read_text())["panels"]:
        for t in p.get("targets", []):
            expr = t["expr"]
            for k, v in VARIABLES.items():
                expr = expr.replace(k, v)
            out.append((p["title"], expr))
    return out


def anchors(markdown):
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def main():
    self_test()
    prom = Prometheus(sys.argv[1])
    failures = []

    exported = set(prom.get("/api/v1/label/__name__/values"))
    print(f"Prometheus holds {len(exported)} metric names scraped from the engine")

    # Every panel query: known metrics, and at least one series.
    print(f"\n{'series':>6}  panel: query")
    for title, expr in dashboard_targets():
        missing = metric_names(expr) - exported
        if missing:
            failures.append(f"dashboard panel {title!r}: {expr}: metrics not exported: {sorted(missing)}")
        try:
            n = len(prom.query(expr))
        except Exception as e:  # noqa: BLE001 - reported, and the check fails
            failures.append(f"dashboard panel {title!r}: {expr}: {e}")
            continue
        print(f"{n:>6}  {title}: {expr}")
        if n == 0:
            failures.append(f"dashboard panel {title!r}: no series: {expr}")

    # Every alert rule: loaded, evaluated without error, known metrics, a runbook section.
    sections = anchors(RUNBOOK.read_text())
    rules = [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]
    alerts = [r for r in rules if r["type"] == "alerting"]
    if not alerts:
        failures.append("Prometheus loaded no alert rules")
    print(f"\n{len(alerts)} alert rules, as Prometheus evaluated them:")
    for r in alerts:
        name, expr = r["name"], r["query"]
        missing = metric_names(expr) - exported
        if missing:
            failures.append(f"alert {name}: metrics not exported: {sorted(missing)}")
        if r.get("health") != "ok" or r.get("lastError"):
            failures.append(f"alert {name}: health {r.get('health')}: {r.get('lastError')}")
        n = len(prom.query(expr))
        url = r.get("annotations", {}).get("runbook_url", "")
        anchor = url.partition("#")[2]
        if not url.startswith("https://") or "docs/runbook.md#" not in url or anchor not in sections:
            failures.append(f"alert {name}: runbook_url {url!r} names no section of docs/runbook.md")
        want = EXPECTED_STATES.get(name, "inactive")
        if r.get("state") != want:
            failures.append(f"alert {name}: {r.get('state')} on the demo engine, want {want}")
        print(f"  {name:<28} health {r.get('health'):<4} state {r.get('state'):<8} series now {n}  → #{anchor}")

    if failures:
        print("\nFAILED:", *failures, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print("\nevery dashboard query and alert rule checked against the running engine")


if __name__ == "__main__":
    main()
