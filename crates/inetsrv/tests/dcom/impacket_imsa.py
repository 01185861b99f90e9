"""IMSAdminBaseW over DCOM with Impacket's DCOM runtime, against a live
inetsrv. The interface's calls are described here from [MS-IMSA]'s IDL
(Impacket has no IIS definitions). Prints one JSON object.

usage: impacket_imsa.py PORT USER PASSWORD connect|integrity|privacy [ntlm | kerberos REALM | abandon]

With abandon, the client opens a write handle and dies without releasing
anything or ever pinging, as a crashed tool would.

With kerberos, Impacket logs on with Negotiate (SPNEGO) and the Kerberos
ticket of the credential cache KRB5CCNAME names, to host/localhost.
"""
import json
import os
import struct
import sys

from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.dcomrt import (
    DCOMCALL,
    DCOMANSWER,
    DCOMConnection,
    IRemUnknown2,
    PMInterfacePointer,
)
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, ULONG, NULL
from impacket.dcerpc.v5.ndr import NDRSTRUCT, NDRUniConformantArray, NDRPOINTER
from impacket.dcerpc.v5.rpcrt import (
    DCERPCException,
    RPC_C_AUTHN_LEVEL_CONNECT,
    RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
)
from impacket.uuid import string_to_bin, uuidtup_to_bin

from dcom_common import (  # noqa: F401 (DCERPCSessionError: Impacket looks it up here)
    BYTE_ARRAY,
    DCERPCSessionError,
    HResultAnswer,
    WCHAR_ARRAY,
    connect,
    hresult,
)

CLSID_MSAdminBase_W = string_to_bin("A9E69610-B80D-11D0-B9B9-00A0C922E750")
IID_IMSAdminBaseW = uuidtup_to_bin(("70B51430-B6CA-11d0-B9B9-00A0C922E750", "0.0"))
IID_IMSAdminBase3W = uuidtup_to_bin(("f612954d-3b0b-4c56-9563-227b7be624b4", "0.0"))
MD_BACKUP_NEXT_VERSION = 0xFFFFFFFF
MD_BACKUP_HIGHEST_VERSION = 0xFFFFFFFE
METADATA_PERMISSION_READ = 1
METADATA_PERMISSION_WRITE = 2
STRING_METADATA = 2
MD_SERVER_COMMENT = 1015
MD_KEY_TYPE = 1002






class PBYTE_ARRAY(NDRPOINTER):
    referent = (("Data", BYTE_ARRAY),)


class METADATA_RECORD(NDRSTRUCT):
    structure = (
        ("dwMDIdentifier", DWORD),
        ("dwMDAttributes", DWORD),
        ("dwMDUserType", DWORD),
        ("dwMDDataType", DWORD),
        ("dwMDDataLen", DWORD),
        ("pbMDData", PBYTE_ARRAY),
        ("dwMDDataTag", DWORD),
    )


class IIS_CRYPTO_BLOB(NDRSTRUCT):
    structure = (
        ("BlobSignature", DWORD),
        ("BlobDataLength", DWORD),
        ("BlobData", BYTE_ARRAY),
    )


class PIIS_CRYPTO_BLOB(NDRPOINTER):
    referent = (("Data", IIS_CRYPTO_BLOB),)


class AddKey(DCOMCALL):
    opnum = 3
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR))


class AddKeyResponse(HResultAnswer):
    pass


class DeleteKey(DCOMCALL):
    opnum = 4
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR))


class DeleteKeyResponse(HResultAnswer):
    pass


class EnumKeys(DCOMCALL):
    opnum = 6
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR), ("dwMDEnumObjectIndex", DWORD))


class EnumKeysResponse(DCOMANSWER):
    structure = (("pszMDName", WCHAR_ARRAY), ("ErrorCode", ULONG))


class R_SetData(DCOMCALL):
    opnum = 9
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR), ("pmdrMDData", METADATA_RECORD))


class R_SetDataResponse(HResultAnswer):
    pass


class R_GetData(DCOMCALL):
    opnum = 10
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR), ("pmdrMDData", METADATA_RECORD))


class R_GetDataResponse(DCOMANSWER):
    structure = (
        ("pmdrMDData", METADATA_RECORD),
        ("pdwMDRequiredDataLen", DWORD),
        ("ppDataBlob", PIIS_CRYPTO_BLOB),
        ("ErrorCode", ULONG),
    )


