#!/usr/bin/env bash
# A job with two destinations against a plain backup into one repository,
# on one corpus, in one run: how much the fan-out (one backup, then a copy
# to the second destination, retention and verification off) costs on top
# of the backup, for a first run and for a run after a 1 % change.
#
#   bash bench/fanout.sh [-c CORPUS_DIR] [-w WORK_DIR]
#
# arca is $ARCA, else target/release/arca (built if missing). Prints wall
# seconds and the bytes each run read from the corpus (equal for one and
# two destinations: the sources are read once).
set -euo pipefail
CORPUS=$(rustc --print sysroot); W=/tmp/arca-fanout
while getopts c:w: o; do case $o in c) CORPUS=$OPTARG;; w) W=$OPTARG;; *) exit 2;; esac; done
if [[ -z "${ARCA:-}" ]]; then cargo build --release -q --bin arca; ARCA=$PWD/target/release/arca; fi
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
rm -rf "$W"; mkdir -p "$W"; cp -a "$CORPUS" "$W/src"
export ARCA_CACHE_DIR=$W/cache ARCA_STATE_DIR=$W/state ARCA_PASSWORD=bench
printf 'bench\n' >"$W/pw"; chmod 600 "$W/pw"
for r in single first second; do "$ARCA" -r "$W/$r" init >/dev/null; done
cat >"$W/arca.toml" <<TOML
[repositories.first]
url = "$W/first"
password_file = "$W/pw"
priority = 1
[repositories.second]
url = "$W/second"
password_file = "$W/pw"
priority = 2
[jobs.bench]
sources = ["$W/src"]
destinations = ["first", "second"]
verify_after_backup = "none"
TOML
timed() { # label command...
  local label=$1; shift
  /usr/bin/time -f "%e" -o "$W/t" "$@" >"$W/out.json" 2>"$W/err" || { cat "$W/err"; exit 1; }
  read_bytes=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("bytes_read", d.get("summary", {}).get("bytes_read")))' "$W/out.json")
  printf '%-28s %8s s %14s bytes read\n' "$label" "$(cat "$W/t")" "$read_bytes"
}
change() { python3 - "$W/src" <<'PY'
import os, sys, random
root = sys.argv[1]; random.seed(7)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
for p in random.sample(files, max(1, len(files) // 100)):
    with open(p, "ab") as f: f.write(os.urandom(4096))
PY
}
echo "corpus: $CORPUS ($(du -sh "$W/src" | cut -f1))"
timed "backup, one repository" "$ARCA" -r "$W/single" --json backup "$W/src"
timed "run, two destinations" "$ARCA" --config "$W/arca.toml" --json run bench
change
timed "backup after 1 % change" "$ARCA" -r "$W/single" --json backup "$W/src"
timed "run after 1 % change" "$ARCA" --config "$W/arca.toml" --json run bench
rm -rf "$W"
