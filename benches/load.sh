#!/usr/bin/env bash
# Read throughput, side by side: nats-account-server vs nginx serving the same JWTs as static
# files under the same URLs (GET /jwt/v1/accounts/<random key of ACCOUNTS>), each pinned to
# one core (SERVER_CPU; our server with http.workers = 1, nginx with 1 worker), wrk pinned to
# the other core (CLIENT_CPU). Rounds alternate which server goes first.
#
#   benches/load.sh                     # defaults below; see benches/BENCHMARKS.md
#   ROUNDS=5 DURATION=20 benches/load.sh
#
# Prints per run: requests/s, p50/p99 latency, server CPU seconds (utime+stime from
# /proc/<pid>/stat) and requests per server CPU-second; then medians and the ratio to nginx.
# Needs: cargo, wrk, nginx (/usr/sbin/nginx), taskset, curl. Everything binds 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

ACCOUNTS=${ACCOUNTS:-10000}
DURATION=${DURATION:-10}       # seconds per measured wrk run
WARMUP=${WARMUP:-2}            # seconds of unmeasured wrk before each server's first round
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-5}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
WRK=${WRK:-$(command -v wrk || echo /usr/bin/wrk)}
LUA=$PWD/benches/random_get.lua

for tool in "$WRK" "$NGINX" taskset curl cargo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "load.sh: $tool is required" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/nas-load.XXXXXX)
SERVER_PID=""
NGINX_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+)
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_http() { # url pid
  for _ in $(seq 1 500); do
    curl -fs -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.02
  done
  return 1
}

cpu_ticks() { # pid...: utime+stime of each, summed (fields 14 and 15 of /proc/<pid>/stat)
  local t=0 p
  for p in "$@"; do
    t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)

echo "== read throughput: GET /jwt/v1/accounts/<random of $ACCOUNTS>, servers on cpu $SERVER_CPU, wrk on cpu $CLIENT_CPU"
echo "machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "building (cargo bench --bench cluster: release profile) and minting $ACCOUNTS accounts…"
cargo bench -q --bench cluster -- mint --out "$WORK" --count "$ACCOUNTS" | grep -v '^$'
# SERVER_BIN: another build of the server (an A/B against nginx in the same harness).
SERVER=${SERVER_BIN:-$(cat "$WORK/server.path")}
echo "server: $SERVER"
TOOL=$(cat "$WORK/tool.path")
# nginx started as root serves as "nobody": make the tree readable.
chmod -R a+rX "$WORK"

# --- nats-account-server, one core, one HTTP worker
PORT_S=$(free_port)
cat >"$WORK/server.toml" <<EOF
operatorjwtpath = "$WORK/operator.jwt"
[http]
host = "127.0.0.1"
port = $PORT_S
workers = 1
[store]
data = "$WORK/data"
EOF
taskset -c "$SERVER_CPU" "$SERVER" -c "$WORK/server.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_http "http://127.0.0.1:$PORT_S/healthz" "$SERVER_PID" || { cat "$WORK/server.log"; exit 1; }
"$TOOL" post --bench --url "http://127.0.0.1:$PORT_S" --dir "$WORK" --clients 8

# --- nginx, one worker on the same core, same files under the same URLs
PORT_N=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    open_file_cache max=20000 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    types { }
    default_type application/jwt;
    server {
        listen 127.0.0.1:$PORT_N;
        root $WORK/www;
        location /jwt/v1/accounts/ {
            add_header Cache-Control "max-age=60, stale-while-revalidate=3600, stale-if-error=3600";
        }
    }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!
KEY=$(head -1 "$WORK/keys.txt")
wait_http "http://127.0.0.1:$PORT_N/jwt/v1/accounts/$KEY" "$NGINX_PID" || { cat "$WORK/nginx/error.log"; exit 1; }
NGINX_PIDS="$NGINX_PID $(cat "/proc/$NGINX_PID/task/$NGINX_PID/children")"

