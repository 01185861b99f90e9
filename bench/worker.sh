#!/usr/bin/env bash
# Static files through the whole server — listener, application pool
# queue, worker process (the w3wp role) with its metabase-driven pipeline —
# against nginx, side by side in one run, with wrk on loopback. Each server
# gets CPU 0 (inetsrv's listener and its worker share it), wrk gets CPU 1.
#   (a) 1 KB file, uncached: UriEnableCache 0, every request reaches the worker;
#   (b) 1 MB file, uncached;
#   (c) 1 KB file from the listener's response cache (the worker marks it
#       cacheable; the listener answers it without the worker).
# Targets: (a) and (b) >= 0.8x nginx's requests per second, (c) >= 1.3x.
#
# The machine's speed drifts, so the servers are measured in turns over
# several rounds and compared by their medians.
#
# Usage: bench/worker.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 64, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-64}
rounds=${3:-3}

need() { command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }; }; }
need nginx nginx
need wrk wrk
need taskset util-linux
need curl curl

cargo build -q --release -p inetsrv
bin=$PWD/target/release/inetsrv

work=$(mktemp -d)
# Workers may run as another user (www-data when this runs as root).
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port); uncached_port=$(free_port); cached_port=$(free_port)

mkdir -p "$work/www" "$work/nginx/logs"
head -c 1024 /dev/urandom | base64 -w 76 | head -c 1024 > "$work/www/small.txt"
head -c $((1024 * 1024)) /dev/urandom > "$work/www/large.bin"
chmod -R a+rX "$work/www"

cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    default_type application/octet-stream;
    types { text/plain txt; }
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
    }
}
CONF
taskset -c 0 nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
pids+=($!)

# start NAME PORT CACHE: an inetsrv state directory serving $work/www.
start() {
    local state="$work/$1"
    mkdir -p "$state"
    echo "{\"ListenAddresses\": [\"127.0.0.1\"], \"UriEnableCache\": $3}" > "$state/httpsys.json"
    "$bin" --state-dir "$state" mb set W3SVC/1/ServerBindings ":$2:" >/dev/null
    "$bin" --state-dir "$state" mb set W3SVC/1/ROOT/Path "$work/www" >/dev/null
    # Request logs off, as for nginx.
    "$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
    INETSRV_LOG=warn taskset -c 0 "$bin" --state-dir "$state" start --threads 1 >/dev/null &
    pids+=($!)
}
start uncached "$uncached_port" 0
start cached "$cached_port" 1
for p in "$nginx_port" "$uncached_port" "$cached_port"; do
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/small.txt" && break; sleep 0.1; done
done

# run NAME PORT PATH: prints "NAME rps p99"
run() {
    local out rps p99
    out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${seconds}s" --latency "http://127.0.0.1:$2$3")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$1 $rps $p99"
}

for p in "$nginx_port" "$uncached_port" "$cached_port"; do
    taskset -c 1 wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$p/small.txt" >/dev/null
done
echo "== wrk -t1 -c$conns, ${rounds} rounds of ${seconds}s each, servers on CPU 0, wrk on CPU 1 ($(nproc) CPUs)"
results=$(for _ in $(seq "$rounds"); do
    run nginx_1k "$nginx_port" /small.txt
    run inetsrv_1k "$uncached_port" /small.txt
    run nginx_1m "$nginx_port" /large.bin
    run inetsrv_1m "$uncached_port" /large.bin
    run inetsrv_1k_cached "$cached_port" /small.txt
done)
echo "$results" | awk '{printf "  %-18s %10s req/s   p99 %s\n", $1, $2, $3}'
echo "$results" | sort -k1,1 -k2,2n | awk '
    { v[$1] = v[$1] " " $2; n[$1]++ }
    function median(name,   a) { split(v[name], a, " "); return a[int((n[name] + 1) / 2)] }
    END {
        n1 = median("nginx_1k"); i1 = median("inetsrv_1k"); nm = median("nginx_1m"); im = median("inetsrv_1m"); c1 = median("inetsrv_1k_cached")
        printf "medians: 1 KB nginx %.0f, inetsrv %.0f, inetsrv cached %.0f; 1 MB nginx %.0f, inetsrv %.0f req/s\n", n1, i1, c1, nm, im
        printf "(a) 1 KB through the worker:  %.2fx nginx (target 0.80x): %s\n", i1/n1, (i1/n1 >= 0.8 ? "met" : "MISSED")
        printf "(b) 1 MB through the worker:  %.2fx nginx (target 0.80x): %s\n", im/nm, (im/nm >= 0.8 ? "met" : "MISSED")
        printf "(c) 1 KB from the cache:      %.2fx nginx (target 1.30x): %s\n", c1/n1, (c1/n1 >= 1.3 ? "met" : "MISSED")
    }'
