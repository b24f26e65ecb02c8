#!/usr/bin/env bash
# Builds, from Debian's packages (and PyPI for LocalStack), local drop-in replacements of the
# official images the project's containers use, for machines that cannot pull from a registry:
#
#   cashflow/debian:bookworm      debootstrap minbase + ca-certificates + tzdata, docker import
#   postgres:15-bookworm          Debian's postgresql-15, the official image's env interface
#   redis:7-bookworm              Debian's redis-server (7.0), no password, all interfaces
#   localstack/localstack:4.13.1  LocalStack community 4.13.1 on Debian's python3 (3.11)
#   cashflow/moto:5.2.5           moto's server mode (the second SQS emulator, HARNESS_SQS=moto)
#   cashflow/nginx:bookworm       Debian's nginx, compose.yaml's local API gateway (ADR 0011)
#
# Usage: ci/images/build.sh [--force] [--verbose] [IMAGE...]
#   IMAGE      debian, postgres, redis, localstack, moto, nginx (default: all); the base is always kept current
#   --force    rebuild the images asked for (default: all) even when current, without docker's
#              layer cache; with debian, re-run debootstrap too
#   --verbose  stream the full build output (it always goes to target/images/logs/)
#
# Idempotent: each image carries a label with the hash of its inputs (this script, the files of
# its folder here, the repository files it copies, and the id of the base image), and is skipped
# when the image present has the same hash. The debootstrap result is cached as a tarball in
# target/images/ (keyed on debian/mkrootfs.sh and the mirror), so rebuilding an image does not
# re-run debootstrap. Environment: DEBIAN_MIRROR (default: the Debian mirror this machine's apt
# uses, read from /etc/apt/sources.list{,.d/*}; no mirror is written in the repository),
# IMAGES_CACHE_DIR (default <repo>/target/images), IMAGES_BUILD_NETWORK (e.g. host: the network
# of the `docker build` steps; default: Docker's bridge).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
root=$(cd "$here/../.." && pwd)
cache=${IMAGES_CACHE_DIR:-$root/target/images}
# The first bookworm main archive apt is configured with (deb822 .sources, then one-line lists);
# security and updates suites are other archives.
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; suites = ""; enabled = 1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites = $i }
          if ($i ~ /^Enabled:[ \t]*no/) { enabled = 0 }
        }
        if (enabled && uris != "" && suites ~ /[ \t]bookworm([ \t]|$)/) { split(uris, u, " "); print u[1]; exit }
      }' "$f"
  done | head -n 1 | grep . && return 0
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i + 1) == "bookworm") print $i; break } }' \
    | head -n 1 | grep .
}
mirror=${DEBIAN_MIRROR:-$(apt_mirror || true)}
if [ -z "$mirror" ]; then
  echo "images: no Debian bookworm mirror in this machine's apt configuration; set DEBIAN_MIRROR" >&2
  exit 1
fi
network=${IMAGES_BUILD_NETWORK:-}

source_label='org.opencontainers.image.source=cashflow/ci/images'
hash_label='cashflow.ci.images.inputs'

all_images=(debian postgres redis localstack moto nginx)
declare -A tag=(
  [debian]=cashflow/debian:bookworm
  [postgres]=postgres:15-bookworm
  [redis]=redis:7-bookworm
  [localstack]=localstack/localstack:4.13.1
  [moto]=cashflow/moto:5.2.5
  [nginx]=cashflow/nginx:bookworm
)
# Repository files copied into an image's build context (context name = source file).
declare -A extra_files=(
  [localstack]="requirements.txt=$root/localstack/requirements.txt"
  [moto]="requirements.txt=$root/moto/requirements.txt"
)

usage() { sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//'; }

force=0
verbose=0
wanted=()
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --verbose | -v) verbose=1 ;;
    -h | --help) usage; exit 0 ;;
    debian | postgres | redis | localstack | moto | nginx) wanted+=("$1") ;;
    *) printf 'images: unknown argument: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
