#!/usr/bin/env bash
# HTTPS against nginx (OpenSSL), side by side in one run, with the same
# certificates and the same protocol versions (TLS 1.2 and 1.3). Each
# server gets CPU 0 (inetsrv's listener and its worker share it), the load
# client gets CPU 1.
#   (a) new TLS connections per second, ECDSA P-256 and RSA 2048: a full
#       TLS 1.3 handshake per connection (no resumption), one 1 KB request,
#       then close. The load client is crates/listener/examples/tls_load.rs
#       (wrk resumes sessions, so it cannot measure full handshakes). The
#       client can be the bottleneck on a small machine, so the servers'
#       CPU time per handshake (from /proc) is printed beside the rate and
#       the target is judged on the rate per CPU second.
#   (b) 1 KB requests per second over keep-alive TLS (wrk), from the
#       listener's response cache;
#   (c) the same through the worker process (UriEnableCache 0).
# Targets: (a) >= 1.0x nginx, (b) >= 1.3x, (c) >= 0.8x.
#
# Usage: bench/tls.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 64, 3)
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
need openssl openssl

if [ -z "${INETSRV_BIN:-}" ]; then
    cargo build -q --release -p inetsrv
fi
cargo build -q --release -p listener --example tls_load
bin=${INETSRV_BIN:-$PWD/target/release/inetsrv}
tls_load=$PWD/target/release/examples/tls_load

mkdir -p "$work/www" "$work/certs"
head -c 1024 /dev/urandom | base64 -w 76 | head -c 1024 > "$work/www/small.txt"
chmod -R a+rX "$work/www"

# The same certificates for both servers.
subject="/CN=localhost"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "$subject" -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/certs/ecdsa.key" -out "$work/certs/ecdsa.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
    -subj "$subject" -addext "subjectAltName=DNS:localhost" \
    -keyout "$work/certs/rsa.key" -out "$work/certs/rsa.pem" 2>/dev/null
chmod -R a+rX "$work/certs"
thumbprint() { openssl x509 -in "$1" -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :; }

nginx_ecdsa=$(free_port); nginx_rsa=$(free_port)
tls_server() {
    cat <<CONF
    server {
        listen 127.0.0.1:$1 ssl;
        root $work/www;
        ssl_certificate $work/certs/$2.pem;
        ssl_certificate_key $work/certs/$2.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
    }
CONF
}
start_nginx "$(free_port)" "default_type application/octet-stream; types { text/plain txt; }
$(tls_server "$nginx_ecdsa" ecdsa)
$(tls_server "$nginx_rsa" rsa)"

# start NAME KEY CACHE PORT: an inetsrv state directory serving $work/www
# over https on PORT with the KEY certificate.
start() {
    local state="$private/$1" port=$4
    mkdir -p "$state"
    echo "{\"ListenAddresses\": [\"127.0.0.1\"], \"UriEnableCache\": $3}" > "$state/httpsys.json"
    "$bin" --state-dir "$state" mb set W3SVC/1/ServerBindings ":$(free_port):" >/dev/null
    "$bin" --state-dir "$state" cert import --cert "$work/certs/$2.pem" --key "$work/certs/$2.key" --name "bench $2" >/dev/null
    "$bin" --state-dir "$state" mb set W3SVC/1/SecureBindings ":$port:" >/dev/null
    "$bin" --state-dir "$state" mb set W3SVC/1/SSLCertHash "$(thumbprint "$work/certs/$2.pem")" >/dev/null
    "$bin" --state-dir "$state" mb set W3SVC/1/ROOT/Path "$work/www" >/dev/null
    # Request logs off, as for nginx.
    "$bin" --state-dir "$state" mb set W3SVC/1/LogType 0 >/dev/null
    INETSRV_LOG=warn taskset -c "$server_cpus" "$bin" --state-dir "$state" start >/dev/null &
    pids+=($!)
}
ecdsa_port=$(free_port); rsa_port=$(free_port); uncached_port=$(free_port)
nginx_pid=${pids[0]}
start ecdsa ecdsa 1 "$ecdsa_port"
start rsa rsa 1 "$rsa_port"
start uncached ecdsa 0 "$uncached_port"
inetsrv_pids=("${pids[@]:1}")

curl_up() {
    for _ in $(seq 100); do curl -skf -o /dev/null "$1" && return; sleep 0.1; done
    echo "not answering: $1" >&2; exit 1
}
for port in "$nginx_ecdsa" "$nginx_rsa" "$ecdsa_port" "$rsa_port" "$uncached_port"; do
    curl_up "https://127.0.0.1:$port/small.txt"
done
# Each server must present the certificate it was given.
for pair in "$nginx_ecdsa ecdsa" "$nginx_rsa rsa" "$ecdsa_port ecdsa" "$rsa_port rsa" "$uncached_port ecdsa"; do
    set -- $pair
    served=$(echo | openssl s_client -connect "127.0.0.1:$1" -servername localhost 2>/dev/null |
        openssl x509 -noout -fingerprint -sha1 | cut -d= -f2 | tr -d :)
    [ "$served" = "$(thumbprint "$work/certs/$2.pem")" ] || { echo "port $1 serves the wrong certificate" >&2; exit 1; }
done

