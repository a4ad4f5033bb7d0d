#!/usr/bin/env bash
# The README's main command: installs dependencies, builds, makes a development PKI, starts
# pml-verifier, pml-kms, pml-vmm and pml-guest-agent on loopback and prints their health and
# versions. DEVELOPMENT MODE: dev PKI, everything on 127.0.0.1.
#   scripts/demo.sh                  start, report, stop
#   scripts/demo.sh --keep-running   leave them running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
echo "==> building"
scripts/build.sh
exec /usr/bin/python3 scripts/demo.py "$@"
