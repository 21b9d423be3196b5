#!/usr/bin/env bash
# Scenario benchmarks of the arca binary. Run by hand from the project root:
#
#   bash bench/scenario.sh [OPTIONS] [compare.sh args]
#
# OPTIONS (scenario.sh's own; everything else goes to ../shared/bench/compare.sh):
#   --no-compare       skip compare.sh (arca vs restic vs borg on one corpus)
#   --files [N]        many small files: a generated tree of N files (default
#                      200000) backed up, backed up again with no change, then
#                      restored and compared with diff -r
#   --bigfile [MIB]    one big file of MIB MiB (default 2048) of incompressible
#                      data backed up, then restored and compared with cmp
#   --scale-tools "T…" tools for --files/--bigfile: arca and/or restic
#                      (default: arca)
#   --keep             keep the generated corpora and repositories
#
# Examples:
#   bash bench/scenario.sh                           # compare.sh only
#   bash bench/scenario.sh -c /some/tree arca restic # compare.sh with its own args
#   bash bench/scenario.sh --no-compare --files 1000000 --bigfile 8192
#
# Each measured command runs under /usr/bin/time: wall seconds and peak RSS
# (maximum resident set size of the process tree's largest process, in KiB).
# Corpora and repositories live under /tmp/arca-scale and are removed at the
# end unless --keep. The page cache is not dropped: the corpus is warm, as
# it is right after being generated; the figures measure CPU and memory more
# than the disk.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COMPARE=$ROOT/../shared/bench/compare.sh
W=/tmp/arca-scale
compare=1 files=0 big=0 keep=0 scale_tools=arca
NFILES=200000 BIGMIB=2048
pass=()
while (($#)); do
  case $1 in
    --no-compare) compare=0 ;;
    --files) files=1; if [[ ${2:-} =~ ^[0-9]+$ ]]; then NFILES=$2; shift; fi ;;
    --bigfile) big=1; if [[ ${2:-} =~ ^[0-9]+$ ]]; then BIGMIB=$2; shift; fi ;;
    --scale-tools) scale_tools=$2; shift ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1") ;;
  esac
  shift
done

cd "$ROOT"
if ((compare)); then
  [ -f "$COMPARE" ] || { echo "compare.sh not found at $COMPARE" >&2; exit 2; }
  echo "== compare.sh ${pass[*]:-}"
  bash "$COMPARE" "${pass[@]}"
fi
((files || big)) || exit 0

[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
for t in $scale_tools; do
  case $t in
    arca) if [ -z "${ARCA:-}" ]; then cargo build --release -q -j2 --bin arca; ARCA=$ROOT/target/release/arca; fi ;;
    restic) command -v restic >/dev/null || { echo "restic not installed" >&2; exit 2; } ;;
    *) echo "unknown scale tool $t (arca, restic)" >&2; exit 2 ;;
  esac
done
export ARCA ARCA_PASSWORD=bench RESTIC_PASSWORD=bench

cleanup() { ((keep)) || rm -rf "$W"; }
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W"; RES=$W/results.tsv; : >"$RES"

# measure TOOL SCENARIO COMMAND...: appends wall seconds and peak RSS (KiB).
measure() {
  local tool=$1 name=$2; shift 2
  local log=$W/$tool.$name.time
  /usr/bin/time -o "$log" -f "%e %M %x" "$@" >"$W/$tool.$name.out" 2>"$W/$tool.$name.err" || true
  read -r wall rss rc < <(tail -1 "$log")
  printf '%s\t%s\t%s\t%s\n' "$tool" "$name" "$wall" "$rss" >>"$RES"
  printf '  %-8s %-22s %8ss %10s KiB\n' "$tool" "$name" "$wall" "$rss"
  [ "$rc" = 0 ] || { echo "  $tool $name failed (exit $rc):"; tail -5 "$W/$tool.$name.err"; }
}
backup() { # tool repo path
  case $1 in
    arca) "$ARCA" --repo "$2" backup "$3" ;;
    restic) restic -r "$2" backup "$3" --host bench -q ;;
  esac
}
init() {
  case $1 in
    arca) "$ARCA" --repo "$2" init >/dev/null ;;
    restic) restic -r "$2" init >/dev/null ;;
  esac
}
restore() { # tool repo target
  case $1 in
    arca) "$ARCA" --repo "$2" restore latest --target "$3" ;;
    restic) restic -r "$2" restore latest --target "$3" -q ;;
  esac
}
export -f backup restore
export W

