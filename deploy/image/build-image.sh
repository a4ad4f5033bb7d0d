#!/bin/sh
# Builds the pml guest image: deploy/image/build-image.sh --variant production --out DIR [...]
# (all options: --help; what it builds: deploy/image/README.md).
exec /usr/bin/python3 "$(dirname "$0")/build_image.py" "$@"
