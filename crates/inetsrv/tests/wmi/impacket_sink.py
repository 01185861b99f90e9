"""IWbemServices' asynchronous calls with a response handler served by
Impacket 0.13: its DCE/RPC server (DCERPCServer) plays the client's object
resolver (IObjectExporter: ResolveOxid2, ComplexPing, SimplePing) and
exporter (IWbemObjectSink), and its own structures decode what the server
calls back with (IWbemObjectSink_Indicate / _SetStatus, IWbemClassObject).
Arguments: PORT USER PASSWORD STEP...; prints one JSON object with what
each step saw."""
import json
import os
import random
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "dcom"))

from dcom_common import connect, hresult  # noqa: E402
from impacket import uuid  # noqa: E402
from impacket.dcerpc.v5 import dcomrt  # noqa: E402
from impacket.dcerpc.v5.dcom import wmi  # noqa: E402
from impacket.dcerpc.v5.dcomrt import INTERFACE, MInterfacePointer, OBJREF_STANDARD  # noqa: E402
from impacket.dcerpc.v5.dtypes import NULL  # noqa: E402
from impacket.dcerpc.v5.rpcrt import (  # noqa: E402
    MSRPC_REQUEST,
    PFC_FIRST_FRAG,
    PFC_LAST_FRAG,
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
    DCERPCServer,
    MSRPCHeader,
    MSRPCRequestHeader,
)

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
steps = sys.argv[4:]
out = {}

IOBJECT_EXPORTER = ("99FCFEC4-5260-101B-BBCB-00AA0021347A", "0.0")
IWBEM_OBJECT_SINK = ("7C857801-7381-11CF-884D-00AA004B2E24", "0.0")
TOWER_TCP = 7
TIMEOUT = 60


class Server(DCERPCServer):
    """Impacket's server, with requests of several fragments put back
    together (its own recv returns only the last fragment)."""

    def read(self, n):
        data = b""
        while len(data) < n:
            chunk = self._clientSock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def recv(self):
        first, stub = None, b""
        while True:
            head = self.read(16)
            if head is None:
                return None
            header = MSRPCHeader(head)
            whole = head + self.read(header["frag_len"] - 16)
            if header["type"] != MSRPC_REQUEST:
                return whole
            fragment = MSRPCRequestHeader(whole)
            first = first or fragment
            stub += fragment["pduData"]
            if fragment["flags"] & PFC_LAST_FRAG:
                first["flags"] |= PFC_FIRST_FRAG | PFC_LAST_FRAG
                first["pduData"] = stub
                first["frag_len"] = len(first.getData())
                return first.getData()


def logged(callback):
    """A callback whose failure is told on stderr (Impacket's server drops
    the connection silently)."""
    def run(data):
        try:
            return callback(data)
        except Exception:
            import traceback
            traceback.print_exc()
            raise
    return run


def serve(callbacks):
    server = Server()
    for iface, table in callbacks.items():
        server.addCallbacks(iface, "", {op: logged(f) for op, f in table.items()})
    server.daemon = True
    server.start()
    return server


def dual_string_array(binding):
    """A DUALSTRINGARRAY's entries: one ncacn_ip_tcp binding, no security
    binding but the empty list's terminator ([MS-DCOM] 2.2.19.1)."""
    strings = [TOWER_TCP] + [ord(c) for c in binding] + [0, 0]
    security = [0, 0]
    return strings + security, len(strings)


