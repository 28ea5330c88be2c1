#!/usr/bin/env bash
# Checks the observability files under deploy/ without running any service:
#   - promtool: check rules, test rules (deploy/prometheus/alerts.test.yml), check config;
#   - the Grafana dashboards (python3): JSON, fixed unique uids, the datasource and store
#     variables, unique panel ids, non-overlapping gridPos, every target an expr on
#     ${datasource}, store-labelled metrics filtered by store=~"$store", metric names
#     from the catalogue, and every expression still whole after
#     scripts/dashboard-exprs.py --substitute;
#   - the rules: severity, summary, description, and a runbook_url whose anchor is a
#     heading of deploy/README.md; every alert has a firing and a quiet unit test;
#     deploy/k8s/prometheusrule.yaml holds the same groups as alerts.yml;
#   - docker-compose.yml, the Grafana provisioning and the otel-collector config parse
#     (PyYAML), and the mounts they name exist;
#   - kustomize (kubectl kustomize or kustomize, if installed) renders deploy/k8s and
#     deploy, with the metrics ports, the ServiceMonitor and the dashboards ConfigMap.
# Prints the counts at the end. Needs promtool (scripts/ensure-tools.sh installs it) and
# python3; PyYAML and kustomize are used when present and skipped with a note when not
# (with CI set, their absence fails the check).
#
#   scripts/check-observability.sh                          # check
#   scripts/check-observability.sh --write-prometheusrule   # rewrite deploy/k8s/prometheusrule.yaml from alerts.yml, then check
set -euo pipefail
cd "$(dirname "$0")/.."

write_rule=0
case "${1:-}" in
  "") ;;
  --write-prometheusrule) write_rule=1 ;;
  *) echo "usage: $0 [--write-prometheusrule]" >&2; exit 2 ;;
esac

say() { printf 'check-observability: %s\n' "$*"; }
fail() { printf 'check-observability: FAILED: %s\n' "$*" >&2; exit 1; }

command -v promtool >/dev/null || fail "promtool not on PATH (scripts/ensure-tools.sh installs it)"
command -v python3 >/dev/null || fail "python3 not on PATH"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ "$write_rule" = 1 ]; then
  python3 - <<'PY'
from pathlib import Path
import yaml


def yaml_load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def prometheusrule_doc(groups):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "churnguard",
            "labels": {"app.kubernetes.io/part-of": "churnguard"},
        },
        "spec": {"groups": groups},
    }


