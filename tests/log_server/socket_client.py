"""A log-producing client using the standard library's logging.handlers.SocketHandler.

    python3 socket_client.py PORT SIDE_FILE INDEX RECORDS

Sends RECORDS records (mixed levels, %-args, unicode, exception info, stack info)
through a real SocketHandler. What each record put on the wire is also written, as one
JSON line, to SIDE_FILE, so the test can compare the server's output with it.
"""
import json
import logging
import logging.handlers
import pickle
import sys


class RecordingSocketHandler(logging.handlers.SocketHandler):
    """SocketHandler that also keeps what it sends (makePickle is its own, unchanged)."""

    def __init__(self, host, port, side):
        super().__init__(host, port)
        self.side = side

    def makePickle(self, record):
        data = super().makePickle(record)
        self.side.write(json.dumps(pickle.loads(data[4:])) + "\n")
        return data

    def handleError(self, record):
        # SocketHandler drops a record it could not send; make that loud instead.
        sys.stderr.write("record dropped by SocketHandler\n")
        raise SystemExit(3)


def main():
    port, side_path, index, records = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with open(side_path, "w", encoding="utf-8") as side:
        handler = RecordingSocketHandler("127.0.0.1", port, side)
        logger = logging.getLogger(f"client.{index}.\u00e9t\u00e9")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        logger.propagate = False
        levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
        for i in range(records):
            kind = i % 10
            if kind == 0:
                try:
                    {}["missing \u2603"]
                except KeyError:
                    logger.exception("failure %d in client %d: %s", i, index, "\u00fcnic\u00f6de \U0001F600")
            elif kind == 1:
                logger.log(levels[i % 5], "plain message %d with quotes \" and backslash \\ and tab\t", i)
            elif kind == 2:
                logger.warning("args: %s %r %5.2f %x %%", "str\u4e2d\u6587", ("tuple", 1), 3.14159 * i, i)
            elif kind == 3:
                logger.info("stack info %d", i, stack_info=(i % 50 == 3))
            elif kind == 4:
                logger.error("dict arg %(a)s/%(b)d", {"a": "alpha", "b": i})
            else:
                logger.log(levels[i % 5], "record %d of client %d: %s", i, index, "x" * (i % 37))
        handler.close()


if __name__ == "__main__":
    main()
