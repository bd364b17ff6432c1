#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): formatting, lints, then every test of
# the workspace (unit, doc, integration and CLI tests), with the services the tests need started
# here on loopback and stopped at the end: a one-node Kafka broker (scripts/kafka.sh; its jars come
# from Maven, it runs on the machine's Java 17) and the moto AWS emulator (scripts/moto.sh; installed
# from PyPI into a virtual environment) as the Firehose, S3, SNS and SQS endpoint; a one-node
# OpenSearch 2.19 (scripts/opensearch.sh; Maven jars on Java 17) for the OpenSearch sink; DuckDB and
# pyarrow (scripts/readers.sh; from PyPI into a virtual environment) as readers of the outputs; and Debian's
# chromium, chromium-driver and prometheus (scripts/tools.sh) for the browser and promtool tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean checkout builds once: incremental caches would only take disk (1.5 GB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== chromium, chromedriver and promtool"
bash scripts/tools.sh
echo "== DuckDB and pyarrow"
FLEETFLOW_READERS_PYTHON="$(bash scripts/readers.sh install)"
export FLEETFLOW_READERS_PYTHON
echo "== Kafka broker, AWS emulator and OpenSearch node"
trap 'bash scripts/kafka.sh stop; bash scripts/moto.sh stop; bash scripts/opensearch.sh stop' EXIT
bash scripts/kafka.sh start
bash scripts/moto.sh start
bash scripts/opensearch.sh start
export FLEETFLOW_OPENSEARCH_URL="http://127.0.0.1:${FLEETFLOW_OPENSEARCH_PORT:-19200}"
export FLEETFLOW_KAFKA_BROKERS="127.0.0.1:${FLEETFLOW_KAFKA_PORT:-19092}"
export FLEETFLOW_AWS_ENDPOINT="http://127.0.0.1:${FLEETFLOW_MOTO_PORT:-15000}"
# The emulator takes any credentials; real ones in the environment are not sent to it.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_PROFILE

echo "== cargo test"
cargo test --workspace --all-targets
cargo test --workspace --doc
