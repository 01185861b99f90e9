"""RPC over HTTP v2 through inetsrv's RPC proxy, with Impacket's rpch
transport (RPCProxyClient) as the client: the HTTP channels log on with
Basic over https, the proxy forwards to the server's ncacn_http endpoint.
Over the tunnel: MGMT and EPM anonymously, then an NTLM logon at packet
privacy, a DCOM activation of IMSAdminBaseW (IRemoteSCMActivator) and
calls on the object by its IPID. RPC over HTTP v1 (RPC_CONNECT, the
mixed proxy) with Impacket's DCE/RPC layer over the connection the
connect response leaves open, anonymously and with NTLM privacy. Then
what must fail: a wrong password (Basic and NTLM), a target outside
ValidPorts, Basic in clear. Prints one JSON object.

usage: impacket_rpch.py HTTPS_PORT HTTP_PORT NCACN_HTTP_PORT USER PASSWORD
"""
import base64
import http.client
import json
import os
import socket
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dcom"))

from impacket import ntlm  # noqa: E402
from impacket.dcerpc.v5 import dcomrt, epm, mgmt, transport  # noqa: E402
from impacket.dcerpc.v5.dtypes import NULL  # noqa: E402
from impacket.dcerpc.v5.rpcrt import (  # noqa: E402
    DCERPCException,
    RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
    RPC_C_AUTHN_WINNT,
)
from impacket.http import AUTH_BASIC, AUTH_NTLM  # noqa: E402
from impacket.uuid import generate  # noqa: E402

from impacket_imsa import (  # noqa: E402
    CLSID_MSAdminBase_W,
    IID_IMSAdminBaseW,
    METADATA_PERMISSION_READ,
    MD_SERVER_COMMENT,
    STRING_METADATA,
    CloseKey,
    OpenKey,
    R_GetData,
)


def tunnel(scheme, proxy_port, target_port, user, password, http_auth=AUTH_BASIC):
    t = transport.DCERPCTransportFactory("ncacn_http:127.0.0.1[%s]" % target_port)
    t.set_rpc_proxy_url("%s://127.0.0.1:%s/rpc/rpcproxy.dll" % (scheme, proxy_port))
    t.set_credentials(user, password)
    t.set_auth_type(http_auth)
    return t


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def connection(scheme, port):
    if scheme == "https":
        return http.client.HTTPSConnection(
            "127.0.0.1", port, context=ssl._create_unverified_context()
        )
    return http.client.HTTPConnection("127.0.0.1", port)


def answer(scheme, port, target, authorization, conn=None):
    """The status line an OUT channel's opening gets."""
    conn = conn or connection(scheme, port)
    conn.request(
        "RPC_OUT_DATA",
        "/rpc/rpcproxy.dll?" + target,
        body=b"\0" * 76,
        headers={"Authorization": authorization, "Content-Length": "76"},
    )
    resp = conn.getresponse()
    resp.read()
    return "%s %s" % (resp.status, resp.reason)


def ntlm_answer(port, target, user, password):
    """NTLM's handshake on one connection: the challenge, then the answer."""
    conn = connection("https", port)
    negotiate = ntlm.getNTLMSSPType1(domain="")
    conn.request(
        "RPC_OUT_DATA",
        "/rpc/rpcproxy.dll?" + target,
        headers={"Authorization": "NTLM " + base64.b64encode(negotiate.getData()).decode(),
                 "Content-Length": "0"},
    )
    resp = conn.getresponse()
    resp.read()
    challenge = base64.b64decode(resp.getheader("WWW-Authenticate").split(" ", 1)[1])
    authenticate, _ = ntlm.getNTLMSSPType3(negotiate, challenge, user, password, "", "", "")
    return answer("https", port, target, "NTLM " + base64.b64encode(authenticate.getData()).decode(), conn)


