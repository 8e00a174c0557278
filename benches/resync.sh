#!/usr/bin/env bash
# The resync after a failover, at size: a replica of a primary that is promoted (a new
# lineage) resyncs from the new primary's sequence 0; what it already holds byte for byte is
# neither verified nor stored again. Steps:
#   1. the primary of STORE (made by `cargo bench --bench cluster -- million --accounts N
#      --keep 1 --stop-after generate`, which prints the kept directory) starts; a replica
#      syncs from it, then both stop;
#   2. for each binary of BINS: the replica's directory is copied twice; one copy starts as a
#      primary without --primary (promoted: its own lineage), the other as a replica of it,
#      timed from its start: loading its store, then until it has taken every change of the
#      new primary's feed (stored, or skipped as held) and is at lag 0.
#
#   STORE=/path/.tmpXXXX benches/resync.sh
#   STORE=... BINS="target/release/nats-account-server /tmp/old-nas" benches/resync.sh   # A/B
#
# Prints per binary: load and resync seconds, the follower's CPU seconds for each, and its
# replica metrics (`nas_replica_feed_unchanged_total`: tokens skipped as held). Needs: curl,
# bc, a release build. Uses WORK (default: a temp dir beside STORE) for ~3 copies of the store.
set -euo pipefail
cd "$(dirname "$0")/.."

STORE=${STORE:?set STORE to a directory kept by the million benchmark}
BINS=${BINS:-target/release/nats-account-server}
WORK=${WORK:-$(mktemp -d "$(dirname "$STORE")/resync.XXXX")}
N=$(wc -l < "$STORE/keys.txt")
PORT=${PORT:-19290}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# shellcheck source=benches/at_size.sh
. benches/at_size.sh
fed() { # feed changes a replica on port $1 stored or skipped as held since it started
  curl -fs "http://127.0.0.1:$1/metrics" 2>/dev/null \
    | awk '/^nas_replica_applied_total\{source="feed"\}|^nas_replica_feed_unchanged_total/ {s += $2} END {print s + 0}'
}

# The primary, the first replica and the promoted one run the first binary; the follower each.
FIRST=$(echo "$BINS" | awk '{print $1}')
[ -x "$FIRST" ] || cargo build --release
echo "== resync after promotion: $N accounts; binaries: $BINS"
start "$FIRST" primary "$PORT" --data "$STORE/primary"
P=$!
wait_accounts "$PORT"
start "$FIRST" replica $((PORT + 1)) --data "$WORK/synced" --primary "http://127.0.0.1:$PORT"
R=$!
t0=$(date +%s.%N)
wait_accounts $((PORT + 1))
echo "initial sync of a fresh replica: $(echo "$(date +%s.%N) - $t0" | bc) s, replica CPU $(cpu $R) s"
kill -INT $R; wait $R || true
kill $P; wait $P || true

for BIN in $BINS; do
  rm -rf "$WORK/promoted" "$WORK/follower"
  cp -a "$WORK/synced" "$WORK/promoted"
  cp -a "$WORK/synced" "$WORK/follower"
  start "$FIRST" promoted $((PORT + 2)) --data "$WORK/promoted"
  PR=$!
  wait_accounts $((PORT + 2))
  t0=$(date +%s.%N)
  start "$BIN" follower $((PORT + 3)) --data "$WORK/follower" --primary "http://127.0.0.1:$((PORT + 2))"
  F=$!
  wait_accounts $((PORT + 3))
  t1=$(date +%s.%N)
  c1=$(cpu $F)
  # Done when every token of the new feed was taken, stored or skipped as held (a build
  # without the skip has no `feed_unchanged` counter: it stores them all), at lag 0.
  until [ "$(fed $((PORT + 3)))" -ge "$N" ] \
    && [ "$(ready_field $((PORT + 3)) lag_sequences)" = 0 ]; do sleep 0.1; done
  t2=$(date +%s.%N)
  echo "$BIN: load $(echo "$t1 - $t0" | bc) s (CPU $c1 s), resync $(echo "$t2 - $t1" | bc) s (CPU $(echo "$(cpu $F) - $c1" | bc) s)"
  curl -fs "http://127.0.0.1:$((PORT + 3))/metrics" | grep -E "^nas_replica_(feed_unchanged|resyncs|applied)" | sed 's/^/  /'
  kill -INT $F; wait $F || true
  kill $PR; wait $PR || true
done
