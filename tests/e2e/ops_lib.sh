# tests/e2e/ops_lib.sh -- helpers for the operations tests
# (tests/e2e/ops_*.sh: reload, binary upgrade, socket activation).
# Sourced after tests/lib.sh and tests/e2e/e2e_lib.sh.  POSIX sh.

command -v python3 >/dev/null || t_skip_all "python3 not installed"

OPS_APP=$TOP_BUILDDIR/app/waituntil

# ops_log: the app's log file (every process of an upgrade writes to it).
ops_log() { echo "$T_TMP/prefix/logs/waituntil.log"; }

# ops_count PATTERN: how many log lines match the extended regexp.
ops_count() { grep -Ec "$1" "$(ops_log)" 2>/dev/null || true; }

# ops_wait_count PATTERN N: until at least N log lines match PATTERN.
ops_count_ge() { [ "$(ops_count "$1")" -ge "$2" ]; }
ops_wait_count() { t_wait_for "" ops_count_ge "$1" "$2"; }

# ops_sig NAME: `waituntil -s NAME` against the test's instance (the pid
# file is found from the conf and the socket, as an operator would).
ops_sig() {
    "$OPS_APP" -s "$1" -c "$E2E_CONF" -p "$TOP_SRCDIR" \
        -l "unix:$T_TMP/prefix/waituntil.sock"
}

# ops_code PATH: the HTTP status of GET PATH through nginx.
ops_code() {
    curl -s -o /dev/null --max-time 60 -w '%{http_code}' "$E2E_URL$1"
}
ops_code_is() { [ "$(ops_code "$1")" = "$2" ]; }

# ops_gone PID: the process has exited (for processes that are not the
# shell's children: an upgrade's new process is the old one's child).
ops_gone() { ! kill -0 "$1" 2>/dev/null; }

# ops_fcgi_held SOCKET URI READY GO OUT: a FastCGI request sent straight
# to the app, held in flight: BEGIN_REQUEST and the params are sent (the
# app accepts and routes it), then the script creates READY and waits for
# the file GO before it sends the end of the body; the answer (status
# line and body) goes to OUT.  Runs in the background; sets OPS_HELD_PID.
ops_fcgi_held() {
    cat > "$T_TMP/held.py" <<'EOF'
import os, socket, struct, sys, time
sock, uri, ready, go, out = sys.argv[1:6]
def rec(t, content):
    return struct.pack(">BBHHBx", 1, t, 1, len(content), 0) + content
def nv(n, v):
    n, v = n.encode(), v.encode()
    return bytes([len(n)]) + bytes([len(v)]) + n + v
params = b"".join(nv(k, v) for k, v in [
    ("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri), ("DOCUMENT_URI", uri),
    ("QUERY_STRING", ""), ("SERVER_PROTOCOL", "HTTP/1.1"),
    ("REMOTE_ADDR", "127.0.0.1"), ("CONTENT_LENGTH", "")])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
s.sendall(rec(1, struct.pack(">HB5x", 1, 0)) + rec(4, params) + rec(4, b""))
open(ready, "w").close()
end = time.time() + 600
while not os.path.exists(go) and time.time() < end:
    time.sleep(0.05)
s.sendall(rec(5, b""))
data = b""
s.settimeout(600)
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
body = b""
while len(data) >= 8:
    ver, t, rid, clen, plen = struct.unpack(">BBHHB", data[:7])
    if t == 6:
        body += data[8:8 + clen]
    data = data[8 + clen + plen:]
with open(out, "wb") as f:
    f.write(body)
EOF
    python3 "$T_TMP/held.py" "$@" &
    OPS_HELD_PID=$!
}
