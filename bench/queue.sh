#!/usr/bin/env bash
# Go benchmarks of both queue backends (enqueue; lease + settle of no-op
# jobs), written to bench/RESULTS.md. The Redis one starts its own
# redis-server on a unix socket.
#
#   bash bench/queue.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-5}
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
mkdir -p bench/out
go test -run x -bench . -benchtime 3s -count "$COUNT" ./queue/boltq/ ./queue/redisq/ | tee bench/out/queue.txt
python3 - "$COUNT" bench/out/queue.txt <<'PY' | python3 bench/section.py queue
import sys, re, statistics, collections
pkg, rows = "", collections.defaultdict(list)
for line in open(sys.argv[2]):
    if line.startswith("pkg:"):
        pkg = line.split("/")[-1].strip()
    m = re.match(r"(Benchmark\S+)-\d+\s+\d+\s+\d+ ns/op\s+(\d+) jobs/s", line)
    if m:
        rows[(pkg, m.group(1))].append(int(m.group(2)))
print(f"## Queue backends (bench/queue.sh {sys.argv[1]})\n")
print("Go benchmarks, one goroutine: Enqueue in batches of 1,000 jobs; Lease of 256 jobs then Settle of")
print("them as sent. redisq talks to a local redis-server over a unix socket.\n")
print("| backend | benchmark | jobs/s (median) | runs |")
print("| --- | --- | --- | --- |")
for (p, b), v in rows.items():
    print(f"| {p} | {b} | {statistics.median(v):,.0f} | {', '.join(f'{x:,}' for x in v)} |")
PY
