#!/usr/bin/env bash
# The machine's packages a test command needs (Debian's), installed when missing and the user may
# (root); otherwise one line naming what to install, and a failure, before any test runs.
#
#   scripts/system-packages.sh test         Chromium (browser tests), nginx and docker-compose
#                                           (deployment tests), debootstrap (the RabbitMQ 4 pass),
#                                           wrk (the bench's second load generator)
#   scripts/system-packages.sh containers   a Docker engine, docker-compose, debootstrap
set -euo pipefail

# command | Debian package
case "${1:-}" in
  test) wanted=("chromium|chromium" "nginx|nginx" "docker-compose|docker-compose" "debootstrap|debootstrap" "wrk|wrk") ;;
  containers) wanted=("dockerd|docker.io" "docker-compose|docker-compose" "debootstrap|debootstrap") ;;
  *)
    echo "usage: $0 test|containers" >&2
    exit 2
    ;;
esac

found() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=()
for entry in "${wanted[@]}"; do
  IFS='|' read -r command package <<<"$entry"
  found "$command" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "make $1 needs Debian's ${missing[*]}: install them (apt-get install ${missing[*]}) and run it again" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
