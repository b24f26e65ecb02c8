#!/usr/bin/env python3
"""Asserts that the names every deployment path relies on agree with what the services read:
environment variables, ports, queue names and service accounts, across the services' source,
their Dockerfiles, compose.yaml, the Kubernetes manifests (rendered with kustomize) and terraform;
that the API routes terraform deploys and the local nginx gateway serves come from one file; and
that the manifests' rollout, probes, PodDisruptionBudgets, grace periods and preStop agree with
how `harness up` runs its replicas and what its tests measure (harness/src/cluster/mod.rs).

Run by `make lint-infra` (ci/lint-infra.sh); needs PyYAML and `kubectl kustomize`. Exits 1 with
one line per disagreement."""

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {"ledger": 8081, "consolidation": 8082}
# Extra container ports: the ledger's internal listener (digests, replays) for the consolidation.
EXTRA_PORTS = {"ledger": {9081}, "consolidation": set()}
QUEUE, DLQ = "cashflow-entries", "cashflow-entries-dlq"
# Read by the AWS SDK or the log filter, not by our configuration code.
STANDARD = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "RUST_LOG",
            "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS"}
problems = []


def problem(text):
    problems.append(text)


def read_vars(*folders):
    """(all, required) variable names the code reads through platform::config."""
    found, required = set(), set()
    pattern = re.compile(r'\b(required|or_default|optional)\(\s*"([A-Z][A-Z0-9_]*)"')
    for folder in folders:
        for source in (ROOT / folder).rglob("*.rs"):
            for kind, name in pattern.findall(source.read_text()):
                found.add(name)
                if kind == "required":
                    required.add(name)
    return found, required


def check_env(where, service, names, known, required):
    for name in sorted(names - known - STANDARD):
        problem(f"{where}: {service} sets {name}, which the service never reads")
    for name in sorted(required - names):
        problem(f"{where}: {service} lacks {name}, which the service requires")


def listen_port(where, service, env):
    value = env.get("LISTEN_ADDR")
    if value is not None and not str(value).endswith(f":{SERVICES[service]}"):
        problem(f"{where}: {service} LISTEN_ADDR={value}, expected port {SERVICES[service]}")


def check_queue_urls(where, service, env):
    for name, queue in (("ENTRIES_QUEUE_URL", QUEUE), ("ENTRIES_DLQ_URL", DLQ)):
        url = env.get(name)
        if url is not None and not str(url).rstrip("/").endswith("/" + queue):
            problem(f"{where}: {service} {name}={url} does not name queue {queue}")


platform_vars, platform_required = read_vars("services/platform/src")
code = {}
for service in SERVICES:
    names, required = read_vars(f"services/{service}/src")
    code[service] = (names | platform_vars, required | platform_required)

# The services' own defaults and their images.
for service, port in SERVICES.items():
    config = (ROOT / f"services/{service}/src/config.rs").read_text()
    if f"[0, 0, 0, 0], {port}" not in config:
        problem(f"services/{service}/src/config.rs: default listen port is not {port}")
    dockerfile = (ROOT / f"services/{service}/Dockerfile").read_text()
    if f"EXPOSE {port}" not in dockerfile or f"LISTEN_ADDR=0.0.0.0:{port}" not in dockerfile:
        problem(f"services/{service}/Dockerfile: EXPOSE / LISTEN_ADDR are not port {port}")

# compose.yaml
compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
for service in SERVICES:
    spec = compose["services"][service]
    env = {k: str(v) for k, v in spec["environment"].items()}
    check_env("compose.yaml", service, set(env), *code[service])
    listen_port("compose.yaml", service, env)
    check_queue_urls("compose.yaml", service, env)
    if not any(str(p).endswith(f":{SERVICES[service]}") for p in spec.get("ports", [])):
        problem(f"compose.yaml: {service} does not publish port {SERVICES[service]}")
init_hook = (ROOT / "localstack/init/ready.d/10-create-queues.sh").read_text()
if f'queue="${{ENTRIES_QUEUE_NAME:-{QUEUE}}}"' not in init_hook or '"${queue}-dlq"' not in init_hook:
    problem("localstack init hook: queue names differ from cashflow-entries / -dlq")
up = (ROOT / "harness/src/cli/up.rs").read_text()
if f'const QUEUE: &str = "{QUEUE}";' not in up:
    problem("harness up: the queue is not named cashflow-entries")

