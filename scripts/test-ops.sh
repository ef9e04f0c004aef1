#!/usr/bin/env bash
# The operations check: the deployment files are valid, and the dashboard and
# alert rules work against the engine as it really runs.
#  1. promtool checks deploy/prometheus (config and rules) and runs the
#     rules' unit tests; kubernetes-validate checks deploy/k8s against the
#     Kubernetes schemas, and tests/ops/k8s_consistency.py that the pieces
#     fit; docker-compose validates deploy/compose.
#  2. A demo engine runs (with a trained model, so the model series exist)
#     and a real Prometheus scrapes it every second and evaluates the alert
#     rules; tests/ops/check.py then evaluates every dashboard query and
#     alert through Prometheus's HTTP API.
# Installs Prometheus and docker-compose (Debian) and kubernetes-validate
# (PyPI, pinned, in a virtualenv under the cache) when missing.
# CVM_OPS_MODEL: a model artifact (`cvm train --out`, forced); trained here if unset.
cd "$(dirname "$0")/.."
source scripts/env.sh

KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=1.31.0

mapfile -t need_apt < <(cvm_missing_ops_packages)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  still="$(cvm_missing_ops_packages | tr '\n' ' ')"
  [ -z "$still" ] || { echo "still missing after apt: $still" >&2; exit 1; }
fi
venv="$CVM_CACHE/tools/ops-venv-$KUBERNETES_VALIDATE_VERSION"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qF "$KUBERNETES_VALIDATE_VERSION"; then
  echo "==> installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip, in $venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

echo "==> promtool: Prometheus config, alert rules and their unit tests"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

echo "==> Kubernetes manifests against the schemas of Kubernetes $KUBERNETES_VERSION, and with each other"
"$venv/bin/kubernetes-validate" --strict -k "$KUBERNETES_VERSION" deploy/k8s/*.yaml
"$venv/bin/python" tests/ops/k8s_consistency.py

echo "==> Compose file (docker-compose config)"
docker-compose -f deploy/compose/compose.yaml config -q
bash -n deploy/compose/create-topics.sh

echo "==> a demo engine scraped by Prometheus: every dashboard query and alert rule evaluated"
cargo build --locked -q -p cvm --bin cvm
cvm="$CARGO_TARGET_DIR/debug/cvm"
work="$(mktemp -d)"
demo_pid="" prom_pid=""
cleanup() {
  local status=$?
  if [ -n "$demo_pid" ]; then kill -INT "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  if [ -n "$prom_pid" ]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

mkdir -p "$work/models"
if [ -n "${CVM_OPS_MODEL:-}" ]; then
  cp "$CVM_OPS_MODEL" "$work/models/"
else
  "$cvm" synth --out "$work/events.pb" --customers 5000 --days 21 >/dev/null
  # Forced: these events hold no effect of the offer to find (see scripts/test.sh);
  # the model is here for its metrics.
  "$cvm" train --events "$work/events.pb" --documents deploy/offers/*.yaml deploy/campaigns/*.yaml \
    --campaign abandoned-cart --out "$work/models/abandoned-cart.json" --force >/dev/null
fi

cvm_port="$(free_port)"
# A drift window short enough for the demo's model-scored decisions to
# complete several, so the drift series (PSI) are there.
CVM__ENGINE__MODELS__DRIFT_WINDOW=200 "$cvm" demo --customers 5000 --days 21 --http "127.0.0.1:$cvm_port" --linger 600s \
  --model-dir "$work/models" >"$work/demo.log" 2>&1 &
demo_pid=$!

prom_port="$(free_port)"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: cvm
    static_configs:
      - targets: ["127.0.0.1:$cvm_port"]
YAML
promtool check config "$work/prometheus.yml" >/dev/null
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!

# The demo's summary comes once every event is decided and published; it
# then keeps serving (--linger) with the pipeline running.
for _ in $(seq 600); do
  grep -q "^serving http://" "$work/demo.log" && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.log"; echo "the demo stopped before serving" >&2; exit 1; }
  kill -0 "$prom_pid" 2>/dev/null || { cat "$work/prometheus.log"; echo "Prometheus stopped" >&2; exit 1; }
  sleep 1
done
grep -q "^serving http://" "$work/demo.log" || { cat "$work/demo.log"; echo "the demo did not finish in 10 minutes" >&2; exit 1; }
# A few more scrapes and rule evaluations of the settled engine (the lag
# gauges come every 5 s).
sleep 10
python3 tests/ops/check.py "http://127.0.0.1:$prom_port"
