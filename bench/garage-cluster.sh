#!/usr/bin/env bash
# A distributed store losing a node mid-backup: a three-node Garage cluster
# (replication factor 3) on loopback, CLIENTS arca clients backing up
# different trees into one repository at once, and one node killed
# (SIGKILL) while they run. Then: which backups finished and which failed
# (and how), the failed ones run again with the node still down, the node
# brought back, forget + prune, `verify --read-data`, and every client's
# latest snapshot restored and compared with its tree.
#
# usage: bench/garage-cluster.sh [CORPUS]   (default: the Rust toolchain's lib
#        folder; its files are dealt round-robin into CLIENTS trees)
#   CLIENTS=8  KILL_AFTER=1 (seconds into the backups)  ARCA=path/to/arca
#
# Clients are spread over the three nodes' S3 endpoints; those talking to
# node 3 lose their server when it dies and must fail cleanly; they are run
# again against node 1 (as a load balancer would send them) and resume.
#
# Garage is built from crates.io when missing (`cargo install garage`,
# about 15 minutes on 2 cores): it is not part of the test suite, whose
# S3 server is the lighter s3s-fs.
set -euo pipefail
corpus=${1:-$(rustc --print sysroot)/lib}
clients=${CLIENTS:-8}
kill_after=${KILL_AFTER:-1}
arca=$(realpath "${ARCA:-target/release/arca}")
work=$(mktemp -d /tmp/arca-garage.XXXXXX)
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v garage >/dev/null || cargo install garage@2.5.0 --locked -j2
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { until python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do sleep 0.2; done; }
now() { date +%s.%N; }
secs() { echo "scale=2; ($2 - $1) / 1" | bc; }

secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
declare -a s3ports rpcports
start_node() { # i
  garage -c "$work/n$1/garage.toml" server >>"$work/n$1/log" 2>&1 &
  pids+=($!)
  echo $! >"$work/n$1/pid"
}
for i in 1 2 3; do
  mkdir -p "$work/n$i/meta" "$work/n$i/data"
  s3ports[$i]=$(port)
  rpcports[$i]=$(port)
  cat >"$work/n$i/garage.toml" <<TOML
metadata_dir = "$work/n$i/meta"
data_dir = "$work/n$i/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:${rpcports[$i]}"
rpc_public_addr = "127.0.0.1:${rpcports[$i]}"
rpc_secret = "$secret"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:${s3ports[$i]}"
TOML
  start_node "$i"
done
for i in 1 2 3; do wait_port "${s3ports[$i]}"; done
g() { garage -c "$work/n1/garage.toml" "$@"; }
for i in 2 3; do
  g node connect "$(garage -c "$work/n$i/garage.toml" node id -q)" >/dev/null
done
sleep 2
for i in 1 2 3; do
  id=$(garage -c "$work/n$i/garage.toml" node id -q | cut -d@ -f1)
  g layout assign -z dc$i -c 10G "$id" >/dev/null
done
g layout apply --version 1 >/dev/null
g bucket create arca >/dev/null
keyinfo=$(g key create arca-key)
export AWS_ACCESS_KEY_ID=$(echo "$keyinfo" | awk '/Key ID/ {print $NF}')
export AWS_SECRET_ACCESS_KEY=$(echo "$keyinfo" | awk '/Secret key/ {print $NF}')
g bucket allow --read --write --owner arca --key arca-key >/dev/null
export AWS_REGION=us-east-1 ARCA_PASSWORD=bench
# Client c talks to node 1 + c % 3 in the first round.
endpoint() { echo "http://127.0.0.1:${s3ports[$1]}"; }

python3 "$(dirname "$0")/deal-trees.py" "$corpus" "$work/trees" "$clients"
repo=s3://arca/repo
AWS_ENDPOINT_URL=$(endpoint 1) "$arca" --repo "$repo" init >/dev/null
client() { # c round node
  AWS_ENDPOINT_URL=$(endpoint "$3") ARCA_CACHE_DIR="$work/cache-$1" \
    "$arca" --repo "$repo" --json backup --host "client$1" "$work/trees/t$1" \
    >"$work/backup-$1-$2.json" 2>"$work/backup-$1-$2.err"
}