# How `harness up` runs its replicas, and the bounds its tests hold it to (issue 28).
cluster_rs = (ROOT / "harness/src/cluster/mod.rs").read_text()


def cluster_secs(name):
    found = re.search(rf"pub const {name}: Duration = Duration::from_secs\((\d+)\);", cluster_rs)
    if not found:
        problem(f"harness/src/cluster/mod.rs: no {name} in whole seconds")
        return 0
    return int(found.group(1))


LOCAL_GRACE = cluster_secs("TERMINATION_GRACE")
LEAVE_DEADLINE = cluster_secs("GATEWAY_LEAVE_DEADLINE")
START_TIMEOUT = cluster_secs("START_TIMEOUT")
drain_default = re.search(r"shutdown_drain: Duration::from_secs\((\d+)\)",
                          (ROOT / "services/platform/src/deadline.rs").read_text())
DRAIN_DEFAULT = int(drain_default.group(1)) if drain_default else 0
if not drain_default:
    problem("services/platform/src/deadline.rs: no shutdown_drain default in whole seconds")
up_replicas = re.search(r'env = "HARNESS_REPLICAS", default_value_t = (\d+)', up)
UP_REPLICAS = int(up_replicas.group(1)) if up_replicas else 0
if not up_replicas:
    problem("harness up: no default for --replicas (HARNESS_REPLICAS)")
if LOCAL_GRACE <= DRAIN_DEFAULT:
    problem(f"harness: TERMINATION_GRACE {LOCAL_GRACE} s does not exceed the services' drain "
            f"deadline {DRAIN_DEFAULT} s")
for service in SERVICES:
    spec = compose["services"][service]
    if spec.get("restart") not in ("unless-stopped", "always", "on-failure"):
        problem(f"compose.yaml: {service} has no restart policy (harness up restarts it)")
    grace = re.fullmatch(r"(\d+)s", str(spec.get("stop_grace_period", "10s")))
    if not grace or int(grace.group(1)) <= DRAIN_DEFAULT:
        problem(f"compose.yaml: {service} stop_grace_period does not exceed the drain deadline "
                f"{DRAIN_DEFAULT} s")


