"""The Inetinfo interface ([MS-IRP]) with Impacket's DCE/RPC runtime
against a live inetsrv: R_InetInfoGetVersion, R_W3QueryStatistics2 (for
the service and for a site) and R_W3ClearStatistics2, at packet privacy.
The calls are described here from the specification's IDL (Impacket has
no MS-IRP module). Prints one JSON object.

usage: impacket_irp.py PORT USER PASSWORD [clear]
"""
import json
import sys

from impacket.dcerpc.v5 import transport
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, ULONG, LONGLONG, NULL
from impacket.dcerpc.v5.ndr import NDRCALL, NDRSTRUCT, NDRPOINTER, NDRUNION, NDRUniConformantArray
from impacket.dcerpc.v5.rpcrt import DCERPCException, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.uuid import uuidtup_to_bin

from dcom_common import DCERPCSessionError  # noqa: F401 (Impacket looks it up here)

MSRPC_UUID_INETINFO = uuidtup_to_bin(("82ad4280-036b-11cf-972c-00aa006887b0", "2.0"))

W3_FIELDS = (
    "TotalFilesSent TotalFilesReceived CurrentAnonymousUsers CurrentNonAnonymousUsers "
    "TotalAnonymousUsers TotalNonAnonymousUsers MaxAnonymousUsers MaxNonAnonymousUsers "
    "CurrentConnections MaxConnections ConnectionAttempts LogonAttempts TotalOptions TotalGets "
    "TotalPosts TotalHeads TotalPuts TotalDeletes TotalTraces TotalMove TotalCopy TotalMkcol "
    "TotalPropfind TotalProppatch TotalSearch TotalLock TotalUnlock TotalOthers TotalCGIRequests "
    "TotalBGIRequests TotalNotFoundErrors TotalLockedErrors CurrentCalAuth MaxCalAuth "
    "TotalFailedCalAuth CurrentCalSsl MaxCalSsl TotalFailedCalSsl CurrentCGIRequests "
    "CurrentBGIRequests MaxCGIRequests MaxBGIRequests CurrentBlockedRequests TotalBlockedRequests "
    "TotalAllowedRequests TotalRejectedRequests MeasuredBw ServiceUptime TimeOfLastClear nAuxCounters"
).split()


class W3_STATISTICS_1(NDRSTRUCT):
    structure = (
        (("TotalBytesSent", LONGLONG), ("TotalBytesReceived", LONGLONG))
        + tuple((name, DWORD) for name in W3_FIELDS)
        + tuple(("rgCounters%d" % i, DWORD) for i in range(20))
    )


class LPW3_STATISTICS_1(NDRPOINTER):
    referent = (("Data", W3_STATISTICS_1),)


class W3_STATISTICS_STRUCT(NDRUNION):
    commonHdr = (("tag", ULONG),)
    union = {0: ("StatInfo1", LPW3_STATISTICS_1)}


CACHE_FIELDS = [
    ("FilesCached", DWORD), ("TotalFilesCached", DWORD), ("FileHits", DWORD),
    ("FileMisses", DWORD), ("FileFlushes", DWORD), ("CurrentFileCacheSize", LONGLONG),
    ("MaximumFileCacheSize", LONGLONG), ("FlushedEntries", DWORD), ("TotalFlushed", DWORD),
    ("URICached", DWORD), ("TotalURICached", DWORD), ("URIHits", DWORD), ("URIMisses", DWORD),
    ("URIFlushes", DWORD), ("TotalURIFlushed", DWORD), ("BlobCached", DWORD),
    ("TotalBlobCached", DWORD), ("BlobHits", DWORD), ("BlobMisses", DWORD),
    ("BlobFlushes", DWORD), ("TotalBlobFlushed", DWORD),
]


class INETA_CACHE_STATISTICS(NDRSTRUCT):
    structure = tuple(CACHE_FIELDS)


class INETA_ATQ_STATISTICS(NDRSTRUCT):
    structure = (
        ("TotalBlockedRequests", DWORD), ("TotalRejectedRequests", DWORD),
        ("TotalAllowedRequests", DWORD), ("CurrentBlockedRequests", DWORD),
        ("MeasuredBandwidth", DWORD),
    )


class INET_INFO_STATISTICS_0(NDRSTRUCT):
    structure = (
        ("CacheCtrs", INETA_CACHE_STATISTICS),
        ("AtqCtrs", INETA_ATQ_STATISTICS),
        ("nAuxCounters", DWORD),
    ) + tuple(("rgCounters%d" % i, DWORD) for i in range(20))


class LPINET_INFO_STATISTICS_0(NDRPOINTER):
    referent = (("Data", INET_INFO_STATISTICS_0),)


class INET_INFO_STATISTICS_INFO(NDRUNION):
    commonHdr = (("tag", ULONG),)
    union = {0: ("InetStats0", LPINET_INFO_STATISTICS_0)}


class R_InetInfoQueryStatistics(NDRCALL):
    opnum = 6
    structure = (("pszServer", LPWSTR), ("Level", DWORD), ("dwServerMask", DWORD))


class R_InetInfoQueryStatisticsResponse(NDRCALL):
    structure = (("StatsInfo", INET_INFO_STATISTICS_INFO), ("ErrorCode", ULONG))