class OpenKey(DCOMCALL):
    opnum = 17
    structure = (
        ("hMDHandle", DWORD),
        ("pszMDPath", LPWSTR),
        ("dwMDAccessRequested", DWORD),
        ("dwMDTimeOut", DWORD),
    )


class OpenKeyResponse(DCOMANSWER):
    structure = (("phMDNewHandle", DWORD), ("ErrorCode", ULONG))


class CloseKey(DCOMCALL):
    opnum = 18
    structure = (("hMDHandle", DWORD),)


class CloseKeyResponse(HResultAnswer):
    pass


class DeleteChildKeys(DCOMCALL):
    opnum = 5
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR))


class DeleteChildKeysResponse(HResultAnswer):
    pass


class CopyKey(DCOMCALL):
    opnum = 7
    structure = (
        ("hMDSourceHandle", DWORD),
        ("pszMDSourcePath", LPWSTR),
        ("hMDDestHandle", DWORD),
        ("pszMDDestPath", LPWSTR),
        ("bMDOverwriteFlag", DWORD),
        ("bMDCopyFlag", DWORD),
    )


class CopyKeyResponse(HResultAnswer):
    pass


class RenameKey(DCOMCALL):
    opnum = 8
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR), ("pszMDNewName", LPWSTR))


class RenameKeyResponse(HResultAnswer):
    pass


class R_GetAllData(DCOMCALL):
    opnum = 13
    structure = (
        ("hMDHandle", DWORD),
        ("pszMDPath", LPWSTR),
        ("dwMDAttributes", DWORD),
        ("dwMDUserType", DWORD),
        ("dwMDDataType", DWORD),
        ("dwMDBufferSize", DWORD),
    )


class R_GetAllDataResponse(DCOMANSWER):
    structure = (
        ("pdwMDNumDataEntries", DWORD),
        ("pdwMDDataSetNumber", DWORD),
        ("pdwMDRequiredBufferSize", DWORD),
        ("ppDataBlob", PIIS_CRYPTO_BLOB),
        ("ErrorCode", ULONG),
    )


class GetDataPaths(DCOMCALL):
    opnum = 16
    structure = (
        ("hMDHandle", DWORD),
        ("pszMDPath", LPWSTR),
        ("dwMDIdentifier", DWORD),
        ("dwMDDataType", DWORD),
        ("dwMDBufferSize", DWORD),
    )


class GetDataPathsResponse(DCOMANSWER):
    structure = (("pszBuffer", WCHAR_ARRAY), ("pdwMDRequiredBufferSize", DWORD), ("ErrorCode", ULONG))


class GetDataSetNumber(DCOMCALL):
    opnum = 23
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR))


class GetDataSetNumberResponse(DCOMANSWER):
    structure = (("pdwMDDataSetNumber", DWORD), ("ErrorCode", ULONG))


class FILETIME(NDRSTRUCT):
    structure = (("dwLowDateTime", DWORD), ("dwHighDateTime", DWORD))


class SetLastChangeTime(DCOMCALL):
    opnum = 24
    structure = (
        ("hMDHandle", DWORD),
        ("pszMDPath", LPWSTR),
        ("pftMDLastChangeTime", FILETIME),
        ("bLocalTime", DWORD),
    )


class SetLastChangeTimeResponse(HResultAnswer):
    pass


class GetLastChangeTime(DCOMCALL):
    opnum = 25
    structure = (("hMDHandle", DWORD), ("pszMDPath", LPWSTR), ("bLocalTime", DWORD))


class GetLastChangeTimeResponse(DCOMANSWER):
    structure = (("pftMDLastChangeTime", FILETIME), ("ErrorCode", ULONG))


class EnumBackups(DCOMCALL):
    opnum = 30
    structure = (("pszMDBackupName", WCHAR_ARRAY), ("dwMDEnumIndex", DWORD))


class EnumBackupsResponse(DCOMANSWER):
    structure = (
        ("pszMDBackupName", WCHAR_ARRAY),
        ("pdwMDVersion", DWORD),
        ("pftMDBackupTime", FILETIME),
        ("ErrorCode", ULONG),
    )


class DeleteBackup(DCOMCALL):
    opnum = 31
    structure = (("pszMDBackupName", LPWSTR), ("dwMDVersion", DWORD))


