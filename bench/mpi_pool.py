"""concur's MPIPoolExecutor beside mpi4py.futures' MPIPoolExecutor, same workloads, same
run, same machine (both spawn 2 workers on this host with MPI_Comm_spawn).

    /usr/bin/python3 bench/mpi_pool.py build/release/bench/bench_mpi_pool

Needs Debian's python3-mpi4py (scripts/bench.sh installs it). As root, Open MPI wants
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 (set here when running as root).
"""
import json
import os
import statistics
import subprocess
import sys
import time

if os.geteuid() == 0:
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
os.environ.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
# One host: loopback (Open MPI's TCP transport leaves it out by default and goes through
# this host's own network address, which stalls on these VMs). Same for both sides.
os.environ.setdefault("OMPI_MCA_btl_tcp_if_include", "lo")
os.environ.setdefault("OMPI_MCA_oob_tcp_if_include", "lo")


def noop():
    return 1


def ident(x):
    return x


def echo(b):
    return b


def python_side():
    from mpi4py.futures import MPIPoolExecutor
    out = {}
    with MPIPoolExecutor(2) as ex:
        for _ in range(200):
            ex.submit(noop).result()
        samples = []
        for _ in range(3000):
            t0 = time.perf_counter()
            ex.submit(noop).result()
            samples.append((time.perf_counter() - t0) * 1e6)
        out["round_trip_us"] = statistics.median(samples)
        n = 5000
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fs = [ex.submit(noop) for _ in range(n)]
            for f in fs:
                f.result()
            best = min(best, time.perf_counter() - t0)
        out["submit_result_per_s"] = n / best
        xs = list(range(200_000))
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            sum(ex.map(ident, xs, chunksize=256))
            best = min(best, time.perf_counter() - t0)
        out["map_items_per_s"] = len(xs) / best
    with MPIPoolExecutor(1) as ex:
        data = bytes(64 << 20)
        ex.submit(echo, data).result()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            ex.submit(echo, data).result()
            times.append(time.perf_counter() - t0)
        out["mib64_mib_per_s"] = 64 / statistics.median(times)
    return out


def cpp_side(binary):
    res = json.loads(subprocess.run([binary, "--benchmark_format=json"], check=True,
                                    capture_output=True, text=True).stdout)
    out = {}
    for b in res["benchmarks"]:
        name = b["name"].split("/")[0]
        if name == "BM_mpi_round_trip_warm":
            out["round_trip_us"] = b["median_us"]
        elif name == "BM_mpi_submit_result":
            out["submit_result_per_s"] = b["items_per_second"]
        elif name == "BM_mpi_map_chunk256":
            out["map_items_per_s"] = b["items_per_second"]
        elif name == "BM_mpi_roundtrip_64MiB":
            out["mib64_mib_per_s"] = b["bytes_per_second"] / (1 << 20)
    return out


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--python-side":
        print(json.dumps(python_side()))
        return
    binary = sys.argv[1]
    cc = cpp_side(binary)
    # mpi4py.futures spawns workers that re-run this file: keep its side in a child.
    py = json.loads(subprocess.run([sys.executable, __file__, "--python-side"], check=True,
                                   capture_output=True, text=True).stdout.splitlines()[-1])
    rows = [("warm round trip, median", "round_trip_us", "µs", False),
            ("submit + result, 5 000 no-ops", "submit_result_per_s", "tasks/s", True),
            ("map 200 000 ints, chunksize 256", "map_items_per_s", "items/s", True),
            ("64 MiB round trip", "mib64_mib_per_s", "MiB/s", True)]
    print("| workload | mpi4py.futures | concur | concur vs Python |")
    print("| --- | ---: | ---: | ---: |")
    for label, key, unit, higher in rows:
        p, c = py[key], cc[key]
        ratio = c / p if higher else p / c
        print(f"| {label} | {p:,.1f} {unit} | {c:,.1f} {unit} | {ratio:.1f}× |")


if __name__ == "__main__":
    main()
