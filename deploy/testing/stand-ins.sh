#!/usr/bin/env bash
# The container test's machinery, for machines that reach no image registry (test use only; what
# users run is compose.yaml with the real images):
#
#   deploy/testing/stand-ins.sh engine      prints a DOCKER_HOST that answers, starting an engine
#                                           (dockerd beside nothing else) when none does
#   deploy/testing/stand-ins.sh stop-engine stops the engine `engine` started, if it started one
#   deploy/testing/stand-ins.sh images      builds the stand-ins of the third-party images that the
#                                           Dockerfile and compose.yaml name, under those names
#
# Each stand-in is made from Debian's packages: debootstrap into a root file system, `docker
# import`, then the recipe under deploy/testing/stand-ins/NAME, which gives it the official image's
# contract as compose.yaml relies on it. The root file systems are kept under the cache directory,
# keyed by the suite and the packages; an image is rebuilt only when its key (root file system,
# recipe) changes. Needs root (debootstrap, dockerd).
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${DELIVERYHUB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deliveryhub}/containers
recipes=deploy/testing/stand-ins
engine_dir=$cache/engine
engine_socket=unix://$engine_dir/docker.sock

# image name | Debian suite | packages | recipe
STAND_INS=(
  "python:3.11-slim-bookworm|bookworm|python3,python3-pip,python3-venv,ca-certificates|python"
  "postgres:16-alpine|bookworm|postgresql-15,postgresql-client-15,util-linux|postgres"
  "rabbitmq:4-management-alpine|trixie|rabbitmq-server,util-linux,passwd|rabbitmq"
  "nginxinc/nginx-unprivileged:1.27-alpine|bookworm|nginx-light,wget,passwd|nginx"
)

say() { echo "stand-ins: $*" >&2; }

mirror() {
  # The mirror apt already uses on this machine.
  local uri
  uri=$(grep -hs -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -hs -m1 -E '^deb ' /etc/apt/sources.list | awk '{print $2}' || true)
  if [ -z "$uri" ]; then
    say "no Debian mirror is configured for apt on this machine"
    exit 1
  fi
  echo "$uri"
}

answers() { docker ${1:+--host "$1"} version --format '{{.Server.Version}}' >/dev/null 2>&1; }

engine() {
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then echo "$DOCKER_HOST"; return; fi
  if answers unix:///var/run/docker.sock; then echo unix:///var/run/docker.sock; return; fi
  if answers "$engine_socket"; then echo "$engine_socket"; return; fi
  command -v dockerd >/dev/null || { say "no Docker engine: install docker.io (Debian's package)"; exit 1; }
  mkdir -p "$engine_dir"
  say "starting a Docker engine (data under $engine_dir)"
  # No iptables rules: the machine's own networking is left as it is. Containers reach each other
  # on their bridge networks and publish ports on loopback; builds use the host's network.
  setsid dockerd --iptables=false --ip-masq=false --data-root "$engine_dir/data" \
    --exec-root "$engine_dir/exec" --pidfile "$engine_dir/docker.pid" --host "$engine_socket" \
    >"$engine_dir/dockerd.log" 2>&1 < /dev/null &
  echo started >"$engine_dir/started-here"
  for _ in $(seq 1 60); do
    answers "$engine_socket" && { echo "$engine_socket"; return; }
    sleep 0.5
  done
  say "the Docker engine did not answer; its log: $engine_dir/dockerd.log"
  tail -20 "$engine_dir/dockerd.log" >&2
  exit 1
}

stop_engine() {
  [ -f "$engine_dir/started-here" ] || return 0
  if [ -f "$engine_dir/docker.pid" ]; then
    local pid
    pid=$(cat "$engine_dir/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  # The engine's network namespace stays mounted after it stops.
  umount "$engine_dir"/exec/netns/* 2>/dev/null || true
  rm -f "$engine_dir/started-here"
}

digest() { sha256sum | cut -c1-16; }

# The root file system of a suite with packages, as a tar file in the cache (made once).
root_file_system() {
  local suite=$1 packages=$2 key tar
  key=$(printf '%s|%s' "$suite" "$packages" | digest)
  tar=$cache/rootfs/$suite-$key.tar
  if [ ! -s "$tar" ]; then
    command -v debootstrap >/dev/null || { say "install debootstrap (Debian's package)"; exit 1; }
    mkdir -p "$cache/rootfs"
    local dir
    dir=$(mktemp -d "$cache/rootfs/$suite-$key.XXXX")
    say "debootstrap $suite with $packages"
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir" "$(mirror)" >"$dir.log" 2>&1 || {
      tail -20 "$dir.log" >&2
      exit 1
    }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -cf "$tar.partial" .
    mv "$tar.partial" "$tar"
    rm -rf "$dir" "$dir.log"
  fi
  echo "$tar"
}

image() {
  local name=$1 suite=$2 packages=$3 recipe=$4 tar key base context
  tar=$(root_file_system "$suite" "$packages")
  context=$(mktemp -d)
  cp -a "$recipes/$recipe/." "$context/"
  cp "$recipes/take-ids.sh" "$context/"
  if [ "$recipe" = python ]; then cp /etc/ssl/certs/ca-certificates.crt "$context/"; fi
  key=$( (basename "$tar"; cd "$context" && find . -type f | sort | xargs sha256sum) | digest)
  if [ "$(docker image inspect --format '{{ index .Config.Labels "deliveryhub.stand-in" }}' "$name" 2>/dev/null)" = "$key" ]; then
    rm -rf "$context"
    return
  fi
  base=deliveryhub-stand-in/$recipe:$(basename "$tar" .tar)
  docker image inspect "$base" >/dev/null 2>&1 || docker import "$tar" "$base" >/dev/null
  say "building $name"
  docker build --quiet --label "deliveryhub.stand-in=$key" --build-arg "BASE=$base" -t "$name" "$context" >/dev/null
  rm -rf "$context"
}

images() {
  local entry name suite packages recipe
  for entry in "${STAND_INS[@]}"; do
    IFS='|' read -r name suite packages recipe <<<"$entry"
    image "$name" "$suite" "$packages" "$recipe"
  done
}

case "${1:-}" in
  engine) engine ;;
  stop-engine) stop_engine ;;
  images) images ;;
  *)
    echo "usage: $0 engine|stop-engine|images" >&2
    exit 2
    ;;
esac
