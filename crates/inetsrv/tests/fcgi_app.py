# A small FastCGI responder for the tests, written from the FastCGI
# specification: it answers FCGI_GET_VALUES with FCGI_MAX_CONNS=2 and
# serves each connection on a thread of its own, so one process takes two
# requests at once. Its answer names its pid and the request's script.
import os, socket, struct, sys, threading, time

def read_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data

def record(kind, rid, content):
    pad = (8 - len(content) % 8) % 8
    return struct.pack(">BBHHBB", 1, kind, rid, len(content), pad, 0) + content + b"\0" * pad

def pairs(data):
    out, i = {}, 0
    def length():
        nonlocal i
        if data[i] < 128:
            i += 1
            return data[i - 1]
        n = struct.unpack(">I", data[i:i + 4])[0] & 0x7FFFFFFF
        i += 4
        return n
    while i < len(data):
        nl = length(); vl = length()
        out[data[i:i + nl].decode()] = data[i + nl:i + nl + vl].decode()
        i += nl + vl
    return out

def serve(conn):
    while True:
        params, stdin, rid = b"", b"", 0
        while True:
            head = read_exact(conn, 8)
            if head is None:
                conn.close()
                return
            _, kind, rid, length, pad, _ = struct.unpack(">BBHHBB", head)
            content = read_exact(conn, length + pad)[:length]
            if kind == 9:  # GET_VALUES
                names = pairs(content)
                body = b""
                for name in names:
                    value = {"FCGI_MAX_CONNS": "2", "FCGI_MAX_REQS": "2", "FCGI_MPXS_CONNS": "0"}.get(name)
                    if value is not None:
                        body += bytes([len(name), len(value)]) + name.encode() + value.encode()
                conn.sendall(record(10, 0, body))
            elif kind == 4:
                params += content
            elif kind == 5:
                if not content:
                    break
                stdin += content
        env = pairs(params)
        script = env.get("SCRIPT_NAME", "")
        if "slow" in script:
            time.sleep(2)
        body = ("pid %d script %s\n" % (os.getpid(), script)).encode()
        out = b"Content-Type: text/plain\r\n\r\n" + body
        conn.sendall(record(6, rid, out) + record(6, rid, b"") + record(3, rid, b"\0" * 8))

listener = socket.socket(fileno=0)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
