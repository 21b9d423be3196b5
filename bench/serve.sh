#!/usr/bin/env bash
# A repository on local disk against the same served by `arca serve` on
# loopback: first backup, a backup with nothing changed, restore and
# verify --read-data of one corpus, in one run (compare within it).
# Usage: bench/serve.sh [CORPUS]   (default: the Rust toolchain's lib folder)
# ARCA=path/to/arca (default target/release/arca).
set -euo pipefail
corpus=${1:-$(rustc --print sysroot)/lib}
arca=$(realpath "${ARCA:-target/release/arca}")
work=$(mktemp -d /tmp/arca-serve-bench.XXXXXX)
port=$((20000 + RANDOM % 20000))
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/root"
"$arca" serve --root "$work/root" --no-auth --listen "127.0.0.1:$port" 2>"$work/serve.log" &
server=$!
until grep -q "listening on" "$work/serve.log"; do sleep 0.1; done
export ARCA_PASSWORD=bench ARCA_CACHE_DIR="$work/cache"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); printf "%.2f" "$(echo "$e - $s" | bc)"; }
echo "corpus: $corpus ($(du -sh "$corpus" | cut -f1))"
echo "| repository | first backup | nothing changed | restore | verify --read-data |"
echo "| --- | --- | --- | --- | --- |"
for repo in "$work/local" "rest:http://127.0.0.1:$port/bench"; do
  "$arca" -r "$repo" init >/dev/null
  first=$(t "$arca" -r "$repo" backup "$corpus")
  again=$(t "$arca" -r "$repo" backup "$corpus")
  rm -rf "$work/out"
  restore=$(t "$arca" -r "$repo" restore latest --target "$work/out")
  verify=$(t "$arca" -r "$repo" verify --read-data)
  name=${repo#"$work/"}
  echo "| ${name%%:*} | $first s | $again s | $restore s | $verify s |"
done
