# Installs (pinned, cached) and starts a tansu broker on a free loopback
# port; sets TANSU_PID and CVM_TEST_BROKERS. Source it after env.sh.
TANSU_VERSION=0.6.0
TANSU_ROOT="$CVM_CACHE/tools/tansu-$TANSU_VERSION"
TANSU="$TANSU_ROOT/bin/tansu"
if [ ! -x "$TANSU" ]; then
  echo "==> installing tansu $TANSU_VERSION (cached in $TANSU_ROOT)"
  CARGO_TARGET_DIR="$CVM_CACHE/tansu-target" cargo install tansu --version "$TANSU_VERSION" \
    --features dynostore,libsql --locked --root "$TANSU_ROOT" --quiet
fi
# A free loopback port, found with bash alone (a fresh machine may lack python3).
for _ in $(seq 1 50); do
  TANSU_PORT=$((20000 + RANDOM % 20000))
  (echo >/dev/tcp/127.0.0.1/$TANSU_PORT) 2>/dev/null || break
done
TANSU_LOG="$CVM_CACHE/tansu-$TANSU_PORT.log"
# The group coordinator at debug (members joining, expiring, assignments):
# what a stalled rebalance in the scale suite needs to be explained.
RUST_LOG="${TANSU_LOG_FILTER:-warn,tansu_broker::coordinator=debug}" "$TANSU" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
  --storage-engine memory://tansu/ >"$TANSU_LOG" 2>&1 &
TANSU_PID=$!
trap 'kill $TANSU_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (echo >/dev/tcp/127.0.0.1/$TANSU_PORT) 2>/dev/null && break
  kill -0 $TANSU_PID 2>/dev/null || { echo "tansu exited; log:" >&2; cat "$TANSU_LOG" >&2; exit 1; }
  sleep 0.1
done
export CVM_TEST_BROKERS="127.0.0.1:$TANSU_PORT"
echo "==> tansu $TANSU_VERSION listening on $CVM_TEST_BROKERS (log: $TANSU_LOG)"