class DeleteBackupResponse(HResultAnswer):
    pass


class BackupWithPasswd(DCOMCALL):
    opnum = 34
    structure = (
        ("pszMDBackupName", LPWSTR),
        ("dwMDVersion", DWORD),
        ("dwMDFlags", DWORD),
        ("pszPasswd", LPWSTR),
    )


class BackupWithPasswdResponse(HResultAnswer):
    pass


class RestoreWithPasswd(BackupWithPasswd):
    opnum = 35


class RestoreWithPasswdResponse(HResultAnswer):
    pass


class Export(DCOMCALL):
    opnum = 36
    structure = (
        ("pszPasswd", LPWSTR),
        ("pszFileName", LPWSTR),
        ("pszSourcePath", LPWSTR),
        ("dwMDFlags", DWORD),
    )


class ExportResponse(HResultAnswer):
    pass


class EnumHistory(DCOMCALL):
    opnum = 39
    structure = (("pszMDHistoryLocation", WCHAR_ARRAY), ("dwMDEnumIndex", DWORD))


class EnumHistoryResponse(DCOMANSWER):
    structure = (
        ("pszMDHistoryLocation", WCHAR_ARRAY),
        ("pdwMDMajorVersion", DWORD),
        ("pdwMDMinorVersion", DWORD),
        ("pftMDHistoryTime", FILETIME),
        ("ErrorCode", ULONG),
    )


class PWCHAR_ARRAY(NDRPOINTER):
    referent = (("Data", WCHAR_ARRAY),)


class PDWORD(NDRPOINTER):
    referent = (("Data", DWORD),)


class GetChildPaths(DCOMCALL):
    opnum = 40
    structure = (
        ("hMDHandle", DWORD),
        ("pszMDPath", LPWSTR),
        ("cchMDBufferSize", DWORD),
        ("pszBuffer", PWCHAR_ARRAY),
        ("pcchMDRequiredBufferSize", PDWORD),
    )


class GetChildPathsResponse(DCOMANSWER):
    structure = (
        ("pszBuffer", PWCHAR_ARRAY),
        ("pcchMDRequiredBufferSize", PDWORD),
        ("ErrorCode", ULONG),
    )


class CopyData(DCOMCALL):
    opnum = 15
    structure = (
        ("hMDSourceHandle", DWORD),
        ("pszMDSourcePath", LPWSTR),
        ("hMDDestHandle", DWORD),
        ("pszMDDestPath", LPWSTR),
        ("dwMDAttributes", DWORD),
        ("dwMDUserType", DWORD),
        ("dwMDDataType", DWORD),
        ("bMDCopyFlag", DWORD),
    )


class CopyDataResponse(HResultAnswer):
    pass


class UnmarshalInterface(DCOMCALL):
    opnum = 32
    structure = ()


class UnmarshalInterfaceResponse(DCOMANSWER):
    structure = (("piadmbwInterface", PMInterfacePointer), ("ErrorCode", ULONG))


class SaveData(DCOMCALL):
    opnum = 20
    structure = ()


class SaveDataResponse(HResultAnswer):
    pass


class GetSystemChangeNumber(DCOMCALL):
    opnum = 22
    structure = ()


class GetSystemChangeNumberResponse(DCOMANSWER):
    structure = (("pdwSystemChangeNumber", DWORD), ("ErrorCode", ULONG))



