"""Shared pieces of the log server integration tests: start the server on a free port,
stop it with a signal, and clean up every process we started."""
import os
import signal
import subprocess
import sys
import tempfile

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))


class Server:
    def __init__(self, binary, workdir, *extra):
        self.output = os.path.join(workdir, "collected.log")
        self.stderr_path = os.path.join(workdir, "server.err")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([binary, "--port", "0", "--output", self.output, *extra],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        first = self.proc.stdout.readline()
        if not first.startswith("Serving on "):
            raise RuntimeError(f"server did not start: {first!r}")
        self.port = int(first.rsplit(":", 1)[1])

    def stop(self, sig=signal.SIGTERM, timeout=120):
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=timeout)
        self.stderr.close()
        return self.proc.returncode, out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self.stderr.closed:
            self.stderr.close()

    def stderr_text(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def start_clients(port, workdir, count, records, first_index=0):
    procs = []
    for i in range(first_index, first_index + count):
        side = os.path.join(workdir, f"side_{i}.jsonl")
        p = subprocess.Popen([PYTHON, os.path.join(HERE, "socket_client.py"), str(port), side, str(i), str(records)])
        procs.append((p, side))
    return procs


def wait_clients(procs, timeout=300):
    failures = []
    for p, side in procs:
        rc = p.wait(timeout=timeout)
        if rc != 0:
            failures.append((side, rc))
    return failures


def kill_all(procs):
    for p, _ in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def read_side(procs):
    sent = []
    for _, side in procs:
        with open(side, encoding="utf-8") as f:
            sent.extend(f.read().splitlines())
    return sent


def canonical(line):
    import json
    return json.dumps(json.loads(line), sort_keys=True)


class Check:
    """Collects failures; exits non-zero if any (a ctest-visible verdict)."""

    def __init__(self):
        self.failures = []
        self.passed = 0

    def __call__(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print("FAIL:", what, file=sys.stderr)

    def finish(self):
        print(f"{self.passed} passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


def workdir():
    return tempfile.TemporaryDirectory(prefix="log_server_test_")
