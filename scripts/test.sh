#!/usr/bin/env bash
# Every test: unit, golden and end-to-end tests against the in-process
# broker, then the end-to-end suite again against a real Kafka-compatible
# broker (tansu, installed and started here), then a short demo run whose
# self-check fails if offers, caps, holdouts or dead letters are missing,
# then the operations check (scripts/test-ops.sh).
cd "$(dirname "$0")/.."
source scripts/env.sh

echo "==> set-up detection (scripts/test-detect.sh)"
scripts/test-detect.sh

echo "==> cargo test (in-process broker)"
cargo test --locked --workspace --no-fail-fast

echo "==> fuzzing hostile input: property tests, 20,000 cases per property, corpus first"
PROPTEST_CASES=20000 cargo test --locked --workspace --test fuzz

source scripts/tansu.sh
echo "==> end-to-end suite against tansu"
CVM_TANSU="$TANSU" cargo test --locked -p cvm-e2e --test e2e --test hostile --no-fail-fast
echo "==> scale-out, kill -9 and failover against tansu (dynamic membership: tansu 0.6.0 stalls static members)"
# Each `cvm run` instance's log is kept beside the broker's, for a failure to be read afterwards.
scale_logs="$CVM_CACHE/scale-logs-$TANSU_PORT"
mkdir -p "$scale_logs"
echo "    (instance logs: $scale_logs; broker log: $TANSU_LOG)"
CVM_TANSU="$TANSU" CVM_DYNAMIC_MEMBERSHIP=1 CVM_KEEP_LOGS="$scale_logs" cargo test --locked -p cvm-e2e --test scale --no-fail-fast
# The broker is not needed further; stopping it here also keeps it out of the benchmarks.
kill "$TANSU_PID" 2>/dev/null || true
wait "$TANSU_PID" 2>/dev/null || true

echo "==> demo smoke run, then cvm report on its state"
cargo build --locked -p cvm --bin cvm
smoke="$(mktemp -d)"
# Replaces tansu.sh's trap, so it stops the broker too (when the suite above failed).
trap 'rm -rf "$smoke"; kill "$TANSU_PID" 2>/dev/null || true' EXIT
"$CARGO_TARGET_DIR/debug/cvm" demo --customers 5000 --days 7 --http 127.0.0.1:0 --data-dir "$smoke/state"
"$CARGO_TARGET_DIR/debug/cvm" report --data-dir "$smoke/state" --format html --out "$smoke/report.html"
"$CARGO_TARGET_DIR/debug/cvm" report --data-dir "$smoke/state" --format json | grep -q '"campaign_id": "abandoned-cart"'
grep -q "<svg" "$smoke/report.html"

echo "==> sample documents lint clean"
"$CARGO_TARGET_DIR/debug/cvm" offers lint deploy/offers/*.yaml deploy/campaigns/*.yaml deploy/policy.yaml

echo "==> cvm train on a replay of synthetic events: no offer changes what anyone buys there, so the"
echo "    uplift model cannot beat random targeting and is not written; forced, it lints as a config document"
"$CARGO_TARGET_DIR/debug/cvm" synth --out "$smoke/events.pb" --customers 5000 --days 21
train=("$CARGO_TARGET_DIR/debug/cvm" train --events "$smoke/events.pb" --documents deploy/offers/*.yaml
  deploy/campaigns/*.yaml --campaign abandoned-cart --out "$smoke/model.json")
if "${train[@]}" 2>"$smoke/train.err"; then
  echo "cvm train wrote a model with no effect to find" >&2; exit 1
fi
grep -q "not shown to beat random targeting" "$smoke/train.err" || { cat "$smoke/train.err" >&2; exit 1; }
[ ! -e "$smoke/model.json" ]
"${train[@]}" --force
"$CARGO_TARGET_DIR/debug/cvm" offers lint "$smoke/model.json"

echo "==> operations: deploy files validated; dashboard and alerts evaluated by Prometheus against a running engine"
CVM_OPS_MODEL="$smoke/model.json" scripts/test-ops.sh

echo "==> benchmarks (figures only; targets are checked by reading them)"
"$CARGO_TARGET_DIR/debug/cvm" bench-eligibility --iterations 500000
"$CARGO_TARGET_DIR/debug/cvm" bench-scoring
"$CARGO_TARGET_DIR/debug/cvm" bench-uplift
"$CARGO_TARGET_DIR/debug/cvm" bench-restore --profiles 60000
