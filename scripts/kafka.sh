#!/usr/bin/env bash
# A one-node Apache Kafka broker (KRaft mode) on loopback, for the project's tests and benchmarks.
# The broker's jars are resolved by Maven from scripts/kafka/pom.xml and run on the machine's Java.
#
#   scripts/kafka.sh start    resolve the jars (first time), format the storage, start, wait until ready
#   scripts/kafka.sh stop     stop the broker and delete its data
#   scripts/kafka.sh kill     stop the broker, keeping its data (for fault tests)
#   scripts/kafka.sh restart  start a killed broker again on its data
#   scripts/kafka.sh status   exit 0 if the broker answers
#
# Environment: FLEETFLOW_KAFKA_PORT (default 19092; the controller uses the port + 1),
# FLEETFLOW_KAFKA_HOME (default .tools/kafka under the repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${FLEETFLOW_KAFKA_PORT:-19092}"
cport=$((port + 1))
home="${FLEETFLOW_KAFKA_HOME:-$root/.tools/kafka}"
mkdir -p "$home"

classpath() {
  # A broker with a home of its own (a fault test's) reuses the default home's resolved jars.
  local shared="$root/.tools/kafka/classpath"
  if [ ! -s "$home/classpath" ] && [ -s "$shared" ] && [ "$shared" -nt "$root/scripts/kafka/pom.xml" ]; then
    cp "$shared" "$home/classpath"
  fi
  if [ ! -s "$home/classpath" ] || [ "$root/scripts/kafka/pom.xml" -nt "$home/classpath" ]; then
    command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to fetch the broker's jars" >&2; exit 1; }
    echo "kafka.sh: resolving the broker's jars with Maven" >&2
    mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:build-classpath -Dmdep.outputFile="$home/classpath" >&2
  fi
  cat "$home/classpath"
}

# shellcheck source=scripts/service.sh
source "$root/scripts/service.sh"

# Starts the broker on its formatted storage and waits until it answers.
launch() {
  nohup java -Xms256m -Xmx768m -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$1" kafka.Kafka \
    "$home/server.properties" >"$home/stdout.log" 2>&1 &
  echo $! > "$home/pid"
  wait_ready kafka.sh broker "$port" "$home/pid" "$home/stdout.log" "$home/broker.log"
}

case "${1:-}" in
  start)
    if answers "$port"; then echo "kafka.sh: a broker already answers on 127.0.0.1:$port"; exit 0; fi
    cp="$(classpath)"
    rm -rf "$home/data"
    mkdir -p "$home/data"
    cat > "$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$home/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# The tests publish readings with their event times (days or years ago) as message timestamps:
# time-based retention would delete them within minutes (its check runs every 5 minutes).
log.retention.ms=-1
PROPS
    cat > "$home/log4j2.properties" <<PROPS
rootLogger.level=WARN
rootLogger.appenderRef.file.ref=FILE
appender.file.type=File
appender.file.name=FILE
appender.file.fileName=$home/broker.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
    java -cp "$cp" kafka.tools.StorageTool format -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
      -c "$home/server.properties" >"$home/format.log" 2>&1 || { cat "$home/format.log" >&2; exit 1; }
    launch "$cp"
    ;;
  stop)
    stop_pid "$home/pid"
    rm -rf "$home/data"
    ;;
  kill)
    stop_pid "$home/pid"
    ;;
  restart)
    [ -f "$home/server.properties" ] && [ -d "$home/data" ] || { echo "kafka.sh: no broker storage to restart in $home; use start" >&2; exit 1; }
    if answers "$port"; then echo "kafka.sh: a broker already answers on 127.0.0.1:$port"; exit 0; fi
    launch "$(classpath)"
    ;;
  status)
    answers "$port"
    ;;
  classpath)
    classpath
    ;;
  *)
    echo "usage: scripts/kafka.sh start|stop|kill|restart|status|classpath" >&2; exit 2
    ;;
esac
