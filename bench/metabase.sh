#!/usr/bin/env bash
# The metabase at scale: 10,000 sites with 5 virtual directories each
# (80,004 keys, 9.8 MB of MetaBase.xml). Measures load, save and an
# inherited read at depth 6, and runs the peer side by side: libxml2's
# xmllint parsing the same file (a C parser building a DOM, validating
# nothing), the floor any XML-backed configuration store starts from.
#
# Usage: bench/metabase.sh            (installs xmllint if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v xmllint >/dev/null; then
    apt-get install -y libxml2-utils >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y libxml2-utils >/dev/null; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== inetsrv metabase (cargo bench, release)"
cargo bench -q -p metabase --bench metabase -- --keep "$work" | tee "$work/ours.txt"

echo "== peer: xmllint --noout (libxml2 $(xmllint --version 2>&1 | head -1 | awk '{print $NF}'))"
best=""
for _ in 1 2 3 4 5; do
    start=$(date +%s%N)
    xmllint --noout --huge "$work/MetaBase.xml"
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
done
echo "xmllint_parse $best ms"

ours_load=$(awk '$1=="load"{print $2}' "$work/ours.txt")
ours_parse=$(awk '$1=="parse"{print $2}' "$work/ours.txt")
resolve=$(awk '$1=="resolve_depth6"{print $2}' "$work/ours.txt")
echo "== summary"
awk -v p="$ours_parse" -v l="$ours_load" -v x="$best" -v r="$resolve" 'BEGIN {
    printf "parse+validate+build: %.0f ms vs xmllint parse-only %d ms: ratio %.2fx xmllint time\n", p, x, p / x
    printf "full load (read, parse, validate, snapshot): %.0f ms (target < 1000 ms): %s\n", l, (l < 1000 ? "met" : "MISSED")
    printf "inherited read at depth 6: %d ns (target < 1000 ns): %s\n", r, (r < 1000 ? "met" : "MISSED")
}'
