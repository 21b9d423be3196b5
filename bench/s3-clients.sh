#!/usr/bin/env bash
# Eight clients backing up eight different trees into one S3 repository at
# once, beside what the server takes from plain parallel PUTs, then a
# forget + prune: how close the clients come to the server's own limit, and
# whether one waits for another.
#
# usage: bench/s3-clients.sh [CORPUS]   (default: the Rust toolchain's lib
#        folder; its files are dealt round-robin into eight trees)
#   CLIENTS=8  ARCA=path/to/arca (default target/release/arca)
#
# The server is s3s-fs on loopback, as in bench/s3.sh. Its limit is
# measured first: CLIENTS curl processes each PUT 4 objects of 16 MiB
# (arca's pack size) of random bytes at once; MB/s = bytes / wall time.
# Where the clients' limit lies: the processor time the clients and the
# server take while they run, how busy the whole machine is, and the same
# trees backed up by one client in one run (into a repository of its own
# on the same server), which is what one process gets out of this machine.
set -euo pipefail
corpus=${1:-$(rustc --print sysroot)/lib}
clients=${CLIENTS:-8}
arca=$(realpath "${ARCA:-target/release/arca}")
work=$(mktemp -d /tmp/arca-s3-clients.XXXXXX)
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked -j2
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/s3/bench" "$work/s3/plain"
s3s-fs --host 127.0.0.1 --port "$port" --access-key benchaccess --secret-key benchsecret "$work/s3" \
  >"$work/s3.log" 2>&1 &
pids+=($!)
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do sleep 0.1; done
export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$port ARCA_PASSWORD=bench
now() { date +%s.%N; }
# The machine's processor time so far, in clock ticks: busy and total
# (/proc/stat), and one process's (user + system).
cpu() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
secs() { echo "scale=2; ($2 - $1) / 1" | bc; }

# The server's limit: plain PUTs, CLIENTS at once.
head -c $((16 << 20)) /dev/urandom >"$work/object"
sum=$(sha256sum "$work/object" | cut -d' ' -f1)
start=$(now)
jobs_=()
for c in $(seq "$clients"); do
  (for k in 1 2 3 4; do
    curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user benchaccess:benchsecret \
      -H "x-amz-content-sha256: $sum" -T "$work/object" "$AWS_ENDPOINT_URL/plain/c$c-$k" >/dev/null
  done) &
  jobs_+=($!)
done
wait "${jobs_[@]}"
end=$(now)
[ "$(find "$work/s3/plain" -type f | wc -l)" = $((clients * 4)) ] || { echo "the plain PUTs failed"; exit 1; }
plain_bytes=$((clients * 4 * (16 << 20)))
plain_wall=$(secs "$start" "$end")
plain_rate=$(echo "scale=1; $plain_bytes / 1000000 / $plain_wall" | bc)

# The trees: every file of the corpus dealt to one of CLIENTS folders.
python3 "$(dirname "$0")/deal-trees.py" "$corpus" "$work/trees" "$clients"
sync
# The same trees backed up by one client, in one run, into a repository of
# its own on the same server: what this machine does with one process.
"$arca" --repo s3://bench/one init >/dev/null
s=$(now)
ARCA_CACHE_DIR="$work/cache-one" "$arca" --repo s3://bench/one backup --host one "$work/trees" >/dev/null
one_wall=$(secs "$s" "$(now)")
repo=s3://bench/repo
"$arca" --repo "$repo" init >/dev/null
sync
read -r busy0 total0 < <(cpu)
server0=$(proc_cpu "${pids[0]}")
start=$(now)
jobs_=()
for c in $(seq 0 $((clients - 1))); do
  ( s=$(now)
    ARCA_CACHE_DIR="$work/cache-$c" /usr/bin/time -f "%U %S" -o "$work/backup-$c.cpu" \
      "$arca" --repo "$repo" --json backup --host "client$c" "$work/trees/t$c" \
      >"$work/backup-$c.json" 2>"$work/backup-$c.err"
    e=$(now); secs "$s" "$e" >"$work/backup-$c.time" ) &
  jobs_+=($!)
done
wait "${jobs_[@]}"
end=$(now)
read -r busy1 total1 < <(cpu)
server1=$(proc_cpu "${pids[0]}")
wall=$(secs "$start" "$end")
ticks=$(getconf CLK_TCK)
# Processor seconds: the clients', the server's, and the whole machine's
# busy share over the run (of nproc cores).
clients_cpu=$(cat "$work"/backup-*.cpu | awk '{u += $1; s += $2} END {printf "%.2f", u + s}')
server_cpu=$(echo "scale=2; ($server1 - $server0) / $ticks" | bc)
busy=$(echo "scale=0; 100 * ($busy1 - $busy0) / ($total1 - $total0)" | bc)
added=$(python3 - "$work" "$clients" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
total = 0
for c in range(n):
    total += json.load(open(f"{work}/backup-{c}.json"))["summary"]["bytes_added"]
print(total)
PY
)
read_bytes=$(du -sb "$work/trees" | cut -f1)
rate=$(echo "scale=1; $added / 1000000 / $wall" | bc)
read_rate=$(echo "scale=1; $read_bytes / 1000000 / $wall" | bc)
one_rate=$(echo "scale=1; $read_bytes / 1000000 / $one_wall" | bc)
times=$(for c in $(seq 0 $((clients - 1))); do cat "$work/backup-$c.time"; done | sort -n | tr '\n' ' ')
failed=0
for c in $(seq 0 $((clients - 1))); do [ -s "$work/backup-$c.json" ] || { failed=$((failed + 1)); cat "$work/backup-$c.err"; }; done

# Forget all but each client's latest (one each: nothing to forget), then a
# second round so there is something, and prune.
for c in $(seq 0 $((clients - 1))); do echo "changed" >"$work/trees/t$c/changed"; done
jobs_=()
for c in $(seq 0 $((clients - 1))); do
  ARCA_CACHE_DIR="$work/cache-$c" "$arca" --repo "$repo" backup --host "client$c" "$work/trees/t$c" >/dev/null 2>&1 &
  jobs_+=($!)
done
wait "${jobs_[@]}"
s=$(now)
ARCA_CACHE_DIR="$work/cache-0" "$arca" --repo "$repo" forget --keep-last 1 --prune >/dev/null
forget_prune=$(secs "$s" "$(now)")
s=$(now)
ARCA_CACHE_DIR="$work/cache-0" "$arca" --repo "$repo" verify --read-data >/dev/null
verify=$(secs "$s" "$(now)")

echo "corpus: $corpus, $(numfmt --to=si "$read_bytes")B in $clients trees; s3s-fs on loopback"
echo
echo "| what | figure |"
echo "| --- | --- |"
echo "| server limit: $clients clients PUT 4 x 16 MiB each | $plain_rate MB/s ($plain_wall s) |"
echo "| $clients arca clients back up at once | $wall s wall: $read_rate MB/s read, $rate MB/s stored ($(numfmt --to=si "$added")B added) |"
echo "| each client's time (sorted) | $times s |"
echo "| processor time during it | clients $clients_cpu s, server $server_cpu s; the machine busy $busy % of $(nproc) cores |"
echo "| the same trees by one client, one run | $one_wall s: $one_rate MB/s read |"
echo "| clients that failed | $failed |"
echo "| forget --keep-last 1 --prune after a second round | $forget_prune s |"
echo "| verify --read-data | $verify s |"
