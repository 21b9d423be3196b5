#!/usr/bin/env bash
# What a repository's size costs a backup and a restore that do not read
# most of it: a repository whose index names N blobs (20 million by
# default: 20 TB of 1 MiB chunks), generated directly by the big-index
# binary (index files and empty packs, no data), then a real backup of
# CORPUS into it and a restore of that backup, each timed with its peak
# memory (RSS).
#
# usage: bench/big-index.sh [CORPUS]   (default: this machine's Python library)
#   N=20000000          blobs the index names
#   ARCA=path/to/arca   (default target/release/arca)
#   OLD_ARCA=path       another build, run the same way in the same run
#                       (say, one from before the index table) for its figures
#
# Scenarios, each a separate command, as a user would run them:
#   backup_new_machine  the first backup with the cache empty: every index
#                       file is read; an index past the memory limit goes into
#                       the index table in the cache (sorted outside memory)
#   backup_again        the next backup (nothing changed): reads the table
#   restore             the latest snapshot into an empty folder
#   restore_new_machine the same with the cache empty (the disaster: the
#                       index is read, and the table built, first)
set -euo pipefail
corpus=${1:-$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')}
n=${N:-20000000}
arca=$(realpath "${ARCA:-target/release/arca}")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/arca-big-index.XXXXXX)
trap 'rm -rf "$work"' EXIT
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
export ARCA_PASSWORD=bench

cargo build --release -j2 -q -p arca-bench --bin big-index --manifest-path "$here/Cargo.toml"
gen=$(cd "$here/.." && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/big-index

"$arca" --repo "$work/repo" init >/dev/null
start=$(date +%s.%N)
"$gen" "$work/repo" "$n"
echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s; index files: $(du -sh "$work/repo/index" | cut -f1)"

. "$here/common.sh"

run() {
    local tool=$1 bin=$2
    local cache="$work/cache-$tool"
    rm -rf "$cache" "$work/out-$tool"
    export ARCA_CACHE_DIR=$cache
    measure backup_new_machine "$tool" "$bin" --repo "$work/repo" backup "$corpus"
    measure backup_again "$tool" "$bin" --repo "$work/repo" backup "$corpus"
    measure restore "$tool" "$bin" --repo "$work/repo" restore latest --target "$work/out-$tool"
    rm -rf "$cache" "$work/out-$tool"
    measure restore_new_machine "$tool" "$bin" --repo "$work/repo" restore latest --target "$work/out-$tool"
    rm -rf "$work/out-$tool"
}

printf '%-20s %-8s %8s %10s\n' scenario build wall_s peak_MiB
run new "$arca"
if [ -n "${OLD_ARCA:-}" ]; then
    run old "$(realpath "$OLD_ARCA")"
fi
