"""Integration test with the real peer: 20 concurrent python3 processes log 500 records
each through logging.handlers.SocketHandler; after SIGTERM the server's file must hold
exactly those 10 000 records, field for field, plus {"lines_collected": 10000}.

    python3 test_python_clients.py LOG_SERVER_BINARY [CLIENTS] [RECORDS]
"""
import collections
import json
import sys

import harness


def main():
    binary = sys.argv[1]
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    records = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    check = harness.Check()
    with harness.workdir() as tmp:
        server = harness.Server(binary, tmp)
        procs = []
        try:
            procs = harness.start_clients(server.port, tmp, clients, records)
            failures = harness.wait_clients(procs)
            check(not failures, f"clients failed: {failures}")
            rc, out = server.stop()
            check(rc == 0, f"server exit status {rc}")
        finally:
            harness.kill_all(procs)
            server.kill()
        with open(server.output, encoding="utf-8") as f:
            lines = f.read().splitlines()
        expected = clients * records
        check(len(lines) == expected + 1, f"{len(lines)} lines, expected {expected} records + summary")
        check(lines and json.loads(lines[-1]) == {"lines_collected": expected}, f"summary line {lines[-1:]}")
        got = collections.Counter(harness.canonical(l) for l in lines[:-1])
        sent = collections.Counter(harness.canonical(l) for l in harness.read_side(procs))
        check(sum(sent.values()) == expected, f"side files hold {sum(sent.values())} records")
        missing = sent - got
        extra = got - sent
        check(not missing, f"{sum(missing.values())} records sent but not collected, e.g. {list(missing)[:1]}")
        check(not extra, f"{sum(extra.values())} records collected but not sent, e.g. {list(extra)[:1]}")
        # The fields arrive intact: spot-check types the JSON must carry through.
        sample = [json.loads(l) for l in lines[:50]]
        check(all(isinstance(r["created"], float) and isinstance(r["levelno"], int) for r in sample),
              "created is a float and levelno an int")
        check(any(r.get("exc_text") for r in (json.loads(l) for l in lines[:-1])), "exception text arrived")
        check(f"lines" in out, "per-client counts reported at disconnect")
    check.finish()


if __name__ == "__main__":
    main()