# cpu_ticks PID: user + system clock ticks of PID and all its descendants.
cpu_ticks() {
    local total=0 p
    for p in $(descendants "$1"); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
    done
    echo "$total"
}
descendants() {
    echo "$1"
    local c
    for c in $(pgrep -P "$1" || true); do descendants "$c"; done
}
hz=$(getconf CLK_TCK)

# handshakes NAME PORT ROOTPID: prints "NAME per-second cpu-ms-per-handshake".
handshakes() {
    local before after out rate n
    before=$(cpu_ticks "$3")
    out=$(taskset -c "$wrk_cpus" "$tls_load" "127.0.0.1:$2" "$seconds" "$conns" tls13 /small.txt)
    after=$(cpu_ticks "$3")
    rate=$(echo "$out" | awk '{print $1}')
    n=$(echo "$out" | sed -E 's/.*\(([0-9]+) in.*/\1/')
    case "$out" in *" 0 errors;"*) ;; *) echo "$1: $out" >&2 ;; esac
    echo "$out" | sed -E "s/.*errors; (.*)\)/$1 \1/" >> "$work/negotiated"
    echo "$1 $rate $(awk -v t=$((after - before)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.3f", n ? t * 1000 / hz / n : 0 }')"
}

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "== ${rounds} rounds of ${seconds}s each, $conns connections; servers on CPU $server_cpus, load on CPU $wrk_cpus"
wrk_warm "https://127.0.0.1:$nginx_ecdsa/small.txt" "https://127.0.0.1:$ecdsa_port/small.txt" "https://127.0.0.1:$uncached_port/small.txt"

hs=$(for _ in $(seq "$rounds"); do
    handshakes nginx_ecdsa "$nginx_ecdsa" "$nginx_pid"
    handshakes inetsrv_ecdsa "$ecdsa_port" "${inetsrv_pids[0]}"
    handshakes nginx_rsa "$nginx_rsa" "$nginx_pid"
    handshakes inetsrv_rsa "$rsa_port" "${inetsrv_pids[1]}"
done)
echo "-- new connections (full TLS 1.3 handshake, 1 KB answer, close):"
echo "$hs" | awk '{printf "  %-16s %9s conn/s   %s ms server CPU each\n", $1, $2, $3}'
echo "-- negotiated:"
sort -u "$work/negotiated" | sed 's/^/  /'

ka=$(for _ in $(seq "$rounds"); do
    wrk_run nginx_1k "https://127.0.0.1:$nginx_ecdsa/small.txt"
    wrk_run inetsrv_1k_cached "https://127.0.0.1:$ecdsa_port/small.txt"
    wrk_run inetsrv_1k "https://127.0.0.1:$uncached_port/small.txt"
done | medians)
echo "-- keep-alive TLS, 1 KB (wrk -t$wrk_threads -c$conns):"
echo "$ka" | grep -v '^median'

{ echo "$hs" | sort -k1,1 -k2,2n | awk '
    { v[$1] = v[$1] " " $2; c[$1] = c[$1] " " $3; n[$1]++ }
    END { for (k in v) { split(v[k], a, " "); split(c[k], b, " "); m = int((n[k] + 1) / 2); print "hs", k, a[m], b[m] } }'
  echo "$ka" | grep '^median'; } | awk '
    $1 == "hs" { rate[$2] = $3; cpu[$2] = $4 }
    $1 == "median" { m[$2] = $3 }
    END {
        for (k in rate) per[k] = cpu[k] > 0 ? 1000 / cpu[k] : 0
        printf "medians: handshakes/s ECDSA nginx %.0f, inetsrv %.0f; RSA nginx %.0f, inetsrv %.0f\n", rate["nginx_ecdsa"], rate["inetsrv_ecdsa"], rate["nginx_rsa"], rate["inetsrv_rsa"]
        printf "         handshakes per server CPU second: ECDSA nginx %.0f, inetsrv %.0f; RSA nginx %.0f, inetsrv %.0f\n", per["nginx_ecdsa"], per["inetsrv_ecdsa"], per["nginx_rsa"], per["inetsrv_rsa"]
        printf "         keep-alive 1 KB: nginx %.0f, inetsrv cached %.0f, through the worker %.0f req/s\n", m["nginx_1k"], m["inetsrv_1k_cached"], m["inetsrv_1k"]
        e = per["inetsrv_ecdsa"] / per["nginx_ecdsa"]; r = per["inetsrv_rsa"] / per["nginx_rsa"]
        er = rate["inetsrv_ecdsa"] / rate["nginx_ecdsa"]; rr = rate["inetsrv_rsa"] / rate["nginx_rsa"]
        printf "(a) handshakes ECDSA: %.2fx nginx per CPU second, %.2fx by rate (target 1.00x): %s\n", e, er, (e >= 1.0 ? "met" : "MISSED")
        printf "(a) handshakes RSA:   %.2fx nginx per CPU second, %.2fx by rate (target 1.00x): %s\n", r, rr, (r >= 1.0 ? "met" : "MISSED")
        c = m["inetsrv_1k_cached"] / m["nginx_1k"]; w = m["inetsrv_1k"] / m["nginx_1k"]
        printf "(b) keep-alive cached:       %.2fx nginx (target 1.30x): %s\n", c, (c >= 1.3 ? "met" : "MISSED")
        printf "(c) keep-alive, the worker:  %.2fx nginx (target 0.80x): %s\n", w, (w >= 0.8 ? "met" : "MISSED")
    }'
