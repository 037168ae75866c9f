#!/usr/bin/env python3
"""fcgi_get.py SOCKET [METHOD] [URI] -- one FastCGI request to a unix socket,
as nginx would send it (responder role, params, empty stdin), without
nginx.  Prints the Status code on the first line and the body after it;
exits 0 when an answer came, 1 when the connection failed or broke.

Also importable: request(socket_path, method, uri, timeout) -> (status,
body).  Written for the waituntil tests (the FastCGI 1.0 record layout:
version, type, request id, content length, padding, reserved)."""
import socket
import struct
import sys

BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT = 1, 3, 4, 5, 6


def _record(rtype, content, req_id=1):
    return struct.pack(">BBHHBB", 1, rtype, req_id, len(content), 0, 0) + content


def _pair(name, value):
    out = b""
    for n in (len(name), len(value)):
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return out + name + value


def request(path, method="GET", uri="/hello", timeout=60.0):
    """One request; returns (status, body bytes).  Raises OSError."""
    query = uri.split("?", 1)[1] if "?" in uri else ""
    params = {
        "REQUEST_METHOD": method, "REQUEST_URI": uri,
        "DOCUMENT_URI": uri.split("?", 1)[0], "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": "", "GATEWAY_INTERFACE": "CGI/1.1",
    }
    body = b"".join(_pair(k.encode(), v.encode()) for k, v in params.items())
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(_record(BEGIN_REQUEST, struct.pack(">HB5x", 1, 0)) +
                  _record(PARAMS, body) + _record(PARAMS, b"") +
                  _record(STDIN, b""))
        buf, out = b"", b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("connection closed before END_REQUEST")
            buf += chunk
            while len(buf) >= 8:
                _, rtype, _, clen, plen, _ = struct.unpack(">BBHHBB", buf[:8])
                if len(buf) < 8 + clen + plen:
                    break
                content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
                if rtype == STDOUT:
                    out += content
                elif rtype == END_REQUEST:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    status = 200
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"status:"):
                            status = int(line.split()[1])
                    return status, rest
    finally:
        s.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: fcgi_get.py SOCKET [METHOD] [URI]")
    try:
        st, b = request(sys.argv[1], *(sys.argv[2:4]))
    except OSError as e:
        print("fcgi_get: %s" % e, file=sys.stderr)
        sys.exit(1)
    print(st)
    sys.stdout.write(b.decode("utf-8", "replace"))
