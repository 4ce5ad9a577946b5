"""The C++ log client (seed's sorting workload, and the load generator) against the server.

    python3 test_cpp_client.py LOG_SERVER LOG_CLIENT
"""
import json
import subprocess
import sys

import harness


def main():
    server_bin, client_bin = sys.argv[1], sys.argv[2]
    check = harness.Check()
    with harness.workdir() as tmp:
        server = harness.Server(server_bin, tmp)
        try:
            sorting = [subprocess.Popen([client_bin, "--port", str(server.port), "--workload", "5", "--quiet"])
                       for _ in range(4)]
            load = subprocess.run([client_bin, "--port", str(server.port), "--clients", "20", "--records", "1000"],
                                  capture_output=True, text=True, timeout=300)
            check(load.returncode == 0, f"load generator: {load.stderr}")
            check(all(p.wait(timeout=300) == 0 for p in sorting), "sorting clients succeeded")
            rc, _ = server.stop()
            check(rc == 0, f"server exit status {rc}")
        finally:
            for p in sorting:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            server.kill()
        with open(server.output, encoding="utf-8") as f:
            lines = f.read().splitlines()
        expected = 4 * (5 * 2 + 2) + 20 * 1000
        check(len(lines) == expected + 1, f"{len(lines) - 1} records, expected {expected}")
        check(json.loads(lines[-1]) == {"lines_collected": expected}, f"summary {lines[-1]}")
        msgs = [json.loads(l)["msg"] for l in lines[:-1]]
        check(sum(m.startswith("Sorted ") for m in msgs) == 20, "every sort reported")
    check.finish()


if __name__ == "__main__":
    main()
