#!/usr/bin/env bash
# The shared rate limit at work, and what the limits cost per message.
#
#   bash bench/limits.sh [SECONDS] [RUNS]
#
# For target rates of 50, 500 and 5,000 msgs/s and 1 and 3 herald worker
# processes sharing one provider's rate through Redis: herald enqueue, then
# the workers deliver to herald sink (--maildir), which names every message
# by its arrival time (UnixNano). From the first message the script waits
# one second, measures SECONDS seconds, then stops the workers with SIGTERM.
# Delivered rate, its error against the target and the busiest one-second
# window (sliding) come from the arrival times. Median of RUNS runs, with
# every run. Then the Go benchmarks of ratelimit (bench_test.go): the cost
# of one Take, local and Redis. Writes the section `limits` of
# bench/RESULTS.md.
#
# Installs redis-server where missing (Debian); starts its own on a unix
# socket in a temporary folder, and the sink on 127.0.0.1:$PORT (2527).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-20}
RUNS=${2:-3}
PORT=${PORT:-2527}
RATES=${RATES:-"50 500 5000"}
WORKERS=${WORKERS:-"1 3"}
OUT=bench/out/limits
mkdir -p "$OUT"

if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
go build -o "$OUT/herald" ./cmd/herald
HERALD="$PWD/$OUT/herald"

# The maildir on tmpfs where there is one: the sink's writes should cost
# as little as they can.
TMP=$(mktemp -d "$( [ -d /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/herald-limits.XXXXXX")
REDIS_SOCK="$TMP/redis.sock"
redis-server --port 0 --unixsocket "$REDIS_SOCK" --dir "$TMP" --save "" --appendonly no >/dev/null &
redis=$!
sink=""
pids=()
cleanup() {
  for p in "${pids[@]}" $sink; do kill "$p" 2>/dev/null || true; done
  kill $redis 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$REDIS_SOCK" ] && break; sleep 0.05; done

# A 2 KB message, as in bench/campaign.sh.
python3 - "$OUT" <<'PY'
import sys
body = "Hello {{.name}} from {{.city}},\n\n" + ("herald load test line of text, seventy characters long, more or less.\n" * 26)
open(f"{sys.argv[1]}/body.txt", "w").write(body)
PY

# config RATE: the campaign, the Redis queue (lease 3s) and the provider
# paced at RATE (burst: the default, RATE/10), 8 connections shared by
# every worker. Enough recipients that the campaign outlasts the window.
config() {
  local rate=$1 n=$(( $1 * (SECONDS_ + 1) * 3 / 2 ))
  python3 - "$n" "$OUT/recipients.csv" <<'PY'
import sys
n = int(sys.argv[1])
with open(sys.argv[2], "w") as f:
    f.write("email,name,city\n")
    for i in range(n):
        f.write(f"user{i}@example.com,User {i},City {i % 97}\n")
PY
  cat > "$OUT/limits.toml" <<TOML
[campaign]
id = "limits"
from = "Bench <bench@example.com>"
subject = "Bench {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
[queue]
backend = "redis"
url = "unix://$REDIS_SOCK"
lease = "3s"
volatile = true
[[provider]]
name = "sink"
host = "127.0.0.1"
port = $PORT
tls = "none"
rate = $rate
connections = 8
per_connection = 1000000
TOML
}

# run RATE WORKERS RUN: one measured run; appends a row to limits.csv.
run() {
  local rate=$1 w=$2 r=$3 md="$TMP/maildir"
  rm -rf "$md"
  redis-cli -s "$REDIS_SOCK" flushall >/dev/null
  "$HERALD" sink --listen 127.0.0.1:$PORT --maildir "$md" >"$OUT/sink.txt" 2>&1 &
  sink=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  "$HERALD" enqueue --config "$OUT/limits.toml" >/dev/null
  pids=()
  for i in $(seq "$w"); do
    "$HERALD" worker --quiet --config "$OUT/limits.toml" >"$OUT/worker$i.txt" 2>&1 &
    pids+=($!)
  done
  # The first arrival, then one second to skip and the window.
  local first="" deadline=$(( $(date +%s) + 30 ))
  while [ -z "$first" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "no message within 30 s" >&2; exit 1; }
    sleep 0.02
    first=$(find "$md/new" -maxdepth 1 -type f -print -quit 2>/dev/null || true)
  done
  sleep $(( SECONDS_ + 1 )).2
  kill -TERM "${pids[@]}"
  wait "${pids[@]}" || true
  pids=()
  kill -TERM $sink
  wait $sink || true
  sink=""
  # What each worker says it sent ("herald worker: N sent, ..."), for
  # the share of the busiest one.
  local sent
  sent=$(for i in $(seq "$w"); do sed -n 's/^herald worker: \([0-9]*\) sent.*/\1/p' "$OUT/worker$i.txt"; done | paste -sd' ')
  python3 - "$md/new" "$SECONDS_" "$rate" "$w" "$r" "$sent" <<'PY' | tee -a "$OUT/limits.csv"
import os, sys
d, secs, rate, w, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sent = [int(x) for x in sys.argv[6].split()]
t = sorted(int(n.split(".", 1)[0]) for n in os.listdir(d))
start = t[0] + 1_000_000_000  # skip the first second (the burst)
end = start + secs * 1_000_000_000
win = [x for x in t if start <= x < end]
# The busiest one-second window: the most arrivals in any [x, x + 1 s)
# that starts at an arrival inside the measured window.
busiest, j = 0, 0
for i, x in enumerate(win):
    while j < len(win) and win[j] < x + 1_000_000_000:
        j += 1
    busiest = max(busiest, j - i)
# The slowest whole second of the window.
per = [0] * secs
for x in win:
    per[(x - start) // 1_000_000_000] += 1
got = len(win) / secs
top = 100 * max(sent) / max(sum(sent), 1)
print(f"{rate},{w},{r},{len(t)},{got:.1f},{100 * (got - rate) / rate:+.2f},{busiest},{min(per)},{top:.1f},{'/'.join(map(str, sent))}")
PY
  rm -rf "$md"
}

echo "target,workers,run,messages,delivered_per_s,error_pct,busiest_second,slowest_second,top_worker_pct,sent_per_worker" > "$OUT/limits.csv"
for rate in $RATES; do
  config "$rate"
  for w in $WORKERS; do
    for r in $(seq "$RUNS"); do run "$rate" "$w" "$r"; done
  done
done

go test -run x -bench . -benchtime 2s -count 3 ./ratelimit/ | tee "$OUT/bench.txt"

python3 - "$OUT/limits.csv" "$OUT/bench.txt" "$SECONDS_" "$RUNS" <<'PY' | python3 bench/section.py limits
import csv, re, sys, statistics, collections
rows = list(csv.DictReader(open(sys.argv[1])))
secs, runs = sys.argv[3], sys.argv[4]
g = collections.defaultdict(list)
for r in rows:
    g[(int(r["target"]), int(r["workers"]))].append(r)
def cell(v, fmt):
    return f"{fmt(statistics.median(v))} ({', '.join(fmt(x) for x in v)})"
print(f"## Shared rate limit and limiter cost (bench/limits.sh {secs} {runs})\n")
print("herald enqueue, then 1 or 3 `herald worker` processes on a local Redis queue (unix socket, lease 3s)")
print("deliver ~2 KB messages to `herald sink --maildir` (tmpfs) on 127.0.0.1. The provider: `rate` = the")
print("target, burst the default (rate/10), 8 connections shared by all workers (Redis slots), the rate")
print("shared through RedisPacer. Arrival times are the sink's (the maildir file names); the window")
print(f"starts one second after the first arrival (skipping the initial burst) and lasts {secs} s; then")
print("SIGTERM stops the workers. Busiest second: the most arrivals in any sliding one-second window;")
print("slowest second: the fewest in a whole second of the window. Everything (workers, Redis, sink)")
print(f"shares the machine's cores. Busiest worker: its share of the messages the workers sent (from their")
print(f"summaries). Median of {runs} runs, every run in parentheses.\n")
print("| target msgs/s | workers | delivered msgs/s | error % | busiest second | slowest second | busiest worker |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for (t, w), v in sorted(g.items()):
    d = [float(r["delivered_per_s"]) for r in v]
    e = [float(r["error_pct"]) for r in v]
    b = [int(r["busiest_second"]) for r in v]
    s = [int(r["slowest_second"]) for r in v]
    top = [float(r["top_worker_pct"]) for r in v]
    print(f"| {t:,} | {w} | {cell(d, lambda x: f'{x:,.1f}')} | {cell(e, lambda x: f'{x:+.2f}')} | "
          f"{cell(b, lambda x: f'{x:,.0f}')} | {cell(s, lambda x: f'{x:,.0f}')} | {cell(top, lambda x: f'{x:.0f}%')} |")

bench = collections.defaultdict(lambda: ([], [], ""))
for line in open(sys.argv[2]):
    m = re.match(r"Benchmark(\S+?)-\d+\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) (\S+)", line)
    if m:
        ns, rate, _ = bench[m.group(1)]
        ns.append(float(m.group(2)))
        rate.append(float(m.group(3)))
        bench[m.group(1)] = (ns, rate, m.group(4))
print("\nCost of the limits per message: Go benchmarks of ratelimit (`go test -run x -bench . -benchtime 2s")
print("-count 3 ./ratelimit/`), against a real redis-server on a unix socket; the rate is far above")
print("reach, so Take never waits. Parallel: 8 goroutines share one pacer (one Redis client), as a")
print("worker's 8 senders do. Slots: a sender pays Acquire + Release once per connection, not per message.\n")
print("| benchmark | ns/op (median) | runs | per second (median) |")
print("| --- | --- | --- | --- |")
for name, (ns, rate, unit) in bench.items():
    print(f"| {name} | {statistics.median(ns):,.0f} | {', '.join(f'{x:,.0f}' for x in ns)} | "
          f"{statistics.median(rate):,.0f} {unit} |")
PY