class SinkHost:
    """The client's resolver and exporter, and what its one sink object is
    told."""

    def __init__(self):
        self.calls = []
        self.oxid = random.getrandbits(63)
        self.oid = random.getrandbits(63)
        self.ipid = bytes(random.getrandbits(8) for _ in range(16))
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.objects, self.statuses = [], []
        self.exporter = serve({IWBEM_OBJECT_SINK: {3: self.indicate, 4: self.set_status}})
        self.resolver = serve({IOBJECT_EXPORTER: {
            1: self.simple_ping, 2: self.complex_ping, 4: self.resolve_oxid2,
        }})

    def log(self, name):
        with self.lock:
            self.calls.append(name)

    def resolve_oxid2(self, data):
        request = dcomrt.ResolveOxid2(data)
        self.log("ResolveOxid2" if request["pOxid"] == self.oxid else "ResolveOxid2 (unknown OXID)")
        answer = dcomrt.ResolveOxid2Response()
        entries, security = dual_string_array("127.0.0.1[%d]" % self.exporter.getListenPort())
        answer["ppdsaOxidBindings"]["wNumEntries"] = len(entries)
        answer["ppdsaOxidBindings"]["wSecurityOffset"] = security
        answer["ppdsaOxidBindings"]["aStringArray"] = entries
        answer["pipidRemUnknown"] = bytes(16)
        answer["pAuthnHint"] = 1
        answer["pComVersion"]["MajorVersion"] = 5
        answer["pComVersion"]["MinorVersion"] = 7
        answer["ErrorCode"] = 0
        return answer.getData()

    def complex_ping(self, data):
        request = dcomrt.ComplexPing(data)
        self.log("ComplexPing" if [o["Data"] for o in request["AddToSet"]] == [self.oid] else "ComplexPing (other OIDs)")
        answer = dcomrt.ComplexPingResponse()
        answer["pSetId"] = 7
        answer["pPingBackoffFactor"] = 0
        answer["ErrorCode"] = 0
        return answer.getData()

    def simple_ping(self, data):
        self.log("SimplePing")
        answer = dcomrt.SimplePingResponse()
        answer["ErrorCode"] = 0
        return answer.getData()

    def object_of(self, pointer):
        """An IWbemClassObject from the bytes of an MInterfacePointer, as
        Impacket's own enumerators read them."""
        return wmi.IWbemClassObject(
            INTERFACE(svc.get_cinstance(), b"".join(pointer["abData"]), svc.get_ipidRemUnknown(),
                      oxid=svc.get_oxid(), target=svc.get_target()),
            svc,
        )

    def indicate(self, data):
        request = wmi.IWbemObjectSink_Indicate(data)
        self.log("Indicate")
        objects = [self.object_of(p) for p in request["apObjArray"]]
        with self.lock:
            self.objects.append((request["lObjectCount"], objects))
        answer = wmi.IWbemObjectSink_IndicateResponse()
        answer["ErrorCode"] = 0
        return answer.getData()

    def set_status(self, data):
        request = wmi.IWbemObjectSink_SetStatus(data)
        self.log("SetStatus")
        text = request["strParam"]["asData"] if request["strParam"] else None
        error = self.object_of(request["pObjParam"]) if request["pObjParam"] else None
        with self.lock:
            self.statuses.append((request["lFlags"], request["hResult"] & 0xFFFFFFFF, text, error))
        answer = wmi.IWbemObjectSink_SetStatusResponse()
        answer["ErrorCode"] = 0
        self.done.set()
        return answer.getData()

    def pointer(self, resolver_host="127.0.0.1", resolver_port=None):
        """The sink as an MInterfacePointer: a standard OBJREF whose
        resolver is this host's (or one named)."""
        objref = OBJREF_STANDARD()
        objref["iid"] = uuid.string_to_bin(IWBEM_OBJECT_SINK[0])
        objref["std"]["flags"] = 0
        objref["std"]["cPublicRefs"] = 5
        objref["std"]["oxid"] = self.oxid
        objref["std"]["oid"] = self.oid
        objref["std"]["ipid"] = self.ipid
        entries, security = dual_string_array(
            "%s[%d]" % (resolver_host, resolver_port or self.resolver.getListenPort()))
        objref["saResAddr"] = struct.pack("<HH", len(entries), security) + struct.pack(
            "<%dH" % len(entries), *entries)
        raw = objref.getData()
        pointer = MInterfacePointer()
        pointer["ulCntData"] = len(raw)
        pointer["abData"] = list(raw)
        return pointer

    def wait(self):
        """Waits for the final SetStatus; what came, and clears it."""
        if not self.done.wait(TIMEOUT):
            raise RuntimeError("no SetStatus within %d s; calls: %s" % (TIMEOUT, self.calls))
        with self.lock:
            self.done.clear()
            objects, statuses = self.objects, self.statuses
            self.objects, self.statuses = [], []
        return objects, statuses