class RpcConnect(transport.DCERPCTransport):
    """RPC over HTTP v1 ([MS-RPCH] 2.1.1): an RPC_CONNECT request to the
    proxy over https; after its response's head the connection carries
    the PDUs both ways."""

    def __init__(self, proxy_port, target, authorization):
        transport.DCERPCTransport.__init__(self, "127.0.0.1", int(proxy_port))
        self.proxy_port = int(proxy_port)
        self.target = target
        self.authorization = authorization
        self.sock = None
        self.status_line = None

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.proxy_port), timeout=30)
        self.sock = ssl._create_unverified_context().wrap_socket(raw, server_hostname="localhost")
        head = (
            "RPC_CONNECT /rpc/rpcproxy.dll?%s HTTP/1.1\r\n"
            "Host: localhost\r\nUser-Agent: RPC\r\nPragma: No-cache\r\n"
            "Protocol: 1.1\r\nAuthorization: %s\r\n\r\n" % (self.target, self.authorization)
        )
        self.sock.sendall(head.encode())
        got = b""
        while b"\r\n\r\n" not in got:
            more = self.sock.recv(1)
            if not more:
                raise ConnectionError("the proxy closed the connection: %r" % got)
            got += more
        self.status_line = got.split(b"\r\n", 1)[0].decode()
        if not self.status_line.startswith("HTTP/1.1 200"):
            raise ConnectionError(self.status_line)
        return 1

    def disconnect(self):
        self.sock.close()

    def send(self, data, forceWriteAndx=0, forceRecv=0):
        self.sock.sendall(data)

    def recv(self, forceRecv=0, count=0):
        if not count:
            return self.sock.recv(8192)
        buffer = b""
        while len(buffer) < count:
            more = self.sock.recv(count - len(buffer))
            if not more:
                raise ConnectionError("the proxy closed the connection")
            buffer += more
        return buffer

    def get_socket(self):
        return self.sock


def v1_answer(port, target, authorization):
    """The status line an RPC_CONNECT gets."""
    conn = connection("https", port)
    conn.request(
        "RPC_CONNECT",
        "/rpc/rpcproxy.dll?" + target,
        headers={"Authorization": authorization, "User-Agent": "RPC"},
    )
    resp = conn.getresponse()
    return "%s %s" % (resp.status, resp.reason)


def orpcthis():
    this = dcomrt.ORPCTHIS()
    this["version"]["MajorVersion"] = 5
    this["version"]["MinorVersion"] = 7
    this["flags"] = 0
    this["reserved1"] = 0
    this["cid"] = generate()
    this["extensions"] = NULL
    return this


