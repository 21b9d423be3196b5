#!/usr/bin/env bash
# Point-in-time recovery, measured: a PostgreSQL cluster of its own (Debian's
# postgresql, started as nobody when run as root, on a private port) archives
# its WAL with `arca pg archive-wal` while pgbench writes for SECONDS; then
# a base backup, a second one after more writes, a `pg restore --latest`
# and the server's replay to the end of the archive.
# Usage: bench/postgres-pitr.sh [SCALE] [SECONDS]   (SCALE 20 is 2 M rows,
# about 300 MB). ARCA=path/to/arca (default target/release/arca).
# Prints: WAL archived (files, bytes, what they added to the repository),
# the time of each archive-wal (median and max), and the base backups' and
# the recovery's times and sizes.
set -euo pipefail
scale=${1:-20}
seconds=${2:-30}
arca=$(realpath "${ARCA:-target/release/arca}")
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
work=$(mktemp -d /tmp/arca-pitr.XXXXXX)
chmod 755 "$work"
as=()
if [[ $(id -u) == 0 ]]; then
  as=(setpriv --reuid 65534 --regid 65534 --clear-groups)
  chown 65534:65534 "$work"
fi
run() { "${as[@]}" env HOME="$work" ARCA_CACHE_DIR="$work/cache" "$@"; }
port=$((20000 + RANDOM % 20000))
cleanup() {
  run "$bin/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  run "$bin/pg_ctl" -D "$work/restored" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { printf "%.1f" "$(echo "$2 - $1" | bc)"; }
mb() { echo "scale=1; $1 / 1048576" | bc; }

run sh -c "echo bench > '$work/pw'; chmod 600 '$work/pw'; mkdir -p '$work/sock' '$work/cache'"
A=("$arca" --repo "$work/repo" --password-file "$work/pw")
run "${A[@]}" init >/dev/null
# archive_command through a wrapper that logs each call's time.
cat > "$work/archive.sh" <<EOF
#!/bin/sh
s=\$(date +%s%N)
HOME=$work ARCA_CACHE_DIR=$work/cache "$arca" --repo "$work/repo" --password-file "$work/pw" pg archive-wal "\$1" || exit 1
echo \$(( (\$(date +%s%N) - s) / 1000000 )) >> "$work/archive-ms"
EOF
chmod 755 "$work/archive.sh"
run "$bin/initdb" -D "$work/data" -U postgres --auth=trust --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<EOF
port = $port
unix_socket_directories = '$work/sock'
listen_addresses = '127.0.0.1'
archive_mode = on
archive_command = '$work/archive.sh %p'
max_wal_size = 1GB
EOF
run "$bin/pg_ctl" -D "$work/data" -l "$work/server.log" -w start >/dev/null
url="postgresql://postgres@127.0.0.1:$port"
psql() { command psql -X -q -A -t "$url/postgres" "$@"; }
pgbench -i -q -s "$scale" "$url/postgres" >/dev/null 2>&1
psql -c "UPDATE pgbench_accounts SET filler = md5(aid::text) || md5((aid * 7)::text)" -c "CHECKPOINT"
db_size=$(psql -c "SELECT pg_database_size('postgres')")
repo_size() { du -sb "$work/repo" | cut -f1; }
wait_archived() {
  local seg
  seg=$(psql -c "SELECT pg_walfile_name(pg_switch_wal())")
  until [[ $(psql -c "SELECT coalesce(last_archived_wal, '') >= '$seg' FROM pg_stat_archiver") == t ]]; do sleep 0.2; done
}
wait_archived

t0=$(now); r0=$(repo_size)
first=$(run "${A[@]}" --json pg basebackup "$url" | jq -r .id)
t1=$(now); r1=$(repo_size)
echo "| step | time | bytes | repository grew by |"
echo "| --- | --- | --- | --- |"
echo "| base backup of a $(mb "$db_size") MB cluster | $(secs "$t0" "$t1") s | $(mb "$db_size") MB | $(mb $((r1 - r0))) MB |"

rm -f "$work/archive-ms"
r2=$(repo_size); w0=$(psql -c "SELECT pg_current_wal_lsn()")
pgbench -T "$seconds" -c 2 "$url/postgres" >/dev/null 2>&1
w1=$(psql -c "SELECT pg_current_wal_lsn()")
wal_bytes=$(psql -c "SELECT pg_wal_lsn_diff('$w1', '$w0')")
wait_archived
r3=$(repo_size)
n=$(wc -l < "$work/archive-ms")
median=$(sort -n "$work/archive-ms" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
max=$(sort -n "$work/archive-ms" | tail -1)
echo "| pgbench ${seconds} s: $n WAL files archived | median $median ms, max $max ms each | $(mb "$wal_bytes") MB of WAL | $(mb $((r3 - r2))) MB |"

t2=$(now)
run "${A[@]}" pg basebackup "$url" >/dev/null
t3=$(now); r4=$(repo_size)
echo "| second base backup | $(secs "$t2" "$t3") s | | $(mb $((r4 - r3))) MB |"

t4=$(now)
run "${A[@]}" pg restore "$first" --latest --no-archive --target "$work/restored" >/dev/null
t5=$(now)
echo "| pg restore of the first base backup --latest (write the data folder) | $(secs "$t4" "$t5") s | | |"
sed -i "s/^port = .*/port = $((port + 1))/" "$work/restored/postgresql.conf"
t6=$(now)
run "$bin/pg_ctl" -D "$work/restored" -l "$work/restored.log" -w -t 600 start >/dev/null
until [[ $(command psql -X -A -t "postgresql://postgres@127.0.0.1:$((port + 1))/postgres" -c "SELECT pg_is_in_recovery()") == f ]]; do sleep 0.2; done
t7=$(now)
echo "| replay of the ${seconds} s of WAL (arca pg fetch-wal per file), promoted | $(secs "$t6" "$t7") s | $(mb "$wal_bytes") MB | |"
