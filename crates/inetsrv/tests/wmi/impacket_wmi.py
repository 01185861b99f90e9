"""MS-WMI through Impacket 0.13's own IWbemLevel1Login, IWbemServices,
IEnumWbemClassObject and IWbemClassObject (its MS-WMIO decoder and, for
PutInstance, its encoder). Arguments: PORT USER PASSWORD STEP...; prints
one JSON object with what each step saw."""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "dcom"))

from dcom_common import DCERPCSessionError, connect, hresult  # noqa: E402,F401
from impacket.dcerpc.v5.dcom import wmi  # noqa: E402
from impacket import uuid  # noqa: E402
from impacket.dcerpc.v5.dcomrt import INTERFACE, DCOMANSWER, DCOMCALL  # noqa: E402
from impacket.dcerpc.v5.dcomrt import MInterfacePointer, OBJREF_CUSTOM  # noqa: E402
from impacket.dcerpc.v5.dtypes import GUID, NULL, ULONG  # noqa: E402
from impacket.dcerpc.v5.ndr import NDRPOINTER, NDRUniConformantArray  # noqa: E402
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY  # noqa: E402
from impacket.dcerpc.v5.rpcrt import DCERPCException  # noqa: E402

port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
steps = sys.argv[4:]
out = {}


class BYTES(NDRUniConformantArray):
    item = "c"


class PBYTES(NDRPOINTER):
    referent = (("Data", BYTES),)


class SmartNext(DCOMCALL):
    """IWbemWCOSmartEnum::Next as the IDL has it: proxyGUID is a REFGUID, a
    top-level [ref] pointer, so the GUID alone (Impacket's own description
    adds a referent ID). Answered by SmartNextResponse: Impacket finds a
    call's answer and error classes in the call's module."""

    opnum = 3
    structure = (
        ("proxyGUID", GUID),
        ("lTimeout", ULONG),
        ("uCount", ULONG),
    )


class SmartNextResponse(DCOMANSWER):
    """IWbemWCOSmartEnum::Next's answer as the IDL has it: pBuffer is a
    byte** (a unique pointer to the array; Impacket's own description
    leaves the pointer out)."""

    structure = (
        ("puReturned", ULONG),
        ("pdwBuffSize", ULONG),
        ("pBuffer", PBYTES),
        ("ErrorCode", ULONG),
    )


def code(e):
    c = hresult(e)
    return c if isinstance(c, int) else str(c)


def error_description(e):
    """The Description of the error information a failed call's ORPCTHAT
    carries ([MS-DCOM] 2.2.21), read with Impacket's ORPCTHAT and
    OBJREF_CUSTOM."""
    extents = e.get_packet()["ORPCthat"]["extensions"]["extent"]
    for extent in extents:
        if extent["id"] != uuid.string_to_bin("0000031c-0000-0000-c000-000000000046"):
            continue
        objref = OBJREF_CUSTOM(b"".join(extent["data"])[:extent["size"]])
        data, at, texts = objref["pObjectData"], 24, []
        for _ in range(3):
            (signature,) = struct.unpack_from("<L", data, at)
            at += 4
            if signature == 0:
                texts.append(None)
                continue
            (count,) = struct.unpack_from("<L", data, at)
            at += 12
            texts.append(data[at:at + 2 * count].decode("utf-16le").rstrip("\x00"))
            at += 2 * count
        return texts[1]
    return None


def services(dcom, namespace, before=None):
    """A login and the services of `namespace`, at packet privacy (as
    wmiquery.py sets it, after NTLMLogin; the login's own calls come
    first, `before`)."""
    iface = dcom.CoCreateInstanceEx(wmi.CLSID_WbemLevel1Login, wmi.IID_IWbemLevel1Login)
    login = wmi.IWbemLevel1Login(iface)
    if before:
        before(login)
    svc = login.NTLMLogin(namespace, NULL, NULL)
    svc.get_dce_rpc().set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    return login, svc


