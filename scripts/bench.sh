#!/usr/bin/env bash
# Runs every benchmark and rewrites BENCHMARKS.md: the machine, the exact
# commands, each figure beside its target (issue 14), and the ceilings
# measured in the same run. A figure this suite cannot measure yet says so.
#
#   scripts/bench.sh                 # the full suite (~5 min on 2 cores)
#   CVM_BENCH_PROFILES=100000 scripts/bench.sh   # a quick pass
cd "$(dirname "$0")/.."
source scripts/env.sh

profiles="${CVM_BENCH_PROFILES:-1000000}"
events="${CVM_BENCH_EVENTS:-500000}"
demo_customers="${CVM_BENCH_DEMO_CUSTOMERS:-20000}"
restore_profiles="${CVM_BENCH_RESTORE_PROFILES:-200000}"

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

demo1_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 1 --http 127.0.0.1:0)
demo2_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 2 --http 127.0.0.1:0)
demo_alo_cmd=("$bin" demo --customers "$demo_customers" --days 7 --workers 1 --delivery at-least-once --http 127.0.0.1:0)
run demo1 "${demo1_cmd[@]}"
run demo2 "${demo2_cmd[@]}"
run demo_alo "${demo_alo_cmd[@]}"
restore_cmd=("$bin" bench-restore --profiles "$restore_profiles")
run restore "${restore_cmd[@]}"
eligibility_cmd=("$bin" bench-eligibility --iterations 500000)
run eligibility "${eligibility_cmd[@]}"
scoring_cmd=("$bin" bench-scoring)
run scoring "${scoring_cmd[@]}"

core_rate="$(figure core 'decision core (apply + decide)')"
bare_rmw="$(figure core 'bare RocksDB read-modify-write')"
core_p99="$(grep -F 'per-event latency' "$work/core.txt" | sed -E 's/.* p99 ([0-9.]+) .*/\1/')"
demo1="$(figure demo1 'events/s (end to end)')"
demo2="$(figure demo2 'events/s (end to end)')"
demo_alo="$(figure demo_alo 'events/s (end to end)')"
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
  echo "| decision core with 1,000 / 30,000 active offers | not measured yet (no catalog generator) | ≥ 100,000 / ≥ 50,000 | — |"
  echo "| end to end, in-process broker, 1 worker (demo, $demo_customers customers, 7 days) | $demo1 events/s = $(ratio "$demo1" "$core_rate") × the core | ≥ 0.8 × the core | $(verdict "$(ratio "$demo1" "$core_rate")" 0.8 ">=") |"
  echo "| event-to-offer latency p99 at half the sustained maximum | not measured yet (no fixed-rate load generator) | ≤ 50 ms | — |"
  echo "| sweep over 10 M profiles, both cores | not measured yet | ≤ 60 s | — |"
  echo "| store on disk per profile ($profiles profiles, SST + WAL, before compaction) | $per_profile B (SST alone $sst_per_profile B) | ≤ 150 B after compaction at 10 M | $(verdict "$per_profile" 150 "<=") |"
  echo "| peak RSS of \`cvm bench\` ($profiles profiles) | $core_rss_mib MiB | ≤ 1.5 GiB at 10 M | — (measured at $profiles) |"
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
  for c in core demo1 demo2 demo_alo restore eligibility scoring; do
    declare -n cmd="${c}_cmd"
    echo "- $c: $(show "${cmd[@]}")"
  done
  echo
  echo "## Raw output"
  for c in core demo1 demo2 demo_alo restore eligibility scoring; do
    echo
    echo "### $c"
    echo
    echo '```'
    case "$c" in
      demo*) grep -E 'events/s|latency|elapsed|seconds' "$work/$c.txt" ;;
      *) grep -v '^\s*$' "$work/$c.txt" ;;
    esac
    echo '```'
  done
} >BENCHMARKS.md
echo "==> BENCHMARKS.md written"
