#!/usr/bin/env bash
# A one-node Apache Kafka broker (KRaft mode) on loopback, for the project's tests and benchmarks.
# The broker's jars are resolved by Maven from scripts/kafka/pom.xml and run on the machine's Java.
#
#   scripts/kafka.sh start    resolve the jars (first time), format the storage, start, wait until ready
#   scripts/kafka.sh stop     stop the broker and delete its data
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
  if [ ! -s "$home/classpath" ] || [ "$root/scripts/kafka/pom.xml" -nt "$home/classpath" ]; then
    command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to fetch the broker's jars" >&2; exit 1; }
    echo "kafka.sh: resolving the broker's jars with Maven" >&2
    mvn -q -B -f "$root/scripts/kafka/pom.xml" dependency:build-classpath -Dmdep.outputFile="$home/classpath" >&2
  fi
  cat "$home/classpath"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

case "${1:-}" in
  start)
    if answers; then echo "kafka.sh: a broker already answers on 127.0.0.1:$port"; exit 0; fi
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
    nohup java -Xms256m -Xmx768m -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$cp" kafka.Kafka \
      "$home/server.properties" >"$home/stdout.log" 2>&1 &
    echo $! > "$home/pid"
    for _ in $(seq 1 120); do
      if answers; then echo "kafka.sh: broker ready on 127.0.0.1:$port (pid $(cat "$home/pid"))"; exit 0; fi
      if ! kill -0 "$(cat "$home/pid")" 2>/dev/null; then
        echo "kafka.sh: the broker exited; its output:" >&2; tail -50 "$home/stdout.log" "$home/broker.log" >&2 || true; exit 1
      fi
      sleep 0.5
    done
    echo "kafka.sh: the broker did not answer within 60 s" >&2; exit 1
    ;;
  stop)
    if [ -f "$home/pid" ]; then
      pid="$(cat "$home/pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$home/pid"
    fi
    rm -rf "$home/data"
    ;;
  status)
    answers
    ;;
  classpath)
    classpath
    ;;
  *)
    echo "usage: scripts/kafka.sh start|stop|status|classpath" >&2; exit 2
    ;;
esac
