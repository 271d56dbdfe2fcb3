#!/usr/bin/env bash
# WAN profile: a campaign sent through toxiproxy's latency toxic (half the
# RTT each way) to Postfix's smtp-sink, at 30 ms and 100 ms RTT with 1, 3 and
# 16 connections: smtp-source, herald without pipelining, herald pipelined,
# in one run. Writes bench/out/wan.csv, bench/wan.png and the WAN section of
# bench/RESULTS.md.
#
#   bash bench/wan.sh [MESSAGES_PER_CONNECTION]
#
# Installs Postfix's tools and toxiproxy's server where missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PER=${1:-40}
OUT=bench/out
SINK_PORT=2526
PROXY_PORT=2601
API=127.0.0.1:8474
mkdir -p "$OUT/bin"

if [ ! -x /usr/sbin/smtp-sink ]; then
  apt-get update -qq
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
[ -x "$OUT/bin/server" ] || GOBIN="$PWD/$OUT/bin" go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0
go build -o "$OUT/herald" ./cmd/herald

/usr/sbin/smtp-sink -u root -c 127.0.0.1:$SINK_PORT 2048 >/dev/null 2>&1 &
sink=$!
"$OUT/bin/server" -host 127.0.0.1 -port 8474 >"$OUT/toxiproxy.log" 2>&1 &
toxi=$!
trap 'kill $sink $toxi 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "$API/version" >/dev/null && break; sleep 0.1; done
curl -sf -X POST "$API/proxies" -d "{\"name\":\"wan\",\"listen\":\"127.0.0.1:$PROXY_PORT\",\"upstream\":\"127.0.0.1:$SINK_PORT\"}" >/dev/null

python3 - "$OUT" <<'PY'
import sys
out = sys.argv[1]
with open(f"{out}/wan-recipients.csv", "w") as f:
    f.write("email,name\n")
    for i in range(20000):
        f.write(f"user{i}@example.com,User {i}\n")
open(f"{out}/wan-body.txt", "w").write("Hello {{.name}},\n\n" + "herald wan test line of text, seventy characters long, more or less..\n" * 27)
PY

now() { date +%s.%N; }
echo "rtt_ms,connections,tool,messages,seconds,msgs_per_s" > "$OUT/wan.csv"
for rtt in 30 100; do
  half=$((rtt / 2))
  curl -sf -X DELETE "$API/proxies/wan/toxics/down" >/dev/null 2>&1 || true
  curl -sf -X DELETE "$API/proxies/wan/toxics/up" >/dev/null 2>&1 || true
  curl -sf -X POST "$API/proxies/wan/toxics" -d "{\"name\":\"down\",\"type\":\"latency\",\"stream\":\"downstream\",\"attributes\":{\"latency\":$half}}" >/dev/null
  curl -sf -X POST "$API/proxies/wan/toxics" -d "{\"name\":\"up\",\"type\":\"latency\",\"stream\":\"upstream\",\"attributes\":{\"latency\":$half}}" >/dev/null
  for c in 1 3 16; do
    n=$((PER * c))
    [ "$n" -lt 100 ] && n=100
    s=$(now); /usr/sbin/smtp-source -d -s "$c" -m "$n" -l 2048 127.0.0.1:$PROXY_PORT >/dev/null; e=$(now)
    python3 -c "print('$rtt,$c,smtp-source,$n,%.3f,%.1f' % ($e-$s, $n/($e-$s)))" | tee -a "$OUT/wan.csv"
    head -n $((n + 1)) "$OUT/wan-recipients.csv" > "$OUT/wan-r.csv"
    for mode in plain pipelined; do
      pl=true; [ $mode = plain ] && pl=false
      cat > "$OUT/wan.toml" <<TOML
[campaign]
id = "wan"
from = "Bench <bench@example.com>"
subject = "WAN {{.name}}"
text = "wan-body.txt"
recipients = "wan-r.csv"
[queue]
path = "wan.db"
[[provider]]
name = "wan"
host = "127.0.0.1"
port = $PROXY_PORT
tls = "none"
connections = $c
per_connection = 100000
pipelining = $pl
TOML
      rm -f "$OUT/wan.db" "$OUT"/wan.db.outcomes.*
      s=$(now); "$OUT/herald" send --quiet --config "$OUT/wan.toml" >/dev/null; e=$(now)
      python3 -c "print('$rtt,$c,herald $mode,$n,%.3f,%.1f' % ($e-$s, $n/($e-$s)))" | tee -a "$OUT/wan.csv"
    done
  done
done

go run ./bench/plot -wan "$OUT/wan.csv" -out bench/wan.png
python3 - "$OUT/wan.csv" > "$OUT/wan.md" <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
by = collections.defaultdict(dict)
for r in rows:
    by[(int(r["rtt_ms"]), int(r["connections"]))][r["tool"]] = float(r["msgs_per_s"])
print("| RTT | connections | smtp-source | herald plain | herald pipelined | pipelined ÷ smtp-source |")
print("| --- | --- | --- | --- | --- | --- |")
for (rtt, c), t in sorted(by.items()):
    print(f"| {rtt} ms | {c} | {t['smtp-source']:.1f} | {t['herald plain']:.1f} | {t['herald pipelined']:.1f} | {t['herald pipelined']/t['smtp-source']:.2f}× |")
PY
cat "$OUT/wan.md"
{
  echo "## WAN profile (bench/wan.sh)"
  echo
  echo "A campaign through toxiproxy's latency toxic (half the RTT each way) to Postfix's smtp-sink,"
  echo "$PER messages per connection (at least 100), ~2 KB each. herald's figures are whole"
  echo "campaigns (CSV, queue, render, SMTP); smtp-source reuses its connections (-d)."
  echo
  cat "$OUT/wan.md"
  echo
  echo "![throughput against connections](wan.png)"
  echo
  echo "herald plain (pipelining = false) pays four round trips per message, like smtp-source; pipelined,"
  echo "it pays one: MAIL, RCPT and DATA go as one group, and the end of each message travels with the"
  echo "next envelope."
} | python3 bench/section.py wan
