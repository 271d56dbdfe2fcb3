#!/usr/bin/env bash
# Newsletter hygiene end to end on this machine (no Redis, nothing outside
# it): a DKIM-signed campaign with one-click unsubscribe and VERP goes to
# `herald sink`; `herald serve` answers the List-Unsubscribe link of one
# message (a POST, as Gmail's button sends it); the next campaign from the
# same domain skips that recipient and the one put on the list by hand.
#
#   bash examples/hygiene.sh
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o herald ./cmd/herald
D=examples/hygiene
rm -rf "$D" && mkdir -p "$D"

openssl genpkey -algorithm ed25519 -out "$D/dkim.pem" 2>/dev/null
export HERALD_UNSUBSCRIBE_SECRET=$(head -c 32 /dev/urandom | base64)
cat > "$D/recipients.csv" <<'CSV'
email,name
ann@example.com,Ann
bob@example.com,Bob
cy@example.org,Cy
dee@example.net,Dee
CSV
cat > "$D/body.txt" <<'TXT'
Hello {{.name}},

This month's news from Example.

To stop these messages: {{unsubscribe_url}}
TXT
cat > "$D/herald.toml" <<'TOML'
[campaign]
id = "news-1"
from = "Example News <news@example.com>"
subject = "News for {{.name}}"
text = "body.txt"
recipients = "recipients.csv"
list_id = "Example News <news.example.com>"
bounce_address = "bounces@example.com"
verp = true

[unsubscribe]
url = "https://news.example.com/unsubscribe"
mailto = "unsubscribe@example.com"
secret_env = "HERALD_UNSUBSCRIBE_SECRET"

[dkim]
domain = "example.com"
selector = "demo"
private_key = "dkim.pem"

[queue]
path = "herald.db"

[[provider]]
name = "local"
host = "127.0.0.1"
port = 2525
tls = "none"
TOML

./herald sink --listen 127.0.0.1:2525 --maildir "$D/maildir" > /dev/null 2>&1 &
sink=$!
./herald serve --config "$D/herald.toml" --listen 127.0.0.1:8025 2> "$D/serve.log" &
serve=$!
trap 'kill $sink $serve 2>/dev/null; wait $sink $serve 2>/dev/null || true' EXIT
for port in 2525 8025; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

echo "== campaign news-1"
./herald send --config "$D/herald.toml" --quiet || true
msg=$(grep -l "^To: <ann@example.com>" "$D"/maildir/new/* | head -1)
# headers FILE: the message's header lines, each unfolded onto one line.
headers() { awk '/^\r?$/ {exit} /^[ \t]/ {sub(/^[ \t]+/, " "); h = h $0; next} {if (h != "") print h; h = $0} END {if (h != "") print h}' "$1" | tr -d '\r'; }
echo
echo "== the headers herald added to ann@example.com's message"
headers "$msg" | grep -E "^(DKIM-Signature|List-Unsubscribe|List-Unsubscribe-Post|List-Id|X-Herald-Campaign):" | cut -c1-160
echo "   (envelope sender, VERP: bounces+news-1+ann=example.com@example.com)"

link=$(headers "$msg" | grep -m1 "^List-Unsubscribe:" | grep -o 'https://[^>]*')
local_link=${link/https:\/\/news.example.com/http:\/\/127.0.0.1:8025}
echo
echo "== ann presses Unsubscribe in her mail client: POST $local_link"
curl -s -o /dev/null -w "   herald serve answered %{http_code}\n" -X POST -d "List-Unsubscribe=One-Click" "$local_link"
echo "== a forged link is refused:"
curl -s -o /dev/null -w "   herald serve answered %{http_code}\n" -X POST -d "List-Unsubscribe=One-Click" "${local_link%?????}AAAAA"
./herald suppress add --config "$D/herald.toml" --reason "asked by phone" bob@example.com
echo
echo "== herald suppress list"
sleep 2.5 # herald serve's journal reaches the store within seconds once it is free
./herald suppress list --config "$D/herald.toml"

sed -i 's/^id = "news-1"/id = "news-2"/' "$D/herald.toml"
echo
echo "== campaign news-2 from the same domain"
./herald send --config "$D/herald.toml" --quiet || true
echo "   ann received $(grep -l '^To: <ann@example.com>' "$D"/maildir/new/* | wc -l) message(s) in all, bob $(grep -l '^To: <bob@example.com>' "$D"/maildir/new/* | wc -l)"