start=$(now)
jobs_=()
for c in $(seq 0 $((clients - 1))); do
  ( client "$c" 1 $((1 + c % 3)) && echo 0 >"$work/backup-$c-1.code" || echo $? >"$work/backup-$c-1.code" ) &
  jobs_+=($!)
done
sleep "$kill_after"
kill -9 "$(cat "$work/n3/pid")" && wait "$(cat "$work/n3/pid")" 2>/dev/null || true
killed_at=$(secs "$start" "$(now)")
wait "${jobs_[@]}"
wall=$(secs "$start" "$(now)")
ok=0; failed=()
for c in $(seq 0 $((clients - 1))); do
  if [ "$(cat "$work/backup-$c-1.code")" = 0 ]; then ok=$((ok + 1)); else failed+=("$c"); fi
done
echo "round 1: node 3 killed at ${killed_at} s; $ok of $clients backups finished in ${wall} s"
for c in "${failed[@]}"; do echo "  client $c (node $((1 + c % 3))) failed, exit $(cat "$work/backup-$c-1.code"): $(tail -1 "$work/backup-$c-1.err")"; done
snaps=$(AWS_ENDPOINT_URL=$(endpoint 1) ARCA_CACHE_DIR="$work/cache-list" "$arca" --repo "$repo" --json snapshots | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "snapshots in the repository: $snaps (one per finished backup, none from a failed one)"
[ "$snaps" = "$ok" ] || { echo "a failed backup left a snapshot, or a finished one none"; exit 1; }

# The failed ones again, node 3 still down: a backup resumes from what the
# repository holds (the packs a failed one uploaded are adopted).
for c in "${failed[@]}"; do
  client "$c" 2 1 || { echo "client $c failed again: $(tail -1 "$work/backup-$c-2.err")"; exit 1; }
  echo "  client $c again: ok ($(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["bytes_added"], "bytes added")' "$work/backup-$c-2.json") of a $(du -sb "$work/trees/t$c" | cut -f1)-byte tree)"
done

# A second round, every tree changed, node 3 still down: something for the
# prune to delete.
for c in $(seq 0 $((clients - 1))); do echo "changed" >"$work/trees/t$c/changed"; done
jobs_=()
s=$(now)
for c in $(seq 0 $((clients - 1))); do client "$c" 3 $((1 + c % 2)) & jobs_+=($!); done
for j in "${jobs_[@]}"; do wait "$j" || { echo "a second-round backup failed"; exit 1; }; done
echo "second round, node 3 down: $clients of $clients backups finished in $(secs "$s" "$(now)") s"

start_node 3
wait_port "${s3ports[3]}"
export AWS_ENDPOINT_URL=$(endpoint 1)
s=$(now)
ARCA_CACHE_DIR="$work/cache-0" "$arca" --repo "$repo" forget --keep-last 1 --prune >/dev/null
echo "forget --keep-last 1 --prune with node 3 back: $(secs "$s" "$(now)") s"
s=$(now)
ARCA_CACHE_DIR="$work/cache-0" "$arca" --repo "$repo" verify --read-data >"$work/verify.out" 2>&1 \
  || { echo "verify --read-data FAILED:"; tail -20 "$work/verify.out"; exit 1; }
echo "verify --read-data: clean ($(secs "$s" "$(now)") s)"
for c in $(seq 0 $((clients - 1))); do
  out=$work/restore-$c
  ARCA_CACHE_DIR="$work/cache-restore" "$arca" --repo "$repo" restore latest --host "client$c" --target "$out" \
    >/dev/null 2>"$work/restore-$c.err"
  [ -s "$work/restore-$c.err" ] && { echo "client $c: the restore warned:"; head -3 "$work/restore-$c.err"; }
  diff -r "$work/trees/t$c" "$out/${work#/}/trees/t$c" >/dev/null || { echo "client $c: restore differs"; exit 1; }
done
echo "every client's latest snapshot restores identical to its tree"
# With node 3 down for good now, the repository still reads whole from the
# two nodes left.
kill -9 "$(cat "$work/n3/pid")" && wait "$(cat "$work/n3/pid")" 2>/dev/null || true
ARCA_CACHE_DIR="$work/cache-2nodes" "$arca" --repo "$repo" verify --read-data >"$work/verify2.out" 2>&1 \
  || { echo "verify --read-data with node 3 down FAILED:"; tail -20 "$work/verify2.out"; exit 1; }
echo "verify --read-data with node 3 down: clean"
