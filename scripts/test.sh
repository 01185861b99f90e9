#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: formatting,
# lints, then every unit, integration and doc test (the real binary, real
# processes, real files, real clients). Installs what the tests need that a
# fresh machine may lack: curl (the HTTP client of the end-to-end tests),
# openssl (s_client and the certificates of the HTTPS tests),
# procps (kill), Samba's smbtorture (samba-testsuite: the rpc.mgmt and
# rpc.epmapper suites), MIT Kerberos (krb5-kdc, krb5-admin-server,
# krb5-user: a realm on loopback for the Kerberos tests), php-cgi and adminer (the PHP
# tests' FastCGI application, and a third-party application they drive),
# chromium, chromium-driver and firefox-esr (the management console's
# browsers), and
# in a virtual environment under target/: Impacket 0.13 (the RPC interop
# tests' client), aiowmi (a second WMI client), prometheus_client (its
# OpenMetrics parser reads /metrics), Selenium (drives chromium) and
# marionette-driver (drives Firefox).
set -euo pipefail
cd "$(dirname "$0")/.."

# The KDC's tools live in sbin, which a non-login shell may not list.
export PATH="$PATH:/usr/sbin:/sbin"

need() {
    type -P "$1" >/dev/null && return
    echo "== installing $2"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q "$2" >/dev/null 2>&1 ||
        { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$2" >/dev/null; }
    type -P "$1" >/dev/null || { echo "could not install $2 (needed for $1)" >&2; exit 1; }
}
need curl curl
need openssl openssl
need testssl testssl.sh
need kill procps
need python3 python3
need smbtorture samba-testsuite
need krb5kdc krb5-kdc
need kadmin.local krb5-admin-server
need kinit krb5-user
need php-cgi php-cgi
# Wireshark's dissectors, which check the connectionless RPC PDUs.
need tshark tshark
# Debian's chromium and its chromedriver: the management console's browser.
need chromium chromium
need chromedriver chromium-driver
# Debian's Firefox ESR, driven over its own Marionette protocol.
need firefox-esr firefox-esr
# A third-party PHP application the tests drive (no command to look for).
[ -f /usr/share/adminer/adminer.php ] || {
    echo "== installing adminer"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -q adminer >/dev/null 2>&1 ||
        { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q adminer >/dev/null; }
}

# Impacket, pinned, in its own environment; the RPC tests find it through
# INETSRV_TEST_PYTHON (its scripts sit beside the interpreter).
venv="$PWD/target/test-venv"
if ! "$venv/bin/python" -c 'import impacket.version as v; assert v.version == "0.13.0"' 2>/dev/null; then
    echo "== installing Impacket 0.13.0 into $venv"
    python3 -m venv "$venv" >/dev/null 2>&1 || {
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y -q python3-venv >/dev/null 2>&1 ||
            { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q python3-venv >/dev/null; }
        rm -rf "$venv"
        python3 -m venv "$venv"
    }
    "$venv/bin/pip" install -q 'impacket==0.13.0'
fi
# aiowmi, a second MS-WMI client written without Impacket (its own DCOM,
# NTLM and MS-WMIO decoder), for the WMI tests.
if ! "$venv/bin/python" -c 'import aiowmi.version as v; assert v.__version__ == "1.1.3"' 2>/dev/null; then
    echo "== installing aiowmi 1.1.3 into $venv"
    "$venv/bin/pip" install -q 'aiowmi==1.1.3'
fi
# prometheus_client, whose OpenMetrics parser reads the management
# service's /metrics in the console tests.
if ! "$venv/bin/python" -c 'import prometheus_client as p; from importlib.metadata import version; assert version("prometheus_client") == "0.26.0"' 2>/dev/null; then
    echo "== installing prometheus_client 0.26.0 into $venv"
    "$venv/bin/pip" install -q 'prometheus_client==0.26.0'
fi
# Selenium, driving Debian's chromium through its chromedriver, for the
# management console's browser tests.
if ! "$venv/bin/python" -c 'import selenium; assert selenium.__version__ == "4.51.0"' 2>/dev/null; then
    echo "== installing selenium 4.51.0 into $venv"
    "$venv/bin/pip" install -q 'selenium==4.51.0'
fi
# Mozilla's Marionette client, for the console's Firefox test.
if ! "$venv/bin/python" -c 'from importlib.metadata import version; assert version("marionette-driver") == "3.7.1"' 2>/dev/null; then
    echo "== installing marionette-driver 3.7.1 into $venv"
    "$venv/bin/pip" install -q 'marionette-driver==3.7.1'
fi
export INETSRV_TEST_PYTHON="$venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
