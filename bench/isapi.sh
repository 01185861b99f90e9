#!/usr/bin/env bash
# An ISAPI extension against nginx, side by side in one run, with wrk on
# loopback: examples/isapi/hello.c (built with cc, mapped by ScriptMaps,
# run in the worker process for every request) against nginx answering
# the same bytes with `return 200`. Each server gets CPU 0 (inetsrv's
# listener and its worker share it), wrk gets CPU 1.
# Target: >= 0.8x nginx's requests per second. Also measured: examples/isapi/cached.c,
# whose answer (HSE_IO_CACHE_RESPONSE) the listener keeps, against nginx
# returning the same bytes, and bench/relay_floor.c, a C program of
# inetsrv's shape (a front process, a Unix socket, a back process; both on
# CPU 0) answering the same bytes: the rate the two-process design itself
# allows, so what inetsrv falls short of it is its own code. Then each
# one's CPU per request by process role (bench/proc_cpu.py).
#
# Usage: bench/isapi.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 64, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-64}
rounds=${3:-3}

. bench/lib.sh
need nginx nginx
need wrk wrk
need taskset util-linux
need curl curl
need cc gcc

if [ -z "${INETSRV_BIN:-}" ]; then
    cargo build -q --release -p inetsrv
fi
bin=${INETSRV_BIN:-$PWD/target/release/inetsrv}

# The module in a private directory, as a user builds it.
mkdir -p "$work/modules" "$work/www"
cc -O2 -shared -fPIC -I include -o "$work/modules/hello.so" examples/isapi/hello.c
cc -O2 -shared -fPIC -I include -o "$work/modules/cached.so" examples/isapi/cached.c
# No chmod: the service hands the modules and the content to the workers.

port=$(free_port); nginx_port=$(free_port)
state="$private/state"
site_state "$bin" "$state" "$port" "$work/www"
"$bin" --state-dir "$state" mb set W3SVC/1/ROOT/ScriptMaps ".hello,$work/modules/hello.so,1" ".cached,$work/modules/cached.so,1" >/dev/null
"$bin" --state-dir "$state" mb set W3SVC/WebSvcExtRestrictionList "0,*.dll" "1,$work/modules/hello.so,0,HELLO,Hello" "1,$work/modules/cached.so,0,CACHED,Cached" >/dev/null
# Request logs off, as for nginx.
"$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
INETSRV_LOG=warn taskset -c "$server_cpus" "$bin" --state-dir "$state" start >/dev/null &
inetsrv_pid=$!
pids+=($!)
wait_up "http://127.0.0.1:$port/x.hello"

# nginx answers exactly what the extension answers to wrk's request (no
# User-Agent).
body=$(curl -s -A "" "http://127.0.0.1:$port/x.hello")
[ -n "$body" ] || { echo "the extension did not answer" >&2; exit 1; }
escaped=$(printf '%s' "$body" | sed 's/\\/\\\\/g; s/"/\\"/g')
cached_body=$(curl -s -A "" "http://127.0.0.1:$port/x.cached")
[ -n "$cached_body" ] || { echo "the caching extension did not answer" >&2; exit 1; }
mkdir -p "$work/nginx/logs"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $nginx_workers;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            default_type "text/plain; charset=utf-8";
            return 200 "$escaped\n";
        }
        location = /x.cached {
            default_type "text/plain; charset=utf-8";
            return 200 "$cached_body\n";
        }
    }
}
CONF
taskset -c "$server_cpus" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
pids+=($!)
wait_up "http://127.0.0.1:$nginx_port/x.hello"
[ "$(curl -s -A "" "http://127.0.0.1:$nginx_port/x.hello")" = "$body" ] ||
    { echo "nginx does not answer the same bytes" >&2; exit 1; }

[ "$(curl -s -A "" "http://127.0.0.1:$nginx_port/x.cached")" = "$cached_body" ] ||
    { echo "nginx does not answer the cached extension's bytes" >&2; exit 1; }

# The yardstick of the two-process shape, answering the same bytes.
floor_port=$(free_port)
cc -O2 -o "$work/relay_floor" bench/relay_floor.c
taskset -c "$server_cpus" "$work/relay_floor" "$floor_port" "$body" &
floor_pid=$!
pids+=($!)
wait_up "http://127.0.0.1:$floor_port/x.hello"
[ "$(curl -s -A "" "http://127.0.0.1:$floor_port/x.hello")" = "$body" ] ||
    { echo "relay_floor does not answer the same bytes" >&2; exit 1; }

wrk_warm "http://127.0.0.1:$floor_port/x.hello" "http://127.0.0.1:$nginx_port/x.hello" "http://127.0.0.1:$port/x.hello" "http://127.0.0.1:$port/x.cached"
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "== wrk -t$wrk_threads -c$conns, ${rounds} rounds of ${seconds}s each, servers on CPU $server_cpus, wrk on CPU $wrk_cpus"
echo "== the answer ($(printf '%s\n' "$body" | wc -c) bytes): $body"
results=$(for _ in $(seq "$rounds"); do
    wrk_run nginx_return "http://127.0.0.1:$nginx_port/x.hello"
    wrk_run inetsrv_isapi "http://127.0.0.1:$port/x.hello"
    wrk_run relay_floor "http://127.0.0.1:$floor_port/x.hello"
    wrk_run nginx_return_2 "http://127.0.0.1:$nginx_port/x.cached"
    wrk_run inetsrv_cached "http://127.0.0.1:$port/x.cached"
done | medians)
echo "$results" | grep -v '^median'
echo "$results" | awk '
    $1 == "median" { m[$2] = $3 }
    END {
        n = m["nginx_return"]; i = m["inetsrv_isapi"]
        n2 = m["nginx_return_2"]; c = m["inetsrv_cached"]
        printf "medians: nginx %.0f, inetsrv with the ISAPI extension %.0f req/s\n", n, i
        printf "ISAPI hello world: %.2fx nginx (target 0.80x): %s\n", i/n, (i/n >= 0.8 ? "met" : "MISSED")
        f = m["relay_floor"]
        printf "the two-process floor (bench/relay_floor.c): %.0f req/s, %.2fx nginx; inetsrv reaches %.2fx of it\n", f, f/n, i/f
        printf "an extension answering with HSE_IO_CACHE_RESPONSE (repeats answered from the listener cache): %.0f req/s, %.2fx nginx (%.0f)\n", c, c/n2, n2
    }'
# Where each one's CPU goes, role by role: what to work on next.
echo "== where the CPU goes (one ${seconds}s run each, from /proc)"
cpu_per_request "nginx return 200" "http://127.0.0.1:$nginx_port/x.hello" "$nginx_pid"
cpu_per_request "relay_floor" "http://127.0.0.1:$floor_port/x.hello" "$floor_pid"
cpu_per_request "inetsrv with the ISAPI extension" "http://127.0.0.1:$port/x.hello" "$inetsrv_pid"
