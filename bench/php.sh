#!/usr/bin/env bash
# PHP through FastCGI, side by side in one run, with wrk on loopback:
# inetsrv running Debian's php-cgi as a FastCGI application (inetsrv
# fastcgi add, MaxInstances N) against nginx with Debian's php-fpm
# (pm = static, the same N processes; neither side recycles them), both
# over Unix sockets, both on
# CPU 0 with their PHP processes; wrk on CPU 1.
# Pages: a PHP hello world, and a 20 KB page PHP builds (a table from a
# loop). Target: >= 1.0x nginx + php-fpm's requests per second. Then, for
# the hello world, each side's CPU per request by process role (user,
# system, context switches; bench/proc_cpu.py), to show where it goes.
#
# Usage: bench/php.sh [SECONDS] [CONNECTIONS] [ROUNDS] [PHP_PROCESSES]
#        (defaults 5, 32, 3, 4)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-32}
rounds=${3:-3}
children=${4:-4}

. bench/lib.sh
need nginx nginx
need wrk wrk
need taskset util-linux
need curl curl
need php-cgi php-cgi
need php-fpm8.2 php-fpm

if [ -z "${INETSRV_BIN:-}" ]; then
    cargo build -q --release -p inetsrv
fi
bin=${INETSRV_BIN:-$PWD/target/release/inetsrv}

# The pages, where both servers' PHP processes (www-data) can read them.
mkdir -p "$work/www"
cat > "$work/www/hello.php" <<'PHP'
<?php echo "Hello, world!\n";
PHP
cat > "$work/www/page.php" <<'PHP'
<?php
header('Content-Type: text/html; charset=utf-8');
echo "<!DOCTYPE html>\n<html><head><title>Orders</title></head><body><table>\n";
for ($i = 0; $i < 248; $i++) {
    printf("<tr><td>%05d</td><td>%s</td><td>%8.2f</td></tr>\n", $i, md5((string)$i), $i * 1.25);
}
echo "</table></body></html>\n";
PHP
chmod -R a+rX "$work/www"

port=$(free_port); nginx_port=$(free_port)
state="$private/state"
site_state "$bin" "$state" "$port" "$work/www"
# Processes are not recycled on either side (php-fpm: pm.max_requests = 0).
"$bin" --state-dir "$state" fastcgi add PHP --exe /usr/bin/php-cgi --extension .php --allow \
    --max-instances "$children" --instance-max-requests 10000000 >/dev/null
# Request logs off, as for nginx.
"$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
INETSRV_LOG=warn taskset -c "$server_cpus" "$bin" --state-dir "$state" start >/dev/null &
inetsrv_pid=$!
pids+=($!)
wait_up "http://127.0.0.1:$port/hello.php"

# php-fpm: pm = static with the same number of processes, on a Unix socket.
mkdir -p "$work/fpm"
cat > "$work/fpm/php-fpm.conf" <<CONF
[global]
pid = $work/fpm/php-fpm.pid
error_log = $work/fpm/error.log
daemonize = no
[www]
user = www-data
group = www-data
listen = $work/fpm/php.sock
listen.owner = www-data
listen.group = www-data
listen.mode = 0666
pm = static
pm.max_children = $children
pm.max_requests = 0
CONF
taskset -c "$server_cpus" php-fpm8.2 -y "$work/fpm/php-fpm.conf" -c /etc/php/8.2/fpm/php.ini &
fpm_pid=$!
pids+=($!)
for _ in $(seq 100); do [ -S "$work/fpm/php.sock" ] && break; sleep 0.1; done

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
    upstream php { server unix:$work/fpm/php.sock; keepalive 16; }
    server {
        listen 127.0.0.1:$nginx_port;
        root $work/www;
        location ~ \.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_keep_conn on;
            fastcgi_pass php;
        }
    }
}
CONF
taskset -c "$server_cpus" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" &
nginx_pid=$!
pids+=($!)
wait_up "http://127.0.0.1:$nginx_port/hello.php"

for page in hello.php page.php; do
    a=$(curl -s "http://127.0.0.1:$port/$page" | md5sum)
    b=$(curl -s "http://127.0.0.1:$nginx_port/$page" | md5sum)
    [ "$a" = "$b" ] || { echo "the servers answer $page differently" >&2; exit 1; }
done
size=$(curl -s "http://127.0.0.1:$port/page.php" | wc -c)

wrk_warm "http://127.0.0.1:$nginx_port/hello.php" "http://127.0.0.1:$port/hello.php"
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "== wrk -t$wrk_threads -c$conns, ${rounds} rounds of ${seconds}s each, servers and $children PHP processes each on CPU $server_cpus, wrk on CPU $wrk_cpus"
echo "== pages: hello.php, page.php ($size bytes)"
results=$(for _ in $(seq "$rounds"); do
    wrk_run fpm_hello "http://127.0.0.1:$nginx_port/hello.php"
    wrk_run inetsrv_hello "http://127.0.0.1:$port/hello.php"
    wrk_run fpm_page "http://127.0.0.1:$nginx_port/page.php"
    wrk_run inetsrv_page "http://127.0.0.1:$port/page.php"
done | medians)
echo "$results" | grep -v '^median'
echo "$results" | awk '
    $1 == "median" { m[$2] = $3 }
    END {
        h = m["inetsrv_hello"] / m["fpm_hello"]; p = m["inetsrv_page"] / m["fpm_page"]
        printf "hello world: inetsrv + php-cgi %.0f, nginx + php-fpm %.0f req/s: %.2fx (target 1.00x): %s\n", m["inetsrv_hello"], m["fpm_hello"], h, (h >= 1.0 ? "met" : "MISSED")
        printf "20 KB page:  inetsrv + php-cgi %.0f, nginx + php-fpm %.0f req/s: %.2fx (target 1.00x): %s\n", m["inetsrv_page"], m["fpm_page"], p, (p >= 1.0 ? "met" : "MISSED")
    }'
# Where each side's CPU goes, role by role: what to work on next.
echo "== where the CPU goes, the hello world (one ${seconds}s run each, from /proc)"
cpu_per_request "nginx + php-fpm" "http://127.0.0.1:$nginx_port/hello.php" "$nginx_pid" "$fpm_pid"
cpu_per_request "inetsrv + php-cgi" "http://127.0.0.1:$port/hello.php" "$inetsrv_pid"
