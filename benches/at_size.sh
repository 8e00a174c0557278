# Shell helpers of the benchmarks that run our servers on a store kept by the million
# benchmark (benches/sync.sh, benches/resync.sh); sourced, not run. The sourcing script sets
# STORE (the kept directory), WORK (logs and copies), N (its accounts) and PIDS (an array).

start() { # BINARY NAME PORT ARGS... -> starts a server, its pid in $! and PIDS
  local bin=$1 name=$2 port=$3
  shift 3
  "$bin" --operator "$STORE/operator.jwt" --listen "127.0.0.1:$port" "$@" \
    > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
ready_field() { # PORT FIELD -> the field of the server's /readyz
  curl -fs "http://127.0.0.1:$1/readyz" 2>/dev/null | grep -o "\"$2\":[a-z0-9]*" | head -1 | cut -d: -f2
}
wait_accounts() { # PORT [PID]: until the server counts N accounts; fails if PID exits
  until [ "$(ready_field "$1" accounts)" = "$N" ]; do
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
      echo "server on port $1 exited; see $WORK" >&2
      exit 1
    fi
    sleep 0.05
  done
}
cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; } # PID -> CPU seconds
mib() { echo $(( $(awk "/^$2:/ {print \$2}" "/proc/$1/status") / 1024 )); } # PID FIELD -> MiB
