#!/usr/bin/env python3
"""Prints every PromQL expression of the churnguard dashboards and Prometheus rules.

One JSON object per line:

  {"dashboard": "churnguard-ops", "panel": "Swipes accepted per second", "expr": "...",
   "kind": "panel", "panel_id": 9, "ref_id": "A", "instant": false,
   "needs_recording_rules": false}

  {"dashboard": "rules:churnguard", "panel": "ServiceDown", "expr": "...",
   "kind": "alert", "panel_id": null, "ref_id": null, "instant": true,
   "needs_recording_rules": false}

- Dashboards (deploy/grafana/dashboards/*.json): "dashboard" is the uid, "panel" the
  panel's title; one line per target. "instant" says whether Grafana runs it as an
  instant query (else a range query).
- Rules (deploy/prometheus/alerts.yml): "dashboard" is "rules:<group>", "panel" the alert
  or recorded series name, "kind" "alert" or "record". Rules are instant queries.
- "needs_recording_rules": the expression reads a series recorded by alerts.yml, so it
  only returns data from a Prometheus that loads those rules (and has evaluated them).

--substitute replaces Grafana's variables so that the expressions can be sent to
Prometheus as they are: $store (and ${store}, ${store:regex}, [[store]]) by .*,
$__rate_interval and $__interval by 1m, $__range by 1h, $__range_s by 3600, and so on
(change the values with --store, --rate-interval, --range). It fails if a variable it
does not know is left.

Used by a test that runs every expression against a Prometheus scraping
churnguard-local. Scrape only ONE of churnguard-local's admin ports: all three serve the
same process-wide registry, so scraping three would count every series three times.

Needs only the Python standard library; PyYAML is used when installed, else a small
reader for the shape of alerts.yml (record/alert with an inline or block expr).
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def duration_seconds(text):
    """Seconds in a Prometheus duration like 1m, 90s, 1h30m."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def substitutions(store, rate_interval, range_):
    range_s = duration_seconds(range_)
    interval_s = duration_seconds(rate_interval)
    return {
        "store": store,
        "__rate_interval": rate_interval,
        "__interval": rate_interval,
        "__interval_ms": str(int(interval_s * 1000)),
        "__range": range_,
        "__range_s": str(int(range_s)),
        "__range_ms": str(int(range_s * 1000)),
    }


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr, values):
    def one(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return VARIABLE.sub(one, expr)


def load_yaml_rules(path):
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        return read_rules_without_yaml(path)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            kind = "alert" if "alert" in rule else "record"
            out.append((group["name"], kind, rule[kind], str(rule["expr"])))
    return out


def read_rules_without_yaml(path):
    """The rules of a file shaped like alerts.yml, without a YAML library.

    Understands `- name:` of a group, `- alert:`/`- record:` and `expr:` given inline or
    as a `|`/`|-`/`>`/`>-` block scalar; anything fancier needs PyYAML.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    group = kind = name = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*- name:\s*(\S.*?)\s*$", line)
        if m:
            group = m.group(1).strip("'\"")
        m = re.match(r"^\s*- (alert|record):\s*(\S.*?)\s*$", line)
        if m:
            kind, name = m.group(1), m.group(2).strip("'\"")
        m = re.match(r"^(\s*)expr:\s*(.*?)\s*$", line)
        if m and kind:
            indent, value = len(m.group(1)), m.group(2)
            if value in ("|", "|-", ">", ">-"):
                block = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or
                                          len(lines[i]) - len(lines[i].lstrip()) > indent):
                    block.append(lines[i].rstrip())
                    i += 1
                while block and not block[-1]:
                    block.pop()
                # The block's indentation is that of its first line; deeper stays.
                strip = min((len(b) - len(b.lstrip()) for b in block if b), default=0)
                block = [b[strip:] for b in block]
                expr = ("\n" if value.startswith("|") else " ").join(block)
                out.append((group, kind, name, expr))
                kind = None
                continue
            if value[:1] in ("'", '"') and value[-1:] == value[:1]:
                value = value[1:-1]
                if m.group(2)[:1] == "'":
                    value = value.replace("''", "'")
            out.append((group, kind, name, value))
            kind = None
        i += 1
    return out


def dashboard_targets(directory):
    for path in sorted(Path(directory).glob("*.json")):
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        panels = list(dash.get("panels", []))
        # Panels nested in collapsed rows.
        for p in list(panels):
            panels.extend(p.get("panels", []))
        for panel in panels:
            for t in panel.get("targets", []):
                if "expr" not in t:
                    continue
                yield {
                    "dashboard": dash.get("uid"),
                    "panel": panel.get("title"),
                    "expr": t["expr"],
                    "kind": "panel",
                    "panel_id": panel.get("id"),
                    "ref_id": t.get("refId"),
                    "instant": bool(t.get("instant")) and not t.get("range", False),
                }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--substitute", action="store_true",
                    help="replace Grafana variables ($store, $__rate_interval, $__range, ...)")
    ap.add_argument("--store", default=".*", help="value for $store (default .*)")
    ap.add_argument("--rate-interval", default="1m",
                    help="value for $__rate_interval and $__interval (default 1m)")
    ap.add_argument("--range", dest="range_", default="1h",
                    help="value for $__range (default 1h; $__range_s and _ms follow)")
    ap.add_argument("--dashboards", default=str(DASHBOARDS), help="directory of dashboard JSON")
    ap.add_argument("--rules", default=str(RULES), help="Prometheus rule file")
    ap.add_argument("--only", choices=["dashboards", "rules"],
                    help="print only the dashboards' or only the rules' expressions")
    args = ap.parse_args()

    all_rules = load_yaml_rules(args.rules) if Path(args.rules).exists() else []
    rules = all_rules if args.only != "dashboards" else []
    recorded = {name for _, kind, name, _ in all_rules if kind == "record"}
    uses_recorded = re.compile(
        r"(?<![\w:])(" + "|".join(re.escape(n) for n in sorted(recorded)) + r")(?![\w:])"
    ) if recorded else None

    rows = []
    if args.only != "rules":
        rows.extend(dashboard_targets(args.dashboards))
    for group, kind, name, expr in rules:
        rows.append({
            "dashboard": f"rules:{group}",
            "panel": name,
            "expr": expr,
            "kind": kind,
            "panel_id": None,
            "ref_id": None,
            "instant": True,
        })

    values = substitutions(args.store, args.rate_interval, args.range_) if args.substitute else None
    failed = False
    for row in rows:
        row["needs_recording_rules"] = bool(uses_recorded and uses_recorded.search(row["expr"]))
        if values is not None:
            try:
                row["expr"] = substitute(row["expr"], values)
            except KeyError as e:
                print(f"dashboard-exprs: {row['dashboard']} / {row['panel']}: unknown variable "
                      f"${e.args[0]} in {row['expr']!r}", file=sys.stderr)
                failed = True
                continue
        print(json.dumps(row, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    import signal

    # Quietly stop when the reader does (e.g. `| head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
