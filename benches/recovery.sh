#!/usr/bin/env bash
# Recovery after a crash, measured against a real broker: publishes VEHICLES vehicles over SECS
# seconds of event time to a topic of W partitions, runs the job (W workers, a checkpoint every
# 60 s of event time) from the start of the topic, SIGKILLs it once CHECKPOINTS checkpoints are
# complete, then restarts it to the end of the topic and reports:
#   - restore: restart to the checkpoint read back (the log's "restoring" line);
#   - first output: restart to the first new window file in the output folder;
#   - re-read: records the restart read again that the killed run had read;
#   - the whole restart, and the state's size on disk.
# Usage: FLEETFLOW_KAFKA_BROKERS=127.0.0.1:19092 bash benches/recovery.sh (after
# `cargo build --release` and `bash scripts/kafka.sh start`); VEHICLES, SECS, W, CHECKPOINTS.
set -euo pipefail
cd "$(dirname "$0")/.."
BROKERS="${FLEETFLOW_KAFKA_BROKERS:-127.0.0.1:19092}"
VEHICLES="${VEHICLES:-100000}"
SECS="${SECS:-300}"
W="${W:-2}"
CHECKPOINTS="${CHECKPOINTS:-3}"
BIN="${BIN:-target/release/fleetflow}"
TOPIC="recovery-${VEHICLES}-$$"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

published=$("$BIN" produce --kafka-brokers "$BROKERS" --topic "$TOPIC" --partitions "$W" --vehicles "$VEHICLES" \
  --duration-secs "$SECS" --start 2025-11-24 --max-delay-ms 0 2>&1 | sed -n 's/.*published \([0-9]*\) readings.*/\1/p')
echo "published $published readings of $VEHICLES vehicles over $SECS s to $TOPIC ($W partitions)"

run() {
  exec "$BIN" run --kafka-brokers "$BROKERS" --topic "$TOPIC" --group "g-$TOPIC" -w "$W" --output "$DIR/out" \
    --state-dir "$DIR/state" --checkpoint-interval-secs 60 --buffer-secs 0 "$@"
}
(run --http 127.0.0.1:${HTTP_PORT:-18941} > "$DIR/first.log" 2>&1) &
first=$!
until [ "$(grep -c 'checkpoint complete' "$DIR/first.log" || true)" -ge "$CHECKPOINTS" ]; do
  kill -0 "$first" 2>/dev/null || { cat "$DIR/first.log"; echo "the first run ended early"; exit 1; }
  sleep 0.05
done
killed_read=$(curl -s http://127.0.0.1:${HTTP_PORT:-18941}/metrics | sed -n 's/^fleetflow_records_read_total \([0-9]*\).*/\1/p')
kill -9 "$first"
wait "$first" 2>/dev/null || true
windows() { find "$DIR/out/speed_windows" -type f 2>/dev/null | wc -l; }
before=$(windows)
state=$(du -sh "$DIR/state" | cut -f1)
echo "killed after $CHECKPOINTS checkpoints, having read $killed_read records ($before window files, state $state)"

started=$(now)
(run --http "" --stop end > "$DIR/second.log" 2>&1) &
second=$!
until [ "$(windows)" -gt "$before" ]; do
  kill -0 "$second" 2>/dev/null || break
  sleep 0.01
done
first_output=$(since "$started")
wait "$second"
whole=$(since "$started")
restore_line=$(grep -m1 'restoring the checkpoint' "$DIR/second.log" || true)
restored_at=$(echo "$restore_line" | cut -d' ' -f1)
restore=$(echo "$(date -d "$restored_at" +%s.%N) - $started" | bc)
read_again=$(sed -n 's/.*done: \([0-9]*\) records read.*/\1/p' "$DIR/second.log")
reread=$((killed_read - (published - read_again)))
echo "restore ${restore} s; first new output ${first_output} s; re-read $reread records; restart to the end ${whole} s"
echo "$restore_line" | cut -c1-200
