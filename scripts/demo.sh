#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, makes a development PKI, starts
# pml-verifier, pml-kms and pml-vmm on loopback (and libvirtd when none runs), builds the guest
# image, boots one demo CVM and prints a verified attestation of it (scripts/demo.py).
# DEVELOPMENT MODE: dev PKI, everything on 127.0.0.1, SIMULATED TDX in a CVM without a TEE.
#   scripts/demo.sh                  boot, verify, clean up
#   scripts/demo.sh --keep-running   leave everything running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "==> building"
scripts/build.sh
exec /usr/bin/python3 scripts/demo.py "$@"