def call(target, request, iid=wmi.IID_IWbemServices):
    """An asynchronous call: the HRESULT it answers."""
    try:
        return target.request(request, iid=iid, uuid=target.get_iPid())["ErrorCode"]
    except Exception as e:
        c = hresult(e)
        return c if isinstance(c, int) else str(c)


def props(obj, names):
    found = obj.getProperties()
    return {n: found[n]["value"] for n in names if n in found}


def virtual_directory(name):
    """A new IIsWebVirtualDir: every property NULL but its Name (see
    impacket_wmi.py's spawn on Impacket's spawned instances)."""
    cls, _ = svc.GetObject("IIsWebVirtualDir")
    inst = cls.SpawnInstance()
    for prop_name, prop in inst.getProperties().items():
        scalar_string = prop["stype"] in ("string", "datetime", "reference") and not prop["type"] & 0x2000
        setattr(inst, prop_name, "" if scalar_string else None)
    inst.Name = name
    return inst


def final(statuses):
    """The final SetStatus, in JSON terms."""
    flags, status, text, error = statuses[-1]
    return {
        "flags": flags,
        "status": status,
        "text": text,
        "error": None if error is None else {
            "class": error.getClassName(),
            **props(error, ["StatusCode", "Description", "Operation"]),
        },
        "count": len(statuses),
    }


