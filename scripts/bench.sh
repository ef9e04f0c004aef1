#!/usr/bin/env bash
# Runs every benchmark and rewrites BENCHMARKS.md: the machine, the exact
# commands, each figure beside its target (issue 14), and the ceilings
# measured in the same run. A figure this suite cannot measure yet says so.
#
#   scripts/bench.sh                 # the full suite (~15 min on 2 cores, ~5 GB of disk)
#   CVM_BENCH_PROFILES=100000 CVM_BENCH_SWEEP_PROFILES=300000 scripts/bench.sh   # a quick pass
cd "$(dirname "$0")/.."
source scripts/env.sh

profiles="${CVM_BENCH_PROFILES:-1000000}"
events="${CVM_BENCH_EVENTS:-500000}"
demo_customers="${CVM_BENCH_DEMO_CUSTOMERS:-20000}"
restore_profiles="${CVM_BENCH_RESTORE_PROFILES:-200000}"
offer_events="${CVM_BENCH_OFFER_EVENTS:-50000}"
sweep_profiles="${CVM_BENCH_SWEEP_PROFILES:-10000000}"

echo "==> building"
cargo build --locked -p cvm --bin cvm
bin="$CARGO_TARGET_DIR/debug/cvm"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Runs a command, keeps its output in $work/<name>.txt and its peak resident
# memory (KiB, from /proc) in $work/<name>.rss.
run() {
  local name="$1"; shift
  echo "==> $name: $*"
  "$@" >"$work/$name.txt" 2>"$work/$name.err" &
  local pid=$! peak=0 now
  while kill -0 "$pid" 2>/dev/null; do
    now="$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    [ -n "$now" ] && [ "$now" -gt "$peak" ] && peak="$now"
    sleep 0.2
  done
  wait "$pid" || { cat "$work/$name.err" >&2; exit 1; }
  echo "$peak" >"$work/$name.rss"
  cat "$work/$name.txt"
}

# The first number after `label` on its line in $work/<name>.txt.
figure() {
  awk -v l="$2" 'i = index($0, l) { s = substr($0, i + length(l)); if (match(s, /[0-9][0-9.,]*/)) print substr(s, RSTART, RLENGTH); exit }' \
    "$work/$1.txt" | tr -d ','
}

core_cmd=("$bin" bench --profiles "$profiles" --events "$events" --data-dir "$work/core-store")
run core "${core_cmd[@]}"
store_bytes="$(du -sb "$work/core-store" | cut -f1)"
sst_bytes="$(find "$work/core-store" -name '*.sst' -printf '%s\n' | awk '{s += $1} END {print s + 0}')"
rm -rf "$work/core-store"

offers1k_cmd=("$bin" bench --profiles "$profiles" --events "$offer_events" --offers 1000)
offers30k_cmd=("$bin" bench --profiles "$profiles" --events "$offer_events" --offers 30000)
run offers1k "${offers1k_cmd[@]}"
run offers30k "${offers30k_cmd[@]}"
sweep_cmd=("$bin" bench-sweep --profiles "$sweep_profiles" --workers 2)
run sweep "${sweep_cmd[@]}"

demo1_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 1 --http 127.0.0.1:0)
demo2_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 2 --http 127.0.0.1:0)
demo_alo_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 1 --delivery at-least-once --http 127.0.0.1:0)
run demo1 "${demo1_cmd[@]}"
run demo2 "${demo2_cmd[@]}"
run demo_alo "${demo_alo_cmd[@]}"
# Live at half the sustained rate (after the first commit) of one worker.
half_rate="$(awk -v r="$(figure demo1 'events/s after it')" 'BEGIN { printf "%d", r / 2 }')"
latency_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 1 --rate "$half_rate" --http 127.0.0.1:0)
run latency "${latency_cmd[@]}"
restore_cmd=("$bin" bench-restore --profiles "$restore_profiles")
run restore "${restore_cmd[@]}"
eligibility_cmd=("$bin" bench-eligibility --iterations 500000)
run eligibility "${eligibility_cmd[@]}"
scoring_cmd=("$bin" bench-scoring)
run scoring "${scoring_cmd[@]}"

core_rate="$(figure core 'decision core (apply + decide)')"
bare_rmw="$(figure core 'bare RocksDB read-modify-write')"
core_p99="$(grep -F 'per-event latency' "$work/core.txt" | sed -E 's/.* p99 ([0-9.]+) .*/\1/')"
demo1="$(figure demo1 'events/s after it')"
demo2="$(figure demo2 'events/s after it')"
demo_alo="$(figure demo_alo 'events/s after it')"
demo1_total="$(figure demo1 'events/s (end to end)')"
demo1_start="$(figure demo1 'seconds to the first commit')"
offers1k="$(figure offers1k 'decision core (apply + decide)')"
offers30k="$(figure offers30k 'decision core (apply + decide)')"
offers1k_p99="$(grep -F 'per-event latency' "$work/offers1k.txt" | sed -E 's/.* p99 ([0-9.]+) .*/\1/')"
offers30k_p99="$(grep -F 'per-event latency' "$work/offers30k.txt" | sed -E 's/.* p99 ([0-9.]+) .*/\1/')"
offers30k_load="$(figure offers30k 'took in 30000 generated offers in')"
sweep_seconds="$(figure sweep 'sweep seconds')"
sweep_rate="$(figure sweep 'sweep profiles/s')"
sweep_bytes="$(figure sweep 'SST bytes per profile (compacted)')"
sweep_rss="$(figure sweep 'peak RSS MiB')"
latency_p50="$(awk '/^ +p50 / {print $2; exit}' "$work/latency.txt")"
latency_p99="$(awk '/^ +p99 / {print $2; exit}' "$work/latency.txt")"
restore_rate="$(figure restore 'restored profiles/s')"
produce_rate="$(figure restore 'produced records/s (bare producer)')"
eligibility="$(figure eligibility 'event vs 1,000 offers (50 triggered)')"
scoring="$(figure scoring 'ranked')"
core_rss_mib=$(( $(cat "$work/core.rss") / 1024 ))
per_profile=$(( store_bytes / profiles ))
sst_per_profile=$(( sst_bytes / profiles ))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'; }
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN { ok = (dir == ">=") ? v >= t : v <= t; print ok ? "met" : "**not met**" }'; }
show() { printf '`%s`' "$*" | sed "s|$CARGO_TARGET_DIR/debug/cvm|cvm|; s|$work/[a-z-]*|DIR|g"; }

