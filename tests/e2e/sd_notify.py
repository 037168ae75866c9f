#!/usr/bin/env python3
"""sd_notify.py -- waituntil speaks systemd's notify protocol: a fake
NOTIFY_SOCKET (a datagram socket this test binds, in the abstract
namespace and as a path) receives READY=1 once the server listens,
STATUS= lines, WATCHDOG=1 while the pool idles or makes progress, none
while a write is stuck behind a lock held by this test, WATCHDOG=1 again
once it is released, RELOADING=1 (with MONOTONIC_USEC) then READY=1
at SIGHUP, and STOPPING=1 at SIGTERM; exit status 0.

Every wait is for a datagram, a socket or a row, bounded by T_WAIT_S
(default 120 s); nothing sleeps a fixed time.  The watchdog interval is
0.4 s (a tick every 0.2 s), so "no WATCHDOG=1 while stalled" is checked
over three consecutive ticks that report the stall.
Run by sd_notify.sh (TOP_SRCDIR, TOP_BUILDDIR, TESTS_SRCDIR set)."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.environ["TESTS_SRCDIR"], "e2e"))
import fcgi_get  # noqa: E402

WAIT = float(os.environ.get("T_WAIT_S", "120"))
APP = os.path.join(os.environ["TOP_BUILDDIR"], "app", "waituntil")
SRC = os.environ["TOP_SRCDIR"]
passed = failed = 0


def ok(desc):
    global passed
    passed += 1
    print("ok - " + desc, flush=True)


def fail(desc, detail=""):
    global failed
    failed += 1
    print("not ok - " + desc, flush=True)
    for line in str(detail).splitlines():
        print("#   " + line)


def check(cond, desc, detail=""):
    if cond:
        ok(desc)
    else:
        fail(desc, detail)
    return cond


def done():
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(0 if failed == 0 else 1)


def until(pred, what):
    """Poll pred() until true; fail the test run after WAIT seconds."""
    end = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > end:
            fail(what, "still false after %g s" % WAIT)
            done()
        time.sleep(0.05)


class Receiver:
    """The fake service manager: one datagram socket, every message kept."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.msgs = []

    def next(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            m = self.sock.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            return None
        self.msgs.append(m)
        return m

    def wait(self, pred, what, seen=None):
        """Receive until a message satisfies pred; the messages received
        on the way go to seen (a list) too."""
        end = time.monotonic() + WAIT
        while True:
            left = end - time.monotonic()
            m = self.next(left) if left > 0 else None
            if m is None:
                fail(what, "no such message in %g s; got: %r"
                     % (WAIT, self.msgs[-5:]))
                done()
            if seen is not None:
                seen.append(m)
            if pred(m):
                return m


def start(tmp, notify_addr, extra_env):
    conf = os.path.join(tmp, "w.conf")
    with open(conf, "w") as f:
        # A stuck write stays stuck: the busy wait outlasts the test and
        # is never retried or timed out (each would count as progress).
        f.write("database { busy_timeout 1h; migrations conf/migrations; }\n"
                "pool { busy_retries 0; task_timeout 1h; batch_delay 0; }\n"
                "route any /log { respond 200 \"logged\";\n"
                "  defer insert logs { method $request_method; path $uri;"
                " timestamp $time_iso; } }\n"
                "route GET /hello { respond 200 \"hello\"; }\n")
    env = dict(os.environ, NOTIFY_SOCKET=notify_addr, **extra_env)
    sock = os.path.join(tmp, "app.sock")
    db = os.path.join(tmp, "db", "w.db")
    log = open(os.path.join(tmp, "app.log"), "ab")
    p = subprocess.Popen([APP, "-c", conf, "-p", SRC, "-l", "unix:" + sock,
                          "-d", db], env=env, stderr=log)
    return p, sock, db


def stop(p, rcv, what):
    p.send_signal(signal.SIGTERM)
    rcv.wait(lambda m: "STOPPING=1" in m.split("\n"),
             what + ": STOPPING=1 at SIGTERM")
    ok(what + ": STOPPING=1 at SIGTERM")
    try:
        rc = p.wait(WAIT)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "hung"
    check(rc == 0, what + ": exit status 0 after the drain", "rc=%s" % rc)


def main():
    if not os.access(APP, os.X_OK):
        print("SKIP: app/waituntil not built")
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="wu-notify.")
    # ---- abstract namespace, with a watchdog --------------------------------
    name = "@wu-notify-%d" % os.getpid()
    rcv = Receiver("\0" + name[1:])
    p, sock, db = start(tmp, name, {"WATCHDOG_USEC": "400000"})
    try:
        ready = rcv.wait(lambda m: "READY=1" in m.split("\n"),
                         "READY=1 arrives")
        lines = ready.split("\n")
        check(any(l.startswith("STATUS=listening on unix:") for l in lines),
              "READY=1 comes with STATUS=listening on ...", ready)
        check("MAINPID=%d" % p.pid in lines, "READY=1 names MAINPID", ready)
        check(os.path.exists(sock), "the socket exists when READY=1 is sent")
        st, body = fcgi_get.request(sock, "GET", "/hello", WAIT)
        check(st == 200 and body == b"hello", "it answers after READY=1",
              (st, body))
        idle = []
        for _ in range(2):
            rcv.wait(lambda m: "WATCHDOG=1" in m.split("\n"),
                     "WATCHDOG=1 while idle", idle)
        ok("WATCHDOG=1 while the pool is idle (twice)")
        check(any(m.startswith("WATCHDOG=1\nSTATUS=serving:") for m in idle),
              "ticks carry STATUS=serving: counters", idle)

        # ---- a write stuck behind our lock: no WATCHDOG=1 ------------------
        until(lambda: os.path.exists(db), "the database exists")
        lock = sqlite3.connect(db, timeout=WAIT, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        st, body = fcgi_get.request(sock, "GET", "/log", WAIT)
        check(st == 200, "/log is answered while its write waits", (st, body))
        seen = []
        rcv.wait(lambda m: m.startswith("STATUS=writes stalled"),
                 "STATUS says the writes are stalled", seen)
        ok("STATUS=writes stalled ... once the write is stuck")
        stalled = []
        for _ in range(3):
            rcv.wait(lambda m: m.startswith("STATUS=writes stalled"),
                     "three stalled ticks in a row", stalled)
        check(not any("WATCHDOG=1" in m for m in stalled) and
              all(m.startswith("STATUS=writes stalled") for m in stalled),
              "no WATCHDOG=1 over three ticks while the write is stuck",
              stalled)
        check("(watchdog withheld)" in stalled[-1],
              "the stalled STATUS says the watchdog is withheld", stalled[-1])
        lock.execute("COMMIT")
        lock.close()
        rcv.wait(lambda m: "WATCHDOG=1" in m.split("\n"),
                 "WATCHDOG=1 again once the lock is released")
        ok("WATCHDOG=1 again once the lock is released")

        def rows():
            c = sqlite3.connect(db, timeout=WAIT)
            try:
                return c.execute("SELECT count(*) FROM logs").fetchone()[0]
            finally:
                c.close()
        until(lambda: rows() == 1, "the stuck write lands")
        ok("the stuck write landed (1 row)")
        stop(p, rcv, "abstract socket")
    finally:
        if p.poll() is None:
            p.kill()

    # ---- a path socket, no watchdog: READY, no WATCHDOG=1, STOPPING --------
    path = os.path.join(tmp, "notify.sock")
    rcv2 = Receiver(path)
    if os.path.exists(sock):  # the server unlinks it; be sure anyway
        os.unlink(sock)
    p, sock, db = start(tmp, path, {"WATCHDOG_USEC": ""})
    try:
        seen = []
        rcv2.wait(lambda m: "READY=1" in m.split("\n"),
                  "path socket: READY=1 arrives", seen)
        ok("path socket: READY=1 arrives")
        # A reload (SIGHUP): RELOADING=1 with MONOTONIC_USEC, then READY=1.
        p.send_signal(signal.SIGHUP)
        rel = rcv2.wait(lambda m: "RELOADING=1" in m.split("\n"),
                        "SIGHUP: RELOADING=1 arrives")
        check(any(l.startswith("MONOTONIC_USEC=") and l[15:].isdigit()
                  for l in rel.split("\n")),
              "RELOADING=1 comes with MONOTONIC_USEC=<digits>", rel)
        after = rcv2.wait(lambda m: "READY=1" in m.split("\n"),
                          "SIGHUP: READY=1 after RELOADING=1")
        check("STATUS=reloaded; listening" in after.split("\n"),
              "READY=1 after the reload says it reloaded", after)
        stop(p, rcv2, "path socket")
        check(not any("WATCHDOG=1" in m for m in rcv2.msgs),
              "without WATCHDOG_USEC no WATCHDOG=1 is sent", rcv2.msgs)
    finally:
        if p.poll() is None:
            p.kill()
    subprocess.call(["rm", "-rf", tmp])
    done()


if __name__ == "__main__":
    main()
