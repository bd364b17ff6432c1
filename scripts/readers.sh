#!/usr/bin/env bash
# The real readers of fleetflow's outputs that the tests query them with: DuckDB and pyarrow, from
# PyPI, in a virtual environment under .tools/readers (installed on first use, again when
# scripts/readers/requirements.txt changes).
#
#   scripts/readers.sh install   install (first time) and print the environment's python
#
# Environment: FLEETFLOW_READERS_HOME (default .tools/readers).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
home="${FLEETFLOW_READERS_HOME:-$root/.tools/readers}"
req="$root/scripts/readers/requirements.txt"

case "${1:-}" in
  install)
    if [ ! -x "$home/venv/bin/python" ] || [ "$req" -nt "$home/venv/.installed" ]; then
      command -v python3 >/dev/null || { echo "readers.sh: python3 is needed to install DuckDB and pyarrow" >&2; exit 1; }
      echo "readers.sh: installing DuckDB and pyarrow into $home/venv" >&2
      mkdir -p "$home"
      python3 -m venv "$home/venv"
      "$home/venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
      touch "$home/venv/.installed"
    fi
    echo "$home/venv/bin/python"
    ;;
  *)
    echo "usage: $0 install" >&2; exit 2
    ;;
esac
