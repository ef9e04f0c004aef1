# What the build really uses, detected the way the build itself finds it.
# Sourced by env.sh; tested by scripts/test-detect.sh against fake layouts.
# Every function takes an optional root directory (default /) so the test can
# point it at a temporary tree.

# A libclang that clang-sys (RocksDB's bindgen, loading at runtime) would
# load: libclang.so, libclang-N.so, libclang.so.N or libclang-N.so.M in the
# directories clang-sys searches, or in $LIBCLANG_PATH; never libclang-cpp,
# which clang-sys skips and which Debian ships without libclang. Bindgen also
# needs clang's builtin headers (stddef.h), which libclang-dev brings.
# Prints the library found; fails if either part is missing.
cvm_find_libclang() {
  local root="${1:-}" dir f name found=""
  local dirs=("$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*)
  [ -n "${LIBCLANG_PATH:-}" ] && dirs=("$root$LIBCLANG_PATH" "${dirs[@]}")
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/libclang*.so*; do
      [ -e "$f" ] || continue
      name="${f##*/}"
      case "$name" in
        *-cpp.*) continue ;;
        libclang.so | libclang.so.* | libclang-*.so | libclang-*.so.*) found="$f"; break 2 ;;
      esac
    done
  done
  [ -n "$found" ] || return 1
  { [ -n "${LIBCLANG_PATH:-}" ] && compgen -G "$root$LIBCLANG_PATH/clang/*/include/stddef.h" >/dev/null; } \
    || compgen -G "$root/usr/lib/llvm-*/lib/clang/*/include/stddef.h" >/dev/null \
    || compgen -G "$root/usr/lib*/clang/*/include/stddef.h" >/dev/null \
    || compgen -G "$root/usr/local/llvm*/lib/clang/*/include/stddef.h" >/dev/null \
    || return 1
  echo "$found"
}

# The Debian packages the two commands need and this machine lacks, one per
# line: the C and C++ compilers the cc crate invokes (cc, c++), make for
# librdkafka's build, libclang for bindgen.
cvm_missing_packages() {
  local root="${1:-}"
  cvm_find_libclang "$root" >/dev/null || echo libclang-dev
  cvm_has_command "$root" cc || echo gcc
  cvm_has_command "$root" c++ || echo g++
  cvm_has_command "$root" make || echo make
}

# Whether an executable named $2 is on PATH (under root $1 when given, for tests).
cvm_has_command() {
  local root="$1" name="$2" dir
  if [ -z "$root" ]; then command -v "$name" >/dev/null 2>&1; return; fi
  for dir in /usr/local/bin /usr/bin /bin; do
    [ -x "$root$dir/$name" ] && return 0
  done
  return 1
}

# The Debian packages the operations check (scripts/test-ops.sh) needs and
# this machine lacks: Prometheus and promtool (both from `prometheus`), and
# docker-compose to validate the Compose file.
cvm_missing_ops_packages() {
  local root="${1:-}"
  { cvm_has_command "$root" prometheus && cvm_has_command "$root" promtool; } || echo prometheus
  cvm_has_command "$root" docker-compose || echo docker-compose
}
