# Shared set-up for the scripts: installs what a fresh machine lacks and
# points cargo at a build cache outside the clone. Source it, don't run it.
set -euo pipefail

export CVM_CACHE="${CVM_CACHE:-$HOME/.cache/cvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CVM_CACHE/target}"
mkdir -p "$CVM_CACHE"

source "$(dirname "${BASH_SOURCE[0]}")/detect.sh"
mapfile -t need_apt < <(cvm_missing_packages)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  still_missing="$(cvm_missing_packages | tr '\n' ' ')"
  if [ -n "$still_missing" ]; then
    echo "still missing after apt: $still_missing(install them by hand; for libclang, LIBCLANG_PATH may point at its directory)" >&2
    exit 1
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
