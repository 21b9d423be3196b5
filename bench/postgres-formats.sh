#!/usr/bin/env bash
# Which pg_dump format deduplicates: the bytes a second backup adds after
# 1 % of the rows of a pgbench database changed, per format, measured with
# arca itself. Two kinds of change: rows spread over the whole table (every
# 100th), and rows together (the first 1 %, as recent data is).
# Usage: bench/postgres-formats.sh URL [SCALE]   (URL of a server you may
# create a database on, e.g. postgresql://postgres@127.0.0.1:5432; SCALE 10
# is 1 M rows). ARCA=path/to/arca (default target/release/arca).
# FILLER=random gives every row 64 characters of hex instead of pgbench's
# blank filler, which compresses to almost nothing and hides what a format
# does to deduplication.
set -euo pipefail
url=${1:?usage: $0 URL [SCALE]}
scale=${2:-10}
arca=${ARCA:-target/release/arca}
rows=$((scale * 100000))
work=$(mktemp -d /tmp/arca-pgbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export ARCA_PASSWORD=bench
declare -A formats=([plain]="--format=plain" [custom-Z0]="--format=custom --compress=0" [custom-Z6]="--format=custom")
declare -A changes=([spread]="aid % 100 = 0" [together]="aid <= $((rows / 100))")
added() { jq -r '.summary.bytes_added'; }
printf '| format | dump size | first backup adds | 1 %% of rows changed, spread: adds | 1 %% together: adds |\n| --- | --- | --- | --- | --- |\n'
for f in plain custom-Z0 custom-Z6; do
  line="| $f"
  for c in spread together; do
    # A fresh database for each: an UPDATE moves rows in a table (and so in
    # the dump) differently on a fresh table and a used one.
    psql -X -q "$url/postgres" -c "DROP DATABASE IF EXISTS arca_bench" -c "CREATE DATABASE arca_bench" 2>/dev/null
    pgbench -i -q -s "$scale" "$url/arca_bench" >/dev/null 2>&1
    if [[ ${FILLER:-} == random ]]; then
      psql -X -q "$url/arca_bench" -c "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid * 7)::text)" -c "VACUUM FULL pgbench_accounts"
    fi
    repo="$work/$f-$c"
    "$arca" -r "$repo" init >/dev/null
    dump=(pg_dump ${formats[$f]} "$url/arca_bench")
    if [[ $c == spread ]]; then
      line+=" | $(numfmt --to=iec "$("${dump[@]}" | wc -c)")"
      line+=" | $(numfmt --to=iec "$("$arca" -r "$repo" --json backup --stdin-filename db --stdin-from-command -- "${dump[@]}" | added)")"
    else
      "$arca" -r "$repo" --json backup --stdin-filename db --stdin-from-command -- "${dump[@]}" >/dev/null
    fi
    psql -X -q "$url/arca_bench" -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE ${changes[$c]}"
    line+=" | $(numfmt --to=iec "$("$arca" -r "$repo" --json backup --stdin-filename db --stdin-from-command -- "${dump[@]}" | added)")"
  done
  echo "$line |"
done
psql -X -q "$url/postgres" -c "DROP DATABASE arca_bench"
