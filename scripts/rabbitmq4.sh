#!/usr/bin/env bash
# A RabbitMQ 4 server beside the machine's own, for the tests that must hold on both series.
#
#   scripts/rabbitmq4.sh prepare        makes its root file system (once; start does it too)
#   scripts/rabbitmq4.sh start          prints the server's AMQP URL once it answers
#   scripts/rabbitmq4.sh stop
#   scripts/rabbitmq4.sh run CMD...     starts it, runs CMD with TEST_AMQP_URL (and
#                                       TEST_RABBITMQ_MANAGEMENT_URL) naming it, stops it
#   scripts/rabbitmq4.sh ctl ARGS...    rabbitmqctl of that server
#
# Debian 13 (trixie) packages RabbitMQ 4.0: its rabbitmq-server is installed by debootstrap into a
# root file system of its own (made once, then kept under the cache directory), and started there by
# chroot, in a mount namespace of its own, on loopback ports that do not meet the machine's server:
# AMQP on RABBITMQ4_PORT (5673), the management API on 15673, Erlang distribution on 25673, its port
# mapper on 4370. Each start
# is a fresh node: no queue or message of an earlier run is left. It uses the broker configuration
# that compose gives RabbitMQ (deploy/rabbitmq/rabbitmq.conf), so the tests also check that file.
# Needs root (debootstrap, chroot); elsewhere, `run` uses the RabbitMQ 4 that RABBITMQ4_URL (and
# RABBITMQ4_MANAGEMENT_URL) name instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${DELIVERYHUB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/deliveryhub}
root=${RABBITMQ4_ROOT:-$cache/rabbitmq-4}
port=${RABBITMQ4_PORT:-5673}
management_port=$((port + 10000))
node=rabbit4@localhost
suite=trixie

# The environment the server and its control tool share inside the root file system.
node_env=(
  HOME=/var/lib/rabbitmq PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  RABBITMQ_NODENAME="$node" RABBITMQ_DIST_PORT=25673
  ERL_EPMD_PORT=4370 ERL_EPMD_ADDRESS=127.0.0.1
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  RABBITMQ_LOG_BASE=/var/log/rabbitmq RABBITMQ_MNESIA_BASE=/var/lib/rabbitmq/mnesia
)

as_rabbitmq() {
  chroot "$root" /usr/bin/env -i "${node_env[@]}" /bin/su rabbitmq -s /bin/sh -c "$*"
}

mirror() {
  # The mirror apt already uses on this machine.
  local uri
  uri=$(grep -hs -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true)
  [ -n "$uri" ] || uri=$(grep -hs -m1 -E '^deb ' /etc/apt/sources.list | awk '{print $2}' || true)
  if [ -z "$uri" ]; then
    echo "no Debian mirror is configured for apt on this machine" >&2
    exit 1
  fi
  echo "$uri"
}

build() {
  mkdir -p "$(dirname "$root")"
  # One build at a time: `prepare` may be making it in the background while `start` waits here.
  # (A subshell holds the lock, so that no server started later inherits it.)
  (
    flock 9
    [ -x "$root/usr/sbin/rabbitmq-server" ] && exit 0
    if ! command -v debootstrap >/dev/null; then
      echo "installing debootstrap" >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    echo "making a Debian $suite root file system with rabbitmq-server (once)" >&2
    rm -rf "$root.partial"
    debootstrap --variant=minbase --include=rabbitmq-server "$suite" "$root.partial" "$(mirror)" \
      >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
    mv "$root.partial" "$root"
  ) 9>"$root.lock"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

start() {
  build
  if answers; then
    echo "port $port is taken: stop what runs there first (scripts/rabbitmq4.sh stop)" >&2
    exit 1
  fi
  rm -rf "$root/var/lib/rabbitmq/mnesia" "$root/var/log/rabbitmq"/*
  mkdir -p "$root/var/log/rabbitmq"
  {
    cat deploy/rabbitmq/rabbitmq.conf
    echo "listeners.tcp.1 = 127.0.0.1:$port"
    echo "management.tcp.ip = 127.0.0.1"
    echo "management.tcp.port = $management_port"
    echo "loopback_users.guest = true"
  } >"$root/etc/rabbitmq/rabbitmq.conf"
  echo "[rabbitmq_management]." >"$root/etc/rabbitmq/enabled_plugins"
  chroot "$root" chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
  # The server reads /proc; the mount lives in a namespace that ends with the server.
  unshare --mount --propagation private /bin/sh -c \
    "mount -t proc proc '$root/proc' && exec chroot '$root' /usr/bin/env -i ${node_env[*]@Q} \
     /bin/su rabbitmq -s /bin/sh -c 'rabbitmq-server -detached'"
  for _ in $(seq 1 90); do
    if answers && as_rabbitmq "rabbitmqctl -q await_startup --timeout 5" >/dev/null 2>&1; then
      echo "amqp://guest:guest@127.0.0.1:$port/"
      return 0
    fi
    sleep 1
  done
  echo "RabbitMQ 4 did not start; its log:" >&2
  tail -30 "$root/var/log/rabbitmq/$node.log" >&2 || true
  exit 1
}

stop() {
  [ -x "$root/usr/sbin/rabbitmqctl" ] || return 0
  as_rabbitmq "rabbitmqctl -q stop" >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do
    answers || break
    sleep 1
  done
  # What is left running inside the root file system (the port mapper outlives the node).
  local pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$(realpath "$root")" ] && kill "$pid" 2>/dev/null
  done
  return 0
}

run() {
  local url=${RABBITMQ4_URL:-} management=${RABBITMQ4_MANAGEMENT_URL:-} status=0
  if [ -z "$url" ]; then
    url=$(start)
    management="http://guest:guest@127.0.0.1:$management_port"
    trap stop EXIT
  fi
  echo "on RabbitMQ 4 ($url): $*" >&2
  TEST_AMQP_URL=$url TEST_RABBITMQ_MANAGEMENT_URL=$management "$@" || status=$?
  return $status
}

case "${1:-}" in
  prepare) build ;;
  start) start ;;
  stop) stop ;;
  run) shift; run "$@" ;;
  ctl) shift; as_rabbitmq "rabbitmqctl ${*@Q}" ;;
  version) chroot "$root" dpkg-query -W -f '${Version}\n' rabbitmq-server ;;
  *) echo "usage: $0 prepare|start|stop|run CMD...|ctl ARGS...|version" >&2; exit 2 ;;
esac