def login_calls(login):
    out["locale_version"] = login.EstablishPosition()
    try:
        login.RequestChallenge()
    except Exception as e:
        out["request_challenge"] = code(e)
    try:
        login.NTLMLogin("//./root/NoSuchNamespace", NULL, NULL)
    except Exception as e:
        out["bad_namespace"] = code(e)


def drain(enum):
    """Every object of an enumerator, one Next(WBEM_INFINITE, 1) at a time
    until WBEM_S_FALSE (Impacket raises on WBEM_S_FALSE, dropping what
    came with it, so one at a time loses nothing)."""
    objects = []
    while True:
        try:
            objects.extend(enum.Next(0xFFFFFFFF, 1))
        except DCERPCException as e:
            if "S_FALSE" in str(e):
                return objects
            raise


def values(obj, names):
    props = obj.getProperties()
    return {n: props[n]["value"] for n in names if n in props}


def spawn(svc, class_name, **values):
    """SpawnInstance of a class with every property NULL but `values`
    (Impacket's spawned instances hold 0 and 'False' for every number and
    boolean, which its encoder would send as values; its encoder writes a
    NULL string as '', and fails on None)."""
    cls, _ = svc.GetObject(class_name)
    inst = cls.SpawnInstance()
    for name, prop in inst.getProperties().items():
        scalar_string = prop["stype"] in ("string", "datetime", "reference") and not prop["type"] & 0x2000
        setattr(inst, name, "" if scalar_string else None)
    for name, value in values.items():
        setattr(inst, name, value)
    return inst


