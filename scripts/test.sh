#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test as root and again as an unprivileged
# user (rootless mode), minus the tests whose names start with `root_`.
# Installs what the tests need on a bare Debian machine with the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/python3 ] || need_apt+=(python3)
[ -x /usr/bin/node ] || need_apt+=(nodejs)
command -v setpriv >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need_apt[*]} (run as root to install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The code-context tests draw a matplotlib figure with the system Python, which sandboxes see
# (through /usr). pip installs it under /usr/local; Debian's own package pulls in far more.
if [ "$(id -u)" -eq 0 ] && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  /usr/bin/python3 -m pip --version >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  }
  /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
    --root-user-action=ignore matplotlib
fi

# The OpenSandbox front door's tests drive the server through the official Python SDKs, kept
# apart from the system's packages in target/python-sdk.
sdk_dir=target/python-sdk
if ! PYTHONPATH=$sdk_dir python3 -c 'import opensandbox, code_interpreter' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  }
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$sdk_dir" --upgrade opensandbox opensandbox-code-interpreter
fi
export AIRLOCK_SDK_PYTHONPATH="$PWD/$sdk_dir"

cargo fmt --all --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked

if [ "$(id -u)" -eq 0 ]; then
  # Rootless pass: the same test binaries, run by an unprivileged user from a directory it can
  # read. Tests that need root are named root_* and skipped here.
  user=airlock-test
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
  stage=$(mktemp -d /tmp/airlock-rootless.XXXXXX)
  trap 'rm -rf "$stage"' EXIT
  host=$(rustc -vV | sed -n 's/^host: //p')
  cp "target/$host/debug/airlock" "$stage/"
  cargo test --all-targets --locked --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' > "$stage/tests.txt"
  while read -r exe; do cp "$exe" "$stage/"; done < "$stage/tests.txt"
  chmod -R a+rX "$stage"
  status=0
  while read -r exe; do
    name=$(basename "$exe")
    echo "rootless: $name"
    (cd "$stage" && setpriv --reuid="$user" --regid="$user" --clear-groups --reset-env \
      env AIRLOCK_BIN="$stage/airlock" HOME=/nonexistent "$stage/$name" --skip root_) || status=1
  done < "$stage/tests.txt"
  exit $status
fi
