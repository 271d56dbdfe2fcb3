#!/usr/bin/env bash
# The whole benchmark in one run, written to bench/RESULTS.md:
#   1. the machine;
#   2. side by side, each the median of RUNS runs with min–max:
#      smtp-source → smtp-sink (the ceiling), herald bench → smtp-sink
#      (closed loop), the N-recipient campaign with herald send (embedded
#      queue, Redis) and herald enqueue + 1 and 2 workers (Redis), and
#      smtp-source (a connection per message) → smtp-sink and → herald sink;
#   3. curves: msgs/s against connections (smtp-source, herald bench) and
#      herald bench's latency against an offered rate (open loop), as PNGs;
#   4. Go benchmarks (render, enqueue, lease/settle on boltq and redisq,
#      classify, the limiters) with -count=GO_COUNT, summarized by benchstat;
#   5. scale: the campaign at 10k, 100k and 1M recipients (time, RSS, CPU
#      and store per message), herald enqueue into Redis (jobs/s, bytes per
#      recipient), and a Redis Cluster and a Sentinel failover mid-campaign;
#   6. the goals, from that same run, PASS or short of.
#
#   bash bench/run.sh                       # the default run, ~15 min on 2 cores
#   RUNS=1 N=20000 SINK_N=20000 bash bench/run.sh   # a quick one
#
# Settings (environment): RUNS (3), N recipients of the campaign and
# messages of the closed-loop rows (100000), C connections (16), SINK_N
# messages of the sink rows (100000), CURVE_N messages per point of the
# connections curve (20000), CONNS ("1 2 4 8 16 32"), RATES offered in
# msgs/s ("2000 5000 10000 15000 20000 30000", stops past saturation),
# RATE_SECS per rate (5), BENCHTIME of each Go benchmark (1s), GO_COUNT runs
# of each (6: fewer and benchstat gives no confidence interval), PORT (2526),
# SINK_PORT (2527), SCALE_NS the campaign sizes of the scale rows ("10000
# 100000 1000000") and FAILOVER (1; 0 skips the failover rows).
#
# On a fresh Debian machine it installs Postfix's tools (smtp-sink,
# smtp-source), redis-server and GNU time where missing, and builds herald
# (Go must be installed). Raw data goes to bench/out/ (CSV, JSON, gobench.txt).
#
# RESULTS.md is regenerated whole: the machine, then this script's
# sections. The sections other scripts own (wan.sh, limits.sh, queue.sh,
# campaign.sh: between <!-- name --> markers) are measurements this script
# does not repeat; they are carried over unchanged at the end, under their
# own script's name, until that script runs again.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
N=${N:-100000}
C=${C:-16}
SINK_N=${SINK_N:-100000}
CURVE_N=${CURVE_N:-20000}
CONNS=${CONNS:-"1 2 4 8 16 32"}
RATES=${RATES:-"2000 5000 10000 15000 20000 30000"}
RATE_SECS=${RATE_SECS:-5}
BENCHTIME=${BENCHTIME:-1s}
GO_COUNT=${GO_COUNT:-6}
PORT=${PORT:-2526}
SINK_PORT=${SINK_PORT:-2527}
SCALE_NS=${SCALE_NS:-"10000 100000 1000000"}
OUT=bench/out
export PATH=$PATH:/usr/local/go/bin
. bench/lib.sh
started=$(date +%s)
need_tools
campaign_files

