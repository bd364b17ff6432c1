#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, then every test of
# the workspace (unit, doc, integration and CLI tests), with the services the tests need started
# here on loopback and stopped at the end: a one-node Kafka broker (scripts/kafka.sh; its jars come
# from Maven, it runs on the machine's Java 17).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== Kafka broker"
trap 'bash scripts/kafka.sh stop' EXIT
bash scripts/kafka.sh start
export FLEETFLOW_KAFKA_BROKERS="127.0.0.1:${FLEETFLOW_KAFKA_PORT:-19092}"

echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc
