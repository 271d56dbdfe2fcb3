#!/usr/bin/env bash
# A 100,000-recipient campaign against Postfix's smtp-sink, next to
# smtp-source on the same sink in the same run: herald send on the embedded
# queue, herald send on Redis (plan + one local worker), and herald enqueue
# followed by 1 and by 2 herald worker processes (CONNECTIONS split between
# them). Prints msgs/s and peak RSS (per process for the workers).
#
#   bash bench/campaign.sh [RECIPIENTS] [CONNECTIONS] [RUNS]
#
# Installs Postfix's tools and redis-server where missing (Debian). Starts
# its own redis-server on a unix socket. Writes into bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
C=${2:-16}
RUNS=${3:-3}
PORT=${PORT:-2526}
OUT=bench/out
mkdir -p "$OUT"

if [ ! -x /usr/sbin/smtp-sink ] || ! command -v redis-server >/dev/null; then
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix redis-server >/dev/null
fi
go build -o "$OUT/herald" ./cmd/herald

# A 2 KB message: the body template pads to about 2,000 bytes.
python3 - "$N" "$OUT" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(f"{out}/recipients.csv", "w") as f:
    f.write("email,name,city\n")
    for i in range(n):
        f.write(f"user{i}@example.com,User {i},City {i % 97}\n")
body = "Hello {{.name}} from {{.city}},\n\n" + ("herald load test line of text, seventy characters long, more or less.\n" * 26)
open(f"{out}/body.txt", "w").write(body)
PY
cat > "$OUT/bench.toml" <<TOML
[campaign]
id = "bench"
from = "Bench <bench@example.com>"
subject = "Bench {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
[queue]
path = "bench.db"
[[provider]]
name = "sink"
host = "127.0.0.1"
port = $PORT
tls = "none"
connections = $C
per_connection = 1000000
TOML

REDIS_SOCK="$PWD/$OUT/redis.sock"
provider() { # $1: connections
  printf '[[provider]]\nname = "sink"\nhost = "127.0.0.1"\nport = %s\ntls = "none"\nconnections = %s\nper_connection = 1000000\n' "$PORT" "$1"
}
redis_queue() { printf '[queue]\nbackend = "redis"\nurl = "unix://%s"\n' "$REDIS_SOCK"; }
{ sed -n '/^\[campaign\]/,/^recipients/p' "$OUT/bench.toml"; redis_queue; provider "$C"; } > "$OUT/bench-redis.toml"
# A worker's configuration: the queue and its share of the connections.
worker_conf() { { redis_queue; provider "$1"; } > "$OUT/worker-$1.toml"; }

/usr/sbin/smtp-sink -u root -c 127.0.0.1:$PORT 2048 >/dev/null 2>&1 &
sink=$!
redis-server --port 0 --unixsocket "$REDIS_SOCK" --dir "$OUT" --save "" --appendonly no >/dev/null &
redis=$!
trap 'kill $sink $redis 2>/dev/null || true' EXIT
sleep 0.5
flushredis() { redis-cli -s "$REDIS_SOCK" flushall >/dev/null; }

# workers N: herald enqueue, then N workers with C/N connections each,
# stopped with SIGTERM once the campaign is complete. Prints seconds and
# the largest peak RSS of the workers.
workers() {
  local n=$1 per=$(( C / $1 ))
  worker_conf "$per"
  flushredis
  local s e pids=()
  s=$(date +%s.%N)
  "$OUT/herald" enqueue --config "$OUT/bench-redis.toml" >/dev/null 2>&1
  for i in $(seq "$n"); do
    /usr/bin/time -v "$OUT/herald" worker --quiet --config "$OUT/worker-$per.toml" > "$OUT/worker$i.txt" 2> "$OUT/time-worker$i.txt" &
    pids+=($!)
  done
  # Done when no job is pending, leased or waiting to retry: read the
  # campaign's counters (fields c1, c2, c4 of its meta hash; see
  # queue/redisq) with redis-cli, which costs far less than herald status.
  local open=1
  while [ "$open" != 0 ]; do
    sleep 0.05
    open=$(redis-cli -s "$REDIS_SOCK" hmget 'herald:{bench}:meta' c1 c2 c4 | awk '{n += $1} END {print n + 0}')
  done
  e=$(date +%s.%N)
  # $pids are the time(1) processes: signal the workers they run.
  for p in "${pids[@]}"; do pkill -TERM -P "$p" || true; done
  wait "${pids[@]}" 2>/dev/null || true
  local rss=0
  for i in $(seq "$n"); do r=$(peak "$OUT/time-worker$i.txt"); [ "$r" -gt "$rss" ] && rss=$r; done
  python3 -c "print('%.3f,%.0f' % ($e-$s, $N/($e-$s)))" | tr -d '\n'
  echo ",$rss"
}

peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }
echo "tool,run,messages,seconds,msgs_per_s,peak_rss_mb" | tee "$OUT/campaign.csv"
for run in $(seq "$RUNS"); do
  s=$(date +%s.%N)
  /usr/bin/time -v /usr/sbin/smtp-source -d -s "$C" -m "$N" -l 2048 127.0.0.1:$PORT 2> "$OUT/time-source.txt" >/dev/null
  e=$(date +%s.%N)
  python3 -c "print('smtp-source,$run,$N,%.3f,%.0f,$(peak "$OUT/time-source.txt")' % ($e-$s, $N/($e-$s)))" | tee -a "$OUT/campaign.csv"

  rm -f "$OUT/bench.db"
  s=$(date +%s.%N)
  /usr/bin/time -v "$OUT/herald" send --quiet --config "$OUT/bench.toml" > "$OUT/herald-send.txt" 2> "$OUT/time-herald.txt"
  e=$(date +%s.%N)
  python3 -c "print('herald send (embedded),$run,$N,%.3f,%.0f,$(peak "$OUT/time-herald.txt")' % ($e-$s, $N/($e-$s)))" | tee -a "$OUT/campaign.csv"

  flushredis
  s=$(date +%s.%N)
  /usr/bin/time -v "$OUT/herald" send --quiet --config "$OUT/bench-redis.toml" > "$OUT/herald-send-redis.txt" 2> "$OUT/time-herald-redis.txt"
  e=$(date +%s.%N)
  python3 -c "print('herald send (redis),$run,$N,%.3f,%.0f,$(peak "$OUT/time-herald-redis.txt")' % ($e-$s, $N/($e-$s)))" | tee -a "$OUT/campaign.csv"

  echo "herald enqueue + 1 worker (redis),$run,$N,$(workers 1)" | tee -a "$OUT/campaign.csv"
  echo "herald enqueue + 2 workers (redis),$run,$N,$(workers 2)" | tee -a "$OUT/campaign.csv"
done

python3 - "$OUT/campaign.csv" "$N" "$C" <<'PY' | python3 bench/section.py campaign
import csv, sys, statistics, collections
rows = list(csv.DictReader(open(sys.argv[1])))
n, c = sys.argv[2], sys.argv[3]
rate, rss = collections.defaultdict(list), collections.defaultdict(list)
for r in rows:
    rate[r["tool"]].append(float(r["msgs_per_s"]))
    rss[r["tool"]].append(float(r["peak_rss_mb"]))
print(f"## Loopback campaign (bench/campaign.sh {n} {c} {len(rate['smtp-source'])})\n")
print(f"{n} recipients, ~2 KB messages, {c} connections, no rate limit, to Postfix's smtp-sink on 127.0.0.1.")
print("herald's time is the whole campaign: reading the CSV, planning into the queue, rendering,")
print("sending, settling. smtp-source sends a fixed message over reused connections. The worker rows")
print(f"time herald enqueue and the workers until the queue reports the campaign complete; the {c} connections")
print("are split between the workers, and peak RSS is that of the largest worker. Redis is a local")
print("redis-server on a unix socket (no persistence), sharing the 2 cores with herald and the sink.\n")
print("| tool | msgs/s (median) | runs | peak RSS |")
print("| --- | --- | --- | --- |")
for tool, v in rate.items():
    print(f"| {tool} | {statistics.median(v):,.0f} | {', '.join(f'{x:,.0f}' for x in v)} | {max(rss[tool]):.0f} MB |")
s = statistics.median(rate["smtp-source"])
print()
for tool in rate:
    if tool != "smtp-source":
        print(f"- {tool} ÷ smtp-source: {statistics.median(rate[tool])/s:.2f}×")
print("\n(medians of the same run)")
PY