def main():
    port, user, password, level = sys.argv[1:5]
    mechanism = sys.argv[5] if len(sys.argv) > 5 else "ntlm"
    realm = sys.argv[6] if len(sys.argv) > 6 else ""
    auth_level = {
        "connect": RPC_C_AUTHN_LEVEL_CONNECT,
        "integrity": RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
        "privacy": RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
    }[level]
    kerberos = mechanism == "kerberos"
    host = "localhost" if kerberos else "127.0.0.1"
    out = {}
    dcom = connect(host, port, user, password, auth_level, realm, kerberos)
    try:
        try:
            iface = dcom.CoCreateInstanceEx(CLSID_MSAdminBase_W, IID_IMSAdminBaseW)
        except DCERPCException as e:
            out["activation"] = hresult(e)
            print(json.dumps(out))
            return
        out["activation"] = 0
        iface.get_cinstance().set_auth_level(auth_level)

        def call(request):
            return iface.request(request, IID_IMSAdminBaseW, iface.get_iPid())

        def error_of(request):
            try:
                return call(request)["ErrorCode"]
            except DCERPCException as e:
                return hresult(e)

        req = OpenKey()
        req["hMDHandle"] = 0
        req["pszMDPath"] = "/LM/W3SVC\x00"
        req["dwMDAccessRequested"] = METADATA_PERMISSION_READ | METADATA_PERMISSION_WRITE
        req["dwMDTimeOut"] = 1000
        try:
            resp = call(req)
        except DCERPCException as e:
            out["open"] = hresult(e)
            print(json.dumps(out))
            return
        handle = resp["phMDNewHandle"]
        out["open"] = resp["ErrorCode"]
        if mechanism == "abandon":
            print(json.dumps(out))
            sys.stdout.flush()
            os._exit(0)

        # A second write handle on the same branch is refused while the first is open.
        out["open_busy"] = error_of(req)

        keys = []
        for i in range(64):
            req = EnumKeys()
            req["hMDHandle"] = handle
            req["pszMDPath"] = "\x00"
            req["dwMDEnumObjectIndex"] = i
            try:
                resp = call(req)
            except DCERPCException as e:
                out["enum_end"] = hresult(e)
                break
            keys.append("".join(chr(c) for c in resp["pszMDName"]).split("\x00")[0])
        out["keys"] = keys

        def get(path, ident, size=4096):
            req = R_GetData()
            req["hMDHandle"] = handle
            req["pszMDPath"] = path + "\x00"
            req["pmdrMDData"]["dwMDIdentifier"] = ident
            req["pmdrMDData"]["dwMDAttributes"] = 0
            req["pmdrMDData"]["dwMDUserType"] = 0
            req["pmdrMDData"]["dwMDDataType"] = 0
            req["pmdrMDData"]["dwMDDataLen"] = size
            req["pmdrMDData"]["pbMDData"] = NULL
            req["pmdrMDData"]["dwMDDataTag"] = 0
            try:
                resp = call(req)
            except DCERPCException as e:
                return {"error": hresult(e)}
            data = b"".join(resp["ppDataBlob"]["BlobData"])
            return {
                "error": 0,
                "type": resp["pmdrMDData"]["dwMDDataType"],
                "signature": resp["ppDataBlob"]["BlobSignature"],
                "text": data.decode("utf-16-le").rstrip("\x00"),
            }

        def set_string(path, ident, text):
            data = (text + "\x00").encode("utf-16-le")
            req = R_SetData()
            req["hMDHandle"] = handle
            req["pszMDPath"] = path + "\x00"
            req["pmdrMDData"]["dwMDIdentifier"] = ident
            req["pmdrMDData"]["dwMDAttributes"] = 1
            req["pmdrMDData"]["dwMDUserType"] = 1
            req["pmdrMDData"]["dwMDDataType"] = STRING_METADATA
            req["pmdrMDData"]["dwMDDataLen"] = len(data)
            req["pmdrMDData"]["pbMDData"] = list(data)
            req["pmdrMDData"]["dwMDDataTag"] = 0
            return error_of(req)

        # AnonymousUserPass is SECURE: never sent in the clear.
        out["secure"] = get("1", 6021)
        out["comment_before"] = get("1", MD_SERVER_COMMENT)
        out["comment_small_buffer"] = get("1", MD_SERVER_COMMENT, 2)
        out["missing_key"] = get("99", MD_SERVER_COMMENT)
        def change_time(path):
            req = GetLastChangeTime()
            req["hMDHandle"] = handle
            req["pszMDPath"] = path + "\x00"
            req["bLocalTime"] = 0
            t = call(req)["pftMDLastChangeTime"]
            return (t["dwHighDateTime"] << 32) | t["dwLowDateTime"]

        before = change_time("1/ROOT")
        set_string("1/ROOT", 2102, "Application %d" % os.getpid())
        out["change_time_moved"] = change_time("1/ROOT") > before
        out["set_comment"] = set_string("1", MD_SERVER_COMMENT, "Set over DCOM")
        req = SetLastChangeTime()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "1\x00"
        req["pftMDLastChangeTime"]["dwLowDateTime"] = 0x12345678
        req["pftMDLastChangeTime"]["dwHighDateTime"] = 0x01D00000
        req["bLocalTime"] = 0
        out["set_change_time"] = error_of(req)
        out["change_time"] = change_time("1")
        out["comment_after"] = get("1", MD_SERVER_COMMENT)
        # Validated like every other write: a key type that is no class.
        out["set_bad_keytype"] = set_string("1", MD_KEY_TYPE, "NoSuchClass")

        req = AddKey()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomKey\x00"
        out["add_key"] = error_of(req)
        out["add_key_again"] = error_of(req)
        # A child, a copy of the key (with the child), the copy renamed.
        req = AddKey()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomKey/Child\x00"
        out["add_child"] = error_of(req)
        req = CopyKey()
        req["hMDSourceHandle"] = handle
        req["pszMDSourcePath"] = "DcomKey\x00"
        req["hMDDestHandle"] = handle
        req["pszMDDestPath"] = "DcomCopy\x00"
        req["bMDOverwriteFlag"] = 0
        req["bMDCopyFlag"] = 1
        out["copy_key"] = error_of(req)
        req = RenameKey()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomCopy\x00"
        req["pszMDNewName"] = "DcomRenamed\x00"
        out["rename_key"] = error_of(req)
        req = DeleteChildKeys()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomRenamed\x00"
        out["delete_child_keys"] = error_of(req)
        req = EnumKeys()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomRenamed\x00"
        req["dwMDEnumObjectIndex"] = 0
        out["renamed_children"] = error_of(req)
        req = EnumKeys()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "DcomKey\x00"
        req["dwMDEnumObjectIndex"] = 0
        try:
            out["original_child"] = "".join(chr(c) for c in call(req)["pszMDName"]).split("\x00")[0]
        except DCERPCException as e:
            out["original_child"] = hresult(e)
        # CopyData: site 1's string server data onto DcomKey, read back.
        req = CopyData()
        req["hMDSourceHandle"] = handle
        req["pszMDSourcePath"] = "1\x00"
        req["hMDDestHandle"] = handle
        req["pszMDDestPath"] = "DcomKey\x00"
        req["dwMDAttributes"] = 0
        req["dwMDUserType"] = 1
        req["dwMDDataType"] = STRING_METADATA
        req["bMDCopyFlag"] = 1
        out["copy_data"] = error_of(req)
        out["copied_comment"] = get("DcomKey", MD_SERVER_COMMENT)
        resp = call(UnmarshalInterface())
        out["unmarshal"] = b"".join(resp["piadmbwInterface"]["abData"])[:4].decode("latin-1")
        for key in ("DcomKey\x00", "DcomRenamed\x00"):
            req = DeleteKey()
            req["hMDHandle"] = handle
            req["pszMDPath"] = key
            out["delete_key"] = error_of(req)

        # All the data of site 1's root, inherited included.
        req = R_GetAllData()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "1/ROOT\x00"
        req["dwMDAttributes"] = 1
        req["dwMDUserType"] = 0
        req["dwMDDataType"] = 0
        req["dwMDBufferSize"] = 16
        out["getall_small"] = error_of(req)
        req["dwMDBufferSize"] = 65536
        resp = call(req)
        blob = b"".join(resp["ppDataBlob"]["BlobData"])
        entries = {}
        for i in range(resp["pdwMDNumDataEntries"]):
            ident, attrs, utype, dtype, dlen, doff, _ = struct.unpack_from("<7I", blob, i * 28)
            value = blob[doff:doff + dlen]
            entries[str(ident)] = {
                "inherited": bool(attrs & 0x20),
                "type": dtype,
                "text": value.decode("utf-16-le").rstrip("\x00") if dtype == 2 else None,
                "dword": struct.unpack("<I", value)[0] if dtype == 1 else None,
            }
        out["getall"] = entries
        out["getall_set"] = resp["pdwMDDataSetNumber"]

        req = GetDataSetNumber()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "1/ROOT\x00"
        out["set_number"] = call(req)["pdwMDDataSetNumber"]
        req["pszMDPath"] = "1/ROOT/no/such/key\x00"
        out["set_number_below"] = call(req)["pdwMDDataSetNumber"]

        # Where KeyType (1002) is set below the handle.
        req = GetDataPaths()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "1\x00"
        req["dwMDIdentifier"] = MD_KEY_TYPE
        req["dwMDDataType"] = 0
        req["dwMDBufferSize"] = 4
        out["paths_small"] = error_of(req)
        req["dwMDBufferSize"] = 4096
        units = call(req)["pszBuffer"]
        text = "".join(chr(c) for c in units)
        out["paths"] = [p for p in text.split("\x00\x00")[0].split("\x00") if p]

        # IMSAdminBase3W on the same object: backups, history, export,
        # child paths.
        v3 = IRemUnknown2(iface).RemQueryInterface(1, (IID_IMSAdminBase3W,))

        def call3(request):
            try:
                return 0, v3.request(request, IID_IMSAdminBase3W, v3.get_iPid())
            except DCERPCException as e:
                return hresult(e), None

        req = BackupWithPasswd()
        req["pszMDBackupName"] = "dcomtest\x00"
        req["dwMDVersion"] = MD_BACKUP_NEXT_VERSION
        req["dwMDFlags"] = 2
        req["pszPasswd"] = "Backup-Pass-1\x00"
        out["backup"] = call3(req)[0]
        out["backup_again"] = call3(req)[0]
        names = []
        for i in range(16):
            req = EnumBackups()
            req["pszMDBackupName"] = [0] * 100
            req["dwMDEnumIndex"] = i
            err, resp = call3(req)
            if err:
                out["backups_end"] = err
                break
            names.append("%s.%d" % ("".join(chr(c) for c in resp["pszMDBackupName"]).split("\x00")[0], resp["pdwMDVersion"]))
        out["backups"] = names
        req = RestoreWithPasswd()
        req["pszMDBackupName"] = "dcomtest\x00"
        req["dwMDVersion"] = 0
        req["dwMDFlags"] = 0
        req["pszPasswd"] = "wrong\x00"
        out["restore_wrong_password"] = call3(req)[0]
        req["pszPasswd"] = "Backup-Pass-1\x00"
        out["restore"] = call3(req)[0]
        req = DeleteBackup()
        req["pszMDBackupName"] = "dcomtest\x00"
        req["dwMDVersion"] = MD_BACKUP_HIGHEST_VERSION
        out["delete_backup"] = call3(req)[0]
        req["pszMDBackupName"] = "nosuchbackup\x00"
        out["delete_missing_backup"] = call3(req)[0]
        req = EnumHistory()
        req["pszMDHistoryLocation"] = [0] * 100
        req["dwMDEnumIndex"] = 0
        err, resp = call3(req)
        out["history"] = err if err else [resp["pdwMDMajorVersion"], resp["pdwMDMinorVersion"]]
        req = Export()
        req["pszPasswd"] = "Export-Pass-1\x00"
        req["pszFileName"] = os.environ.get("EXPORT_FILE", "/nonexistent/x.xml") + "\x00"
        req["pszSourcePath"] = "/LM/W3SVC/1\x00"
        req["dwMDFlags"] = 0
        out["export"] = call3(req)[0]
        req = GetChildPaths()
        req["hMDHandle"] = handle
        req["pszMDPath"] = "1\x00"
        req["cchMDBufferSize"] = 4096
        req["pszBuffer"] = [0] * 4096
        req["pcchMDRequiredBufferSize"] = 0
        err, resp = call3(req)
        if err:
            out["child_paths"] = err
        else:
            text = "".join(chr(c) for c in resp["pszBuffer"])
            out["child_paths"] = [p for p in text.split("\x00\x00")[0].split("\x00") if p]

        out["change_number"] = call(GetSystemChangeNumber())["pdwSystemChangeNumber"]
        out["save"] = call(SaveData())["ErrorCode"]

        req = CloseKey()
        req["hMDHandle"] = handle
        out["close"] = error_of(req)
        out["close_again"] = error_of(req)

        # IRemUnknown2 on the same object.
        unknown = IRemUnknown2(iface)
        qi = unknown.RemQueryInterface(1, (IID_IMSAdminBaseW,))
        out["qi"] = qi.get_iPid() is not None
        try:
            unknown.RemQueryInterface(1, (uuidtup_to_bin(("12345678-1234-1234-1234-123456789abc", "0.0")),))
            out["qi_unknown"] = 0
        except DCERPCException as e:
            out["qi_unknown"] = hresult(e)
        except Exception as e:  # Impacket raises its own error for a failed REMQIRESULT
            out["qi_unknown"] = str(e)
        iface.RemRelease()
    finally:
        dcom.disconnect()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
