#!/usr/bin/env bash
# The DCOM layer's cost: IMSAdminBaseW R_GetData calls per second on a
# live `inetsrv start` at packet privacy (NTLM, sealed), against the same
# server's plain MGMT call (rpc_mgmt_is_server_listening) at privacy as the
# floor. Each connection logs on, activates CLSID_MSAdminBase_W
# (IRemoteSCMActivator::RemoteCreateInstance), opens /LM/W3SVC and reads
# ServerComment of site 1 back to back; the MGMT connections just call.
# Same client (crates/msrpc/examples/rpc_bench.rs), server on CPU 0,
# client on CPU 1, alternating rounds compared by their medians.
# Target: GetData at >= 0.7x the MGMT call rate.
# Samba has no DCOM server (nor an IIS admin interface), so there is no
# peer call to compare with; bench/rpc.sh compares the runtime with
# Samba's.
#
# Usage: bench/dcom.sh [SECONDS] [CONNECTIONS] [ROUNDS]  (defaults 5, 16, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
conns=${2:-16}
rounds=${3:-3}
. bench/lib.sh

echo "== building (release)"
cargo build -q --release -p inetsrv
cargo build -q --release -p msrpc --example rpc_bench
bin=target/release

state="$private/state"
mkdir -p "$state"
echo '{"ListenAddresses": ["127.0.0.1"]}' > "$state/httpsys.json"
http_port=$(free_port); tls_port=$(free_port); rpc_port=$(free_port)
export INETSRV_HOME="$state"
"$bin/inetsrv" mb set W3SVC/1/ServerBindings ":$http_port:" >/dev/null
"$bin/inetsrv" mb set W3SVC/1/SecureBindings ":$tls_port:" >/dev/null
password=Bench-Pass-1
"$bin/inetsrv" user add benchadmin --admin --password "$password" >/dev/null
taskset -c 0 "$bin/inetsrv" start --rpc-address 127.0.0.1 --rpc-port "$rpc_port" \
    >"$work/inetsrv.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do ss -ltn | grep -q "127.0.0.1:$rpc_port " && break; sleep 0.1; done

run() { # CALL
    taskset -c 1 "$bin/examples/rpc_bench" "127.0.0.1:$rpc_port" "$1" "$conns" "$seconds" \
        privacy benchadmin "$password" ntlm |
        sed -E 's/calls=([0-9]+) calls_per_sec=([0-9]+) p50_us=([0-9.]+) p99_us=([0-9.]+).*/\2 \3 \4/'
}

echo "== IMSAdminBaseW R_GetData vs MGMT is_server_listening, privacy (NTLM), $conns connections, ${seconds}s runs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
taskset -c 1 "$bin/examples/rpc_bench" "127.0.0.1:$rpc_port" imsa_get_data 1 1 privacy benchadmin "$password" ntlm >/dev/null
results=$(for _ in $(seq "$rounds"); do
    echo "mgmt $(run is_server_listening)"
    echo "getdata $(run imsa_get_data)"
done)
echo "$results" | awk '{printf "  %-8s %8s calls/s   p50 %6s us   p99 %7s us\n", $1, $2, $3, $4}'
median() { echo "$results" | awk -v n="$1" '$1==n {print $2}' | sort -n | sed -n "$(((rounds + 1) / 2))p"; }
mgmt=$(median mgmt); getdata=$(median getdata)
echo "  median: GetData $getdata calls/s, MGMT $mgmt calls/s, ratio $(awk -v a="$getdata" -v b="$mgmt" 'BEGIN {printf "%.2fx", a / b}') (target >= 0.7x)"
