# Shared parts of the bench scripts (bash bench/campaign.sh, bash bench/run.sh):
# tools, the 100,000-recipient campaign files, the servers, and one function
# per measured tool. Source it from the repository root with OUT, PORT, N
# and C set. Every run function prints "seconds,msgs_per_s,peak_rss_mb".
# shellcheck shell=bash

# need_tools installs Postfix's smtp-sink/smtp-source and redis-server
# where missing (Debian), and builds herald into $OUT/herald.
need_tools() {
  if [ ! -x /usr/sbin/smtp-sink ] || ! command -v redis-server >/dev/null || [ ! -x /usr/bin/time ]; then
    apt-get update -qq
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix redis-server time >/dev/null
  fi
  mkdir -p "$OUT"
  go build -o "$OUT/herald" ./cmd/herald
  HERALD="$OUT/herald"
}

now() { date +%s.%N; }
# peak FILE: the peak RSS in MB from /usr/bin/time -v's output.
peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }
# cpu FILE...: the CPU seconds (user + system) that /usr/bin/time -v
# reported in the files, summed.
cpu() { awk '/User time|System time/ {s += $NF} END {printf "%.3f", s}' "$@"; }
# redis_cpu: redis-server's CPU seconds so far ($REDIS_PID; utime + stime).
redis_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$REDIS_PID/stat"; }
# rate_row START END MESSAGES RSS: "seconds,msgs_per_s,rss".
rate_row() { python3 -c "print('%.3f,%.0f,%s' % ($2-$1, $3/($2-$1), '$4'))"; }

# campaign_files: $N recipients and a ~2 KB message; bench.toml (embedded
# queue), bench-redis.toml (Redis queue on $REDIS_SOCK), C connections.
campaign_files() {
  REDIS_SOCK=${REDIS_SOCK:-$PWD/$OUT/redis.sock}
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
  local campaign='[campaign]
id = "bench"
from = "Bench <bench@example.com>"
subject = "Bench {{.name}}"
text = "body.txt"
recipients = "recipients.csv"'
  { echo "$campaign"; printf '[queue]\npath = "bench.db"\n'; provider "$C"; } > "$OUT/bench.toml"
  { echo "$campaign"; redis_queue; provider "$C"; } > "$OUT/bench-redis.toml"
}
provider() { # $1: connections
  printf '[[provider]]\nname = "sink"\nhost = "127.0.0.1"\nport = %s\ntls = "none"\nconnections = %s\nper_connection = 1000000\n' "$PORT" "$1"
}
# The benchmarks' Redis keeps nothing (flushed between runs): volatile says so.
redis_queue() { printf '[queue]\nbackend = "redis"\nurl = "unix://%s"\nvolatile = true\n' "$REDIS_SOCK"; }

# start_smtp_sink PORT: Postfix's smtp-sink in the background ($SINK_PID).
start_smtp_sink() {
  /usr/sbin/smtp-sink -u root -c "127.0.0.1:$1" 2048 >/dev/null 2>&1 &
  SINK_PID=$!
  wait_port "$1"
}
# start_redis: a redis-server on $REDIS_SOCK, no persistence ($REDIS_PID).
start_redis() {
  redis-server --port 0 --unixsocket "$REDIS_SOCK" --dir "$OUT" --save "" --appendonly no >/dev/null &
  REDIS_PID=$!
  for _ in $(seq 50); do redis-cli -s "$REDIS_SOCK" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; }
flushredis() { redis-cli -s "$REDIS_SOCK" flushall >/dev/null; }

# run_source MESSAGES CONNECTIONS [smtp-source flags]: smtp-source over
# reused connections (-d) to the sink on $PORT.
run_source() {
  local m=$1 c=$2 s e
  shift 2
  s=$(now)
  /usr/bin/time -v /usr/sbin/smtp-source -d -s "$c" -m "$m" -l 2048 "$@" "127.0.0.1:$PORT" 2> "$OUT/time-source.txt" >/dev/null
  e=$(now)
  rate_row "$s" "$e" "$m" "$(peak "$OUT/time-source.txt")"
}

# run_send_embedded / run_send_redis: herald send, the whole campaign.
run_send_embedded() {
  rm -f "$OUT/bench.db" "$OUT"/bench.db.outcomes.*
  local s e
  s=$(now)
  /usr/bin/time -v "$HERALD" send --quiet --config "$OUT/bench.toml" > "$OUT/herald-send.txt" 2> "$OUT/time-herald.txt"
  e=$(now)
  rate_row "$s" "$e" "$N" "$(peak "$OUT/time-herald.txt")"
}
run_send_redis() {
  flushredis
  local s e
  s=$(now)
  /usr/bin/time -v "$HERALD" send --quiet --config "$OUT/bench-redis.toml" > "$OUT/herald-send-redis.txt" 2> "$OUT/time-herald-redis.txt"
  e=$(now)
  rate_row "$s" "$e" "$N" "$(peak "$OUT/time-herald-redis.txt")"
}

# run_workers W: herald enqueue, then W workers sharing C connections (on
# Redis a provider's connections are a limit for all processes together:
# each worker's configuration says C, and together they open at most C),
# stopped with SIGTERM once the campaign is complete; the RSS is the
# largest worker's.
run_workers() {
  local n=$1 per=$C s e pids=() i r rss=0 open=1
  { redis_queue; provider "$per"; } > "$OUT/worker-$per.toml"
  flushredis
  s=$(now)
  /usr/bin/time -v "$HERALD" enqueue --config "$OUT/bench-redis.toml" >/dev/null 2> "$OUT/time-enqueue.txt"
  for i in $(seq "$n"); do
    /usr/bin/time -v "$HERALD" worker --quiet --config "$OUT/worker-$per.toml" > "$OUT/worker$i.txt" 2> "$OUT/time-worker$i.txt" &
    pids+=($!)
  done
  # Done when no job is pending, leased or waiting to retry: the campaign's
  # counters (fields c1, c2, c4 of its meta hash; see queue/redisq), read
  # with redis-cli, which costs far less than herald status.
  while [ "$open" != 0 ]; do
    sleep 0.05
    open=$(redis-cli -s "$REDIS_SOCK" hmget 'herald:{bench}:meta' c1 c2 c4 | awk '{n += $1} END {print n + 0}')
  done
  e=$(now)
  # $pids are the time(1) processes: signal the workers they run.
  for i in "${pids[@]}"; do pkill -TERM -P "$i" || true; done
  wait "${pids[@]}" 2>/dev/null || true
  for i in $(seq "$n"); do r=$(peak "$OUT/time-worker$i.txt"); [ "$r" -gt "$rss" ] && rss=$r; done
  rate_row "$s" "$e" "$N" "$rss"
}
