#!/usr/bin/env bash
# arca beside restic on one S3 server, in one run: the disaster-recovery
# path (a new machine, its cache empty) and the next backup after a first.
#
# usage: bench/s3.sh [CORPUS]   (default: this machine's Python library,
#        thousands of folders; the first run of each tool stores it)
#   LATENCIES="0 20"   added round trips to try, in ms (default: 0 and 20);
#                      each is its own repository pair and table
#   TOOLS="restic arca"
#   ARCA=path/to/arca  (default target/release/arca)
#
# S3_SERVER=garage runs one Garage node instead (restic's check fails on
# s3s-fs, see below; Garage is built with cargo when missing, ~15 min).
# The S3 server is s3s-fs on loopback (as in the test suite; installed with
# cargo when missing). Latency comes from bench/latency-proxy.py between the
# tools and the server: every byte waits half the round trip each way.
#
# Scenarios, each timed with its own empty cache unless said otherwise:
#   backup_first     the first backup of CORPUS (cache empty at start)
#   backup_warm      right after, with the cache the first one left:
#                    reads back nothing it wrote, with a write-through cache
#   backup_nochange  nothing changed, on a new machine (cache empty)
#   ls, find         list the latest snapshot; find one name in every one
#   diff             the two snapshots around a 1% change
#   verify           the structure (restic check; no data read). restic's
#                    check fails on s3s-fs: the server answers its pack
#                    listing with nothing (arca lists through OpenDAL,
#                    which s3s-fs answers), so it reads "failed"
#   restore          the latest snapshot into an empty folder, on a file
#                    system of its own (a new ext4 image, loop-mounted, when
#                    run as root): restores timed on the work folder's file
#                    system swung from 2.8 to 7.1 s with what earlier runs
#                    had deleted there
set -euo pipefail
corpus=${1:-$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
latencies=${LATENCIES:-0 20}
tools=${TOOLS:-restic arca}
arca=$(realpath "${ARCA:-target/release/arca}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/arca-s3-bench.XXXXXX)
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
server=${S3_SERVER:-s3s-fs}
case $server in
  s3s-fs) command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked -j2 ;;
  garage) command -v garage >/dev/null || cargo install garage@2.5.0 --locked -j2 ;;
  *) echo "S3_SERVER: s3s-fs or garage" >&2; exit 2 ;;
esac
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic >/dev/null; }
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null

pids=()
mounts=()
trap 'kill "${pids[@]}" 2>/dev/null; for m in "${mounts[@]}"; do umount "$m" 2>/dev/null; done; rm -rf "$work"' EXIT
# A restore target on a new ext4 file system (root only; else a folder).
fresh_target() { # name
  local dir=$work/$1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
    truncate -s "$(( $(du -sb "$corpus" | cut -f1) * 2 + (512 << 20) ))" "$work/$1.img"
    mkfs.ext4 -q -F "$work/$1.img" && mount -o loop "$work/$1.img" "$dir" && mounts+=("$dir")
  fi
}
# Checks a restore against its source, then drops its file system: its
# pages are gone without being written back. A restored tree left to the
# kernel is written back 30 s later, on the same two cores, while the next
# tool runs (arca's restore took 3.53 s after restic's, 2.56 s before it,
# with a sync before each timed command).
drop_target() { # name source
  local dir=$work/$1
  diff -r --no-dereference "$2" "$dir/${2#/}" >/dev/null || echo "$1: the restored tree differs from its source" >&2
  if mountpoint -q "$dir"; then umount "$dir" && rm -f "$work/$1.img"; else rm -rf "$dir"; fi
}
. "$here/common.sh"

s3port=$(port)
if [ "$server" = garage ]; then
  # One Garage node (replication factor 1): restic's check works against it.
  mkdir -p "$work/garage/meta" "$work/garage/data"
  cat >"$work/garage/garage.toml" <<TOML
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(port)"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3port"
TOML
  g() { garage -c "$work/garage/garage.toml" "$@"; }
  garage -c "$work/garage/garage.toml" server >"$work/s3.log" 2>&1 &
  pids+=($!)
  wait_port "$s3port"
  g layout assign -z dc1 -c 10G "$(g node id -q | cut -d@ -f1)" >/dev/null
  g layout apply --version 1 >/dev/null
  keyinfo=$(g key create bench-key)
  benchaccess=$(echo "$keyinfo" | awk '/Key ID/ {print $NF}')
  benchsecret=$(echo "$keyinfo" | awk '/Secret key/ {print $NF}')
  make_bucket() { g bucket create "$1" >/dev/null && g bucket allow --read --write --owner "$1" --key bench-key >/dev/null; }
else
  benchaccess=benchaccess benchsecret=benchsecret
  mkdir -p "$work/s3"
  s3s-fs --host 127.0.0.1 --port "$s3port" --access-key benchaccess --secret-key benchsecret "$work/s3" \
    >"$work/s3.log" 2>&1 &
  pids+=($!)
  wait_port "$s3port"
  make_bucket() { mkdir -p "$work/s3/$1"; }
