#!/usr/bin/env bash
# The peers benchmark (not part of the test suite): fleetflow, Apache Flink (PyFlink's SQL on the
# machine's Java 17) and Bytewax run the same generated file through two queries; each system's
# row counts are checked against fleetflow's, and a Markdown table of wall time, readings/s and
# peak memory (the whole process tree, the JVM included) is printed and written to
# target/peers-data/results.md.
#
#   bash benches/peers/run.sh [--vehicles N] [--duration-secs S] [--systems fleetflow,flink,bytewax]
#
# The peers are installed from PyPI into .tools/peers/venv on first use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.tools/peers/venv"
if ! "$venv/bin/python" -c "import pyflink, bytewax" 2>/dev/null; then
    echo "peers: installing apache-flink and bytewax into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "apache-flink==2.3.0" "bytewax==0.21.1"
fi
(cd "$root" && cargo build --release --quiet)
exec "$venv/bin/python" "$here/compare.py" --fleetflow "$root/target/release/fleetflow" --data "$root/target/peers-data" "$@"
