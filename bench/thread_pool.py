#!/usr/bin/env python3
"""Thread pools side by side: Python's ThreadPoolExecutor and concur's, same workloads.

Runs the Python workloads here and bench_thread_pool (Google Benchmark) in the same
command, then prints one table with ratios. Usage:
    bench/thread_pool.py [path/to/bench_thread_pool]
"""
import concurrent.futures as cf
import json
import statistics
import subprocess
import sys
import time

WORKERS = 2


def noop(*_):
    return 1


def py_submit_result(n=10000, reps=5):
    best = 0.0
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        for _ in range(reps):
            t0 = time.perf_counter()
            fs = [ex.submit(noop) for _ in range(n)]
            for f in fs:
                f.result()
            best = max(best, n / (time.perf_counter() - t0))
    return best


def py_batched(n=100000, reps=3):
    best = 0.0
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in ex.map(noop, range(n)):
                pass
            best = max(best, n / (time.perf_counter() - t0))
    return best


def py_round_trip(n=5000, idle=False):
    samples = []
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        ex.submit(noop).result()
        for _ in range(n):
            if idle:
                time.sleep(0.001)
            t0 = time.perf_counter_ns()
            ex.submit(noop).result()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
    samples.sort()
    return statistics.median(samples), samples[len(samples) * 99 // 100]


def cpp_results(binary):
    out = subprocess.run([binary, "--benchmark_format=json", "--benchmark_repetitions=3"],
                         check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"].split("/")[0]
        res[name] = b
    return res


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/release/bench/bench_thread_pool"
    py = {
        "submit_result": py_submit_result(),
        "batched": py_batched(),
        "round_trip": py_round_trip(),
        "round_trip_idle": py_round_trip(300, idle=True),
    }
    cpp = cpp_results(binary)

    def ips(name):
        b = cpp.get(name)
        return b["items_per_second"] if b else float("nan")

    def lat(name):
        b = cpp.get(name)
        return (b["median_us"], b["p99_us"]) if b else (float("nan"), float("nan"))

    print(f"Thread pools, {WORKERS} workers, no-op tasks (Python {sys.version.split()[0]})")
    print(f"{'workload':<28}{'Python':>12}{'concur':>12}{'ratio':>9}{'naive':>12}{'oneTBB':>12}")
    for key, label in (("submit_result", "submit+result (tasks/s)"), ("batched", "batched/map (tasks/s)")):
        c = ips(f"BM_concur_{key}")
        print(f"{label:<28}{py[key]:>12.3g}{c:>12.3g}{c / py[key]:>8.1f}x"
              f"{ips(f'BM_naive_{key}'):>12.3g}{ips(f'BM_tbb_{key}'):>12.3g}")
    for key, label in (("round_trip", "round trip, warm (us)"), ("round_trip_idle", "round trip, idle (us)")):
        pm, pp = py[key]
        cm, cp = lat(f"BM_concur_{key}")
        nm, _ = lat(f"BM_naive_{key}")
        tm, _ = lat(f"BM_tbb_{key}")
        print(f"{label + ' median':<28}{pm:>12.2f}{cm:>12.2f}{pm / cm:>8.1f}x{nm:>12.2f}{tm:>12.2f}")
        print(f"{label + ' p99':<28}{pp:>12.2f}{cp:>12.2f}{pp / cp:>8.1f}x")


if __name__ == "__main__":
    main()
