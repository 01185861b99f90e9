#!/usr/bin/env bash
# WMI on the wire: SELECT * FROM IIsWebVirtualDirSetting over 10,000 sites
# (bench/metabase.sh's generated MetaBase.xml: 60,000 virtual
# directories) on a running `inetsrv start`, two ways side by side:
#   local: `inetsrv query` on the server's machine (its metabase copied
#          over the RPC socket, the provider run in the CLI)
#   wire:  `inetsrv query --server 127.0.0.1:PORT` through MS-WMI: DCOM
#          activation, NTLM at packet privacy, ExecQuery, the smart
#          enumerator's ObjectArrays, the objects decoded from [MS-WMIO]
# Both print the same text (to /dev/null). Printed: each way's time, the
# objects per second, and the wire's cost against local (target: < 2x).
# There is no peer: no open WMI server exists (Windows' is the only one).
#
# Usage: bench/wmi.sh [ROUNDS]  (default 3; medians)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
. bench/lib.sh

echo "== building (release)"
cargo build -q --release -p inetsrv
bin=target/release

echo "== generating 10,000 sites (bench/metabase.sh's generator)"
cargo bench -q -p metabase --bench metabase -- --keep "$work" >/dev/null
state="$private/state"
mkdir -p "$state"
# The sites stay stopped (their bindings are port 80 host headers): the
# query is what is measured, not 10,000 listeners.
sed 's|<IIsWebService\tLocation ="/LM/W3SVC"|&\n\t\tServerAutoStart="FALSE"|' "$work/MetaBase.xml" > "$state/MetaBase.xml"
export INETSRV_HOME="$state"
password=Bench-Pass-1
"$bin/inetsrv" user add benchadmin --admin --password "$password" >/dev/null
rpc_port=$(free_port)
echo '{"ListenAddresses": ["127.0.0.1"]}' > "$state/httpsys.json"
"$bin/inetsrv" start --rpc-address 127.0.0.1 --rpc-port "$rpc_port" >"$work/inetsrv.log" 2>&1 &
pids+=($!)
# Started, and done configuring the 10,000 sites (it takes a while: see
# BENCHMARKS.md), before anything is timed.
for _ in $(seq 1200); do grep -q '^ready' "$work/inetsrv.log" && break; sleep 0.25; done
for _ in $(seq 300); do
    a=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat"); sleep 1
    b=$(awk '{print $14 + $15}' "/proc/${pids[0]}/stat")
    [ $((b - a)) -lt 5 ] && break
done

query="SELECT * FROM IIsWebVirtualDirSetting"
rows=$("$bin/inetsrv" --json query "$query" | grep -c '"__CLASS"')
timed() { # ARGS...
    local start end
    start=$(date +%s%N)
    "$bin/inetsrv" "$@" >/dev/null
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
}
echo "== $query: $rows objects, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
results=$(for _ in $(seq "$rounds"); do
    echo "local $(timed query "$query")"
    echo "wire $(timed query "$query" --server "127.0.0.1:$rpc_port" --user benchadmin --password "$password")"
done)
echo "$results" | awk -v n="$rows" '{printf "  %-6s %7d ms  %9.0f objects/s\n", $1, $2, n * 1000 / $2}'
median() { echo "$results" | awk -v w="$1" '$1==w {print $2}' | sort -n | sed -n "$(((rounds + 1) / 2))p"; }
local_ms=$(median local); wire_ms=$(median wire)
awk -v l="$local_ms" -v w="$wire_ms" -v n="$rows" 'BEGIN {
    printf "  median: local %d ms, wire %d ms (%.0f objects/s): the wire costs %.2fx local (target < 2x)\n", l, w, n * 1000 / w, w / l
}'
