#!/usr/bin/env bash
# A 100,000-recipient campaign against Postfix's smtp-sink, next to
# smtp-source on the same sink in the same run. Prints msgs/s and peak RSS.
#
#   bash bench/campaign.sh [RECIPIENTS] [CONNECTIONS] [RUNS]
#
# Installs Postfix's tools where missing (Debian). Writes into bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
C=${2:-16}
RUNS=${3:-3}
PORT=${PORT:-2526}
OUT=bench/out
mkdir -p "$OUT"

if [ ! -x /usr/sbin/smtp-sink ]; then
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
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

/usr/sbin/smtp-sink -u root -c 127.0.0.1:$PORT 2048 >/dev/null 2>&1 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
sleep 0.5

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
print("herald's time is the whole campaign: reading the CSV, planning into the embedded queue, rendering,")
print("sending, settling. smtp-source sends a fixed message over reused connections.\n")
print("| tool | msgs/s (median) | runs | peak RSS |")
print("| --- | --- | --- | --- |")
for tool, v in rate.items():
    print(f"| {tool} | {statistics.median(v):,.0f} | {', '.join(f'{x:,.0f}' for x in v)} | {max(rss[tool]):.0f} MB |")
h, s = statistics.median(rate["herald send (embedded)"]), statistics.median(rate["smtp-source"])
print(f"\nherald ÷ smtp-source: {h/s:.2f}× (medians of the same run).")
PY
