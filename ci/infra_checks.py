#!/usr/bin/env python3
"""Structure checks of the deployment files that no off-the-shelf validator covers.

Called by ci/lint-infra.sh (with the infra venv's python, which has PyYAML):
  infra_checks.py metrics                      metric names in alerts and dashboards exist
  infra_checks.py dashboards OUT_RULES_FILE     dashboards: JSON, ${datasource}, panels; writes
                                                their queries as rules for `promtool check rules`
  infra_checks.py k8s RENDERED.yaml [local|prod] rendered manifests: env, probes, security,
                                                and the custom resources schema validation skips
  infra_checks.py buildspec ci/buildspec.yml    CodeBuild buildspec structure
Exits 1 with one line per problem.
"""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
problems = []


def fail(msg):
    problems.append(msg)


# ------------------------------------------------------------------------------------- metrics
def registered_metrics():
    """Metric base names registered by the services (prefix + name), from the Rust source."""
    names = set()
    sources = {
        "ledger": ["services/ledger/src/metrics.rs", "services/platform/src/telemetry.rs",
                   "services/platform/src/supervise.rs"],
        "consolidation": ["services/consolidation/src/metrics.rs", "services/platform/src/telemetry.rs",
                          "services/platform/src/supervise.rs"],
    }
    for prefix, files in sources.items():
        for f in files:
            text = (ROOT / f).read_text()
            for m in re.finditer(r'\.register\(\s*"([a-z_]+)"', text):
                names.add(f"{prefix}_{m.group(1)}")
    return names


METRIC_RE = re.compile(r"\b((?:ledger|consolidation)_[a-z_]+)\b")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def check_metric_names(exprs, where):
    known = registered_metrics()
    if len(known) < 10:
        fail(f"found only {len(known)} registered metrics in the Rust source; the parser is stale")
    for expr in exprs:
        for name in METRIC_RE.findall(expr):
            base = name
            for s in SUFFIXES:
                if base.endswith(s):
                    base = base[: -len(s)]
                    break
            if base not in known and name not in known:
                fail(f"{where}: metric {name} is not registered by any service")


def alert_exprs():
    doc = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


# ---------------------------------------------------------------------------------- dashboards
EXPECTED_PANELS = {
    "ledger": ["Request rate", "Error ratio", "Latency p50 / p99", "Outbox backlog",
               "Outbox oldest event age"],
    "consolidation": ["Request rate", "Error ratio", "Latency p50 / p99", "Consumer lag p50 / p99",
                      "Events", "DLQ depth", "Cache hit ratio"],
}


def dashboard_exprs():
    out = []
    for name, expected in EXPECTED_PANELS.items():
        path = ROOT / f"deploy/grafana/dashboards/{name}.json"
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            fail(f"{path}: not valid JSON: {e}")
            continue
        variables = d.get("templating", {}).get("list", [])
        if not any(v.get("name") == "datasource" and v.get("type") == "datasource"
                   and v.get("query") == "prometheus" for v in variables):
            fail(f"{path}: no `datasource` variable of type datasource/prometheus")
        titles = [p.get("title") for p in d.get("panels", [])]
        for t in expected:
            if t not in titles:
                fail(f"{path}: panel {t!r} missing")
        ids = [p.get("id") for p in d.get("panels", [])]
        if len(ids) != len(set(ids)):
            fail(f"{path}: duplicate panel ids")
        for p in d.get("panels", []):
            if p.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{path}: panel {p.get('title')!r} does not use ${{datasource}}")
            if not p.get("targets"):
                fail(f"{path}: panel {p.get('title')!r} has no query")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    fail(f"{path}: a query of {p.get('title')!r} does not use ${{datasource}}")
                out.append((f"{name}: {p.get('title')}", t.get("expr", "")))
    return out


# ------------------------------------------------------------------------------------------ k8s
ENV = {
    "common": ["LISTEN_ADDR", "DATABASE_URL", "DATABASE_MAX_CONNECTIONS", "ENTRIES_QUEUE_URL",
               "AUTH_ISSUER", "AUTH_AUDIENCE", "AWS_REGION", "RUST_LOG"],
    "ledger": ["MERCHANT_CURRENCY", "MERCHANT_TIMEZONE", "OUTBOX_RELAY_ENABLED"],
    "consolidation": ["ENTRIES_DLQ_URL", "REDIS_URL", "REDIS_KEY_PREFIX", "CONSUMER_CONCURRENCY"],
}
PORTS = {"ledger": 8081, "consolidation": 8082}