# Both must serve the same bytes.
cmp -s <(curl -fs "http://127.0.0.1:$PORT_S/jwt/v1/accounts/$KEY") <(curl -fs "http://127.0.0.1:$PORT_N/jwt/v1/accounts/$KEY") \
  || { echo "load.sh: the two servers answer differently for $KEY" >&2; exit 1; }

run() { # name port duration pids... → prints a row, appends "rps p50 p99 req_per_cpu_s" to $WORK/<name>.runs
  local name=$1 port=$2 secs=$3; shift 3
  local before after out line
  before=$(cpu_ticks "$@")
  out=$(taskset -c "$CLIENT_CPU" "$WRK" -t1 -c"$CONNECTIONS" -d"${secs}s" -s "$LUA" "http://127.0.0.1:$port" -- "$WORK/keys.txt")
  after=$(cpu_ticks "$@")
  line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; return 1; }
  eval "$(sed 's/^RESULT //' <<<"$line" | tr ' ' '\n' | sed 's/^/local w_/')"
  if [ "$w_non2xx" != 0 ] || [ "$w_sock_errors" != 0 ]; then
    echo "load.sh: $name: $w_non2xx non-2xx answers, $w_sock_errors socket errors" >&2
    return 1
  fi
  local cpu
  cpu=$(awk -v t=$((after - before)) -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }')
  local per_cpu
  per_cpu=$(awk -v r="$w_requests" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.0f", r / c; else print "n/a" }')
  [ "$name" = warmup ] && return 0
  printf "%-22s %10s %9s %9s %9s %8s %14s\n" "$name" "$w_rps" "$((w_p50_us))" "$((w_p90_us))" "$((w_p99_us))" "$cpu" "$per_cpu"
  echo "$w_rps $w_p50_us $w_p99_us $per_cpu" >>"$WORK/$name.runs"
}

echo "warm-up (${WARMUP}s each)…"
run warmup "$PORT_N" "$WARMUP" $NGINX_PIDS
run warmup "$PORT_S" "$WARMUP" "$SERVER_PID"
printf "%-22s %10s %9s %9s %9s %8s %14s\n" "run (${DURATION}s, ${CONNECTIONS} conns)" "req/s" "p50 µs" "p90 µs" "p99 µs" "cpu s" "req/cpu-s"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then
    run nginx "$PORT_N" "$DURATION" $NGINX_PIDS
    run nats-account-server "$PORT_S" "$DURATION" "$SERVER_PID"
  else
    run nats-account-server "$PORT_S" "$DURATION" "$SERVER_PID"
    run nginx "$PORT_N" "$DURATION" $NGINX_PIDS
  fi
done

median() { # column file
  awk -v c="$1" '{print $c}' "$2" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}
echo
echo "medians over $ROUNDS rounds:"
printf "%-22s %10s %9s %9s %14s\n" "server" "req/s" "p50 µs" "p99 µs" "req/cpu-s"
for name in nginx nats-account-server; do
  printf "%-22s %10.0f %9.0f %9.0f %14.0f\n" "$name" "$(median 1 "$WORK/$name.runs")" "$(median 2 "$WORK/$name.runs")" \
    "$(median 3 "$WORK/$name.runs")" "$(median 4 "$WORK/$name.runs")"
done
ours=$(median 1 "$WORK/nats-account-server.runs")
theirs=$(median 1 "$WORK/nginx.runs")
ours_cpu=$(median 4 "$WORK/nats-account-server.runs")
theirs_cpu=$(median 4 "$WORK/nginx.runs")
awk -v a="$ours" -v b="$theirs" -v c="$ours_cpu" -v d="$theirs_cpu" 'BEGIN {
  printf "ratio to nginx: %.2fx requests/s, %.2fx requests per CPU-second (goal: requests/s >= 1.00x)\n", a / b, c / d
  printf "RESULT read rps=%.0f nginx_rps=%.0f ratio=%.3f cpu_ratio=%.3f\n", a, b, a / b, c / d
}'
