#!/usr/bin/env python3
"""Process pools side by side: Python's ProcessPoolExecutor and multiprocessing.Pool, and
concur's ProcessPoolExecutor (bench_process_pool, Google Benchmark), in one command, with
the raw IPC limits of this machine measured by the same C++ program. Usage:
    /usr/bin/python3 bench/process_pool.py [path/to/bench_process_pool]
"""
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import time

WORKERS = 2


def noop(*_):
    return 1


def ident(x):
    return x


def echo(b):
    return b


def spin_forever():
    while True:
        pass


def median_p99(samples):
    samples = sorted(samples)
    return statistics.median(samples), samples[len(samples) * 99 // 100]


def py_round_trip(n, idle=False):
    samples = []
    with cf.ProcessPoolExecutor(WORKERS) as ex:
        for _ in range(200):
            ex.submit(noop).result()
        for _ in range(n):
            if idle:
                time.sleep(0.002)
            t0 = time.perf_counter_ns()
            ex.submit(noop).result()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
    return median_p99(samples)


def py_submit_result(n=20000, reps=3):
    best = 0.0
    with cf.ProcessPoolExecutor(WORKERS) as ex:
        ex.submit(noop).result()
        for _ in range(reps):
            t0 = time.perf_counter()
            fs = [ex.submit(noop) for _ in range(n)]
            for f in fs:
                f.result()
            best = max(best, n / (time.perf_counter() - t0))
    return best


def py_executor_map(n=1_000_000, chunk=256, reps=2):
    best = 0.0
    with cf.ProcessPoolExecutor(WORKERS) as ex:
        ex.submit(noop).result()
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in ex.map(ident, range(n), chunksize=chunk):
                pass
            best = max(best, n / (time.perf_counter() - t0))
    return best


def py_pool_map(n=10_000_000, reps=2):
    best = 0.0
    with mp.Pool(WORKERS) as pool:
        pool.apply(noop)
        data = list(range(n))
        for _ in range(reps):
            t0 = time.perf_counter()
            pool.map(ident, data)
            best = max(best, n / (time.perf_counter() - t0))
    return best


def py_pool_apply(n=3000):
    samples = []
    with mp.Pool(WORKERS) as pool:
        for _ in range(200):
            pool.apply(noop)
        for _ in range(n):
            t0 = time.perf_counter_ns()
            pool.apply(noop)
            samples.append((time.perf_counter_ns() - t0) / 1e3)
    return median_p99(samples)


def py_roundtrip_64mib(reps=5):
    data = b"\x01" * (64 << 20)
    best = 0.0
    with cf.ProcessPoolExecutor(1) as ex:
        ex.submit(echo, data).result()
        for _ in range(reps):
            t0 = time.perf_counter()
            back = ex.submit(echo, data).result()
            best = max(best, len(back) / (time.perf_counter() - t0))
    return best / (1 << 20)


def py_startup(method, reps=10):
    ctx = mp.get_context(method)
    if method == "forkserver":
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            ex.submit(noop).result()  # the server runs from now on
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        ex = cf.ProcessPoolExecutor(WORKERS, mp_context=ctx)
        ex.submit(noop).result()
        samples.append((time.perf_counter() - t0) * 1e3)
        ex.shutdown()
    return statistics.median(samples)


def py_death_to_error(reps=10):
    samples = []
    for _ in range(reps):
        with cf.ProcessPoolExecutor(1) as ex:
            ex.submit(noop).result()
            f = ex.submit(spin_forever)
            while not f.running():
                time.sleep(0.0005)
            time.sleep(0.005)
            pid = next(iter(ex._processes))
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            try:
                f.result()
            except Exception:
                pass
            samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def cpp_results(binary):
    # Start-up runs in a fresh process of its own, as Python's does: the cost of `fork`
    # grows with the parent's memory, and the other benchmarks leave a large heap behind.
    res = {}
    for flt in ("startup", "-startup"):
        out = subprocess.run([binary, "--benchmark_format=json", f"--benchmark_filter={flt}"],
                             check=True, capture_output=True, text=True).stdout
        for b in json.loads(out)["benchmarks"]:
            res[b["run_name"].split("/")[0]] = b
    return res


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/bench/bench_process_pool"
    print("running Python's workloads...", file=sys.stderr)
    py = {
        "rt": py_round_trip(3000),
        "rt_idle": py_round_trip(300, idle=True),
        "submit": py_submit_result(),
        "map256": py_executor_map(),
        "poolmap": py_pool_map(),
        "apply": py_pool_apply(),
        "64mib": py_roundtrip_64mib(),
        "start_fork": py_startup("fork"),
        "start_forkserver": py_startup("forkserver"),
        "start_spawn": py_startup("spawn"),
        "death": py_death_to_error(),
    }
    print("running bench_process_pool...", file=sys.stderr)
    c = cpp_results(binary)

    def get(name, key):
        b = c.get(name)
        return b.get(key, float("nan")) if b else float("nan")

    nan = float("nan")
    memcpy = get("BM_memcpy_64MiB", "bytes_per_second") / (1 << 20)
    print(f"Process pools, {WORKERS} workers (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'workload':<44}{'Python':>12}{'concur':>12}{'ratio':>9}")

    def row(label, p, cc, higher_is_better=True):
        r = (cc / p) if higher_is_better else (p / cc)
        print(f"{label:<44}{p:>12.4g}{cc:>12.4g}{r:>8.1f}x")

    pm, pp = py["rt"]
    row("round trip, warm, median (us)", pm, get("BM_round_trip_warm", "median_us"), False)
    row("round trip, warm, p99 (us)", pp, get("BM_round_trip_warm", "p99_us"), False)
    pm, pp = py["rt_idle"]
    row("round trip after idling, median (us)", pm, get("BM_round_trip_idle", "median_us"), False)
    row("submit+result no-ops (tasks/s)", py["submit"], get("BM_submit_result", "items_per_second"))
    row("Executor.map chunksize 256 (items/s)", py["map256"], get("BM_map_chunk256", "items_per_second"))
    row("Pool.map 10M ints, default chunking (items/s)", py["poolmap"], get("BM_pool_map_10M", "items_per_second"))
    row("  Executor.map, chunksize 1.25M (items/s)", py["poolmap"], get("BM_map_10M", "items_per_second"))
    row("  same, chunksize 64Ki (items/s)", py["poolmap"], get("BM_map_10M_chunk64k", "items_per_second"))
    rt64 = get("BM_roundtrip_64MiB", "bytes_per_second") / (1 << 20)
    row("64 MiB round trip (MiB/s)", py["64mib"], rt64)
    row("start-up to first result, fork (ms)", py["start_fork"], get("BM_startup_fork", "median_us") / 1e3, False)
    row("  forkserver, server running (ms)", py["start_forkserver"],
        get("BM_startup_forkserver", "median_us") / 1e3, False)
    row("  spawn (ms)", py["start_spawn"], get("BM_startup_spawn", "median_us") / 1e3, False)
    row("SIGKILL of busy worker to error (us)", py["death"], get("BM_death_to_error_break", "median_us"), False)
    print(f"{'  same, replace_worker policy (us)':<44}{'':>12}{get('BM_death_to_error_replace', 'median_us'):>12.4g}")
    pm, _ = py["apply"]
    print(f"{'(Pool.apply round trip, median us)':<44}{pm:>12.4g}")
    print()
    print("Raw IPC on this machine, measured by bench_process_pool (round trip, median us):")
    for name, label in (("BM_raw_pipe", "pipe ping-pong"),
                        ("BM_raw_futex_block", "shared memory + futex, blocking"),
                        ("BM_raw_futex_block_idle", "  same, after idling 2 ms"),
                        ("BM_raw_futex_spin", "shared memory + futex, spin-then-block")):
        print(f"  {label:<42}{get(name, 'median_us'):>10.2f}")
    print(f"  {'memcpy 64 MiB (MiB/s)':<42}{memcpy:>10.0f}")
    print(f"  64 MiB round trip = {rt64 / memcpy * 100:.0f}% of memcpy bandwidth" if memcpy == memcpy else "")
    warm = get("BM_round_trip_warm", "median_us")
    idle = get("BM_round_trip_idle", "median_us")
    print(f"  warm round trip vs raw blocking futex: {get('BM_raw_futex_block', 'median_us') / warm:.2f}x; "
          f"after idling vs raw blocking after idling: {get('BM_raw_futex_block_idle', 'median_us') / idle:.2f}x "
          f"(>= 1 means the pool is not slower)")


if __name__ == "__main__":
    main()
