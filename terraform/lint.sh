#!/usr/bin/env bash
# Static checks of terraform/: terraform fmt + validate (when terraform is on
# PATH), an HCL syntax parse of every .tf file (python-hcl2) and checkov.
# Exits non-zero on any finding, including any failed checkov check (every
# exception is an inline `#checkov:skip=CKV_...:reason` in the resource).
# Runs from any directory; the venv is created once under target/infra-venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/target/infra-venv"
checkov_version="3.3.30"
hcl2_version="8.1.4"

say() { printf '==> %s\n' "$*"; }

# --- tools ------------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
  say "creating venv $venv"
  python3 -m venv "$venv"
fi
installed="$("$venv/bin/python" -c 'import importlib.metadata as m
for d in ("checkov", "python-hcl2"):
    try:
        print(d, m.version(d))
    except m.PackageNotFoundError:
        print(d, "none")' | tr '\n' ' ')"
if [[ "$installed" != "checkov $checkov_version python-hcl2 $hcl2_version " ]]; then
  say "installing checkov==$checkov_version python-hcl2==$hcl2_version into the venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "checkov==$checkov_version" "python-hcl2==$hcl2_version"
else
  say "venv ready (checkov $checkov_version, python-hcl2 $hcl2_version)"
fi

# --- terraform fmt / validate -----------------------------------------------
# Provider plugins: a local filesystem mirror when one exists
# (TF_PROVIDER_MIRROR, default /opt/tf-plugins), the registry otherwise.
# Working files (.terraform, lock files) go under target/, never into terraform/.
if command -v terraform >/dev/null 2>&1; then
  work="$repo/target/terraform-lint"
  mkdir -p "$work"
  mirror="${TF_PROVIDER_MIRROR:-/opt/tf-plugins}"
  if [[ -d "$mirror" ]]; then
    say "using the provider mirror $mirror"
    cat >"$work/terraformrc" <<RC
provider_installation {
  filesystem_mirror {
    path = "$mirror"
  }
}
RC
    export TF_CLI_CONFIG_FILE="$work/terraformrc"
  fi

  say "terraform fmt -check -recursive terraform/ ($(terraform version | head -n1))"
  terraform -chdir="$here" fmt -check -recursive -diff

  # Every module on its own, then each environment (which composes them all).
  for dir in "$here"/modules/*/ "$here"/envs/*/; do
    rel="${dir#"$here"/}"
    rel="${rel%/}"
    export TF_DATA_DIR="$work/data/${rel//\//_}"
    say "terraform init -backend=false && terraform validate: $rel"
    # init writes .terraform.lock.hcl next to the configuration: remove it
    # afterwards unless it was already there (a committed lock file stays).
    lock="$dir/.terraform.lock.hcl"
    had_lock=false
    [[ -f "$lock" ]] && had_lock=true
    status=0
    if terraform -chdir="$dir" init -backend=false -input=false -no-color >"$work/init.log" 2>&1; then
      terraform -chdir="$dir" validate -no-color || status=$?
    else
      status=$?
      cat "$work/init.log"
      say "terraform init failed in $rel"
    fi
    $had_lock || rm -f "$lock"
    [[ $status -eq 0 ]] || exit "$status"
  done
  unset TF_DATA_DIR
else
  say "SKIPPED terraform fmt -check and terraform validate: terraform is not on PATH"
fi

# --- HCL syntax -------------------------------------------------------------
say "parsing every .tf file with python-hcl2"
"$venv/bin/python" - "$here" <<'PY'
import pathlib, sys
import hcl2

root = pathlib.Path(sys.argv[1])
files = sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)
bad = 0
for path in files:
    try:
        with path.open() as f:
            hcl2.load(f)
    except Exception as e:  # noqa: BLE001 - report every file
        bad += 1
        print(f"  FAIL {path.relative_to(root)}: {e}")
print(f"  {len(files) - bad}/{len(files)} files parsed")
sys.exit(1 if bad else 0)
PY

# --- checkov ----------------------------------------------------------------
say "checkov --framework terraform on ${here#"$repo"/}"
out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
set +e
"$venv/bin/checkov" --directory "$here" --framework terraform --quiet --compact \
  --skip-download --output cli --output json --output-file-path "console,$out_dir/results_json.json"
rc=$?
set -e
report="$out_dir/results_json.json"
"$venv/bin/python" - "$report" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
reports = data if isinstance(data, list) else [data]
p = f = s = 0
for r in reports:
    summary = r.get("summary", {})
    p += summary.get("passed", 0)
    f += summary.get("failed", 0)
    s += summary.get("skipped", 0)
print(f"  checkov summary: passed={p} failed={f} skipped={s}")
PY
if [[ $rc -ne 0 ]]; then
  say "checkov reported failed checks (exit $rc)"
  exit "$rc"
fi
say "all checks passed"
