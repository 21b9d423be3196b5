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
  [strace]=strace        # torture_durability: fsync before rename, folder fsyncs
  [zstd]=zstd            # export_dump: extract a tar.zst export
  [unzip]=unzip          # export_dump: symlinks in a zip export
  [python3]=python3-minimal # export_dump: read a zip export's entries
  [script]=bsdutils      # progress_on_terminal: run arca on a pseudo-terminal
  [groff]=groff-base     # completions_and_man: render the manual page
  [bash]=bash            # completions_and_man: run the completion script
  [openssl]=openssl      # daemon: a self-signed certificate for the HTTPS API
  [fusermount3]=fuse3    # mount: a user's FUSE mount (replaces Debian's fuse 2, which nothing else uses)
  [ssh]=openssh-client   # sftp: the SFTP backend connects through the system's ssh
  [ssh-keygen]=openssh-client # sftp: host and user keys of the test server
)
# Installs Debian packages as root (a failure ends the script); otherwise
# says they are missing.
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: missing $* and not root: some tests will fail or skip" >&2
    return 0
  fi
  echo "test.sh: installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
missing=()
for tool in "${!tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tools[$tool]}")
done
# postgres: the server (initdb, pg_ctl: not on PATH in Debian), its client
# (psql, pg_dump, pg_restore) and pgbench; the tests start their own server
# as an unprivileged user on a private port.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# sftp: the tests start their own sshd (not on PATH for a user: /usr/sbin)
# on a loopback port; Debian's package does not start it here (no init).
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-client postgresql-contrib)
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  apt_install "${missing[@]}" libc6-dev
fi

# The email notification tests send to a real SMTP server: aiosmtpd, from
# PyPI, in a virtual environment of its own. Without ARCA_TEST_AIOSMTPD
# they skip, or fail under ARCA_TEST_REQUIRE_ROOT or CI.
venv="${ARCA_TEST_VENV:-$HOME/.cache/arca-test-venv}"
# aiosmtpd: the SMTP server of the email notification tests; prometheus_client:
# the Prometheus text parser the daemon test reads /metrics with; schemathesis
# (pinned: its checks change between versions): the daemon's API against its
# OpenAPI document.
schemathesis=4.32.5
if [[ ! -x "$venv/bin/aiosmtpd" ]] || ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null ||
   [[ "$("$venv/bin/st" --version 2>/dev/null)" != *"$schemathesis"* ]]; then
  echo "test.sh: installing aiosmtpd, prometheus_client and schemathesis in $venv (email, metrics and API tests)" >&2
  # Debian's python3 has no venv module (nor ensurepip) without python3-venv.
  if [[ ! -x "$venv/bin/pip" ]] && ! python3 -m venv "$venv" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$venv" >/dev/null || echo "test.sh: python3 -m venv failed: the email and metrics tests will fail or skip" >&2
  fi
  if [[ -x "$venv/bin/pip" ]]; then
    "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd prometheus_client "schemathesis==$schemathesis" ||
      echo "test.sh: pip install failed: the email and metrics tests will fail or skip" >&2
  fi
fi
if [[ -x "$venv/bin/aiosmtpd" ]]; then
  export ARCA_TEST_AIOSMTPD="$venv/bin/aiosmtpd"
fi
if [[ -x "$venv/bin/python" ]]; then
  export ARCA_TEST_PYTHON="$venv/bin/python"
fi
if [[ -x "$venv/bin/st" ]]; then
  export ARCA_TEST_SCHEMATHESIS="$venv/bin/st"
fi

# The dashboard test drives Debian's chromium with Playwright under Node.js:
# playwright-core from npm, pinned (its protocol follows Chromium's), in a
# folder of its own. Without ARCA_TEST_NODE_MODULES and ARCA_TEST_CHROMIUM
# the test skips, or fails under ARCA_TEST_REQUIRE_ROOT.
playwright=1.64.1
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v node >/dev/null 2>&1 || apt_install nodejs npm
node_prefix="${ARCA_TEST_NODE:-$HOME/.cache/arca-test-node}"
if [[ "$(node -p 'require(process.argv[1]).version' "$node_prefix/node_modules/playwright-core/package.json" 2>/dev/null)" != "$playwright" ]]; then
  echo "test.sh: installing playwright-core $playwright in $node_prefix (dashboard test)" >&2
  npm install --prefix "$node_prefix" --no-audit --no-fund --silent "playwright-core@$playwright" ||
    echo "test.sh: npm install failed: the dashboard test will fail or skip" >&2
fi
if [[ -f "$node_prefix/node_modules/playwright-core/package.json" ]]; then
  export ARCA_TEST_NODE_MODULES="$node_prefix/node_modules"
fi
if [[ -x /usr/bin/chromium ]]; then
  export ARCA_TEST_CHROMIUM=/usr/bin/chromium
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: not root: tests that need root (owners, device nodes, tmpfs mounts, setpriv) are skipped, or run without their root-only parts" >&2
fi

# The S3 tests run a real S3 server on loopback: s3s-fs (newer versions need
# a newer rustc). With ARCA_TEST_REQUIRE_S3 set they fail, rather than skip,
# when it is missing.
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "test.sh: installing s3s-fs 0.14.1 (S3 server for the S3 tests, about 3 minutes)" >&2
  cargo install s3s-fs@0.14.1 --features binary --locked -j2
fi
export ARCA_TEST_REQUIRE_S3=1
# As root, with every tool above installed, nothing has a reason to skip:
# ARCA_TEST_REQUIRE_ROOT makes every skip (not root, a tool missing, a
# tmpfs that cannot be mounted) a failure.
if [[ $(id -u) -eq 0 ]]; then
  export ARCA_TEST_REQUIRE_ROOT=1
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A clean build gains nothing from incremental state, which took 2 GB of the
# disk (a CI run once ran out of space while building).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace -j2 --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo's own last line is the
# doc-test summary of the last crate, which may count no test).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
