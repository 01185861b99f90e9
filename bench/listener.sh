#!/usr/bin/env bash
# The listener against nginx, side by side in one run, with wrk on
# loopback: the same small file, one server core each (CPU 0), wrk on
# CPU 1.
#   (a) a cached response: the listener answers from its response cache;
#   (b) a response made by a separate process through httpapi (the
#       serve_file example), listener and process sharing CPU 0.
# Targets: (a) >= 1.3x nginx's requests per second, (b) >= 0.8x.
#
# The machine's speed drifts, so the three servers are measured in turns
# over several rounds and compared by their medians.
#
# Usage: bench/listener.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 64, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-64}
rounds=${3:-3}

. bench/lib.sh
need nginx nginx
need wrk wrk
need taskset util-linux

cargo build -q --release -p inetsrv
cargo build -q --release -p httpapi --examples
bin=target/release

nginx_port=$(free_port); cached_port=$(free_port); queued_port=$(free_port)

mkdir -p "$work/www" "$private/state" "$work/nginx/logs"
# A small page, about the size of nginx's own welcome page.
python3 - "$work/www/index.html" <<'PY'
import sys
body = "<!DOCTYPE html>\n<html><head><title>bench</title></head><body>\n" + "<p>inetsrv listener benchmark page.</p>\n" * 14 + "</body></html>\n"
open(sys.argv[1], "w").write(body)
PY
size=$(stat -c %s "$work/www/index.html")

start_nginx "$nginx_port" "open_file_cache max=100 inactive=60s; default_type text/html;"

echo '{"ListenAddresses": ["127.0.0.1"]}' > "$private/state/httpsys.json"
INETSRV_LOG=warn taskset -c 0 "$bin/inetsrv" --state-dir "$private/state" start --threads 1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$private/state/run/httpapi.sock" ] && break; sleep 0.1; done
taskset -c 0 "$bin/examples/serve_file" --socket "$private/state/run/httpapi.sock" --port "$cached_port" --file "$work/www/index.html" --cache >/dev/null &
pids+=($!)
taskset -c 0 "$bin/examples/serve_file" --socket "$private/state/run/httpapi.sock" --port "$queued_port" --file "$work/www/index.html" >/dev/null &
pids+=($!)
urls=("http://127.0.0.1:$nginx_port/index.html" "http://127.0.0.1:$cached_port/index.html" "http://127.0.0.1:$queued_port/index.html")
wait_up "${urls[@]}"
wrk_warm "${urls[@]}"
echo "== ${size}-byte page, wrk -t1 -c$conns, ${rounds} rounds of ${seconds}s each, servers on CPU 0, wrk on CPU 1 ($(nproc) CPUs)"
results=$(for _ in $(seq "$rounds"); do
    wrk_run nginx "${urls[0]}"
    wrk_run inetsrv_cached "${urls[1]}"
    wrk_run inetsrv_httpapi "${urls[2]}"
done | medians)
echo "$results" | grep -v '^median'
echo "$results" | awk '
    $1 == "median" { m[$2] = $3 }
    END {
        nm = m["nginx"]; cm = m["inetsrv_cached"]; qm = m["inetsrv_httpapi"]
        printf "medians: nginx %.0f, inetsrv cached %.0f, inetsrv through httpapi %.0f req/s\n", nm, cm, qm
        printf "(a) cached response:   %.2fx nginx (target 1.30x): %s\n", cm/nm, (cm/nm >= 1.3 ? "met" : "MISSED")
        printf "(b) through httpapi:   %.2fx nginx (target 0.80x): %s\n", qm/nm, (qm/nm >= 0.8 ? "met" : "MISSED")
    }'
