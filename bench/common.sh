# Helpers the benchmark scripts share; sourced, not run. They use the
# caller's `work` (a scratch folder), `here` (bench/) and `pids` (the
# background processes its exit trap kills).

# A free TCP port on loopback.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on loopback port $1.
wait_port() { until python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do sleep 0.1; done; }

# One command, a row: its label, the build or tool, wall seconds and peak
# RSS in MiB; a failure prints the end of its output and ends the script.
measure() { # label build command...
  local label=$1 build=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || { echo "$label ($build) failed:"; tail -5 "$work/out"; exit 1; }
  read -r wall kb <"$work/time"
  printf '%-20s %-8s %8.2f %10.0f\n' "$label" "$build" "$wall" "$((kb / 1024))"
}

# Sets `endpoint_port` to where a client reaches the server on port $2
# with $1 ms of added round trip: the server itself for 0, else a
# latency-proxy.py started in front of it (its log in $3).
start_latency() { # ms server_port log
  endpoint_port=$2
  if [ "$1" != 0 ]; then
    endpoint_port=$(port)
    python3 "$here/latency-proxy.py" "$endpoint_port" "$2" "$(echo "$1 / 2" | bc -l)" >"$3" 2>&1 &
    pids+=($!)
    wait_port "$endpoint_port"
  fi
}
