"""IIisServiceControl ([MS-IISS]) over DCOM with Impacket's DCOM runtime:
activates the class and runs the steps given, printing one JSON object
with each step's answer. The calls are described here from the IDL.

usage: impacket_iiss.py PORT USER PASSWORD STEP...
steps: status, stop, start, reboot, kill
"""
import json
import sys

from impacket.dcerpc.v5.dcomrt import DCOMCALL, DCOMANSWER, DCOMConnection
from impacket.dcerpc.v5.dtypes import DWORD, ULONG
from impacket.dcerpc.v5.ndr import NDRUniConformantArray
from impacket.dcerpc.v5.rpcrt import DCERPCException, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.uuid import string_to_bin, uuidtup_to_bin

from dcom_common import (  # noqa: F401 (DCERPCSessionError: Impacket looks it up here)
    BYTE_ARRAY,
    DCERPCSessionError,
    HResultAnswer,
    connect,
)

CLSID_IisServiceControl = string_to_bin("E8FB8621-588F-11D2-9D61-00C04F79C5FE")
IID_IIisServiceControl = uuidtup_to_bin(("E8FB8620-588F-11D2-9D61-00C04F79C5FE", "0.0"))





class Stop(DCOMCALL):
    opnum = 7
    structure = (("dwTimeoutMsecs", DWORD), ("dwForce", DWORD))


class StopResponse(HResultAnswer):
    pass


class Start(DCOMCALL):
    opnum = 8
    structure = (("dwTimeoutMsecs", DWORD),)


class StartResponse(HResultAnswer):
    pass


class Reboot(DCOMCALL):
    opnum = 9
    structure = (("dwTimeouMsecs", DWORD), ("dwForceAppsClosed", DWORD))


class RebootResponse(HResultAnswer):
    pass


class Status(DCOMCALL):
    opnum = 10
    structure = (("dwBufferSize", DWORD),)


class StatusResponse(DCOMANSWER):
    structure = (
        ("pbBuffer", BYTE_ARRAY),
        ("pdwMDRequiredBufferSize", DWORD),
        ("pdwNumServices", DWORD),
        ("ErrorCode", ULONG),
    )


class Kill(DCOMCALL):
    opnum = 11
    structure = ()


class KillResponse(HResultAnswer):
    pass


def main():
    port, user, password = sys.argv[1:4]
    steps = sys.argv[4:]
    dcom = connect("127.0.0.1", port, user, password, RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    out = {"steps": []}
    try:
        try:
            iface = dcom.CoCreateInstanceEx(CLSID_IisServiceControl, IID_IIisServiceControl)
        except DCERPCException as e:
            out["activation"] = e.get_error_code()
            return
        out["activation"] = 0
        iface.get_cinstance().set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)

        def call(req):
            try:
                return 0, iface.request(req, IID_IIisServiceControl, iface.get_iPid())
            except DCERPCException as e:
                return e.get_error_code(), None

        for step in steps:
            if step == "status":
                # First with too small a buffer, as clients size it.
                req = Status()
                req["dwBufferSize"] = 4
                small, _ = call(req)
                req["dwBufferSize"] = 4096
                err, resp = call(req)
                entry = {"step": step, "small": small, "error": err}
                if resp is not None:
                    blob = b"".join(resp["pbBuffer"])
                    count = resp["pdwNumServices"]
                    services = []
                    for i in range(count):
                        at = i * 36
                        name_at, _, _, state = [int.from_bytes(blob[at + 4 * k:at + 4 * k + 4], "little") for k in range(4)]
                        end = blob.index(b"\x00\x00", name_at * 2)
                        if (end - name_at * 2) % 2:
                            end += 1
                        services.append({"name": blob[name_at * 2:end].decode("utf-16-le"), "state": state})
                    entry["services"] = services
                out["steps"].append(entry)
            elif step == "stop":
                req = Stop()
                req["dwTimeoutMsecs"] = 20000
                req["dwForce"] = 1
                out["steps"].append({"step": step, "error": call(req)[0]})
            elif step == "start":
                req = Start()
                req["dwTimeoutMsecs"] = 20000
                out["steps"].append({"step": step, "error": call(req)[0]})
            elif step == "reboot":
                req = Reboot()
                req["dwTimeouMsecs"] = 0
                req["dwForceAppsClosed"] = 0
                out["steps"].append({"step": step, "error": call(req)[0]})
            elif step == "kill":
                out["steps"].append({"step": step, "error": call(Kill())[0]})
        iface.RemRelease()
    finally:
        dcom.disconnect()
        print(json.dumps(out))


if __name__ == "__main__":
    main()
