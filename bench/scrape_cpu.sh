#!/usr/bin/env bash
# The CPU cost of `tenure run --http` being scraped: two leaders on memory
# locks for SECONDS each, one left alone, one whose /metrics and /healthz
# are fetched once a second (as Prometheus and a liveness probe would);
# prints each one's CPU time (user + system, from /proc) and the difference
# per scrape. BENCHMARKS.md quotes it.
#
#   bash bench/scrape_cpu.sh [BINARY [SECONDS]]   # default target/release/tenure, 120
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/tenure}
secs=${2:-120}
[ -x "$bin" ] || { echo "scrape_cpu.sh: no $bin (cargo build --release -p tenure-cli)" >&2; exit 1; }
tick=$(getconf CLK_TCK)

cpu() { # PID: user + system ticks of the process
  awk '{print $14 + $15}' "/proc/$1/stat"
}

start() { # NAME: starts a leader; prints "PID PORT"
  local log; log=$(mktemp)
  "$bin" run --lock "memory://$1" --identity "$1" --http 127.0.0.1:0 -- sleep $((secs + 30)) 2>"$log" &
  local pid=$!
  local port=""
  for _ in $(seq 100); do
    port=$(grep -o 'on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && grep -q 'elected leader' "$log" && break
    sleep 0.1
  done
  echo "$pid $port"
}

read -r idle_pid _ < <(start idle)
read -r busy_pid busy_port < <(start scraped)
idle0=$(cpu "$idle_pid"); busy0=$(cpu "$busy_pid")
bytes=0
for _ in $(seq "$secs"); do
  n=$(curl -s "http://127.0.0.1:$busy_port/metrics" | wc -c)
  curl -s -o /dev/null "http://127.0.0.1:$busy_port/healthz"
  bytes=$n
  sleep 1
done
idle1=$(cpu "$idle_pid"); busy1=$(cpu "$busy_pid")
kill "$idle_pid" "$busy_pid"
wait 2>/dev/null || true
python3 - "$tick" "$secs" "$idle0" "$idle1" "$busy0" "$busy1" "$bytes" <<'PY'
import sys
tick, secs, i0, i1, b0, b1, size = (float(x) for x in sys.argv[1:])
idle, busy = (i1 - i0) / tick, (b1 - b0) / tick
print(f"over {secs:.0f} s: idle leader {idle*1000:.0f} ms CPU ({idle/secs*100:.3f}%), "
      f"scraped leader {busy*1000:.0f} ms CPU ({busy/secs*100:.3f}%); "
      f"difference {(busy-idle)/secs*1000:.2f} ms per scrape (/metrics {size:.0f} bytes + /healthz)")
PY
