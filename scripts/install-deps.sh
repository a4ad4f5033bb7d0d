#!/usr/bin/env bash
# Installs every Debian 12 package the project needs to build, test and run (DESIGN.md §2), and
# the npm test clients. Idempotent; run as root (or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev git ca-certificates openssl
  # libraries (DESIGN.md §2)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev libssl-dev
  libvirt-dev prometheus-cpp-dev libspdlog-dev libgtest-dev libgmock-dev libsqlite3-dev libpq-dev
  libmicrohttpd-dev
  libcurl4-openssl-dev libxml2-dev libxmlsec1-dev libxmlsec1-openssl nlohmann-json3-dev
  libcli11-dev
  # test peers nobody here wrote
  python3 python3-grpcio python3-protobuf python3-cryptography prometheus
  postgresql  # server binaries for LocalPostgres (lib/store/testing, tests/integration/pg.py)
  # pml-vmm's real-boot tests: libvirtd + QEMU (TCG), qemu-img for data disks, virt-xml-validate
  # (libvirt-clients + xmllint), and the test guest / guest image (a Debian kernel, busybox)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  libxml2-utils linux-image-amd64 busybox-static
  # the guest image (deploy/image): strip, dropbear for the development variant, terminfo
  binutils dropbear-bin ncurses-base
)

# Node.js and npm: use the machine's if it has them (the Debian packages conflict with other
# installs); otherwise Debian's.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then PACKAGES+=(nodejs npm); fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${#missing[@]} Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "==> all Debian packages present"
fi
# Debian's prometheus package starts a server on install; the tests start their own.
if systemctl is-active --quiet prometheus 2>/dev/null; then $SUDO systemctl stop prometheus || true; fi

echo "==> installing npm test clients (tests/node)"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
