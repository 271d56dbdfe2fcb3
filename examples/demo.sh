#!/usr/bin/env bash
# Runs the example campaign end to end on this machine: builds herald,
# starts `herald sink` on 127.0.0.1:2525 (writing every message to
# examples/maildir), sends the campaign of config.toml to it, and prints what
# the sink received. No Redis, no external service.
set -euo pipefail
cd "$(dirname "$0")/.."

go build -o herald ./cmd/herald

rm -f herald.db herald.db.outcomes.*   # a fresh demo each time; a real campaign resumes
rm -rf examples/maildir
./herald sink --listen 127.0.0.1:2525 --maildir examples/maildir --stats examples/maildir/stats.json &
sink=$!
trap 'kill $sink 2>/dev/null; wait $sink 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/2525) 2>/dev/null && break
  sleep 0.1
done

echo "== preview of the first recipient's message"
./herald preview --config config.toml --row 1 > examples/maildir/preview.eml
head -20 examples/maildir/preview.eml
echo "..."
echo
echo "== sending"
status=0
./herald send --config config.toml || status=$?
echo
echo "== the sink received $(ls examples/maildir/new | wc -l) messages (examples/maildir/new)"
echo "== the first lines of: herald report --config config.toml"
./herald report --config config.toml > examples/maildir/report.csv
head -4 examples/maildir/report.csv
# The example CSV holds a bad address, a duplicate and a short row on
# purpose: they were reported above with their line numbers and not sent.
exit $status
