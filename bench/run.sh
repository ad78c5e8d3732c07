#!/bin/sh
# Build the release airlock binary and compare it with bubblewrap (see bench/README.md).
# Usage: sudo bench/run.sh [compare.py options], e.g. --user airlock-test, --json.
set -eu
cd "$(dirname "$0")/.."

if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench/run.sh: bwrap is missing; run as root to install it (apt-get install -y bubblewrap)" >&2
        exit 1
    fi
    apt-get install -y bubblewrap >&2 || { apt-get update >&2 && apt-get install -y bubblewrap >&2; }
fi

cargo build --release -p airlock-cli >&2
exec python3 bench/compare.py "$@"