[ ${#wanted[@]} -gt 0 ] || wanted=("${all_images[@]}")
is_wanted() { [[ " ${wanted[*]} " == *" $1 "* ]]; }
forced() { [ "$force" -eq 1 ] && is_wanted "$1"; }

# --- output and timing ----------------------------------------------------------------------

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%ds' $(($1 / 1000)) $(($1 % 1000 / 100)); }
started=$(now_ms)
say() { printf 'images: [%7s] %s\n' "$(fmt_ms $(($(now_ms) - started)))" "$*"; }
die() { printf 'images: error: %s\n' "$*" >&2; exit 1; }

step=''
locked=0
on_exit() {
  local rc=$?
  [ "$locked" -eq 0 ] || rm -rf "$cache/context"
  if [ "$rc" -ne 0 ] && [ -n "$step" ]; then
    printf 'images: FAILED while %s (exit %s) after %s\n' "$step" "$rc" \
      "$(fmt_ms $(($(now_ms) - started)))" >&2
  fi
}
trap on_exit EXIT

# run_logged LOG FILTER CMD...: CMD's output goes to LOG; lines matching the extended regex FILTER
# are shown as progress (all lines with --verbose); on failure the log's tail is shown.
run_logged() {
  local log=$1 filter=$2 line rc=0
  shift 2
  "$@" 2>&1 | tee "$log" | while IFS= read -r line; do
    line=${line//$'\e['[0-9]m/}
    line=${line//$'\e['[0-9][0-9]m/}
    if [ "$verbose" -eq 1 ]; then
      printf '    %s\n' "$line"
    elif [[ $line =~ $filter ]]; then
      printf '    %s\n' "${line:0:110}"
    fi
  done || rc=$?
  if [ "$rc" -ne 0 ]; then
    if [ "$verbose" -eq 0 ]; then
      printf 'images: last lines of %s:\n' "$log" >&2
      tail -n 30 "$log" | sed 's/\x1b\[[0-9;]*m//g; s/^/    | /' >&2
    fi
    return "$rc"
  fi
}

# --- docker helpers -------------------------------------------------------------------------

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_hash() { docker image inspect -f "{{index .Config.Labels \"$hash_label\"}}" "$1" 2>/dev/null || true; }
image_size() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1000000 }'; }

# hash_inputs [FILE...] < extra text: sha256 of the files (path relative to the repo + content)
# and of stdin.
hash_inputs() {
  local f
  {
    cat
    for f in "$@"; do
      printf '%s %s\n' "${f#"$root"/}" "$(sha256sum < "$f" | cut -d' ' -f1)"
    done
  } | sha256sum | cut -d' ' -f1
}

image_dir_files() { find "$here/$1" -type f | LC_ALL=C sort; }

old_images=()
# forget_old ID NEW_ID: remember a replaced image to remove at the end (if nothing uses it).
forget_old() { [ -z "$1" ] || [ "$1" = "$2" ] || old_images+=("$1"); }

# --- preflight ------------------------------------------------------------------------------

step='checking docker'
command -v docker > /dev/null || die "the docker CLI is not installed"
server=$(docker version --format '{{.Server.Version}}' 2>&1) ||
  die "the Docker engine is not reachable (docker version: $server)"
mkdir -p "$cache/logs"
exec 9> "$cache/.build.lock"
if ! flock -n 9; then
  say "another build.sh is running; waiting for it"
  flock 9
fi
locked=1
say "Docker engine $server; cache and logs in ${cache#"$root"/}; building: ${wanted[*]}$([ "$force" -eq 1 ] && echo ' (--force)')"
# The legacy builder: no buildx here; it also runs multi-stage Dockerfiles.
export DOCKER_BUILDKIT=0

# --- cashflow/debian:bookworm ---------------------------------------------------------------

build_debian() {
  local t0 key tarball inputs current old new
  local -a files=()
  t0=$(now_ms)
  mapfile -t files < <(image_dir_files debian)
  key=$(printf 'mirror %s\n' "$mirror" | hash_inputs "$here/debian/mkrootfs.sh" | cut -c1-16)
  tarball=$cache/debian-bookworm-rootfs-$key.tar
  inputs=$(printf 'rootfs %s\n' "$key" | hash_inputs "$self" "${files[@]}")
  current=$(image_hash "${tag[debian]}")
  if ! forced debian && [ "$current" = "$inputs" ]; then
    say "${tag[debian]}: up to date (inputs ${inputs:0:12}), skipped"
    return
  fi
  say "${tag[debian]}: building (inputs ${inputs:0:12}$([ -n "$current" ] && echo ", was ${current:0:12}"))"

  if forced debian || [ ! -s "$tarball" ]; then
    step='making the Debian root filesystem (debootstrap)'
    [ "$(id -u)" -eq 0 ] || die "debootstrap needs root: run as root (or sudo) once to make $tarball"
    if ! command -v debootstrap > /dev/null; then
      say "  installing debootstrap (apt-get)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap > /dev/null
    fi
    say "  debootstrap --variant=minbase bookworm from $mirror (log: logs/debian-rootfs.log)"
    run_logged "$cache/logs/debian-rootfs.log" '^mkrootfs:' \
      "$here/debian/mkrootfs.sh" "$tarball" "$mirror"
    find "$cache" -maxdepth 1 -name 'debian-bookworm-rootfs-*.tar' ! -name "${tarball##*/}" -delete
    say "  root filesystem ready: ${tarball#"$root"/} ($(du -m "$tarball" | cut -f1) MB)"
  else
    say "  reusing the cached root filesystem ${tarball#"$root"/}"
  fi

  step="importing ${tag[debian]}"
  old=$(image_id "${tag[debian]}")
  docker import \
    --change "LABEL $source_label" \
    --change "LABEL $hash_label=$inputs" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm (ci/images/debian/mkrootfs.sh)" \
    "$tarball" "${tag[debian]}" > /dev/null
  new=$(image_id "${tag[debian]}")
  forget_old "$old" "$new"
  docker run --rm --network none "${tag[debian]}" true ||
    die "${tag[debian]} was imported but does not run"
  say "${tag[debian]}: built in $(fmt_ms $(($(now_ms) - t0))), $(image_size "${tag[debian]}")"
}

# --- images built with a Dockerfile FROM cashflow/debian:bookworm ---------------------------
# They inherit the source label from the base; only the inputs label is added, at the end (each
# extra --label would be one more build step, slow on big images with fuse-overlayfs).

build_dockerfile_image() {
  local name=$1 t0 parent inputs current ctx spec old new
  local -a files=() args=()
  t0=$(now_ms)
  parent=$(image_id "${tag[debian]}")
  [ -n "$parent" ] || die "${tag[debian]} is missing"
  mapfile -t files < <(image_dir_files "$name")
  for spec in ${extra_files[$name]:-}; do files+=("${spec#*=}"); done
  inputs=$(printf 'parent %s\n' "$parent" | hash_inputs "$self" "${files[@]}")
  current=$(image_hash "${tag[$name]}")
  if ! forced "$name" && [ "$current" = "$inputs" ]; then
    say "${tag[$name]}: up to date (inputs ${inputs:0:12}), skipped"
    return
  fi
  say "${tag[$name]}: building (inputs ${inputs:0:12}$([ -n "$current" ] && echo ", was ${current:0:12}")); log: logs/$name.log"

  step="preparing the build context of ${tag[$name]}"
  ctx=$cache/context/$name
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a "$here/$name/." "$ctx/"
  for spec in ${extra_files[$name]:-}; do cp "${spec#*=}" "$ctx/${spec%%=*}"; done
  if [ "$name" = localstack ] || [ "$name" = moto ]; then
    # pip in the builder stage trusts what this machine trusts (e.g. a proxy's CA); the final
    # image does not get this file.
    cp "${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}" "$ctx/ca-bundle.crt"
    [ -z "${PIP_INDEX_URL:-}" ] || args+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
    [ -z "${PIP_EXTRA_INDEX_URL:-}" ] || args+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
  fi
  ! forced "$name" || args+=(--no-cache)
  [ -z "$network" ] || args+=(--network "$network")

  step="building ${tag[$name]} (docker build; log: ${cache#"$root"/}/logs/$name.log)"
  old=$(image_id "${tag[$name]}")
  run_logged "$cache/logs/$name.log" '^Step [0-9]+/[0-9]+ : (FROM|RUN|COPY)' \
    docker build --force-rm "${args[@]}" --label "$hash_label=$inputs" \
    -t "${tag[$name]}" "$ctx"
  new=$(image_id "${tag[$name]}")
  forget_old "$old" "$new"
  rm -rf "$ctx"
  say "${tag[$name]}: built in $(fmt_ms $(($(now_ms) - t0))), $(image_size "${tag[$name]}")"
}

# --- main -----------------------------------------------------------------------------------

step="building ${tag[debian]}"
build_debian
for name in "${all_images[@]}"; do
  [ "$name" != debian ] || continue
  is_wanted "$name" || continue
  step="building ${tag[$name]}"
  build_dockerfile_image "$name"
done

# Replaced images, children before the base they were built on (one still used by a container
# stays), then any other untagged leftover built from the base.
step='removing replaced images'
for ((i = ${#old_images[@]} - 1; i >= 0; i--)); do
  if docker image rm "${old_images[i]}" > /dev/null 2>&1; then
    say "removed the replaced image ${old_images[i]:7:12}"
  fi
done
docker image prune -f --filter "label=$source_label" > /dev/null

step=''
say "done in $(fmt_ms $(($(now_ms) - started))):"
for name in "${all_images[@]}"; do
  if [ -n "$(image_id "${tag[$name]}")" ]; then
    printf '    %-30s %s\n' "${tag[$name]}" "$(image_size "${tag[$name]}")"
  fi
done
