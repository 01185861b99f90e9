"""Calls the RPC endpoint of a running inetsrv with Impacket (a client no
one here wrote) and prints what it got as one JSON object.

usage: impacket_calls.py PORT [--ndr64] [--frag N] [--bogus-binds N]
                         [--auth-level L --user NAME --password SECRET]
                         [--auth-level L --kerberos --user NAME --realm REALM]

With --kerberos, Impacket logs on with Negotiate (SPNEGO) and Kerberos,
from the service ticket for host/localhost in the credential cache that
KRB5CCNAME names (kinit and kvno fill it), and reaches the server as
"localhost".
"""
import argparse
import json
import sys

from impacket.dcerpc.v5 import epm, mgmt, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException, RPC_C_AUTHN_GSS_NEGOTIATE
from impacket.uuid import bin_to_string

NDR64 = ("71710533-BEBA-4937-8319-B5DBEF9CCC36", "1.0")


def connect(binding, a):
    """A connected DCE/RPC session with the options asked for."""
    t = transport.DCERPCTransportFactory(binding)
    if a.kerberos:
        t.set_credentials(a.user, "", a.realm)
        t.set_kerberos(True)
    elif a.auth_level:
        t.set_credentials(a.user, a.password)
    dce = t.get_dce_rpc()
    if a.kerberos:
        dce.set_auth_type(RPC_C_AUTHN_GSS_NEGOTIATE)
    if a.auth_level:
        dce.set_auth_level(a.auth_level)
    if a.frag:
        dce.set_max_fragment_size(a.frag)
    dce.connect()
    return dce


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--ndr64", action="store_true")
    p.add_argument("--frag", type=int, default=0)
    p.add_argument("--auth-level", type=int, default=0)
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--kerberos", action="store_true")
    p.add_argument("--realm", default="")
    a = p.parse_args()

    out = {}
    host = "localhost" if a.kerberos else "127.0.0.1"
    binding = "ncacn_ip_tcp:%s[%d]" % (host, a.port)
    dce = connect(binding, a)
    syntax = {"transfer_syntax": NDR64} if a.ndr64 else {}
    dce.bind(mgmt.MSRPC_UUID_MGMT, **syntax)

    # Impacket sends nothing at all for a call with empty stub data when
    # told to fragment (its loop has no fragment to send), so those calls
    # are made only without --frag.
    if not a.frag:
        ids = mgmt.hinq_if_ids(dce)
        out["if_ids"] = [
            "%s v%d.%d" % (bin_to_string(i["Data"]["Uuid"]).lower(),
                            i["Data"]["VersMajor"], i["Data"]["VersMinor"])
            for i in ids["if_id_vector"]["if_id"]
        ]
        out["listening"] = mgmt.his_server_listening(dce)["status"] == 0
    stats = mgmt.hinq_stats(dce)
    out["stats"] = list(stats["statistics"])
    out["princ_name"] = b"".join(
        mgmt.hinq_princ_name(dce, 10, 256)["princ_name"]).rstrip(b"\0").decode()
    if not a.frag:
        try:
            mgmt.hstop_server_listening(dce)
            out["stop"] = "accepted"
        except DCERPCException as e:
            out["stop"] = str(e)

    dce.disconnect()

    # ept_lookup through Impacket's helper (its own connection), and
    # ept_map for the endpoint mapper itself.
    d2 = connect(binding, a)
    entries = epm.hept_lookup(None, dce=d2)
    out["lookup"] = [
        [epm.PrintStringBinding(e["tower"]["Floors"]),
         e["annotation"].rstrip(b"\0").decode()]
        for e in entries
    ]
    out["map"] = epm.hept_map("127.0.0.1", epm.MSRPC_UUID_PORTMAP, protocol="ncacn_ip_tcp",
                              dce=d2)
    d2.disconnect()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test prints it
        import traceback
        traceback.print_exc()
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        sys.exit(1)