PROMETHEUSRULE_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by
#   scripts/check-observability.sh --write-prometheusrule
# Do not edit: change alerts.yml (and its tests), then run that. The check fails while
# the two differ.
#
# The recording rules and alerts for the Prometheus operator (listed in
# deploy/kustomization.yaml). Your Prometheus loads only the PrometheusRules its
# ruleSelector matches: kube-prometheus-stack selects `release: <its Helm release name>`
# by default; add that label under metadata.labels if so (and keep it when regenerating).
# runbook_url is a path from the repository root (deploy/README.md#<alert>).
"""


def dump_yaml(doc):
    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=1000, allow_unicode=True)


groups = yaml_load("deploy/prometheus/alerts.yml")["groups"]
pr_path = Path("deploy/k8s/prometheusrule.yaml")
existing_labels = {}
if pr_path.exists():
    existing_labels = (yaml_load(pr_path) or {}).get("metadata", {}).get("labels", {})
doc = prometheusrule_doc(groups)
doc["metadata"]["labels"].update(existing_labels)
pr_path.write_text(PROMETHEUSRULE_HEADER + dump_yaml(doc), encoding="utf-8")
print(f"check-observability: wrote {pr_path}")
PY
fi

say "promtool check rules"
promtool check rules deploy/prometheus/alerts.yml
say "promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml
say "promtool check config"
promtool check config deploy/prometheus/prometheus.yml

say "scripts/dashboard-exprs.py --substitute"
python3 scripts/dashboard-exprs.py --substitute >"$work/exprs.jsonl" \
  || fail "dashboard-exprs.py --substitute left a variable unreplaced (above)"

# Kustomize renders, if a kustomize is available (kubectl's built-in one will do).
kustomize_cmd=()
if command -v kubectl >/dev/null; then
  kustomize_cmd=(kubectl kustomize)
elif command -v kustomize >/dev/null; then
  kustomize_cmd=(kustomize build)
fi
if [ "${#kustomize_cmd[@]}" -gt 0 ]; then
  say "${kustomize_cmd[*]} deploy/k8s, deploy"
  "${kustomize_cmd[@]}" deploy/k8s >"$work/k8s.yaml" || fail "kustomize deploy/k8s"
  "${kustomize_cmd[@]}" deploy >"$work/deploy.yaml" || fail "kustomize deploy"
fi

say "dashboards, rules, runbooks, PrometheusRule, compose, provisioning, kustomize output"
python3 - "$work" <<'PY'
import json
import os
import re
import sys
from itertools import combinations
from pathlib import Path

work = Path(sys.argv[1])
CI = bool(os.environ.get("CI"))
errors = []
notes = []


def err(msg):
    errors.append(msg)


try:
    import yaml
except ImportError:
    yaml = None

# ------------------------------------------------------------------ the metric catalogue
HISTOGRAMS = {
    "grpc_server_request_duration_seconds", "churnguard_ingest_publish_duration_seconds",
    "churnguard_ingest_batch_swipes", "churnguard_consumer_batch_records",
    "churnguard_swipe_to_score_seconds", "churnguard_complaint_resolution_business_seconds",
    "churnguard_complaint_first_response_business_seconds",
    "churnguard_redis_command_duration_seconds",
}
OTHERS = {
    "grpc_server_requests_total", "grpc_server_in_flight_requests",
    "churnguard_ingest_swipes_accepted_total", "churnguard_ingest_swipes_rejected_total",
    "churnguard_ingest_publish_in_flight", "churnguard_log_produce_errors_total",
    "churnguard_log_producer_retirements_total", "churnguard_consumer_records_applied_total",
    "churnguard_consumer_lag_records", "churnguard_consumer_event_time_lag_seconds",
    "churnguard_consumer_dead_letters_total", "churnguard_consumer_duplicates_dropped_total",
    "churnguard_consumer_checkpoint_conflicts_total", "churnguard_churn_signals_total",
    "churnguard_timer_firings_total", "churnguard_model_refits_total",
    "churnguard_model_log_likelihood", "churnguard_store_customers",
    "churnguard_store_defected_customers", "churnguard_store_value_at_risk_minor_units",
    "churnguard_complaints_filed_total", "churnguard_complaints_open",
    "churnguard_sla_breaches_total", "churnguard_sla_warnings_total",
    "churnguard_escalations_total", "churnguard_outreach_cases_opened_total",
    "churnguard_outreach_cases_closed_total", "churnguard_outreach_reasons_total",
    "churnguard_redis_errors_total", "churnguard_group_partitions",
    "churnguard_group_partitions_owned", "churnguard_group_rejoins_total",
}
CATALOGUE = OTHERS | {h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
STORE_METRICS = {
    "churnguard_churn_signals_total", "churnguard_store_customers",
    "churnguard_store_defected_customers", "churnguard_store_value_at_risk_minor_units",
}
METRIC_TOKEN = re.compile(r"(?<![\w:])((?:churnguard|grpc_server)_[a-z0-9_]+)(?![\w:])")


def unknown_metrics(expr):
    return sorted({m for m in METRIC_TOKEN.findall(expr) if m not in CATALOGUE})


# ------------------------------------------------------------------ dashboards
PANEL_TYPES = {"timeseries", "stat", "bargauge", "table"}
EXPECTED_UIDS = {"churnguard-ops.json": "churnguard-ops",
                 "churnguard-retention.json": "churnguard-retention"}
DS_UID = "${datasource}"
STORE_QUERY = "label_values(churnguard_store_customers, store)"

dash_dir = Path("deploy/grafana/dashboards")
files = sorted(dash_dir.glob("*.json"))
for name in EXPECTED_UIDS:
    if not (dash_dir / name).exists():
        err(f"{dash_dir / name}: missing")
uids = {}
panel_count = 0
dash_exprs = 0
for path in files:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        err(f"{path}: not JSON: {e}")
        continue
    uid = d.get("uid")
    if path.name in EXPECTED_UIDS and uid != EXPECTED_UIDS[path.name]:
        err(f"{path}: uid {uid!r}, expected {EXPECTED_UIDS[path.name]!r}")
    if uid in uids:
        err(f"{path}: uid {uid!r} also in {uids[uid]}")
    uids[uid] = path
    if d.get("schemaVersion") != 39:
        err(f"{path}: schemaVersion {d.get('schemaVersion')}, expected 39")
    if d.get("id") is not None:
        err(f"{path}: id must be null (Grafana assigns it)")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err(f"{path}: no datasource variable (type datasource, query prometheus)")
    store = variables.get("store")
    if not store:
        err(f"{path}: no store variable")
    else:
        q = store.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if q != STORE_QUERY:
            err(f"{path}: store variable query {q!r}, expected {STORE_QUERY!r}")
        if not (store.get("multi") and store.get("includeAll")):
            err(f"{path}: store variable must be multi and includeAll")
        if (store.get("datasource") or {}).get("uid") != DS_UID:
            err(f"{path}: store variable must query {DS_UID}")
    ids = set()
    boxes = []
    for p in d.get("panels", []):
        panel_count += 1
        where = f"{path.name} panel {p.get('id')} {p.get('title')!r}"
        if not isinstance(p.get("id"), int) or p["id"] in ids:
            err(f"{where}: id missing or not unique")
        ids.add(p.get("id"))
        if p.get("type") not in PANEL_TYPES:
            err(f"{where}: type {p.get('type')!r} not one of {sorted(PANEL_TYPES)}")
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in "hwxy") or g["w"] <= 0 or g["h"] <= 0 \
                or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            err(f"{where}: bad gridPos {g}")
        else:
            boxes.append((where, g))
        if (p.get("datasource") or {}).get("uid") != DS_UID:
            err(f"{where}: panel datasource is not {DS_UID}")
        targets = p.get("targets") or []
        if not targets:
            err(f"{where}: no targets")
        refs = set()
        for t in targets:
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err(f"{where}: target {t.get('refId')} has no expr")
                continue
            dash_exprs += 1
            if t.get("refId") in refs:
                err(f"{where}: refId {t.get('refId')} twice")
            refs.add(t.get("refId"))
            if (t.get("datasource") or {}).get("uid") != DS_UID:
                err(f"{where}: target {t.get('refId')} does not use {DS_UID}")
            bad = unknown_metrics(expr)
            if bad:
                err(f"{where}: metrics not in the catalogue: {bad}")
            for m in STORE_METRICS:
                for sel in re.finditer(r"(?<![\w:])" + m + r"(?![\w:])(\{[^}]*\})?", expr):
                    if not sel.group(1) or 'store=~"$store"' not in sel.group(1):
                        err(f"{where}: {m} without store=~\"$store\"")
    for (wa, a), (wb, b) in combinations(boxes, 2):
        if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and \
                a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]:
            err(f"{wa} overlaps {wb}")

rows = [json.loads(line) for line in (work / "exprs.jsonl").read_text().splitlines()]
if sum(1 for r in rows if r["kind"] == "panel") != dash_exprs:
    err(f"dashboard-exprs.py printed {sum(1 for r in rows if r['kind'] == 'panel')} panel "
        f"expressions, the dashboards have {dash_exprs}")
for r in rows:
    if "$" in r["expr"]:
        err(f"{r['dashboard']} / {r['panel']}: a variable is left after --substitute")
    if r["kind"] == "panel" and r["needs_recording_rules"]:
        err(f"{r['dashboard']} / {r['panel']}: a dashboard must not need the recording rules")


# ------------------------------------------------------------------ runbook anchors
def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


readme = Path("deploy/README.md").read_text(encoding="utf-8")
anchors = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", readme, re.M)}

# ------------------------------------------------------------------ rules and tests
EXPECTED_ALERTS = {"ConsumerLagGrowing", "EndToEndLatencyHigh", "DeadLettersAppearing",
                   "ServiceDown", "OwnerLevelSlaBreach", "StoreDefectionRateJump",
                   "GrpcErrorRateHigh", "PartitionsWithoutOwner"}
alert_count = record_count = 0
test_count = alert_evals = expr_checks = 0


def yaml_load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


if yaml is None:
    msg = "PyYAML missing: rule metadata, unit-test coverage, PrometheusRule, compose and provisioning not checked"
    (errors if CI else notes).append(msg)
    # The counts, without a YAML parser.
    alert_count = sum(1 for r in rows if r["kind"] == "alert")
    record_count = sum(1 for r in rows if r["kind"] == "record")
    tests_text = Path("deploy/prometheus/alerts.test.yml").read_text(encoding="utf-8")
    test_count = len(re.findall(r"^  - name:", tests_text, re.M))
    alert_evals = len(re.findall(r"^\s+- eval_time:", tests_text, re.M))
    expr_checks = len(re.findall(r"^\s+- expr:", tests_text, re.M))
else:
    rules_doc = yaml_load("deploy/prometheus/alerts.yml")
    groups = rules_doc["groups"]
    if "churnguard" not in [g["name"] for g in groups]:
        err("alerts.yml: no group named churnguard")
    recorded = set()
    alerts = set()
    for g in groups:
        for r in g["rules"]:
            bad = [m for m in unknown_metrics(str(r["expr"])) if m not in recorded]
            if "record" in r:
                record_count += 1
                recorded.add(r["record"])
            else:
                alert_count += 1
                name = r["alert"]
                alerts.add(name)
                if g["name"] != "churnguard":
                    err(f"alert {name}: in group {g['name']}, expected churnguard")
                if not (r.get("labels") or {}).get("severity"):
                    err(f"alert {name}: no severity label")
                ann = r.get("annotations") or {}
                for key in ("summary", "description", "runbook_url"):
                    if not ann.get(key):
                        err(f"alert {name}: no {key} annotation")
                url = ann.get("runbook_url", "")
                m = re.fullmatch(r"deploy/README\.md#([\w-]+)", url)
                if not m:
                    err(f"alert {name}: runbook_url {url!r} is not deploy/README.md#<anchor>")
                elif m.group(1) not in anchors:
                    err(f"alert {name}: deploy/README.md has no heading for #{m.group(1)}")
            if bad:
                err(f"rule {r.get('alert') or r.get('record')}: metrics not in the catalogue: {bad}")
    if alerts != EXPECTED_ALERTS:
        err(f"alerts.yml: alerts {sorted(alerts)}, expected {sorted(EXPECTED_ALERTS)}")

    tests_doc = yaml_load("deploy/prometheus/alerts.test.yml")
    fires, quiet = set(), set()
    for t in tests_doc.get("tests", []):
        test_count += 1
        for case in t.get("alert_rule_test", []) or []:
            alert_evals += 1
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
            for a in case.get("exp_alerts") or []:
                if not a.get("exp_labels") or not a.get("exp_annotations"):
                    err(f"test {t['name']!r}: {case['alertname']} expected without exp_labels and exp_annotations")
        expr_checks += len(t.get("promql_expr_test", []) or [])
    for a in sorted(alerts):
        if a not in fires:
            err(f"alerts.test.yml: no case where {a} fires")
        if a not in quiet:
            err(f"alerts.test.yml: no case where {a} stays quiet")

    # PrometheusRule: the same groups as alerts.yml.
    pr_path = Path("deploy/k8s/prometheusrule.yaml")
    if not pr_path.exists():
        err(f"{pr_path}: missing (scripts/check-observability.sh --write-prometheusrule)")
    else:
        pr = yaml_load(pr_path)
        if pr.get("kind") != "PrometheusRule" or pr.get("spec", {}).get("groups") != groups:
            err(f"{pr_path}: differs from deploy/prometheus/alerts.yml "
                "(scripts/check-observability.sh --write-prometheusrule)")

    # docker-compose.yml and what it mounts.
    compose = yaml_load("deploy/docker-compose.yml")
    services = compose.get("services", {})
    for s in ("prometheus", "grafana", "otel-collector", "jaeger"):
        if s not in services:
            err(f"docker-compose.yml: no service {s}")
    for s, port in (("purchase-ingest", 9464), ("churn-scoring", 9465), ("feedback", 9466)):
        svc = services.get(s, {})
        env = svc.get("environment", {})
        if env.get("LOG_FORMAT") != "json":
            err(f"docker-compose.yml: {s} without LOG_FORMAT=json")
        if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") != "http://otel-collector:4317":
            err(f"docker-compose.yml: {s} without OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317")
        test = " ".join(svc.get("healthcheck", {}).get("test", []))
        if f"/{port}" not in test or "/healthz" not in test:
            err(f"docker-compose.yml: {s} healthcheck does not GET /healthz on {port}")
        if not any(str(p).endswith(f":{port}:{port}") for p in svc.get("ports", [])):
            err(f"docker-compose.yml: {s} does not publish its admin port {port}")
    mounts = {}
    for name, svc in services.items():
        for v in svc.get("volumes", []) or []:
            src, _, rest = str(v).partition(":")
            if src.startswith("."):
                if not (Path("deploy") / src).exists():
                    err(f"docker-compose.yml: {name} mounts {src}, which does not exist")
                mounts[src] = rest.split(":")[0]
    # Grafana provisioning: the dashboard provider reads where compose mounts the dashboards.
    prov = yaml_load("deploy/grafana/provisioning/dashboards/churnguard.yml")
    paths = [p.get("options", {}).get("path") for p in prov.get("providers", [])]
    if mounts.get("./grafana/dashboards") not in paths:
        err(f"grafana provisioning: provider path {paths} is not where compose mounts "
            f"the dashboards ({mounts.get('./grafana/dashboards')})")
    dsp = yaml_load("deploy/grafana/provisioning/datasources/prometheus.yml")
    if not any(d.get("type") == "prometheus" for d in dsp.get("datasources", [])):
        err("grafana provisioning: no prometheus data source")
    yaml_load("deploy/otel-collector.yaml")

    # Kustomize output.
    for name in ("k8s.yaml", "deploy.yaml"):
        if not (work / name).exists():
            msg = "no kubectl or kustomize: the kustomizations were not rendered"
            (errors if CI else notes).append(msg)
            break
    else:
        want = {"purchase-ingest": 9464, "churn-scoring": 9465, "feedback": 9466}
        for name in ("k8s.yaml", "deploy.yaml"):
            objs = [o for o in yaml.safe_load_all((work / name).read_text()) if o]
            kinds = {(o["kind"], o["metadata"]["name"]): o for o in objs}
            for app, port in want.items():
                dep = kinds.get(("Deployment", app))
                svc = kinds.get(("Service", app))
                if not dep or not svc:
                    err(f"{name}: no Deployment/Service {app}")
                    continue
                c = dep["spec"]["template"]["spec"]["containers"][0]
                if {"name": "metrics", "containerPort": port, "protocol": "TCP"} not in c.get("ports", []):
                    err(f"{name}: Deployment {app} has no port metrics {port}")
                for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    hg = c.get(probe, {}).get("httpGet", {})
                    if hg.get("path") != path or hg.get("port") != "metrics":
                        err(f"{name}: {app} {probe} is not GET {path} on port metrics")
                if not any(p.get("name") == "metrics" and p.get("port") == port
                           and p.get("targetPort") == "metrics" for p in svc["spec"]["ports"]):
                    err(f"{name}: Service {app} has no port metrics {port}")
            if name == "deploy.yaml":
                sm = kinds.get(("ServiceMonitor", "churnguard"))
                if not sm or [e.get("port") for e in sm["spec"]["endpoints"]] != ["metrics"]:
                    err("deploy: no ServiceMonitor churnguard on port metrics")
                if not kinds.get(("PrometheusRule", "churnguard")):
                    err("deploy: no PrometheusRule churnguard")
                cm = kinds.get(("ConfigMap", "churnguard-grafana-dashboards"))
                if not cm or cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
                    err("deploy: no ConfigMap churnguard-grafana-dashboards labelled grafana_dashboard: \"1\"")
                else:
                    for f in files:
                        if cm["data"].get(f.name) != f.read_text(encoding="utf-8"):
                            err(f"deploy: the dashboards ConfigMap's {f.name} differs from {f}")
                    size = len(json.dumps(cm))
                    if size > 250_000:
                        err(f"deploy: the dashboards ConfigMap is {size} bytes: too big for "
                            "kubectl's client-side apply annotation; split it")

for n in notes:
    print(f"check-observability: note: {n}")
if errors:
    for e in errors:
        print(f"check-observability: FAILED: {e}", file=sys.stderr)
    sys.exit(1)
(work / "counts").write_text(json.dumps({
    "alerts": alert_count, "records": record_count, "tests": test_count,
    "alert_evals": alert_evals, "expr_checks": expr_checks, "panels": panel_count,
    "exprs": len(rows), "dash_exprs": dash_exprs, "rule_exprs": len(rows) - dash_exprs,
    "dashboards": len(files),
}))
PY

python3 - "$work/counts" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
print(f"check-observability: OK: {c['alerts']} alert rules (+{c['records']} recording rules), "
      f"{c['tests']} unit tests ({c['alert_evals']} alert evaluations, {c['expr_checks']} expression checks), "
      f"{c['panels']} panels in {c['dashboards']} dashboards, "
      f"{c['exprs']} expressions ({c['dash_exprs']} in panels, {c['rule_exprs']} in rules)")
PY
