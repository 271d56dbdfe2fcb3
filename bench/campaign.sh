#!/usr/bin/env bash
# A 100,000-recipient campaign against Postfix's smtp-sink, next to
# smtp-source on the same sink in the same run: herald send on the embedded
# queue, herald send on Redis (plan + one local worker), and herald enqueue
# followed by 1 and by 2 herald worker processes (sharing CONNECTIONS: on
# Redis a provider's connections hold for all processes together). Prints msgs/s and peak RSS (per process for the workers).
#
#   bash bench/campaign.sh [RECIPIENTS] [CONNECTIONS] [RUNS]
#
# Installs Postfix's tools and redis-server where missing (Debian). Starts
# its own redis-server on a unix socket. Writes into bench/out/. The same
# measurements are part of bash bench/run.sh (bench/lib.sh holds them).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
C=${2:-16}
RUNS=${3:-3}
PORT=${PORT:-2526}
OUT=bench/out
. bench/lib.sh
need_tools
campaign_files
start_smtp_sink "$PORT"
start_redis
trap 'kill $SINK_PID $REDIS_PID 2>/dev/null || true' EXIT

echo "tool,run,messages,seconds,msgs_per_s,peak_rss_mb" | tee "$OUT/campaign.csv"
for run in $(seq "$RUNS"); do
  echo "smtp-source,$run,$N,$(run_source "$N" "$C")" | tee -a "$OUT/campaign.csv"
  echo "herald send (embedded),$run,$N,$(run_send_embedded)" | tee -a "$OUT/campaign.csv"
  echo "herald send (redis),$run,$N,$(run_send_redis)" | tee -a "$OUT/campaign.csv"
  echo "herald enqueue + 1 worker (redis),$run,$N,$(run_workers 1)" | tee -a "$OUT/campaign.csv"
  echo "herald enqueue + 2 workers (redis),$run,$N,$(run_workers 2)" | tee -a "$OUT/campaign.csv"
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
print("are shared by the workers, and peak RSS is that of the largest worker. Redis is a local")
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
