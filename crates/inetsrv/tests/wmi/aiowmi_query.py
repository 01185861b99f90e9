"""MS-WMI through aiowmi 1.1.3, a client written without Impacket: its
own DCOM activation, NTLM, smart enumerator and MS-WMIO decoder.
Arguments: PORT USER PASSWORD NAMESPACE QUERY...; prints one JSON object:
each query's rows (property name to value), or its error."""
import asyncio
import json
import sys

from aiowmi.connection import Connection
from aiowmi.query import Query


def plain(value):
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


async def main():
    port, user, password, namespace = sys.argv[1:5]
    queries = sys.argv[5:]
    out = {"results": []}
    conn = Connection("127.0.0.1", user, password, port=int(port))
    service = None
    await conn.connect()
    try:
        service = await conn.negotiate_ntlm()
        for text in queries:
            rows = []
            try:
                async with Query(text, namespace=namespace).context(conn, service) as qc:
                    async for props in qc.results():
                        rows.append({name: plain(p.value) for name, p in props.items()})
                out["results"].append({"query": text, "rows": rows})
            except Exception as e:
                out["results"].append({"query": text, "error": str(e)})
    finally:
        if service:
            service.close()
        conn.close()
    print(json.dumps(out))


asyncio.run(main())