{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`."
  echo "Machine: $(grep -c ^processor /proc/cpuinfo) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) memory. Binary: the dev profile (optimised, see \`Cargo.toml\`)."
  echo "One run each: figures move by several per cent between runs. Where the time goes, what would"
  echo "close each gap and the log of optimisations: [docs/performance.md](docs/performance.md)."
  echo
  echo "## Targets (issue 14)"
  echo
  echo "| figure | measured | target | verdict |"
  echo "| --- | ---: | --- | --- |"
  echo "| decision core, 1 worker, $profiles profiles, sample catalog | $core_rate events/s | ≥ 150,000 | $(verdict "$core_rate" 150000 ">=") |"
  echo "| its p99 per event (excl. commit) | $core_p99 µs | ≤ 200 µs | $(verdict "$core_p99" 200 "<=") |"
  echo "| decision core, 1,000 generated offers (retail mix, \`cvm offers generate\`) | $offers1k events/s, p99 $offers1k_p99 µs | ≥ 100,000 | $(verdict "$offers1k" 100000 ">=") |"
  echo "| decision core, 30,000 generated offers (taken in one by one in $offers30k_load s) | $offers30k events/s, p99 $offers30k_p99 µs | ≥ 50,000 | $(verdict "$offers30k" 50000 ">=") |"
  echo "| end to end, in-process broker, 1 worker (demo, $demo_customers customers, 7 days), after the first commit | $demo1 events/s = $(ratio "$demo1" "$core_rate") × the core (with the $demo1_start s start: $demo1_total) | ≥ 0.8 × the core | $(verdict "$(ratio "$demo1" "$core_rate")" 0.8 ">=") |"
  echo "| event-to-offer latency at half the sustained rate ($half_rate events/s, live) | p50 $latency_p50 ms, p99 $latency_p99 ms | p99 ≤ 50 ms | $(verdict "$latency_p99" 50 "<=") |"
  sweep_10m="$(awk -v r="$sweep_rate" 'BEGIN { printf "%.0f", (r > 0) ? 10000000 / r : 1e9 }')"
  echo "| sweep over $sweep_profiles profiles, 2 workers, no rate limit | $sweep_seconds s ($sweep_rate profiles/s: 10 M in $sweep_10m s) | ≤ 60 s at 10 M | $(verdict "$sweep_10m" 60 "<=") |"
  echo "| store on disk per profile after compaction ($sweep_profiles profiles) | $sweep_bytes B | ≤ 150 B at 10 M | $(verdict "$sweep_bytes" 150 "<=") |"
  echo "| peak RSS, $sweep_profiles profiles loaded, compacted and swept | $sweep_rss MiB | ≤ 1.5 GiB at 10 M | $(verdict "$sweep_rss" 1536 "<=") |"
  echo "| store on disk per profile before compaction ($profiles profiles after \`cvm bench\`, SST + WAL) | $per_profile B (SST alone $sst_per_profile B) | — | — |"
  echo "| peak RSS of \`cvm bench\` ($profiles profiles) | $core_rss_mib MiB | — | — |"
  echo "| 2 workers vs 1 (demo) | $demo2 vs $demo1 events/s = $(ratio "$demo2" "$demo1")× | ≥ 1.8× | $(verdict "$(ratio "$demo2" "$demo1")" 1.8 ">=") |"
  echo
  echo "## Ceilings and costs measured in the same run"
  echo
  echo "| figure | measured |"
  echo "| --- | ---: |"
  echo "| bare RocksDB read-modify-write, same options | $bare_rmw ops/s (the core is $(ratio "$core_rate" "$bare_rmw") × it) |"
  echo "| produce-only, in-process broker (bare producer) | $produce_rate records/s |"
  echo "| consume-only, same broker | not measured yet |"
  echo "| exactly-once vs at-least-once delivery (demo, 1 worker) | $demo1 vs $demo_alo events/s |"
  echo "| restore from the changelog | $restore_rate profiles/s ($restore_profiles profiles) |"
  echo "| eligibility: one event against 1,000 offers | $eligibility µs |"
  echo "| scoring and ranking 1,000 model-scored candidates | $scoring µs |"
  echo
  echo "## Commands"
  echo
  for c in core offers1k offers30k sweep demo1 demo2 demo_alo latency restore eligibility scoring; do
    declare -n cmd="${c}_cmd"
    echo "- $c: $(show "${cmd[@]}")"
  done
  echo
  echo "## Raw output"
  for c in core offers1k offers30k sweep demo1 demo2 demo_alo latency restore eligibility scoring; do
    echo
    echo "### $c"
    echo
    echo '```'
    case "$c" in
      demo* | latency) grep -E 'events/s|latency|elapsed|seconds|p50|p99|  max' "$work/$c.txt" ;;
      *) grep -v '^\s*$' "$work/$c.txt" ;;
    esac
    echo '```'
  done
} >BENCHMARKS.md
echo "==> BENCHMARKS.md written"