if ((files)); then
  echo "== $NFILES small files"
  T=$W/tree
  python3 - "$T" "$NFILES" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2]); random.seed(1)
# 1000 files per folder, 100 folders per level-1 folder; sizes 0..16 KiB,
# mostly small (median ~2 KiB), half text-like and half random bytes.
words = [b"alpha", b"beta", b"gamma", b"delta", b"index", b"chunk", b"pack", b"tree", b"\n", b"{", b"}"]
for i in range(n):
    d = os.path.join(root, "d%03d" % (i // 100000), "d%03d" % (i // 1000 % 100))
    if i % 1000 == 0: os.makedirs(d, exist_ok=True)
    size = min(16384, int(random.expovariate(1 / 3000)))
    if i % 2: data = random.randbytes(size)
    else: data = (b" ".join(random.choice(words) for _ in range(size // 4 + 1)) + b"%d" % i)[:max(size, 8)]
    with open(os.path.join(d, "f%07d" % i), "wb") as f: f.write(data)
PY
  printf '  corpus: %s files, %s bytes\n' "$NFILES" "$(du -sb "$T" | cut -f1)"
  # Nothing is deleted until every tool is done: deleting a tree slows the
  # next file creations on ext4 for minutes (compare.sh), and the restores
  # create a million files.
  for t in $scale_tools; do
    R=$W/$t.files.repo O=$W/$t.files.restore; init "$t" "$R"
    measure "$t" "files_backup_first" bash -c 'backup "$0" "$1" "$2"' "$t" "$R" "$T"
    measure "$t" "files_backup_nochange" bash -c 'backup "$0" "$1" "$2"' "$t" "$R" "$T"
    printf '%s\t%s\t%s\t%s\n' "$t" files_repo_bytes - "$(du -sb "$R" | cut -f1)" >>"$RES"
    measure "$t" "files_restore" bash -c 'restore "$0" "$1" "$2"' "$t" "$R" "$O"
    if diff -r -q "$T" "$O$T" >/dev/null; then ok=1; else ok=0; fi
    printf '%s\t%s\t%s\t%s\n' "$t" files_restore_identical - "$ok" >>"$RES"
    echo "  $t restore identical: $ok"
  done
  for t in $scale_tools; do rm -rf "$W/$t.files.repo" "$W/$t.files.restore"; done
  rm -rf "$T"
fi

if ((big)); then
  echo "== one file of $BIGMIB MiB"
  B=$W/big; mkdir -p "$B"
  # Incompressible and without repeats, so nothing deduplicates.
  # (openssl dies of SIGPIPE when head has enough: not an error)
  { openssl enc -aes-128-ctr -nosalt -pass pass:arca-bench -in /dev/zero 2>/dev/null || true; } |
    head -c $((BIGMIB << 20)) >"$B/big.bin"
  [ "$(stat -c %s "$B/big.bin")" = $((BIGMIB << 20)) ] || { echo "could not generate $B/big.bin" >&2; exit 1; }
  for t in $scale_tools; do
    R=$W/$t.big.repo O=$W/$t.big.restore; init "$t" "$R"
    measure "$t" "big_backup" bash -c 'backup "$0" "$1" "$2"' "$t" "$R" "$B"
    measure "$t" "big_restore" bash -c 'restore "$0" "$1" "$2"' "$t" "$R" "$O"
    got=$(find "$O" -name big.bin -type f -print -quit)
    if [ -n "$got" ] && cmp -s "$B/big.bin" "$got"; then ok=1; else ok=0; fi
    printf '%s\t%s\t%s\t%s\n' "$t" big_restore_identical - "$ok" >>"$RES"
    echo "  $t restore identical: $ok"
    rm -rf "$R" "$O"
  done
  rm -rf "$B"
fi

echo
printf '%-8s %-24s %10s %12s\n' tool scenario wall_s "rss_kb|value"
while IFS=$'\t' read -r t n wall rss; do printf '%-8s %-24s %10s %12s\n' "$t" "$n" "$wall" "$rss"; done <"$RES"
cp "$RES" /tmp/arca-scale-results.tsv
echo "(results also in /tmp/arca-scale-results.tsv)"