# 1. The machine.
{
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "cores=$(nproc)"
  echo "ram_gib=$(awk '/^MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
  echo "kernel=$(uname -sr)"
  echo "go=$(go version | awk '{print $3}')"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!bench/RESULTS.md' ':!bench/*.png' || echo ' (with local changes)')"
  echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

start_smtp_sink "$PORT"
start_redis
SINK2=""
cleanup() { kill $SINK_PID $REDIS_PID $SINK2 2>/dev/null || true; }
trap cleanup EXIT

if "$HERALD" bench --help >/dev/null 2>&1; then HAVE_BENCH=1; else HAVE_BENCH=0; echo "herald bench not built: its rows, curves and goal are skipped"; fi

# run_bench MESSAGES CONNECTIONS [flags]: herald bench closed loop to the
# sink on $PORT; "seconds,msgs_per_s,rss,p50,p99" from its JSON.
run_bench() {
  local m=$1 c=$2
  shift 2
  /usr/bin/time -v "$HERALD" bench --server "127.0.0.1:$PORT" --connections "$c" --messages "$m" --size 2048 --json --quiet "$@" \
    > "$OUT/bench.json" 2> "$OUT/time-bench.txt"
  python3 - "$OUT/bench.json" "$(peak "$OUT/time-bench.txt")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["errors"]:
    print(f"herald bench: {r['errors']} errors", file=sys.stderr)
m = r["latency_ms"]["message"]
print(f"{r['duration_s']:.3f},{r['msgs_per_s']:.0f},{sys.argv[2]},{m['p50']:.2f},{m['p99']:.2f}")
PY
}

# run_sink KIND: a fresh sink on $SINK_PORT (smtp-sink or herald sink), then
# smtp-source with a connection per message (no -d), as in
#   smtp-source -c -l 2000 -m SINK_N -s 16 127.0.0.1:PORT
# The RSS is the sink's (VmHWM).
run_sink() {
  local s e rss
  if [ "$1" = smtp-sink ]; then
    /usr/sbin/smtp-sink -c -u root "127.0.0.1:$SINK_PORT" 1000 >/dev/null 2>&1 &
  else
    "$HERALD" sink --listen "127.0.0.1:$SINK_PORT" --json > "$OUT/herald-sink.json" 2>/dev/null &
  fi
  SINK2=$!
  wait_port "$SINK_PORT"
  s=$(now)
  /usr/sbin/smtp-source -c -l 2000 -m "$SINK_N" -s "$C" "127.0.0.1:$SINK_PORT" >/dev/null
  e=$(now)
  rss=$(awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SINK2/status")
  kill -TERM "$SINK2"
  wait "$SINK2" 2>/dev/null || true
  SINK2=""
  if [ "$1" = herald ]; then
    got=$(python3 -c "import json; print(json.load(open('$OUT/herald-sink.json'))['messages'])")
    [ "$got" = "$SINK_N" ] || echo "herald sink counted $got messages, not $SINK_N" >&2
  fi
  rate_row "$s" "$e" "$SINK_N" "$rss"
}

# 2. Side by side. cpu.csv: each herald row's CPU (the tool's, and
# redis-server's over the same row).
echo "tool,run,messages,seconds,msgs_per_s,peak_rss_mb,p50_ms,p99_ms" > "$OUT/main.csv"
echo "tool,run,messages,cpu_s,redis_cpu_s" > "$OUT/cpu.csv"
row() { echo "$1,$2,$3,$4" | tee -a "$OUT/main.csv"; }
# cpu_row TOOL RUN REDIS_BEFORE TIME_FILES...: the CPU of the row just run.
cpu_row() {
  local tool=$1 run=$2 before=$3
  shift 3
  echo "$tool,$run,$N,$(cpu "$@"),$(python3 -c "print('%.3f' % ($(redis_cpu) - $before))")" >> "$OUT/cpu.csv"
}
for run in $(seq "$RUNS"); do
  row "smtp-source" "$run" "$N" "$(run_source "$N" "$C"),,"
  if [ "$HAVE_BENCH" = 1 ]; then
    r0=$(redis_cpu); row "herald bench" "$run" "$N" "$(run_bench "$N" "$C")"
    cpu_row "herald bench" "$run" "$r0" "$OUT/time-bench.txt"
  fi
  r0=$(redis_cpu); row "herald send (embedded)" "$run" "$N" "$(run_send_embedded),,"
  cpu_row "herald send (embedded)" "$run" "$r0" "$OUT/time-herald.txt"
  r0=$(redis_cpu); row "herald send (redis)" "$run" "$N" "$(run_send_redis),,"
  cpu_row "herald send (redis)" "$run" "$r0" "$OUT/time-herald-redis.txt"
  r0=$(redis_cpu); row "herald enqueue + 1 worker (redis)" "$run" "$N" "$(run_workers 1),,"
  cpu_row "herald enqueue + 1 worker (redis)" "$run" "$r0" "$OUT/time-enqueue.txt" "$OUT/time-worker1.txt"
  r0=$(redis_cpu); row "herald enqueue + 2 workers (redis)" "$run" "$N" "$(run_workers 2),,"
  cpu_row "herald enqueue + 2 workers (redis)" "$run" "$r0" "$OUT/time-enqueue.txt" "$OUT/time-worker1.txt" "$OUT/time-worker2.txt"
  row "smtp-source -c → smtp-sink" "$run" "$SINK_N" "$(run_sink smtp-sink),,"
  row "smtp-source -c → herald sink" "$run" "$SINK_N" "$(run_sink herald),,"
done

# 3. Curves.
echo "tool,connections,msgs_per_s" > "$OUT/curve-connections.csv"
for c in $CONNS; do
  echo "smtp-source,$c,$(run_source "$CURVE_N" "$c" | cut -d, -f2)" | tee -a "$OUT/curve-connections.csv"
  if [ "$HAVE_BENCH" = 1 ]; then echo "herald bench,$c,$(run_bench "$CURVE_N" "$c" | cut -d, -f2)" | tee -a "$OUT/curve-connections.csv"; fi
done
echo "offered_rate,msgs_per_s,p50_ms,p99_ms,errors" > "$OUT/curve-latency.csv"
if [ "$HAVE_BENCH" = 1 ]; then
  for r in $RATES; do
    "$HERALD" bench --server "127.0.0.1:$PORT" --rate "$r" --duration "${RATE_SECS}s" --size 2048 --json --quiet > "$OUT/bench-open.json" 2>/dev/null || true
    line=$(python3 - "$OUT/bench-open.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["latency_ms"]["message"]
print(f"{r['offered_rate']:.0f},{r['msgs_per_s']:.0f},{m['p50']:.2f},{m['p99']:.2f},{r['errors']}")
PY
)
    echo "$line" | tee -a "$OUT/curve-latency.csv"
    # Past saturation: the server takes less than 90% of the offer.
    python3 -c "import sys; o, g = map(float, '$line'.split(',')[:2]); sys.exit(0 if g >= 0.9 * o else 1)" || break
  done
fi
go run ./bench/plot --connections "$OUT/curve-connections.csv" --latency "$OUT/curve-latency.csv" --dir bench

# 4. Go benchmarks.
go test -run '^$' -bench . -benchtime "$BENCHTIME" -count "$GO_COUNT" ./bench/ ./queue/boltq/ ./queue/redisq/ ./ratelimit/ | tee "$OUT/gobench.txt"
rm -f "$OUT/benchstat.txt"
timeout 300 go run golang.org/x/perf/cmd/benchstat@latest "$OUT/gobench.txt" > "$OUT/benchstat.txt" 2>/dev/null || rm -f "$OUT/benchstat.txt"

# 5. Scale. (a) The campaign on the embedded queue at SCALE_NS recipients:
# time, peak RSS, CPU and the store's size once done. (b) herald enqueue
# into Redis at N and at the largest of SCALE_NS: jobs/s (the whole
# command: start, reading and planning the file, writing) and Redis's
# memory per recipient (used_memory after less before). (c) The failover
# tests (a cluster master killed mid-campaign; a Sentinel failover), whose
# log line gives the promotion time, the longest stop in deliveries and the
# duplicates.
echo "recipients,seconds,msgs_per_s,peak_rss_mb,cpu_s,store_bytes" > "$OUT/scale.csv"
echo "recipients,seconds,jobs_per_s,bytes_per_recipient,redis_cpu_s" > "$OUT/enqueue.csv"
big=0
for n in $SCALE_NS; do
  [ "$n" -gt "$big" ] && big=$n
  d="$OUT/scale-$n"
  mkdir -p "$d"
  line=$(OUT=$d N=$n; campaign_files; run_send_embedded)
  store=$(find "$d" -maxdepth 1 -name 'bench.db*' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  echo "$n,$line,$(cpu "$d/time-herald.txt"),$store" | tee -a "$OUT/scale.csv"
done
for n in $(printf '%s\n' "$N" "$big" | sort -nu); do
  d="$OUT/scale-$n"
  [ -f "$d/bench-redis.toml" ] || (OUT=$d N=$n; campaign_files)
  flushredis
  m0=$(redis-cli -s "$REDIS_SOCK" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  r0=$(redis_cpu)
  s=$(now)
  "$HERALD" enqueue --config "$d/bench-redis.toml" >/dev/null 2>&1
  e=$(now)
  m1=$(redis-cli -s "$REDIS_SOCK" info memory | awk -F: '/^used_memory:/ {print $2+0}')
  python3 -c "print('%d,%.3f,%.0f,%.0f,%.3f' % ($n, $e - $s, $n / ($e - $s), ($m1 - $m0) / $n, $(redis_cpu) - $r0))" | tee -a "$OUT/enqueue.csv"
done
flushredis
if [ "${FAILOVER:-1}" = 1 ]; then
  go test -count=1 -v -run 'TestWorkersSurvive(Cluster|Sentinel)Failover' ./cmd/herald/ > "$OUT/failover.txt" 2>&1 || echo "the failover tests failed: see $OUT/failover.txt" >&2
fi

# 6. RESULTS.md.
python3 bench/report.py "$OUT" "$RUNS" "$N" "$C" "$SINK_N" "$CURVE_N" "$RATE_SECS" "$BENCHTIME" "$HAVE_BENCH" "$(( $(date +%s) - started ))" "$GO_COUNT"
echo "bench/RESULTS.md written"
