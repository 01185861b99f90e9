# Shared by the HTTP benchmarks (sourced, not run): installing the peer and
# the load generator, a work directory cleaned up on exit, free ports,
# waiting for servers, wrk runs and medians.
# The sourcing script sets `seconds` and `conns` before calling wrk_run.
#
# Where things run: servers on $server_cpus, wrk on $wrk_cpus with
# $wrk_threads threads, nginx with $nginx_workers workers. The default
# (one server CPU, wrk beside it) compares per-CPU cost; a script may set
# them before sourcing to show scaling.
server_cpus=${server_cpus:-0}
wrk_cpus=${wrk_cpus:-1}
wrk_threads=${wrk_threads:-1}
nginx_workers=${nginx_workers:-1}

# need COMMAND PACKAGE: installs PACKAGE (apt) when COMMAND is missing.
need() {
    command -v "$1" >/dev/null && return
    apt-get install -y "$2" >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}

# A temporary directory in $work, removed with every process in $pids on exit.
work=$(mktemp -d)
# nginx's workers (www-data when this runs as root) open the content by its
# path, so they need a way through $work; inetsrv's workers do not (they are
# handed the content directory), and inetsrv's state lives in $private,
# which stays 0700 as a home directory would.
chmod 755 "$work"
private="$work/private"
mkdir -m 700 "$private"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# site_state BIN STATE PORT ROOT: a state directory whose default site
# listens on 127.0.0.1:PORT (https on a free port) and serves ROOT.
site_state() {
    mkdir -p "$2"
    echo '{"ListenAddresses": ["127.0.0.1"]}' > "$2/httpsys.json"
    "$1" --state-dir "$2" mb set W3SVC/1/ServerBindings ":$3:" >/dev/null
    "$1" --state-dir "$2" mb set W3SVC/1/SecureBindings ":$(free_port):" >/dev/null
    "$1" --state-dir "$2" mb set W3SVC/1/ROOT/Path "$4" >/dev/null
}

# wait_up URL...: until each answers (10 s at most each).
wait_up() {
    for url in "$@"; do
        for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
    done
}

# wrk_warm URL...: a short unmeasured run against each.
wrk_warm() {
    for url in "$@"; do taskset -c "$wrk_cpus" wrk -t"$wrk_threads" -c"$conns" -d2s "$url" >/dev/null; done
}

# wrk_run NAME URL: prints "NAME requests-per-second p99".
wrk_run() {
    local out rps p99
    out=$(taskset -c "$wrk_cpus" wrk -t"$wrk_threads" -c"$conns" -d"${seconds}s" --latency "$2")
    # Errors are not speed: a run with failed answers says so.
    if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then
        echo "warning: $1: $(echo "$out" | grep 'Non-2xx\|Socket errors' | tr -s ' ' | tr '\n' ';')" >&2
    fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    echo "$1 $rps $p99"
}

# cpu_per_request LABEL URL ROOT_PID...: one wrk run of $seconds on URL;
# per process role under the roots (inetsrv's listener, worker and PHP
# processes; nginx, php-fpm), the user and system CPU and the context
# switches per request, from /proc (bench/proc_cpu.py).
cpu_per_request() {
    local label=$1 url=$2 requests
    shift 2
    python3 bench/proc_cpu.py snapshot "$@" > "$work/cpu_before"
    requests=$(taskset -c "$wrk_cpus" wrk -t"$wrk_threads" -c"$conns" -d"${seconds}s" "$url" |
        awk '/requests in/ {print $1}')
    python3 bench/proc_cpu.py snapshot "$@" > "$work/cpu_after"
    python3 bench/proc_cpu.py report "$label" "$work/cpu_before" "$work/cpu_after" "$requests"
}

# medians < "NAME rps p99" lines: prints each run, then "median NAME rps" lines.
medians() {
    local results
    results=$(cat)
    echo "$results" | awk '{printf "  %-18s %10s req/s   p99 %s\n", $1, $2, $3}'
    echo "$results" | sort -k1,1 -k2,2n | awk '
        { v[$1] = v[$1] " " $2; n[$1]++ }
        END { for (k in v) { split(v[k], a, " "); print "median", k, a[int((n[k] + 1) / 2)] } }'
}

# start_nginx PORT "EXTRA http-block directives": nginx with one worker on
# CPU 0 serving $work/www, tuned for static files (sendfile, nopush,
# keep-alive, no access log); its pid joins $pids.
start_nginx() {
    mkdir -p "$work/nginx/logs"
    cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $nginx_workers;
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
    $2
    server {
        listen 127.0.0.1:$1;
        root $work/www;
    }
}
CONF
    taskset -c "$server_cpus" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
    pids+=($!)
}