dcom = connect("127.0.0.1", port, user, password, RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
try:
    iface = dcom.CoCreateInstanceEx(wmi.CLSID_WbemLevel1Login, wmi.IID_IWbemLevel1Login)
    login = wmi.IWbemLevel1Login(iface)
    svc = login.NTLMLogin("//./root/MicrosoftIISv2", NULL, NULL)
    svc.get_dce_rpc().set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    host = SinkHost()

    if "query" in steps:
        request = wmi.IWbemServices_ExecQueryAsync()
        request["strQueryLanguage"]["asData"] = "WQL"
        request["strQuery"]["asData"] = "SELECT Name, ServerComment FROM IIsWebServerSetting"
        request["lFlags"] = 0
        request["pCtx"] = NULL
        request["pResponseHandler"] = host.pointer()
        out["query_answer"] = call(svc, request)
        objects, statuses = host.wait()
        out["query"] = sorted(props(o, ["Name"])["Name"] for _, batch in objects for o in batch)
        out["query_counts"] = all(count == len(batch) for count, batch in objects)
        out["query_final"] = final(statuses)

    if "get" in steps:
        for key, path in [("get", "IIsWebServer='W3SVC/1'"), ("get_missing", "IIsWebServer='W3SVC/99'")]:
            request = wmi.IWbemServices_GetObjectAsync()
            request["strObjectPath"]["asData"] = path
            request["lFlags"] = 0
            request["pCtx"] = NULL
            request["pResponseHandler"] = host.pointer()
            answer = call(svc, request)
            objects, statuses = host.wait()
            out[key] = {
                "answer": answer,
                "objects": [o.getClassName() for _, batch in objects for o in batch],
                "final": final(statuses),
            }

    if "method" in steps:
        for verb in ["Stop", "Start"]:
            request = wmi.IWbemServices_ExecMethodAsync()
            request["strObjectPath"]["asData"] = "IIsWebServer='W3SVC/1'"
            request["strMethodName"]["asData"] = verb
            request["lFlags"] = 0
            request["pCtx"] = NULL
            request["pInParams"] = NULL
            request["pResponseHandler"] = host.pointer()
            answer = call(svc, request)
            objects, statuses = host.wait()
            state = props(svc.GetObject("IIsWebServer='W3SVC/1'")[0], ["ServerState"])
            out["method_" + verb] = {"answer": answer, "final": final(statuses)["status"], **state}

    if "put" in steps:
        inst = virtual_directory("W3SVC/1/ROOT/sinkdir")
        request = wmi.IWbemServices_PutInstanceAsync()
        raw = inst.marshalMe().getData()
        request["pInst"]["ulCntData"] = len(raw)
        request["pInst"]["abData"] = list(raw)
        request["lFlags"] = 0
        request["pCtx"] = NULL
        request["pResponseHandler"] = host.pointer()
        answer = call(svc, request)
        _, statuses = host.wait()
        out["put"] = {"answer": answer, "final": final(statuses)}
        request = wmi.IWbemServices_DeleteInstanceAsync()
        request["strObjectPath"]["asData"] = "IIsWebVirtualDir='W3SVC/1/ROOT/sinkdir'"
        request["lFlags"] = 0
        request["pCtx"] = NULL
        request["pResponseHandler"] = host.pointer()
        answer = call(svc, request)
        _, statuses = host.wait()
        out["delete"] = {"answer": answer, "final": final(statuses)}

    if "events" in steps:
        request = wmi.IWbemServices_ExecNotificationQueryAsync()
        request["strQueryLanguage"]["asData"] = "WQL"
        request["strQuery"]["asData"] = (
            "SELECT * FROM __InstanceCreationEvent WITHIN 1 "
            "WHERE TargetInstance ISA 'IIsWebVirtualDir'")
        request["lFlags"] = 0
        request["pCtx"] = NULL
        request["pResponseHandler"] = host.pointer()
        out["events_answer"] = call(svc, request)
        # The change comes through the synchronous interface meanwhile.
        inst = virtual_directory("W3SVC/1/ROOT/eventdir")
        svc.PutInstance(inst.marshalMe())
        deadline = threading.Event()
        for _ in range(TIMEOUT * 10):
            with host.lock:
                if host.objects:
                    break
            deadline.wait(0.1)
        with host.lock:
            events = [o for _, batch in host.objects for o in batch]
            host.objects = []
        out["events"] = [
            {"class": e.getClassName(), "target": e.TargetInstance.getClassName() if hasattr(e.TargetInstance, "getClassName") else None}
            for e in events
        ]
        request = wmi.IWbemServices_CancelAsyncCall()
        request["IWbemObjectSink"] = host.pointer()
        out["cancel_answer"] = call(svc, request)
        _, statuses = host.wait()
        out["events_final"] = final(statuses)
        # Cancelled once: nothing is pending for the sink any more.
        out["cancel_again"] = call(svc, request)
        svc.DeleteInstance("IIsWebVirtualDir='W3SVC/1/ROOT/eventdir'")

    if "next_async" in steps:
        enum = svc.ExecQuery("SELECT Name FROM IIsWebServerSetting")
        out["next_async"] = []
        for count in [1, 10, 0]:
            request = wmi.IEnumWbemClassObject_NextAsync()
            request["lTimeout"] = count  # uCount in [MS-WMI] 3.1.4.4.3
            request["pSink"] = host.pointer()
            answer = call(enum, request, wmi.IID_IEnumWbemClassObject)
            if answer != 0:
                out["next_async"].append({"answer": answer})
                continue
            objects, statuses = host.wait()
            out["next_async"].append({
                "answer": answer,
                "objects": [props(o, ["Name"])["Name"] for _, batch in objects for o in batch],
                "final": final(statuses)["status"],
            })

    if "refused" in steps:
        request = wmi.IWbemServices_ExecQueryAsync()
        request["strQueryLanguage"]["asData"] = "WQL"
        request["strQuery"]["asData"] = "SELECT Name FROM IIsWebServer"
        request["lFlags"] = 0
        request["pCtx"] = NULL
        request["pResponseHandler"] = NULL
        out["null_sink"] = call(svc, request)
        before = list(host.calls)
        request["pResponseHandler"] = host.pointer("192.0.2.1", 135)
        out["sink_elsewhere"] = call(svc, request)
        request["strQueryLanguage"]["asData"] = "SQL"
        request["pResponseHandler"] = host.pointer()
        out["not_wql"] = call(svc, request)
        out["no_callback"] = host.calls == before

    out["calls"] = sorted(set(host.calls))
    svc.RemRelease()
    login.RemRelease()
finally:
    dcom.disconnect()
print(json.dumps(out))