def scalar(value, of):
    """An IntOrString of Kubernetes (2, "25%") resolved against `of` replicas."""
    text = str(value)
    if text.endswith("%"):
        return -(-int(text[:-1]) * of // 100)  # surge rounds up
    return int(text)


def check_cluster(where, service, deployment, container, docs, env):
    """The manifests agree with harness up's cluster and what its tests measure."""
    pod = deployment["spec"]["template"]["spec"]
    minimum = None
    for d in docs:
        target = (d.get("spec", {}).get("scaleTargetRef") or {}).get("name")
        if target == service and d["kind"] == "HorizontalPodAutoscaler":
            minimum = d["spec"].get("minReplicas", 1)
        if target == service and d["kind"] == "ScaledObject":
            minimum = d["spec"].get("minReplicaCount", 0)
    if minimum is None or minimum < UP_REPLICAS:
        problem(f"{where}: {service} may run fewer replicas ({minimum}) than harness up's "
                f"{UP_REPLICAS}, which its rollouts and tests assume")
        minimum = minimum or 1
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    if scalar(rolling.get("maxUnavailable", "25%"), minimum) != 0 \
            or scalar(rolling.get("maxSurge", "25%"), minimum) < 1:
        problem(f"{where}: {service}'s rollout is not maxSurge >= 1, maxUnavailable 0, as "
                f"`harness rollout restart`")
    ready = container.get("readinessProbe", {}).get("httpGet", {}).get("path")
    if ready != "/health/ready":
        problem(f"{where}: {service} readinessProbe is {ready}, not /health/ready, the gate "
                f"harness up puts replicas in its gateway by")
    startup = container.get("startupProbe", {})
    if startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < START_TIMEOUT:
        problem(f"{where}: {service} startupProbe allows less than the {START_TIMEOUT} s "
                f"harness up gives a replica to become ready")
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop = int(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else 0
    if pre_stop < LEAVE_DEADLINE:
        problem(f"{where}: {service} preStop sleeps {pre_stop} s, less than the "
                f"{LEAVE_DEADLINE} s a replica may take to leave the gateway "
                f"(GATEWAY_LEAVE_DEADLINE)")
    drain = DRAIN_DEFAULT
    if env.get("SHUTDOWN_DRAIN_TIMEOUT_MS", "").isdigit():
        drain = int(env["SHUTDOWN_DRAIN_TIMEOUT_MS"]) / 1000
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < pre_stop + drain + (LOCAL_GRACE - DRAIN_DEFAULT):
        problem(f"{where}: {service} terminationGracePeriodSeconds {grace} is less than preStop "
                f"{pre_stop} s + drain {drain} s + the {LOCAL_GRACE - DRAIN_DEFAULT} s harness up "
                f"leaves to exit")
    labels = deployment["spec"]["selector"]["matchLabels"]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"
               and d["spec"].get("selector", {}).get("matchLabels") == labels]
    if len(budgets) != 1:
        problem(f"{where}: {service} has {len(budgets)} PodDisruptionBudgets, not 1")
    for budget in budgets:
        spec = budget["spec"]
        if "maxUnavailable" in spec:
            down = scalar(spec["maxUnavailable"], minimum)
        else:
            down = minimum - scalar(spec.get("minAvailable", 1), minimum)
        if down != 1:
            problem(f"{where}: {service}'s PodDisruptionBudget lets {down} of its {minimum} "
                    f"pods go at once, not one at a time as a rollout replaces them")


# Kubernetes, as rendered for production.
for overlay in ("deploy/k8s/overlays/prod",):
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / overlay)], check=True,
                              capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    secrets_keys = {}
    for d in docs:
        if d["kind"] in ("Secret", "ExternalSecret"):
            data = d.get("data") or d.get("stringData") or {}
            keys = set(data) if isinstance(data, dict) else {x.get("secretKey") for x in data}
            secrets_keys[d["metadata"]["name"]] = keys | set(
                (d.get("spec", {}).get("target", {}).get("template", {}).get("data") or {}))
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    for d in docs:
        if d["kind"] != "Deployment" or d["metadata"]["name"] not in SERVICES:
            continue
        service = d["metadata"]["name"]
        pod = d["spec"]["template"]["spec"]
        container = next(c for c in pod["containers"] if c["name"] == service)
        env = {e["name"]: e.get("value", "<ref>") for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                name = source["configMapRef"]["name"]
                if name not in config_maps:
                    problem(f"{overlay}: {service} reads ConfigMap {name}, which is not rendered")
                env.update(config_maps.get(name, {}))
            if "secretRef" in source:
                env.update({k: "<secret>" for k in secrets_keys.get(source["secretRef"]["name"], set())})
        check_env(overlay, service, set(env), *code[service])
        listen_port(overlay, service, env)
        check_queue_urls(overlay, service, env)
        ports = {p["containerPort"] for p in container.get("ports", [])}
        if ports != {SERVICES[service]} | EXTRA_PORTS[service]:
            problem(f"{overlay}: {service} containerPort {ports}, expected "
                    f"{ {SERVICES[service]} | EXTRA_PORTS[service]}")
        for probe in ("readinessProbe", "livenessProbe"):
            path = container.get(probe, {}).get("httpGet", {}).get("path", "")
            if not path.startswith("/health/"):
                problem(f"{overlay}: {service} {probe} is not on /health/*")
        if pod.get("serviceAccountName") != service or service not in accounts:
            problem(f"{overlay}: {service} does not run as ServiceAccount {service}")
        check_cluster(overlay, service, d, container, docs, env)

# The ledger's internal routes: never routed by the API Gateway or the ALB, and reachable on
# the internal port from the consolidation's pods only.
api_tf = (ROOT / "terraform/modules/api/main.tf").read_text()
if re.search(r'"(?:[A-Z]+ )?/internal', api_tf):
    problem("terraform api module: routes /internal/*, which must stay inside the cluster")
policies = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/base/network-policies.yaml").read_text()) if d]
opened = [p for p in policies if any(9081 in [x.get("port") for x in rule.get("ports", [])]
                                     for rule in p["spec"].get("ingress", []))]
if len(opened) != 1 or opened[0]["spec"]["ingress"][0]["from"] != [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "consolidation"}}}]:
    problem("network policies: port 9081 must be open to the consolidation's pods only")

# The routes: one description (terraform/modules/api/routes.json) that the terraform api module
# reads and the local nginx gateway (harness/src/gateway.rs) is generated from (ADR 0011).
routes_file = ROOT / "terraform/modules/api/routes.json"
route_table = json.loads(routes_file.read_text())["routes"]
if 'jsondecode(file("${path.module}/routes.json"))' not in api_tf:
    problem("terraform api module: routes are not read from routes.json")
