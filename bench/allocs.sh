#!/usr/bin/env bash
# Allocations and memmove calls per request, counted exactly with perf's
# user probes (uprobes on the binary's mi_malloc_aligned and on each of
# libc's __memmove_*_unaligned_erms variants: which one runs depends on the
# CPU, AVX on one machine, AVX-512 on another), in the listener and in the worker, for the
# ISAPI hello extension (examples/isapi/hello.c) and a PHP hello world
# through FastCGI (Debian's php-cgi). These are counts, not timings: they do
# not move with the machine's noise, so a change that saves work shows here
# even when a req/s comparison cannot see it. No peer runs: the numbers
# compare inetsrv with itself over time (BENCHMARKS.md keeps them).
#
# Needs root (uprobes) and perf (linux-perf). The probes slow the server
# down while they count; wrk's request count over the same window is the
# divisor (perf is given a large buffer so that no event is lost).
#
# Usage: bench/allocs.sh [SECONDS]  (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-2}
conns=32

. bench/lib.sh
need wrk wrk
need taskset util-linux
need curl curl
need cc gcc
need php-cgi php-cgi
need perf linux-perf
[ "$(id -u)" -eq 0 ] || { echo "bench/allocs.sh: uprobes need root" >&2; exit 1; }

if [ -z "${INETSRV_BIN:-}" ]; then
    cargo build -q --release -p inetsrv
fi
bin=${INETSRV_BIN:-$PWD/target/release/inetsrv}
memmove_lib=$(ldconfig -p | awk '/libc.so.6 .*x86-64/ {print $NF; exit}')

mkdir -p "$work/modules" "$work/www"
cc -O2 -shared -fPIC -I include -o "$work/modules/hello.so" examples/isapi/hello.c
echo '<?php echo "Hello, world!\n";' > "$work/www/hello.php"

port=$(free_port)
state="$private/state"
site_state "$bin" "$state" "$port" "$work/www"
# The extension's map above the site (the site root gets PHP's from `fastcgi add`).
"$bin" --state-dir "$state" mb set W3SVC/ScriptMaps ".hello,$work/modules/hello.so,1" >/dev/null
"$bin" --state-dir "$state" mb set W3SVC/WebSvcExtRestrictionList "0,*.dll" "1,$work/modules/hello.so,0,HELLO,Hello" >/dev/null
"$bin" --state-dir "$state" fastcgi add PHP --exe /usr/bin/php-cgi --extension .php --allow \
    --max-instances 4 --instance-max-requests 10000000 >/dev/null
"$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
INETSRV_LOG=warn taskset -c "$server_cpus" "$bin" --state-dir "$state" start >/dev/null &
listener=$!
pids+=($listener)
wait_up "http://127.0.0.1:$port/x.hello" "http://127.0.0.1:$port/hello.php"
# Both answer as they should, or the counts would be of error pages.
curl -sf "http://127.0.0.1:$port/x.hello" | grep -q "Hello from ISAPI" ||
    { echo "the ISAPI extension did not answer" >&2; exit 1; }
answer=$(curl -s "http://127.0.0.1:$port/hello.php")
[ "$answer" = "Hello, world!" ] ||
    { echo "PHP did not answer: $answer" >&2; exit 1; }
worker=$(pgrep -f "^$bin worker" | head -1)
[ -n "$worker" ] || { echo "no worker process" >&2; exit 1; }

# The probes, named for this run; removed on exit.
group="inetsrv_allocs_$$"
trap 'perf probe -q -d "$group:*" 2>/dev/null || true; cleanup' EXIT
perf probe -q -x "$bin" -a "$group:alloc=mi_malloc_aligned size=%di:u64"
# libc picks its memmove by the CPU's features at load: every variant is
# probed (under its own event name) and their counts added.
memmove_events=()
for variant in avx512 evex avx sse2; do
    if perf probe -q -x "$memmove_lib" -a "$group:memmove_$variant=__memmove_${variant}_unaligned_erms len=%dx:u64" 2>/dev/null; then
        memmove_events+=(-e "$group:memmove_$variant")
    fi
done
[ ${#memmove_events[@]} -gt 0 ] || { echo "no __memmove_*_unaligned_erms in $memmove_lib to probe" >&2; exit 1; }

# count URL PID NAME: one wrk run with PID's probes recorded.
count() {
    taskset -c "$wrk_cpus" wrk -t1 -c"$conns" -d2s "$1" >/dev/null
    perf record -q -m 16M -e "$group:alloc" "${memmove_events[@]}" -p "$2" -o "$work/perf.data" -- \
        taskset -c "$wrk_cpus" wrk -t1 -c"$conns" -d"${seconds}s" "$1" > "$work/wrk.out" 2>/dev/null
    local requests
    requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
    if grep -q 'Non-2xx' "$work/wrk.out"; then
        echo "  $3: some answers were errors: $(grep 'Non-2xx' "$work/wrk.out")" >&2
    fi
    perf script -i "$work/perf.data" 2>/dev/null | awk -v r="$requests" -v name="$3" '
        / [a-z_0-9]+:alloc: / { a++; for (i = 1; i <= NF; i++) if ($i ~ /^size=/) { sub("size=", "", $i); ab += $i + 0 } }
        / [a-z_0-9]+:memmove_[a-z0-9]+: / { m++; for (i = 1; i <= NF; i++) if ($i ~ /^len=/) { sub("len=", "", $i); mb += $i + 0 } }
        END { printf "  %-26s %6.1f allocations (%6.0f bytes)  %6.1f memmoves (%6.0f bytes) per request\n", name, a / r, ab / r, m / r, mb / r }'
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $bin"
echo "== per request, over ${seconds}s of wrk -c$conns"
count "http://127.0.0.1:$port/x.hello" "$listener" "listener, ISAPI hello"
count "http://127.0.0.1:$port/x.hello" "$worker" "worker, ISAPI hello"
count "http://127.0.0.1:$port/hello.php" "$listener" "listener, PHP hello"
count "http://127.0.0.1:$port/hello.php" "$worker" "worker, PHP hello"
