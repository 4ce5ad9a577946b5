"""Bad input test: while good SocketHandler clients send, other connections send random
bytes, truncated frames, huge length headers, oversized frames, unknown pickle opcodes
and code-executing pickles. Each bad connection is closed with a logged reason; every
good record arrives; records a connection sent before its bad frame are kept.

    python3 test_bad_input.py LOG_SERVER_BINARY
"""
import collections
import json
import logging
import os
import pickle
import random
import socket
import struct
import sys
import time

import harness

MAX_FRAME = 65536


def good_frame(i, tag):
    rec = logging.LogRecord(f"mixed.{tag}", logging.INFO, __file__, i, "kept %d", (i,), None)
    d = dict(rec.__dict__)
    d["msg"] = rec.getMessage()
    d["args"] = None
    d["exc_info"] = None
    d.pop("message", None)
    s = pickle.dumps(d, 1)
    return struct.pack(">L", len(s)) + s, json.dumps(d)


def framed(payload):
    return struct.pack(">L", len(payload)) + payload


def send(port, data, close_write=True):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(data)
    if close_write:
        s.shutdown(socket.SHUT_WR)
    return s


def main():
    binary = sys.argv[1]
    check = harness.Check()
    rng = random.Random(1234)
    with harness.workdir() as tmp:
        server = harness.Server(binary, tmp, "--max-frame", str(MAX_FRAME))
        procs, sockets = [], []
        kept_before_bad = []
        try:
            procs = harness.start_clients(server.port, tmp, 6, 300)
            bad = {
                "random bytes": bytes(rng.randrange(256) for _ in range(3000)),
                "truncated frame": struct.pack(">L", 200) + b"\x80\x02" + b"x" * 98,
                "huge length header": struct.pack(">L", 0xFFFFFFF0) + b"abc",
                "oversized frame": struct.pack(">L", MAX_FRAME + 1) + b"\x00" * 1000,
                "unknown opcode": framed(b"\x80\x02\xff."),
                "code execution": framed(b"cos\nsystem\n(S'echo owned'\ntR."),
                "object construction": framed(pickle.dumps(ValueError("x"), 2)),
                "empty frame": framed(b""),
            }
            for _ in range(3):  # several rounds, interleaved with the good clients
                for name, data in bad.items():
                    sockets.append(send(server.port, data))
                time.sleep(0.05)
            # One connection: good records, then a bad frame, then more (which may be dropped).
            mixed = b""
            for i in range(10):
                frame, as_json = good_frame(i, "before")
                mixed += frame
                kept_before_bad.append(as_json)
            mixed += framed(b"\x80\x02\x97.")  # NEXT_BUFFER: out-of-band data, refused
            for i in range(10):
                mixed += good_frame(i, "after")[0]
            sockets.append(send(server.port, mixed))
            failures = harness.wait_clients(procs)
            check(not failures, f"good clients failed: {failures}")
            # Let the server see the bad connections' end of stream before we stop it.
            for s in sockets:
                s.settimeout(60)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
            rc, out = server.stop()
            check(rc == 0, f"server exit status {rc}")
        finally:
            for s in sockets:
                s.close()
            harness.kill_all(procs)
            server.kill()
        with open(server.output, encoding="utf-8") as f:
            lines = f.read().splitlines()
        check(bool(lines) and json.loads(lines[-1]) == {"lines_collected": len(lines) - 1},
              f"summary line {lines[-1:]} for {len(lines) - 1} records")
        got = collections.Counter(harness.canonical(l) for l in lines[:-1])
        sent = collections.Counter(harness.canonical(l) for l in harness.read_side(procs))
        check(sum(sent.values()) == 1800, f"good clients sent {sum(sent.values())}")
        missing = sent - got
        check(not missing, f"{sum(missing.values())} good records lost")
        before = collections.Counter(harness.canonical(l) for l in kept_before_bad)
        check(not (before - got), "records sent before a bad frame are kept")
        err = server.stderr_text()
        closings = err.count("closing ")
        check(closings >= 3 * len(bad) + 1, f"{closings} connections closed with a reason, stderr:\n{err[:2000]}")
        for needle in ["exceeds the cap", "connection ended inside a frame", "unknown opcode",
                       "refusing to load global os.system", "NEXT_BUFFER"]:
            check(needle in err, f"reason '{needle}' logged")
    check.finish()


if __name__ == "__main__":
    main()
