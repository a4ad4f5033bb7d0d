#!/usr/bin/env bash
# Configures and builds into ${BUILD_DIR:-build}. Extra arguments go to cmake, e.g.
#   scripts/build.sh -DPML_SANITIZE=ON       (ASan + UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DPML_WERROR=ON "$@" >/dev/null
ninja -C "$BUILD_DIR" -j"$(nproc)"