def main():
    https_port, http_port, target_port, user, password = sys.argv[1:6]
    out = {}

    # Anonymous calls through the tunnel.
    dce = tunnel("https", https_port, target_port, user, password).get_dce_rpc()
    dce.connect()
    dce.bind(mgmt.MSRPC_UUID_MGMT)
    out["listening"] = mgmt.his_server_listening(dce)["status"] == 0
    ids = mgmt.hinq_if_ids(dce)["if_id_vector"]
    out["interfaces"] = ids["count"]
    epm_dce = dce.alter_ctx(epm.MSRPC_UUID_PORTMAP)
    out["endpoints"] = sorted(
        set(epm.PrintStringBinding(e["tower"]["Floors"]) for e in epm.hept_lookup(None, dce=epm_dce))
    )
    dce.disconnect()

    # NTLM at privacy over the tunnel, and DCOM.
    dce = tunnel("https", https_port, target_port, user, password).get_dce_rpc()
    dce.set_credentials(user, password, "", "", "")
    dce.set_auth_type(RPC_C_AUTHN_WINNT)
    dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    dce.connect()
    scm = dcomrt.IRemoteSCMActivator(dce)
    iface = scm.RemoteCreateInstance(CLSID_MSAdminBase_W, IID_IMSAdminBaseW)
    ipid = iface.get_iPid()
    out["activated"] = ipid is not None
    admin = dce.alter_ctx(IID_IMSAdminBaseW)
    req = OpenKey()
    req["ORPCthis"] = orpcthis()
    req["hMDHandle"] = 0
    req["pszMDPath"] = "/LM/W3SVC/1\x00"
    req["dwMDAccessRequested"] = METADATA_PERMISSION_READ
    req["dwMDTimeOut"] = 1000
    resp = admin.request(req, uuid=ipid)
    out["open"] = resp["ErrorCode"]
    handle = resp["phMDNewHandle"]
    req = R_GetData()
    req["ORPCthis"] = orpcthis()
    req["hMDHandle"] = handle
    req["pszMDPath"] = "\x00"
    req["pmdrMDData"]["dwMDIdentifier"] = MD_SERVER_COMMENT
    req["pmdrMDData"]["dwMDAttributes"] = 0
    req["pmdrMDData"]["dwMDUserType"] = 0
    req["pmdrMDData"]["dwMDDataType"] = STRING_METADATA
    req["pmdrMDData"]["dwMDDataLen"] = 512
    req["pmdrMDData"]["pbMDData"] = NULL
    req["pmdrMDData"]["dwMDDataTag"] = 0
    resp = admin.request(req, uuid=ipid)
    # The value comes back in the crypto blob (as R_GetData does).
    data = b"".join(resp["ppDataBlob"]["BlobData"])
    out["server_comment"] = data.decode("utf-16-le").split("\x00")[0]
    req = CloseKey()
    req["ORPCthis"] = orpcthis()
    req["hMDHandle"] = handle
    out["close"] = admin.request(req, uuid=ipid)["ErrorCode"]
    dce.disconnect()

    # The HTTP channel logged on with NTLM ([MS-NTHT]), over https and in
    # clear (NTLM sends no password).
    for scheme, port in (("https", https_port), ("http", http_port)):
        dce = tunnel(scheme, port, target_port, user, password, AUTH_NTLM).get_dce_rpc()
        dce.connect()
        dce.bind(mgmt.MSRPC_UUID_MGMT)
        out["ntlm_" + scheme] = mgmt.his_server_listening(dce)["status"] == 0
        dce.disconnect()

    # RPC over HTTP v1 through the mixed proxy: anonymous MGMT, then NTLM
    # at packet privacy inside.
    target = "127.0.0.1:%s" % target_port
    t = RpcConnect(https_port, target, basic(user, password))
    dce = t.get_dce_rpc()
    dce.connect()
    out["v1_status"] = t.status_line
    dce.bind(mgmt.MSRPC_UUID_MGMT)
    out["v1_listening"] = mgmt.his_server_listening(dce)["status"] == 0
    out["v1_interfaces"] = mgmt.hinq_if_ids(dce)["if_id_vector"]["count"]
    dce.disconnect()
    dce = RpcConnect(https_port, target, basic(user, password)).get_dce_rpc()
    dce.set_credentials(user, password, "", "", "")
    dce.set_auth_type(RPC_C_AUTHN_WINNT)
    dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    dce.connect()
    dce.bind(mgmt.MSRPC_UUID_MGMT)
    out["v1_privacy"] = mgmt.his_server_listening(dce)["status"] == 0
    dce.disconnect()
    out["v1_wrong_password"] = v1_answer(https_port, target, basic(user, "wrong"))
    out["v1_not_valid_port"] = v1_answer(https_port, "127.0.0.1:1", basic(user, password))

    # What must fail, and say why: the proxy's own answers, read with a
    # plain HTTP client (Impacket's rpch reads the head after a 100
    # Continue with the 100's own recv, so a refusal that follows it at
    # once can be lost to it and the client then waits for ever).
    out["wrong_password"] = answer("https", https_port, target, basic(user, "wrong"))
    out["not_valid_port"] = answer("https", https_port, "127.0.0.1:1", basic(user, password))
    out["basic_in_clear"] = answer("http", http_port, target, basic(user, password))
    out["ntlm_wrong_password"] = ntlm_answer(https_port, target, user, "wrong")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
