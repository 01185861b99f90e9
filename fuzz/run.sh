#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 60) with cargo-fuzz on the
# stable toolchain (no sanitizer; Rust's own checks catch what matters
# here). New inputs go to fuzz/target/corpus-work, so fuzz/corpus keeps
# only the hand-written cases; crashes land in fuzz/artifacts: copy each
# into fuzz/corpus/<target>/ as a regression case once fixed.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in metabase_xml mbschema_xml http_head chunked url config_values wql pdu ndr rpc_session ntlm worker_config tls_hello gateway_output dcom_structures dcom_requests imsa_requests wmio_objects wbem_requests cl_datagram cl_server rts_channel; do
    mkdir -p "target/corpus-work/$target"
    cargo fuzz run --sanitizer none "$target" "target/corpus-work/$target" "corpus/$target" \
        -- -max_total_time="$seconds"
done
