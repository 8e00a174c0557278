#!/usr/bin/env bash
# A replica's sync from scratch at size, A/B: for each round and each binary of BINS, that
# binary's primary starts on STORE's primary directory (made by `cargo bench --bench cluster --
# million --accounts N --keep 1 --stop-after generate`, which prints the kept directory), and a
# replica of the same binary syncs into an empty directory, timed from its start until its
# `/readyz` counts every account. Then, on the store that replica wrote: a restart of it as a
# primary (start to ready, peak and idle RSS). Binaries alternate within each round, so a
# machine that gets busier or quieter affects both alike.
#
#   STORE=/path/.tmpXXXX benches/sync.sh
#   STORE=... BINS="target/release/nats-account-server /tmp/old-nas" ROUNDS=3 benches/sync.sh
#
# Prints per run: the sync's wall time, the replica's peak RSS and CPU seconds, the primary's
# CPU seconds (its start included), the load average; then the restart figures. Needs: curl,
# bc, a release build. Uses WORK (default: a temp dir beside STORE) for one replica store.
set -euo pipefail
cd "$(dirname "$0")/.."

STORE=${STORE:?set STORE to a directory kept by the million benchmark}
BINS=${BINS:-target/release/nats-account-server}
ROUNDS=${ROUNDS:-1}
WORK=${WORK:-$(mktemp -d "$(dirname "$STORE")/sync.XXXX")}
mkdir -p "$WORK"
N=$(wc -l < "$STORE/keys.txt")
PORT=${PORT:-19290}
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# shellcheck source=benches/at_size.sh
. benches/at_size.sh

FIRST=$(echo "$BINS" | awk '{print $1}')
[ -x "$FIRST" ] || cargo build --release
echo "== replica sync from scratch: $N accounts; binaries: $BINS; rounds: $ROUNDS"
for round in $(seq "$ROUNDS"); do
  for BIN in $BINS; do
    start "$BIN" primary "$PORT" --data "$STORE/primary"
    P=$!
    wait_accounts "$PORT" $P
    rm -rf "$WORK/replica"
    t0=$(date +%s.%N)
    start "$BIN" replica $((PORT + 1)) --data "$WORK/replica" --primary "http://127.0.0.1:$PORT"
    R=$!
    wait_accounts $((PORT + 1)) $R
    t1=$(date +%s.%N)
    echo "round $round $BIN: sync $(echo "$t1 - $t0" | bc) s, replica peak $(mib $R VmHWM) MiB, replica CPU $(cpu $R) s, primary CPU $(cpu $P) s, load $(cut -d' ' -f1 /proc/loadavg)"
    kill -INT $R; wait $R || true
    kill $P; wait $P || true
    # The store the replica wrote, restarted as a primary.
    t0=$(date +%s.%N)
    start "$BIN" restarted $((PORT + 2)) --data "$WORK/replica"
    S=$!
    wait_accounts $((PORT + 2)) $S
    t1=$(date +%s.%N)
    sleep 2
    echo "  its store restarted: ready $(echo "$t1 - $t0" | bc) s, peak $(mib $S VmHWM) MiB, idle $(mib $S VmRSS) MiB"
    kill -INT $S; wait $S || true
  done
done
