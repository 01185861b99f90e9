#!/usr/bin/env bash
# Static files through the whole server — listener, application pool
# queue, worker process (the w3wp role) with its metabase-driven pipeline —
# against nginx, side by side in one run, with wrk on loopback. Each server
# gets CPU 0 (inetsrv's listener and its worker share it), wrk gets CPU 1.
#   (a) 1 KB file, uncached: UriEnableCache 0, every request reaches the worker;
#   (b) 1 MB file, uncached;
#   (c) 1 KB file from the listener's response cache (the worker marks it
#       cacheable; the listener answers it without the worker).
# Targets: (a) >= 0.8x nginx's requests per second, (b) >= 0.9x, (c) >= 1.5x.
#
# The machine's speed drifts, so the servers are measured in turns over
# several rounds and compared by their medians.
#
# With THREADS=2 it shows the scaling instead: the listener on two
# threads and nginx with two workers, servers and wrk (two threads) all
# sharing CPUs 0 and 1.
#
# Usage: [THREADS=2] bench/worker.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 64, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-64}
rounds=${3:-3}
threads=${THREADS:-1}
case "$threads" in
    1) ;;
    2) server_cpus=0,1 wrk_cpus=0,1 wrk_threads=2 nginx_workers=2 ;;
    *) echo "THREADS must be 1 or 2" >&2; exit 2 ;;
esac

. bench/lib.sh
need nginx nginx
need wrk wrk
need taskset util-linux
need curl curl

# INETSRV_BIN=PATH measures another build (an A/B against an older one).
if [ -z "${INETSRV_BIN:-}" ]; then
    cargo build -q --release -p inetsrv
fi
bin=${INETSRV_BIN:-$PWD/target/release/inetsrv}

nginx_port=$(free_port); uncached_port=$(free_port); cached_port=$(free_port)

mkdir -p "$work/www" "$work/nginx/logs"
head -c 1024 /dev/urandom | base64 -w 76 | head -c 1024 > "$work/www/small.txt"
head -c $((1024 * 1024)) /dev/urandom > "$work/www/large.bin"
chmod -R a+rX "$work/www"

start_nginx "$nginx_port" "default_type application/octet-stream; types { text/plain txt; }"

# start NAME PORT CACHE: an inetsrv state directory serving $work/www.
start() {
    local state="$private/$1"
    mkdir -p "$state"
    echo "{\"ListenAddresses\": [\"127.0.0.1\"], \"UriEnableCache\": $3}" > "$state/httpsys.json"
    "$bin" --state-dir "$state" mb set W3SVC/1/ServerBindings ":$2:" >/dev/null
    # Each instance its own https port (the first run binds :8443:).
    "$bin" --state-dir "$state" mb set W3SVC/1/SecureBindings ":$(free_port):" >/dev/null
    "$bin" --state-dir "$state" mb set W3SVC/1/ROOT/Path "$work/www" >/dev/null
    # Request logs off, as for nginx.
    "$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
    INETSRV_LOG=warn taskset -c "$server_cpus" "$bin" --state-dir "$state" start --threads "$threads" >/dev/null &
    pids+=($!)
}
start uncached "$uncached_port" 0
start cached "$cached_port" 1
wait_up "http://127.0.0.1:$nginx_port/small.txt" "http://127.0.0.1:$uncached_port/small.txt" "http://127.0.0.1:$cached_port/small.txt"
wrk_warm "http://127.0.0.1:$nginx_port/small.txt" "http://127.0.0.1:$uncached_port/small.txt" "http://127.0.0.1:$cached_port/small.txt"
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "== wrk -t$wrk_threads -c$conns, ${rounds} rounds of ${seconds}s each, servers on CPU $server_cpus (inetsrv --threads $threads, nginx $nginx_workers worker(s)), wrk on CPU $wrk_cpus"
url() { echo "http://127.0.0.1:$1$2"; }
results=$(for _ in $(seq "$rounds"); do
    wrk_run nginx_1k "$(url "$nginx_port" /small.txt)"
    wrk_run inetsrv_1k "$(url "$uncached_port" /small.txt)"
    wrk_run nginx_1m "$(url "$nginx_port" /large.bin)"
    wrk_run inetsrv_1m "$(url "$uncached_port" /large.bin)"
    wrk_run inetsrv_1k_cached "$(url "$cached_port" /small.txt)"
done | medians)
echo "$results" | grep -v '^median'
echo "$results" | awk '
    $1 == "median" { m[$2] = $3 }
    END {
        n1 = m["nginx_1k"]; i1 = m["inetsrv_1k"]; nm = m["nginx_1m"]; im = m["inetsrv_1m"]; c1 = m["inetsrv_1k_cached"]
        printf "medians: 1 KB nginx %.0f, inetsrv %.0f, inetsrv cached %.0f; 1 MB nginx %.0f, inetsrv %.0f req/s\n", n1, i1, c1, nm, im
        printf "(a) 1 KB through the worker:  %.2fx nginx (target 0.80x): %s\n", i1/n1, (i1/n1 >= 0.8 ? "met" : "MISSED")
        printf "(b) 1 MB through the worker:  %.2fx nginx (target 0.90x): %s\n", im/nm, (im/nm >= 0.9 ? "met" : "MISSED")
        printf "(c) 1 KB from the cache:      %.2fx nginx (target 1.50x): %s\n", c1/n1, (c1/n1 >= 1.5 ? "met" : "MISSED")
    }'
