"""What the DCOM test clients share: the error class Impacket looks up in
the module of each call's description, the answer that is an HRESULT
alone, the array types of the IIS IDLs, and the connection to a resolver
that is not on port 135."""
from impacket.dcerpc.v5.dcomrt import DCOMANSWER, DCOMConnection
from impacket.dcerpc.v5.dtypes import ULONG
from impacket.dcerpc.v5.ndr import NDRUniConformantArray
from impacket.dcerpc.v5.rpcrt import DCERPCException


class DCERPCSessionError(DCERPCException):
    """What Impacket raises for a call whose answer is an error."""

    def __init__(self, error_string=None, error_code=None, packet=None):
        DCERPCException.__init__(self, error_string, error_code, packet)


class HResultAnswer(DCOMANSWER):
    """An ORPC answer with nothing but its HRESULT."""

    structure = (("ErrorCode", ULONG),)


class WCHAR_ARRAY(NDRUniConformantArray):
    item = "<H"


class BYTE_ARRAY(NDRUniConformantArray):
    item = "c"


def hresult(e):
    code = getattr(e, "error_code", None)
    return code if code is not None else str(e)


def connect(host, port, user, password, auth_level, domain="", kerberos=False):
    """A DCOMConnection to a resolver on PORT: Impacket names the
    resolver's connection by the target as given and the objects' by the
    host alone, so both names must find it."""
    target = "%s[%s]" % (host, port)
    dcom = DCOMConnection(
        target, user, password, domain, "", "", authLevel=auth_level, doKerberos=kerberos
    )
    DCOMConnection.PORTMAPS[host] = DCOMConnection.PORTMAPS[target]
    return dcom