dcom = connect("127.0.0.1", port, user, password, RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
try:
    if "refused" in steps:
        try:
            services(dcom, "//./root/MicrosoftIISv2")
            out["refused"] = "no"
        except Exception as e:
            out["refused"] = code(e)
    else:
        login, svc = services(dcom, "//./root/MicrosoftIISv2", login_calls)

        if "query" in steps:
            # The WMI seed's listing, in the IIS 5.1 class name it uses.
            enum = svc.ExecQuery(
                "select * from MicrosoftIIS_WebVirtualDirSetting where AccessWrite != TRUE"
            )
            out["listing"] = [values(o, ["Name", "AccessWrite", "Path"]) for o in drain(enum)]
            enum = svc.ExecQuery("SELECT Name, ServerComment FROM IIsWebServerSetting")
            rows = drain(enum)
            out["projected"] = [
                {"class": o.getClassName(), "props": sorted(o.getProperties().keys()),
                 "values": values(o, ["Name", "ServerComment"])}
                for o in rows
            ]
            # WBEM_FLAG_PROTOTYPE: the result's class, its key left out.
            proto = drain(svc.ExecQuery("SELECT ServerComment FROM IIsWebServerSetting", lFlags=2))[0]
            out["prototype"] = {
                "flags": proto.encodingUnit["ObjectBlock"]["ObjectFlags"],
                "props": sorted(proto.getProperties().keys()),
            }
            obj, _ = svc.GetObject('IIsWebServerSetting.Name="W3SVC/1"')
            props = obj.getProperties()
            out["site"] = {
                "class": obj.getClassName(),
                "ServerComment": props["ServerComment"]["value"],
                "ServerAutoStart": props["ServerAutoStart"]["value"],
                "bindings": len(props["ServerBindings"]["value"] or []),
                "name_qualifiers": sorted(props["Name"]["qualifiers"].keys()),
            }
            cls, _ = svc.GetObject("IIsWebServerSetting")
            cprops = cls.getProperties()
            out["class"] = {
                "name": cls.getClassName(),
                "has_name": "Name" in cprops,
                "name_is_key": "key" in cprops["Name"]["qualifiers"],
                "comment_type": cprops["ServerComment"]["stype"],
                "bindings_cimtype": cprops["ServerBindings"]["qualifiers"].get("CIMTYPE"),
            }
            for name, call in [
                ("missing", lambda: svc.GetObject('IIsWebServerSetting.Name="W3SVC/99"')),
                ("no_class", lambda: svc.GetObject("IIsNoSuchClass")),
                ("bad_query", lambda: svc.ExecQuery("SELECT FROM WHERE")),
                ("bad_class", lambda: svc.ExecQuery("SELECT * FROM IIsNoSuchClass")),
            ]:
                try:
                    call()
                    out[name] = "no error"
                except Exception as e:
                    out[name] = code(e)
                    out[name + "_description"] = error_description(e)
            pools = drain(svc.CreateInstanceEnum("IIsApplicationPool"))
            out["pools"] = [values(o, ["Name"])["Name"] for o in pools]
            # Impacket's CreateClassEnum hands back the raw answer.
            resp = svc.CreateClassEnum("IIsSetting")
            enum = wmi.IEnumWbemClassObject(
                INTERFACE(svc.get_cinstance(), b"".join(resp["ppEnum"]["abData"]),
                          svc.get_ipidRemUnknown(), target=svc.get_target()),
                svc,
            )
            classes = drain(enum)
            out["setting_classes"] = len(classes)
            out["has_server_setting"] = any(c.getClassName() == "IIsWebServerSetting" for c in classes)

        if "enumerator" in steps:
            enum = svc.ExecQuery("SELECT Name FROM IIsWebVirtualDirSetting")
            first = enum.Next(0xFFFFFFFF, 1)
            try:
                enum.Skip(0, 1000)
            except Exception as e:
                out["skip_past_end"] = code(e)
            out["after_skip"] = len(drain(enum))
            enum.Reset()
            out["after_reset"] = len(drain(enum))
            out["first"] = values(first[0], ["Name"])["Name"]
            forward = svc.ExecQuery("SELECT Name FROM IIsWebVirtualDirSetting", lFlags=0x20)
            try:
                forward.Reset()
                out["forward_only_reset"] = "no error"
            except Exception as e:
                out["forward_only_reset"] = code(e)
            # The smart enumerator: every object in one ObjectArray.
            enum = svc.ExecQuery("SELECT * FROM IIsWebVirtualDirSetting")
            fetch = enum.RemQueryInterface(1, (wmi.IID_IWbemFetchSmartEnum,))
            request = wmi.IWbemFetchSmartEnum_GetSmartEnum()
            resp = fetch.request(request, iid=wmi.IID_IWbemFetchSmartEnum, uuid=fetch.get_iPid())
            smart = INTERFACE(
                enum.get_cinstance(), b"".join(resp["ppSmartEnum"]["abData"]),
                enum.get_ipidRemUnknown(), target=enum.get_target(),
            )
            smart = wmi.IWbemWCOSmartEnum(smart)
            request = SmartNext()
            request["proxyGUID"] = b"\x11" * 16
            request["lTimeout"] = 0xFFFFFFFF
            request["uCount"] = 100
            try:
                smart.request(request, iid=wmi.IID_IWbemWCOSmartEnum, uuid=smart.get_iPid())
                out["smart_status"] = 0
            except DCERPCException as e:
                # WBEM_S_FALSE: fewer than asked; the answer is in the packet.
                out["smart_status"] = code(e)
                answer = e.get_packet()
                data = b"".join(answer["pBuffer"])
                array = wmi.ObjectArray(data)
                # Each packet through Impacket's own structures: the first
                # instance carries its class, the next names it by ID.
                rest, kinds, names, ids = array["wbemObjects"], [], [], []
                while rest:
                    packet = wmi.WBEM_DATAPACKET_OBJECT(rest)
                    kinds.append(packet["bObjectType"])
                    body = wmi.WBEMOBJECT_INSTANCE(packet["Object"])
                    ids.append(body["classID"].hex())
                    if packet["bObjectType"] == 2:
                        block = wmi.OBJECT_BLOCK(body["ObjectData"])
                        block.parseObject()
                        names.append(block.ctCurrent["name"])
                    rest = rest[9 + packet["dwSizeOfData"]:]
                out["smart_packets"] = {"kinds": kinds, "classes": names, "one_id": len(set(ids)) == 1}
                out["smart"] = {
                    "returned": answer["puReturned"],
                    "objects": array["dwNumObjects"],
                    "signature": array["abSignature"].decode(),
                    "size": answer["pdwBuffSize"] == len(data),
                }

        if "put" in steps:
            # The WMI seed's site creation, step by step.
            site = os.environ["SITE_DIR"]
            results = []
            for cls, props in [
                ("IIsWebServer", {"Name": "W3SVC/20"}),
                ("IIsWebServerSetting", {"Name": "W3SVC/20", "ServerSize": 1,
                                         "ServerComment": "SampleWMISite"}),
                ("IIsWebVirtualDir", {"Name": "W3SVC/20/ROOT"}),
                ("IIsWebVirtualDirSetting", {"Name": "W3SVC/20/ROOT", "AccessRead": True,
                                             "AccessWrite": True, "EnableDirBrowsing": True,
                                             "Path": site}),
            ]:
                inst = spawn(svc, cls, **props)
                result = svc.PutInstance(inst.marshalMe())
                results.append(result.GetResultString(0)["pstrResultString"]["asData"])
            out["put"] = results
            obj, _ = svc.GetObject('IIsWebVirtualDirSetting.Name="W3SVC/20/ROOT"')
            out["put_back"] = values(obj, ["Path", "AccessWrite", "EnableDirBrowsing", "AccessExecute"])
            # A change to an existing instance: only what differs is written.
            inst = spawn(svc, "IIsWebServerSetting", Name="W3SVC/20", ServerComment="Renamed")
            svc.PutInstance(inst.marshalMe())
            # CREATE_ONLY on what exists, UPDATE_ONLY on what does not.
            for name, cls, flags, props in [
                ("create_only", "IIsWebServer", 2, {"Name": "W3SVC/20"}),
                ("update_only", "IIsWebServer", 1, {"Name": "W3SVC/21"}),
                ("wrong_place", "IIsWebServerSetting", 0, {"Name": "W3SVC", "ServerComment": "x"}),
            ]:
                try:
                    svc.PutInstance(spawn(svc, cls, **props).marshalMe(), lFlags=flags)
                    out[name] = "no error"
                except Exception as e:
                    out[name] = code(e)
            inst = spawn(svc, "IIsWebVirtualDir", Name="W3SVC/20/ROOT/gone")
            svc.PutInstance(inst.marshalMe())
            svc.DeleteInstance('IIsWebVirtualDir.Name="W3SVC/20/ROOT/gone"')
            try:
                svc.GetObject('IIsWebVirtualDir.Name="W3SVC/20/ROOT/gone"')
                out["deleted"] = "still there"
            except Exception as e:
                out["deleted"] = code(e)

        if "stop" in steps or "start" in steps or "recycle" in steps:
            for step, path, method in [
                ("stop", 'IIsWebServer.Name="W3SVC/1"', "Stop"),
                ("start", 'IIsWebServer.Name="W3SVC/1"', "Start"),
                ("recycle", 'IIsApplicationPool.Name="W3SVC/AppPools/DefaultAppPool"', "Recycle"),
            ]:
                if step in steps:
                    result = svc.ExecMethod(path, method)
                    out[step] = {"class": result.getClassName(), "out": sorted(result.getProperties().keys())}
            obj, _ = svc.GetObject('IIsWebServer.Name="W3SVC/1"')
            out["server_state"] = obj.getProperties()["ServerState"]["value"]
            for name, call in [
                ("no_method", lambda: svc.ExecMethod('IIsWebServer.Name="W3SVC/1"', "Explode")),
                ("no_instance", lambda: svc.ExecMethod('IIsWebServer.Name="W3SVC/77"', "Start")),
            ]:
                try:
                    call()
                    out[name] = "no error"
                except Exception as e:
                    out[name] = code(e)

        if "app" in steps:
            # Methods as Impacket calls them: by name on an instance, the
            # in-parameters encoded from the class's method signature.
            cls = svc.GetObject("IIsWebVirtualDir")[0]
            methods = cls.getMethods()
            out["methods"] = sorted(methods.keys())
            out["app_create3_in"] = list(methods["AppCreate3"]["InParams"].keys())
            vdir = svc.GetObject('IIsWebVirtualDir.Name="W3SVC/1/ROOT/images"')[0]
            result = vdir.AppCreate3(2, "DefaultAppPool", False)
            out["app_create3"] = result is not None
            status = svc.GetObject('IIsWebVirtualDir.Name="W3SVC/1/ROOT/images"')[0].AppGetStatus()
            out["app_status"] = status.getProperties()["ReturnValue"]["value"]

        if "events" in steps:
            enum = svc.ExecNotificationQuery(
                "SELECT * FROM __InstanceModificationEvent WITHIN 1 "
                "WHERE TargetInstance ISA 'IIsWebServerSetting'"
            )
            # The test changes the configuration now, and says when.
            print("READY", flush=True)
            sys.stdin.readline()
            event = enum.Next(10000, 1)[0]
            target = getattr(event, "TargetInstance")
            previous = getattr(event, "PreviousInstance")
            out["event"] = {
                "class": event.getClassName(),
                "target": values(target, ["Name", "ServerComment"]),
                "previous": values(previous, ["ServerComment"]),
            }
            try:
                enum.Next(500, 1)
                out["quiet"] = "an event"
            except Exception as e:
                out["quiet"] = code(e)
            try:
                svc.ExecNotificationQuery("SELECT * FROM IIsWebServerSetting")
                out["not_an_event"] = "no error"
            except Exception as e:
                out["not_an_event"] = code(e)

        if "partial" in steps:
            # A partial update ([MS-WMI] 3.1.4.3.12): the context names the
            # properties to write; with strict NULLs a listed NULL clears.
            def context_string(text):
                units = text.encode("utf-16le")
                return struct.pack("<L", len(units) // 2) + units

            def context(props):
                out = struct.pack("<L", 1) + b"\x00" * 16 + struct.pack("<L", len(props))
                for name, kind, value in props:
                    out += context_string(name) + struct.pack("<L", 0)
                    if kind == "bool":
                        out += struct.pack("<H", 11) + struct.pack("<H", 0xFFFF if value else 0) + b"\x00" * 6
                    else:
                        out += struct.pack("<H", 0x2008) + struct.pack("<LL", len(value), 8)
                        out += b"".join(context_string(v) for v in value)
                return out

            data = context([
                ("__PUT_EXTENSIONS", "bool", True),
                ("__PUT_EXT_STRICT_NULLS", "bool", True),
                ("__PUT_EXT_PROPERTIES", "strings", ["ServerComment", "MaxConnections"]),
            ])
            objref = OBJREF_CUSTOM()
            objref["iid"] = wmi.IID_IWbemContext[:16]
            objref["clsid"] = uuid.string_to_bin("674B6698-EE92-11D0-AD71-00C04FD8FDFF")
            objref["cbExtension"] = 0
            objref["ObjectReferenceSize"] = len(data) + 8
            objref["pObjectData"] = data
            pointer = MInterfacePointer()
            raw = objref.getData()
            pointer["ulCntData"] = len(raw)
            pointer["abData"] = list(raw)
            inst = spawn(svc, "IIsWebServerSetting", Name="W3SVC/1", ServerComment="Partial", ServerSize=2)
            svc.PutInstance(inst.marshalMe(), pCtx=pointer)
            obj, _ = svc.GetObject('IIsWebServerSetting.Name="W3SVC/1"')
            out["partial"] = values(obj, ["ServerComment", "ServerSize", "MaxConnections"])

        if "namespaces" in steps:
            _, root = services(dcom, "//./root")
            out["root"] = sorted(values(o, ["Name"])["Name"] for o in drain(root.ExecQuery("SELECT * FROM __NAMESPACE")))
            resp = root.OpenNamespace("MicrosoftIISv2")
            out["open_namespace"] = resp["ErrorCode"]
            _, cimv2 = services(dcom, "root\\cimv2")
            try:
                cimv2.ExecQuery("SELECT * FROM IIsWebServer")
                out["iis_in_cimv2"] = "no error"
            except Exception as e:
                out["iis_in_cimv2"] = code(e)
        svc.RemRelease()
        login.RemRelease()
finally:
    dcom.disconnect()
print(json.dumps(out))
