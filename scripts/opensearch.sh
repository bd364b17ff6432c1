#!/usr/bin/env bash
# A one-node OpenSearch 2.19 on loopback, for the project's tests. Its jars are resolved by Maven from
# scripts/opensearch/pom.xml; scripts/opensearch/OpenSearchNode.java (compiled against them) runs the
# node with its HTTP transport and common analyzers on the machine's Java 17.
#
#   scripts/opensearch.sh start    resolve and compile (first time), start on empty data, wait until ready
#   scripts/opensearch.sh stop     stop the node and delete its data
#   scripts/opensearch.sh kill     stop the node, keeping its data (for fault tests)
#   scripts/opensearch.sh restart  start a killed node again on its data
#   scripts/opensearch.sh status   exit 0 if the node answers
#
# Environment: FLEETFLOW_OPENSEARCH_PORT (default 19200, HTTP; the transport uses the port + 1),
# FLEETFLOW_OPENSEARCH_HOME (default .tools/opensearch under the repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${FLEETFLOW_OPENSEARCH_PORT:-19200}"
home="${FLEETFLOW_OPENSEARCH_HOME:-$root/.tools/opensearch}"
src="$root/scripts/opensearch"
mkdir -p "$home"

# The node's classpath: Maven's resolution of the pom, then the compiled launcher.
classpath() {
  local shared="$root/.tools/opensearch/classpath"
  if [ ! -s "$home/classpath" ] && [ -s "$shared" ] && [ "$shared" -nt "$src/pom.xml" ]; then
    cp "$shared" "$home/classpath"
  fi
  if [ ! -s "$home/classpath" ] || [ "$src/pom.xml" -nt "$home/classpath" ]; then
    command -v mvn >/dev/null || { echo "opensearch.sh: Maven (mvn) is needed to fetch the node's jars" >&2; exit 1; }
    echo "opensearch.sh: resolving the node's jars with Maven" >&2
    mvn -q -B -f "$src/pom.xml" dependency:build-classpath -Dmdep.outputFile="$home/classpath" >&2
  fi
  if [ ! -f "$home/classes/OpenSearchNode.class" ] || [ "$src/OpenSearchNode.java" -nt "$home/classes/OpenSearchNode.class" ]; then
    mkdir -p "$home/classes"
    javac -cp "$(cat "$home/classpath")" -d "$home/classes" "$src/OpenSearchNode.java" >&2
  fi
  echo "$home/classes:$(cat "$home/classpath")"
}

# shellcheck source=scripts/service.sh
source "$root/scripts/service.sh"

# Starts the node on its data folder and waits until its HTTP port answers and the cluster is usable.
launch() {
  nohup java -Xms512m -Xmx512m -cp "$1" OpenSearchNode "$home/node" "$port" >"$home/stdout.log" 2>&1 &
  echo $! > "$home/pid"
  wait_ready opensearch.sh node "$port" "$home/pid" "$home/stdout.log"
  for _ in $(seq 1 120); do
    if curl -sf "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "opensearch.sh: the node answers but its cluster is not usable within 60 s" >&2; return 1
}

case "${1:-}" in
  start)
    if answers "$port"; then echo "opensearch.sh: a node already answers on 127.0.0.1:$port"; exit 0; fi
    cp="$(classpath)"
    rm -rf "$home/node"
    launch "$cp"
    ;;
  stop)
    stop_pid "$home/pid"
    rm -rf "$home/node"
    ;;
  kill)
    stop_pid "$home/pid"
    ;;
  restart)
    [ -d "$home/node/data" ] || { echo "opensearch.sh: no node data to restart in $home; use start" >&2; exit 1; }
    if answers "$port"; then echo "opensearch.sh: a node already answers on 127.0.0.1:$port"; exit 0; fi
    launch "$(classpath)"
    ;;
  status)
    answers "$port"
    ;;
  *)
    echo "usage: scripts/opensearch.sh start|stop|kill|restart|status" >&2; exit 2
    ;;
esac