class INET_INFO_SITE_ENTRY(NDRSTRUCT):
    structure = (("pszComment", LPWSTR), ("dwInstance", DWORD))


class INET_INFO_SITE_ENTRY_ARRAY(NDRUniConformantArray):
    item = INET_INFO_SITE_ENTRY


class INET_INFO_SITE_LIST(NDRSTRUCT):
    structure = (("cEntries", DWORD), ("aSiteEntry", INET_INFO_SITE_ENTRY_ARRAY))


class LPINET_INFO_SITE_LIST(NDRPOINTER):
    referent = (("Data", INET_INFO_SITE_LIST),)


class R_InetInfoGetSites(NDRCALL):
    opnum = 2
    structure = (("pszServer", LPWSTR), ("dwServerMask", DWORD))


class R_InetInfoGetSitesResponse(NDRCALL):
    structure = (("ppSites", LPINET_INFO_SITE_LIST), ("ErrorCode", ULONG))


class R_InetInfoClearStatistics(NDRCALL):
    opnum = 7
    structure = (("pszServer", LPWSTR), ("dwServerMask", DWORD))


class R_InetInfoClearStatisticsResponse(NDRCALL):
    structure = (("ErrorCode", ULONG),)


class R_InetInfoGetVersion(NDRCALL):
    opnum = 0
    structure = (("pszServer", LPWSTR), ("dwReserved", DWORD))


class R_InetInfoGetVersionResponse(NDRCALL):
    structure = (("pdwVersion", DWORD), ("ErrorCode", ULONG))


class R_W3QueryStatistics2(NDRCALL):
    opnum = 10
    structure = (
        ("pszServer", LPWSTR),
        ("dwLevel", DWORD),
        ("dwInstance", DWORD),
        ("dwReserved", DWORD),
    )


class R_W3QueryStatistics2Response(NDRCALL):
    structure = (("InfoStruct", W3_STATISTICS_STRUCT), ("ErrorCode", ULONG))


class R_W3ClearStatistics2(NDRCALL):
    opnum = 11
    structure = (("pszServer", LPWSTR), ("dwInstance", DWORD))


class R_W3ClearStatistics2Response(NDRCALL):
    structure = (("ErrorCode", ULONG),)


def main():
    port, user, password = sys.argv[1:4]
    clear = "clear" in sys.argv[4:]
    t = transport.DCERPCTransportFactory("ncacn_ip_tcp:127.0.0.1[%s]" % port)
    t.set_credentials(user, password)
    dce = t.get_dce_rpc()
    dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    dce.connect()
    dce.bind(MSRPC_UUID_INETINFO)
    out = {}

    def call(req):
        try:
            return 0, dce.request(req)
        except DCERPCException as e:
            return e.get_error_code(), None

    req = R_InetInfoGetVersion()
    req["pszServer"] = NULL
    req["dwReserved"] = 0
    err, resp = call(req)
    out["version"] = err or resp["pdwVersion"]

    def stats(instance, level=0):
        req = R_W3QueryStatistics2()
        req["pszServer"] = NULL
        req["dwLevel"] = level
        req["dwInstance"] = instance
        req["dwReserved"] = 0
        err, resp = call(req)
        if err:
            return {"error": err}
        s = resp["InfoStruct"]["StatInfo1"]
        return {
            "sent": s["TotalBytesSent"],
            "received": s["TotalBytesReceived"],
            "gets": s["TotalGets"],
            "posts": s["TotalPosts"],
            "heads": s["TotalHeads"],
            "others": s["TotalOthers"],
            "not_found": s["TotalNotFoundErrors"],
            "anonymous": s["TotalAnonymousUsers"],
            "attempts": s["ConnectionAttempts"],
            "uptime": s["ServiceUptime"],
        }

    req = R_InetInfoGetSites()
    req["pszServer"] = NULL
    req["dwServerMask"] = 4
    err, resp = call(req)
    out["sites"] = err or [
        [e["dwInstance"], e["pszComment"][:-1]] for e in resp["ppSites"]["aSiteEntry"]
    ]

    req = R_InetInfoQueryStatistics()
    req["pszServer"] = NULL
    req["Level"] = 0
    req["dwServerMask"] = 4
    err, resp = call(req)
    if err:
        out["cache"] = err
    else:
        s0 = resp["StatsInfo"]["InetStats0"]
        c = s0["CacheCtrs"]
        out["cache"] = {
            "uri_cached": c["URICached"],
            "uri_hits": c["URIHits"],
            "uri_misses": c["URIMisses"],
            "bytes": c["CurrentFileCacheSize"],
            "allowed": s0["AtqCtrs"]["TotalAllowedRequests"],
        }

    out["total"] = stats(0)
    out["site1"] = stats(1)
    out["site99"] = stats(99)
    out["level7"] = stats(0, 7)
    if clear:
        req = R_W3ClearStatistics2()
        req["pszServer"] = NULL
        req["dwInstance"] = 1
        out["clear"] = call(req)[0]
        out["site1_after"] = stats(1)
        req = R_InetInfoClearStatistics()
        req["pszServer"] = NULL
        req["dwServerMask"] = 4
        out["clear_all"] = call(req)[0]
        out["total_after"] = stats(0)
    dce.disconnect()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
