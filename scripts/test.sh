#!/usr/bin/env bash
# Runs the whole test suite: unit, property and end-to-end tests.
# On a fresh Debian machine as root it first installs the few system tools
# the end-to-end tests use, and only those that are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# tool -> Debian package that provides it
declare -A tools=(
  [setpriv]=util-linux   # run arca as an unprivileged user
  [mount]=mount          # tmpfs for the out-of-space test
  [umount]=mount
  [diff]=diffutils       # diff -r --no-dereference after a restore
  [cp]=coreutils
  [cc]=gcc               # zstd-sys builds C code
)
missing=()
for tool in "${!tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]]; then
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" libc6-dev >/dev/null
  else
    echo "test.sh: missing ${missing[*]} and not root: some tests will fail or skip" >&2
  fi
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: not root: tests that need root (owners, device nodes, tmpfs, setpriv) are skipped" >&2
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo test --workspace -j2 --no-fail-fast
