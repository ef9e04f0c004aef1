# Shared set-up for the scripts: installs what a fresh machine lacks and
# points cargo at a build cache outside the clone. Source it, don't run it.
set -euo pipefail

export CVM_CACHE="${CVM_CACHE:-$HOME/.cache/cvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CVM_CACHE/target}"
mkdir -p "$CVM_CACHE"

need_apt=()
# rocksdb's bindgen needs libclang; librdkafka and rocksdb need a C++ toolchain.
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