def check_k8s(path, flavour):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        ns = d["metadata"].get("namespace")
        if d["kind"] != "Namespace" and ns != "cashflow":
            fail(f"{d['kind']}/{d['metadata']['name']}: namespace {ns!r}, expected cashflow")
    configmaps = by_kind.get("ConfigMap", {})
    for svc, port in PORTS.items():
        dep = by_kind.get("Deployment", {}).get(svc)
        if not dep:
            fail(f"Deployment {svc} missing")
            continue
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        where = f"Deployment {svc}"
        names = {e["name"] for e in c.get("env", [])}
        for ef in c.get("envFrom", []):
            ref = ef.get("configMapRef", {}).get("name")
            if ref:
                if ref not in configmaps:
                    fail(f"{where}: envFrom ConfigMap {ref} not in the output")
                else:
                    names |= set(configmaps[ref].get("data", {}))
        for n in ENV["common"] + ENV[svc]:
            if n not in names:
                fail(f"{where}: environment variable {n} not set")
        for e in c.get("env", []):
            if e["name"] in ("DATABASE_URL", "REDIS_URL") and "secretKeyRef" not in e.get("valueFrom", {}):
                fail(f"{where}: {e['name']} must come from a Secret")
        cm = next((configmaps[ef["configMapRef"]["name"]] for ef in c.get("envFrom", [])
                   if ef.get("configMapRef", {}).get("name") in configmaps), {"data": {}})
        if cm["data"].get("LISTEN_ADDR") != f"0.0.0.0:{port}":
            fail(f"{where}: LISTEN_ADDR is {cm['data'].get('LISTEN_ADDR')!r}")
        if cm["data"].get("AUTH_AUDIENCE") != "cashflow-api":
            fail(f"{where}: AUTH_AUDIENCE is {cm['data'].get('AUTH_AUDIENCE')!r}")
        for key in ("DATABASE_URL", "REDIS_URL"):
            if key in cm["data"]:
                fail(f"{where}: {key} is in a ConfigMap; it belongs in a Secret")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/health/ready":
            fail(f"{where}: readiness probe is not GET /health/ready")
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health/live":
            fail(f"{where}: liveness probe is not GET /health/live")
        if c.get("ports", [{}])[0].get("containerPort") != port:
            fail(f"{where}: container port is not {port}")
        sc = c.get("securityContext", {})
        psc = pod.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) or (sc.get("runAsUser") or psc.get("runAsUser")) != 10001:
            fail(f"{where}: not runAsNonRoot with uid 10001")
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{where}: readOnlyRootFilesystem/allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(f"{where}: capabilities are not dropped")
        if (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail(f"{where}: seccompProfile is not RuntimeDefault")
        if pod.get("terminationGracePeriodSeconds") != 45:
            fail(f"{where}: terminationGracePeriodSeconds is not 45")
        if pod.get("serviceAccountName") != svc:
            fail(f"{where}: serviceAccountName is not {svc}")
        if not c.get("resources", {}).get("requests") or not c.get("resources", {}).get("limits"):
            fail(f"{where}: resources requests/limits missing")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics" \
                or ann.get("prometheus.io/port") != str(port):
            fail(f"{where}: prometheus scrape annotations")
        if not any(t.get("topologyKey") == "topology.kubernetes.io/zone"
                   for t in pod.get("topologySpreadConstraints", [])):
            fail(f"{where}: no topology spread over zones")
        svc_obj = by_kind.get("Service", {}).get(svc)
        if not svc_obj or svc_obj["spec"].get("type", "ClusterIP") != "ClusterIP" \
                or svc_obj["spec"]["ports"][0]["port"] != port:
            fail(f"Service {svc}: missing, not ClusterIP or not on {port}")
        if svc not in by_kind.get("PodDisruptionBudget", {}):
            fail(f"PodDisruptionBudget {svc} missing")
        sa = by_kind.get("ServiceAccount", {}).get(svc)
        if not sa:
            fail(f"ServiceAccount {svc} missing")
        elif flavour == "prod":
            arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
            if not re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", arn) or "REPLACED" in arn:
                fail(f"ServiceAccount {svc}: role ARN {arn!r} not set by the overlay")
        if flavour == "prod":
            image = c["image"]
            if not re.fullmatch(rf"\d{{12}}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/cashflow/{svc}:[\w.-]+", image):
                fail(f"{where}: image {image!r} is not the ECR repository cashflow/{svc}")
    if flavour in ("base", "prod"):
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("ledger")
        if not hpa:
            fail("HorizontalPodAutoscaler ledger missing")
        else:
            cpu = [m for m in hpa["spec"].get("metrics", []) if m.get("resource", {}).get("name") == "cpu"]
            if not cpu or cpu[0]["resource"]["target"].get("averageUtilization") != 70:
                fail("HorizontalPodAutoscaler ledger: not on CPU 70 %")
        so = by_kind.get("ScaledObject", {}).get("consolidation")
        if not so:
            fail("ScaledObject consolidation missing")
        else:
            s = so["spec"]
            if s.get("scaleTargetRef", {}).get("name") != "consolidation":
                fail("ScaledObject: scaleTargetRef is not the consolidation")
            trig = s.get("triggers", [{}])[0]
            md = trig.get("metadata", {})
            if trig.get("type") != "aws-sqs-queue" or md.get("queueLength") != "100" \
                    or not str(md.get("queueURL", "")).endswith("/cashflow-entries") or not md.get("awsRegion"):
                fail("ScaledObject: trigger is not aws-sqs-queue on cashflow-entries with queueLength 100")
            ref = trig.get("authenticationRef", {}).get("name")
            if ref and ref not in by_kind.get("TriggerAuthentication", {}):
                fail(f"ScaledObject: TriggerAuthentication {ref} missing")
            if not (2 <= s.get("minReplicaCount", 0) <= s.get("maxReplicaCount", 0) <= 20):
                fail("ScaledObject: replica bounds outside 2..20")
    if flavour == "prod":
        targets = {e["spec"]["target"]["name"]: e for e in by_kind.get("ExternalSecret", {}).values()}
        need = {"ledger-secrets": {"DATABASE_URL"}, "consolidation-secrets": {"DATABASE_URL", "REDIS_URL"}}
        for secret, keys in need.items():
            es = targets.get(secret)
            if not es:
                fail(f"ExternalSecret producing {secret} missing")
                continue
            got = {d["secretKey"] for d in es["spec"].get("data", [])}
            if not keys <= got:
                fail(f"ExternalSecret {secret}: keys {sorted(keys - got)} missing")
            store = es["spec"]["secretStoreRef"]["name"]
            if store not in by_kind.get("SecretStore", {}):
                fail(f"ExternalSecret {secret}: SecretStore {store} missing")
    if flavour == "prod":
        for svc, port in PORTS.items():
            tgb = by_kind.get("TargetGroupBinding", {}).get(svc)
            if not tgb or tgb["spec"].get("serviceRef") != {"name": svc, "port": port} \
                    or tgb["spec"].get("targetType") != "ip" \
                    or not str(tgb["spec"].get("targetGroupARN", "")).startswith("arn:aws:elasticloadbalancing:"):
                fail(f"TargetGroupBinding {svc}: missing or not bound to Service {svc}:{port} (ip)")
    nps = by_kind.get("NetworkPolicy", {})
    if not any(np["spec"].get("podSelector") == {} and "Ingress" in np["spec"].get("policyTypes", [])
               and not np["spec"].get("ingress") for np in nps.values()):
        fail("no default-deny ingress NetworkPolicy")


# ------------------------------------------------------------------------------------ buildspec
def check_buildspec(path):
    doc = yaml.safe_load(pathlib.Path(path).read_text())
    if str(doc.get("version")) != "0.2":
        fail(f"{path}: version must be 0.2")
    phases = doc.get("phases", {})
    for p in ("pre_build", "build", "post_build"):
        if not phases.get(p, {}).get("commands"):
            fail(f"{path}: phase {p} has no commands")
        for c in phases.get(p, {}).get("commands", []):
            if not isinstance(c, str):
                fail(f"{path}: a {p} command is not a string: {c!r}")
    allowed = {"install", "pre_build", "build", "post_build"}
    if set(phases) - allowed:
        fail(f"{path}: unknown phases {sorted(set(phases) - allowed)}")
    text = "\n".join(c for p in phases.values() for c in p.get("commands", []) if isinstance(c, str))
    for svc in ("ledger", "consolidation"):
        if f"services/{svc}/Dockerfile" not in text:
            fail(f"{path}: does not build services/{svc}/Dockerfile")
    for needle in ("ecr get-login-password", "docker push", "imagedefinitions.json"):
        if needle not in text:
            fail(f"{path}: no `{needle}`")
    env = doc.get("env", {}).get("variables", {})
    for v in ("AWS_ACCOUNT_ID", "ECR_REPOSITORY_PREFIX"):
        if v not in env:
            fail(f"{path}: env variable {v} not declared")
    files = doc.get("artifacts", {}).get("files", [])
    if "imagedefinitions.json" not in files:
        fail(f"{path}: artifacts do not include imagedefinitions.json")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd = sys.argv[1]
    if cmd == "metrics":
        check_metric_names(alert_exprs(), "alerts.yml")
        check_metric_names([e for _, e in dashboard_exprs()], "dashboards")
        summary = f"{len(registered_metrics())} registered metrics; alert and dashboard queries use only those"
    elif cmd == "dashboards":
        exprs = dashboard_exprs()
        # Grafana's $__rate_interval is not PromQL: substitute a range so promtool can parse.
        rules = {"groups": [{"name": "dashboards", "rules": [
            {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
            for i, (_, e) in enumerate(exprs)]}]}
        pathlib.Path(sys.argv[2]).write_text(yaml.safe_dump(rules))
        summary = f"2 dashboards, {len(exprs)} queries, expected panels present"
    elif cmd == "k8s":
        check_k8s(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "base")
        summary = f"{sys.argv[2]}: structure as expected"
    elif cmd == "buildspec":
        check_buildspec(sys.argv[2])
        summary = f"{sys.argv[2]}: structure as expected"
    else:
        sys.exit(f"unknown check {cmd}")
    for p in problems:
        print(f"  problem: {p}")
    if problems:
        sys.exit(1)
    print(f"  ok: {summary}")


if __name__ == "__main__":
    main()
