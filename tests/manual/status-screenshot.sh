#!/usr/bin/env bash
# A screenshot of the status page (`/`) for a person to look at. Not part of the test suite:
# the page is static HTML (no script, no external asset), so what a browser renders is the text
# the suite already checks (tests/accounts.rs); this shows how it looks.
#
#   tests/manual/status-screenshot.sh [OUT.png]        (default: ./status-page.png)
#
# Builds the server (debug), starts it on a free loopback port with the demo operator
# (deploy/demo.toml, in-memory store), posts the demo account so the page has something to
# count, and has headless Chromium render the page. Needs chromium (apt-get install chromium),
# curl and python3. The server and its temp dir are removed on exit.
set -euo pipefail

out="$(realpath -m "${1:-status-page.png}")"
cd "$(dirname "$0")/../.."

browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  echo "chromium is not installed (apt-get install chromium)" >&2
  exit 1
fi

cargo build --quiet --bin nats-account-server
bin="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/nats-account-server"

tmp="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
"$bin" -c deploy/demo.toml --memory --listen "127.0.0.1:$port" >"$tmp/server.log" 2>&1 &
server=$!

# Wait (at most 20 s) until it answers, or say why it did not.
for _ in $(seq 100); do
  curl -sf -o /dev/null "$url/healthz" && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -sf -o /dev/null "$url/healthz" || { cat "$tmp/server.log" >&2; exit 1; }

account="$(python3 -c 'import json; print(json.load(open("deploy/demo/demo-keys.json"))["demo_account"]["public"])')"
curl -sf -o /dev/null --data-binary @deploy/demo/demo-account.jwt "$url/jwt/v1/accounts/$account"

"$browser" --headless --no-sandbox --disable-gpu --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$tmp/profile" --window-size=1000,700 \
  --screenshot="$out" "$url/" >"$tmp/browser.log" 2>&1 || { cat "$tmp/browser.log" >&2; exit 1; }
echo "wrote $out"
