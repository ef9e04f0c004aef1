#!/usr/bin/env bash
# Tests scripts/detect.sh against temporary trees that mimic the layouts seen
# on Debian: libclang-cpp alone (the case that once broke the quickstart),
# libclang-dev installed, a versioned libclang without the unversioned link,
# LIBCLANG_PATH, and libclang without clang's builtin headers; and the
# operations check's tools (Prometheus, promtool, docker-compose).
set -euo pipefail
cd "$(dirname "$0")"
source ./detect.sh

passed=0 failed=0
check() { # description, expected (found|missing), root
  local what="$1" want="$2" root="$3" got=missing
  cvm_find_libclang "$root" >/dev/null && got=found
  if [ "$got" = "$want" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $what: $got, want $want" >&2; fi
}
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
layout() { # name, files… (created empty, directories as needed)
  local root="$tmp/$1"; shift
  mkdir -p "$root"
  for f in "$@"; do mkdir -p "$root/$(dirname "$f")"; touch "$root/$f"; chmod +x "$root/$f"; done
  echo "$root"
}
headers=usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h

check "empty machine" missing "$(layout empty usr/bin/cc)"
check "libclang-cpp only (Debian without libclang-dev)" missing \
  "$(layout cpp-only usr/lib/x86_64-linux-gnu/libclang-cpp.so.14 usr/lib/llvm-14/lib/libclang-cpp.so.14 $headers)"
check "libclang-dev: llvm lib dir link" found \
  "$(layout dev usr/lib/llvm-14/lib/libclang.so usr/lib/llvm-14/lib/libclang-cpp.so.14 $headers)"
check "versioned libclang only (libclang1-14 with headers)" found \
  "$(layout versioned usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6 $headers)"
check "suffix-versioned libclang.so.1" found "$(layout suffixed usr/lib/llvm-14/lib/libclang.so.1 $headers)"
check "libclang without clang's builtin headers" missing "$(layout no-headers usr/lib/llvm-14/lib/libclang.so)"
root="$(layout custom opt/llvm/lib/libclang.so opt/llvm/lib/clang/17/include/stddef.h)"
LIBCLANG_PATH=/opt/llvm/lib check "LIBCLANG_PATH with its own headers" found "$root"
LIBCLANG_PATH=/opt/llvm/lib check "LIBCLANG_PATH library without builtin headers" missing "$(layout elsewhere opt/llvm/lib/libclang.so)"

# The packages asked of apt follow from the same detection.
root="$(layout bare usr/lib/x86_64-linux-gnu/libclang-cpp.so.14 usr/bin/cc usr/bin/make)"
want=$'libclang-dev\ng++'
got="$(cvm_missing_packages "$root")"
if [ "$got" = "$want" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: missing packages: '$got', want '$want'" >&2; fi

# The operations check's tools: promtool alone (another package) is not Prometheus.
ops() { # description, expected list, root
  local got; got="$(cvm_missing_ops_packages "$3")"
  if [ "$got" = "$2" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $1: '$got', want '$2'" >&2; fi
}
ops "no ops tools" $'prometheus\ndocker-compose' "$(layout ops-none usr/bin/cc)"
ops "promtool without prometheus" prometheus "$(layout ops-promtool usr/bin/promtool usr/bin/docker-compose)"
ops "both installed" "" "$(layout ops-all usr/bin/prometheus usr/bin/promtool usr/local/bin/docker-compose)"

echo "detect: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
