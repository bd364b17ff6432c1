#!/usr/bin/env bash
# The moto server (an AWS emulator) on loopback: the Firehose, S3, SNS and SQS endpoint of the
# project's tests. Installed from PyPI into a virtual environment under .tools/moto on first use.
#
#   scripts/moto.sh start    install (first time), start, wait until it answers
#   scripts/moto.sh stop     stop it (its state is in memory and goes with it)
#   scripts/moto.sh status   exit 0 if it answers
#
# Environment: FLEETFLOW_MOTO_PORT (default 15000), FLEETFLOW_MOTO_HOME (default .tools/moto).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${FLEETFLOW_MOTO_PORT:-15000}"
home="${FLEETFLOW_MOTO_HOME:-$root/.tools/moto}"
mkdir -p "$home"

install() {
  local req="$root/scripts/moto/requirements.txt"
  if [ ! -x "$home/venv/bin/moto_server" ] || [ "$req" -nt "$home/venv/.installed" ]; then
    command -v python3 >/dev/null || { echo "moto.sh: python3 is needed to install moto" >&2; exit 1; }
    echo "moto.sh: installing moto into $home/venv" >&2
    python3 -m venv "$home/venv"
    "$home/venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
    touch "$home/venv/.installed"
  fi
}

# shellcheck source=scripts/service.sh
source "$root/scripts/service.sh"

case "${1:-}" in
  start)
    if answers "$port"; then echo "moto.sh: something already answers on 127.0.0.1:$port"; exit 0; fi
    install
    nohup "$home/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$home/server.log" 2>&1 &
    echo $! > "$home/pid"
    wait_ready moto.sh moto "$port" "$home/pid" "$home/server.log"
    ;;
  stop)
    stop_pid "$home/pid"
    ;;
  status)
    answers "$port"
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2
    ;;
esac
