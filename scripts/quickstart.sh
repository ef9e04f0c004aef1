#!/usr/bin/env bash
# The embedded quickstart: in-process broker, synthetic retailer (50,000
# customers), the engine and sample offers; prints progress and a summary.
# Extra arguments go to `cvm demo` (see `cvm demo --help`).
cd "$(dirname "$0")/.."
source scripts/env.sh
echo "==> building (the first build compiles RocksDB and librdkafka: ~20 min on 2 cores)"
cargo build --locked -p cvm --bin cvm
exec "$CARGO_TARGET_DIR/debug/cvm" demo "$@"