fi

export AWS_ACCESS_KEY_ID=$benchaccess AWS_SECRET_ACCESS_KEY=$benchsecret AWS_REGION=us-east-1
export RESTIC_PASSWORD=bench ARCA_PASSWORD=bench

# Each tool gets its own copy of the corpus for each latency, made before
# anything is timed, and nothing is deleted until the end: ext4 creates
# files slowly for minutes after a mass delete, and a restore timed after
# one pays for it (compare.sh does the same).
for ms in $latencies; do for tool in $tools; do cp -a "$corpus" "$work/data-$tool-$ms"; done; done
sync
echo "corpus: $corpus ($(du -sh "$corpus" | cut -f1), $(find "$corpus" -type d | wc -l) folders, $(find "$corpus" -type f | wc -l) files)"

declare -A T
timed() { # tool scenario command...
  local tool=$1 what=$2; shift 2
  local out="$work/$tool.$what"
  # Nothing of an earlier command left to write back (see drop_target).
  sync
  if /usr/bin/time -f "%e %M" -o "$out.time" "$@" >"$out.out" 2>"$out.err"; then
    read -r wall rss <"$out.time"
    T[$tool.$what]=$wall
    T[$tool.$what.rss]=$((rss / 1024))
  else
    T[$tool.$what]=failed
    echo "$tool $what failed:" >&2
    tail -5 "$out.err" >&2
  fi
}

mutate() {
  python3 - "$1" <<'PY'
import os, sys, random
root = sys.argv[1]; random.seed(42)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)
for p in random.sample(files, max(1, len(files) // 100)):
    with open(p, 'ab') as fh: fh.write(b'changed\n')
PY
}

for ms in $latencies; do
  start_latency "$ms" "$s3port" "$work/proxy-$ms.log"
  endpoint=http://127.0.0.1:$endpoint_port
  export AWS_ENDPOINT_URL=$endpoint
  bucket=bench-$ms
  make_bucket "$bucket"
  for tool in $tools; do
    data=$work/data-$tool-$ms
    cache() { rm -rf "$work/cache-$tool"; mkdir -p "$work/cache-$tool"; }
    case $tool in
      restic)
        export RESTIC_REPOSITORY=s3:$endpoint/$bucket/restic
        r=(restic --cache-dir "$work/cache-restic")
        restic init >/dev/null
        ids() { restic snapshots --json --no-cache | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)[-2:]))'; }
        ;;
      arca)
        repo=s3://$bucket/arca
        r=(env ARCA_CACHE_DIR="$work/cache-arca" "$arca" --repo "$repo")
        "$arca" --repo "$repo" init >/dev/null
        ids() { ARCA_CACHE_DIR="$work/cache-ids" "$arca" --repo "$repo" snapshots --json | python3 -c 'import json,sys; print(" ".join(s["id"] for s in json.load(sys.stdin)[-2:]))'; }
        ;;
    esac
    host=(); [ "$tool" = restic ] && host=(--host bench)
    cache; timed "$tool" backup_first "${r[@]}" backup "${host[@]}" "$data"
    timed "$tool" backup_warm "${r[@]}" backup "${host[@]}" "$data"
    cache; timed "$tool" backup_nochange "${r[@]}" backup "${host[@]}" "$data"
    cache; timed "$tool" ls "${r[@]}" ls latest
    cache; timed "$tool" find "${r[@]}" find '__init__.py'
    # The same 1% change (seeded) in each tool's copy.
    mutate "$data"
    "${r[@]}" backup "${host[@]}" "$data" >/dev/null 2>&1
    read -r older newer <<<"$(ids)"
    cache; timed "$tool" diff "${r[@]}" diff "$older" "$newer"
    if [ "$tool" = restic ]; then
      cache; timed "$tool" verify "${r[@]}" check
    else
      cache; timed "$tool" verify "${r[@]}" verify
    fi
    fresh_target "out-$tool-$ms"
    cache; timed "$tool" restore "${r[@]}" restore latest --target "$work/out-$tool-$ms"
    drop_target "out-$tool-$ms" "$data"
  done
  echo
  echo "S3 on loopback, ${ms} ms added round trip ($server; cache empty unless warm; wall time, peak RSS)"
  echo
  printf '| scenario |'; for tool in $tools; do printf ' %s |' "$tool"; done; echo ' restic ÷ arca |'
  printf '| --- |'; for tool in $tools; do printf ' --- |'; done; echo ' --- |'
  for what in backup_first backup_warm backup_nochange ls find diff verify restore; do
    printf '| %s |' "$what"
    for tool in $tools; do
      v=${T[$tool.$what]}
      [[ $v =~ ^[0-9.]+$ ]] && v="$v s, ${T[$tool.$what.rss]} MiB"
      printf ' %s |' "$v"
    done
    a=${T[arca.$what]:-}; b=${T[restic.$what]:-}
    if [[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ ]]; then
      printf ' %s |\n' "$(echo "scale=2; $b / $a" | bc)"
    else
      echo ' |'
    fi
  done
done
