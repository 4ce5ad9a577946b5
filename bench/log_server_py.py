"""The seed's asyncio log catcher, for comparison with examples/log_server (C++).

Same design as the book: asyncio.start_server, one log_catcher task per client reading
the 4-byte length and the pickle, and one asyncio.to_thread(serialize, ...) hop per
record (pickle.loads + json.dumps + write). Two deliberate differences, both needed to
benchmark it fairly: readexactly() instead of read() (read(n) may return a partial
frame), and command-line options for host/port/output plus --stats (latency of each
record from its `created` time to its write, and overall throughput, on stderr).

    python3 log_server_py.py [--host H] [--port P] [--output FILE] [--stats]
"""
import argparse
import asyncio
import asyncio.exceptions
import json
import pickle
import signal
import struct
import sys
import time

SIZE_FORMAT = ">L"
SIZE_BYTES = struct.calcsize(SIZE_FORMAT)

TARGET = None
LINE_COUNT = 0
STATS = None  # list of latencies (ms) when --stats
FIRST_CREATED = None
LAST_WRITE = None


def serialize(bytes_payload):
    global FIRST_CREATED, LAST_WRITE
    object_payload = pickle.loads(bytes_payload)
    text_message = json.dumps(object_payload)
    TARGET.write(text_message)
    TARGET.write("\n")
    if STATS is not None:
        now = time.time()
        created = object_payload.get("created")
        if isinstance(created, float):
            STATS.append((now - created) * 1000.0)
            if FIRST_CREATED is None or created < FIRST_CREATED:
                FIRST_CREATED = created
        LAST_WRITE = now
    return text_message


async def log_writer(bytes_payload):
    global LINE_COUNT
    LINE_COUNT += 1
    await asyncio.to_thread(serialize, bytes_payload)


async def log_catcher(reader, writer):
    count = 0
    client_socket = writer.get_extra_info("socket")
    peer = client_socket.getpeername()
    try:
        while True:
            size_header = await reader.readexactly(SIZE_BYTES)
            payload_size = struct.unpack(SIZE_FORMAT, size_header)
            bytes_payload = await reader.readexactly(payload_size[0])
            await log_writer(bytes_payload)
            count += 1
    except asyncio.IncompleteReadError:
        pass
    print(f"From {peer}: {count} lines")


server = None


async def main(host, port):
    global server
    server = await asyncio.start_server(log_catcher, host=host, port=port, limit=2**20, backlog=4096)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, server.close)
    loop.add_signal_handler(signal.SIGINT, server.close)
    addr = server.sockets[0].getsockname()
    print(f"Serving on {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18842)
    ap.add_argument("--output", default="one.log")
    ap.add_argument("--stats", action="store_true")
    args = ap.parse_args()
    if args.stats:
        STATS = []
    with open(args.output, "w") as TARGET:
        try:
            asyncio.run(main(args.host, args.port))
        except (asyncio.exceptions.CancelledError, KeyboardInterrupt):
            ending = {"lines_collected": LINE_COUNT}
            print(ending, flush=True)
            TARGET.write(json.dumps(ending) + "\n")
    if STATS:
        STATS.sort()
        n = len(STATS)
        p = lambda q: STATS[min(n - 1, int(q * n))]
        rate = n / (LAST_WRITE - FIRST_CREATED) if LAST_WRITE and FIRST_CREATED else 0.0
        print(f"latency_ms p50={p(0.5):.3f} p99={p(0.99):.3f} max={STATS[-1]:.3f} n={n} rate={rate:.0f}",
              file=sys.stderr)
