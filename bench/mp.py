#!/usr/bin/env python3
"""Queue and Pipe between two processes side by side: Python's multiprocessing.Queue and
Pipe, concur's Queue and Pipe (bench_mp, Google Benchmark), and the raw IPC ping-pong of
this machine measured by the same C++ program (pipe; shared memory + futex, blocking and
spin-then-block), in one command. Usage:
    /usr/bin/python3 bench/mp.py [path/to/bench_mp]
"""
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time


def median_p99(samples):
    samples = sorted(samples)
    return statistics.median(samples), samples[len(samples) * 99 // 100]


def queue_echo(inq, outq):
    while True:
        v = inq.get()
        if v < 0:
            return
        outq.put(v)


def py_queue_round_trip(n, idle=False):
    to, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_echo, args=(to, back))
    p.start()
    for i in range(200):
        to.put(i)
        back.get()
    samples = []
    for i in range(n):
        if idle:
            time.sleep(0.002)
        t0 = time.perf_counter_ns()
        to.put(i)
        back.get()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    to.put(-1)
    p.join()
    return median_p99(samples)


def produce(requests, out, item):
    while True:
        n = requests.get()
        if n < 0:
            return
        for _ in range(n):
            out.put(item)


def py_queue_throughput(item, n, reps=3):
    requests, data = mp.Queue(), mp.Queue(10000)
    p = mp.Process(target=produce, args=(requests, data, item))
    p.start()
    requests.put(1000)
    for _ in range(1000):
        data.get()
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        requests.put(n)
        for _ in range(n):
            data.get()
        best = max(best, n / (time.perf_counter() - t0))
    requests.put(-1)
    p.join()
    return best


def pipe_echo(conn):
    while True:
        v = conn.recv()
        if v < 0:
            return
        conn.send(v)


def py_pipe_round_trip(n, idle=False):
    mine, theirs = mp.Pipe()
    p = mp.Process(target=pipe_echo, args=(theirs,))
    p.start()
    theirs.close()
    for i in range(200):
        mine.send(i)
        mine.recv()
    samples = []
    for i in range(n):
        if idle:
            time.sleep(0.002)
        t0 = time.perf_counter_ns()
        mine.send(i)
        mine.recv()
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    mine.send(-1)
    p.join()
    return median_p99(samples)


def cpp_results(binary):
    out = subprocess.run([binary, "--benchmark_format=json"], check=True, capture_output=True,
                         text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        res[b["run_name"].split("/")[0]] = b
    return res


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/bench/bench_mp"
    print("running Python's workloads...", file=sys.stderr)
    py = {
        "q_rt": py_queue_round_trip(5000),
        "q_rt_idle": py_queue_round_trip(300, idle=True),
        "q_int": py_queue_throughput(7, 200_000),
        "q_1k": py_queue_throughput("x" * 1024, 100_000),
        "p_rt": py_pipe_round_trip(5000),
        "p_rt_idle": py_pipe_round_trip(300, idle=True),
    }
    print("running bench_mp...", file=sys.stderr)
    c = cpp_results(binary)

    def get(name, key):
        b = c.get(name)
        return b.get(key, float("nan")) if b else float("nan")

    print(f"Queue and Pipe between two processes (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, start method {mp.get_start_method()} / concur forkserver)")
    print(f"{'workload':<42}{'Python':>11}{'concur':>11}{'concur vs Python':>18}")

    def row(label, p, cc, higher_is_better=True):
        r = (cc / p) if higher_is_better else (p / cc)
        print(f"{label:<42}{p:>11.4g}{cc:>11.4g}{r:>17.1f}x")

    for key, name, label in (("q_rt", "BM_queue_round_trip", "Queue round trip"),
                             ("q_rt_idle", "BM_queue_round_trip_idle", "Queue round trip after idling"),
                             ("p_rt", "BM_pipe_round_trip", "Pipe round trip"),
                             ("p_rt_idle", "BM_pipe_round_trip_idle", "Pipe round trip after idling")):
        m, p99 = py[key]
        row(f"{label}, median (us)", m, get(name, "median_us"), False)
        row(f"{label}, p99 (us)", p99, get(name, "p99_us"), False)
    row("Queue throughput, int (items/s)", py["q_int"], get("BM_queue_throughput_int", "items_per_second"))
    row("Queue throughput, 1 KiB str (items/s)", py["q_1k"],
        get("BM_queue_throughput_1KiB", "items_per_second"))

    raw = {
        "pipe": get("BM_raw_pipe", "median_us"),
        "futex blocking": get("BM_raw_futex_block", "median_us"),
        "futex spin-then-block": get("BM_raw_futex_spin", "median_us"),
    }
    raw_idle = {
        "pipe": get("BM_raw_pipe_idle", "median_us"),
        "futex blocking": get("BM_raw_futex_block_idle", "median_us"),
    }
    print()
    print("Raw ping-pong between two processes, same run, median round trip (us):")
    print("  warm:         " + "   ".join(f"{k} {v:.3g}" for k, v in raw.items()))
    print("  after idling: " + "   ".join(f"{k} {v:.3g}" for k, v in raw_idle.items()))
    print("concur's round trip against each (raw / concur; >= 1: no worse than the raw ping-pong):")
    for name, label in (("BM_queue_round_trip", "Queue"), ("BM_pipe_round_trip", "Pipe")):
        mine = get(name, "median_us")
        print(f"  {label:<6} warm:         " +
              "   ".join(f"vs {k} {v / mine:.2f}x" for k, v in raw.items()))
        mine = get(name + "_idle", "median_us")
        print(f"  {label:<6} after idling: " +
              "   ".join(f"vs {k} {v / mine:.2f}x" for k, v in raw_idle.items()))


if __name__ == "__main__":
    main()