if re.search(r'"(?:GET|POST|PUT|PATCH|DELETE|ANY) /v1/', api_tf):
    problem("terraform api module: a route is written in main.tf instead of routes.json")
gateway_rs = (ROOT / "harness/src/gateway.rs").read_text()
if 'include_str!("../../terraform/modules/api/routes.json")' not in gateway_rs:
    problem("harness/src/gateway.rs: the local gateway is not generated from routes.json")
patterns = {}
for service, values in re.findall(r'(\w+)\s*=\s*\[([^\]]*)\]',
                                  api_tf[api_tf.index("path_patterns"):api_tf.index("path_patterns") + 400]):
    patterns[service] = re.findall(r'"([^"]+)"', values)
for route in route_table:
    where = f"routes.json: {route['method']} {route['path']}"
    if route["service"] not in SERVICES:
        problem(f"{where} goes to {route['service']}, which is not a service")
    if "/internal" in route["path"]:
        problem(f"{where}: the ledger's /internal routes are never routed")
    if route.get("idempotency_key") and (route["method"], route["service"]) != ("POST", "ledger"):
        problem(f"{where}: only the ledger's POST routes honour Idempotency-Key")
    if route["public"]:
        # The ALB must send the path to the same service API Gateway names.
        path = re.sub(r"\{[^}]+\}", "x", route["path"])
        if not any(fnmatch.fnmatchcase(path, p) for p in patterns.get(route["service"], [])):
            problem(f"{where}: no ALB path pattern of {route['service']} matches it")
        for other, other_patterns in patterns.items():
            if other != route["service"] and any(fnmatch.fnmatchcase(path, p) for p in other_patterns):
                problem(f"{where}: the ALB pattern of {other} matches it too")
# The gateway's throttling defaults are the stage's.
variables_tf = (ROOT / "terraform/modules/api/variables.tf").read_text()
for variable, const in (("throttling_rate_limit", "DEFAULT_RATE_LIMIT"),
                        ("throttling_burst_limit", "DEFAULT_BURST_LIMIT")):
    tf_default = re.search(rf'variable "{variable}".*?default\s*=\s*(\d+)', variables_tf, re.S)
    rs_default = re.search(rf"pub const {const}: u32 = (\d+);", gateway_rs)
    if not tf_default or not rs_default or tf_default.group(1) != rs_default.group(1):
        problem(f"gateway: {const} differs from terraform's {variable} default")

# Terraform: queue names and the service accounts the IRSA roles trust.
tf = "\n".join(p.read_text() for p in (ROOT / "terraform").rglob("*.tf"))
for queue in (QUEUE, DLQ):
    if f'"{queue}"' not in tf:
        problem(f"terraform: queue {queue} is never named")
for service in SERVICES:
    if f"system:serviceaccount:cashflow:{service}" not in tf and \
            not re.search(rf'service_account\w*\s*=\s*"{service}"', tf):
        problem(f"terraform: no IRSA trust for system:serviceaccount:cashflow:{service}")

# The page's CSP: CloudFront's (terraform/modules/web) is the local gateway's (harness/src/page.rs)
# with the identity provider's origin added to connect-src (ADR 0017).
page_rs = (ROOT / "harness/src/page.rs").read_text()
web_tf = (ROOT / "terraform/modules/web/main.tf").read_text()
local_csp = re.search(r'pub const CSP: &str = "(.*?)";', page_rs, re.S)
aws_csp = re.search(r'csp\s*=\s*"([^"]*)"', web_tf)
if not local_csp or not aws_csp:
    problem("page: no CSP in harness/src/page.rs or terraform/modules/web/main.tf")
else:
    local = re.sub(r'\\\s*', '', local_csp.group(1))
    if aws_csp.group(1).replace(" ${local.idp_origin}", "") != local:
        problem(f"page: CloudFront's CSP {aws_csp.group(1)!r} is not the gateway's {local!r} "
                "plus the identity provider's origin")

if problems:
    print("deploy-consistency: FAILED")
    for line in problems:
        print("  - " + line)
    sys.exit(1)
print("deploy-consistency: env vars, ports, queue names, service accounts and routes agree "
      "(services, Dockerfiles, compose.yaml, deploy/k8s/overlays/prod, terraform, the local gateway); "
      f"rollout, probes, PDBs, preStop {LEAVE_DEADLINE} s and grace periods agree with harness up "
      f"(drain {DRAIN_DEFAULT} s, start {START_TIMEOUT} s, {UP_REPLICAS} replicas)")
