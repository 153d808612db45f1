"""The structured access log: one JSON line per request, off the hot path.

A request appends one tuple to a bounded deque (no formatting, no I/O, no
thread wake-up); a writer thread turns what has gathered into JSON lines
every `interval` seconds and writes them to the stream in one call. A
stream that blocks (a full pipe) never blocks a request: past `limit`
waiting lines the oldest are dropped, and counted in a final line.
"""

import collections
import json
import sys
import threading
import time
from typing import Any, TextIO

_REST = ("time", "transport", "remote", "method", "path", "status", "code",
         "model", "bytes_out", "ms")  # fmt: skip
_GRPC = ("time", "transport", "remote", "method", "model", "code", "ms")


class AccessLog:
    """Collects access-log entries and writes them from a thread of its own.

    Args:
        stream: where the lines go (default: `sys.stderr` at write time).
        interval: float. Seconds between writes.
        limit: int. Entries kept waiting at most.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = 0.2,
        limit: int = 100_000,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.limit = limit
        self._entries: collections.deque[tuple[Any, ...]] = collections.deque(
            maxlen=limit
        )
        self._dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, daemon=True, name="access-log"
        )
        self._thread.start()

    def rest(
        self,
        remote: str,
        method: str,
        path: str,
        status: int,
        code: str,
        model: str,
        size: int,
        seconds: float,
    ) -> None:
        """Records one REST request."""
        if len(self._entries) == self.limit:
            self._dropped += 1
        self._entries.append(
            (
                _REST,
                time.time(),
                "rest",
                remote,
                method,
                path,
                status,
                code,
                model,
                size,
                seconds,
            )  # fmt: skip
        )

    def grpc(self, remote: str, method: str, model: str, code: str,
             seconds: float) -> None:  # fmt: skip
        """Records one gRPC call."""
        if len(self._entries) == self.limit:
            self._dropped += 1
        self._entries.append(
            (_GRPC, time.time(), "grpc", remote, method, model, code, seconds)
        )

    def close(self) -> None:
        """Writes what is waiting and stops the thread."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._flush()
        self._flush()
        if self._dropped:
            self._write(
                json.dumps({"access_log_dropped": self._dropped}) + "\n"
            )

    def _flush(self) -> None:
        lines = []
        entries = self._entries
        while entries:
            entry = entries.popleft()
            keys, *values = entry
            values[0] = round(values[0], 6)
            values[-1] = round(values[-1] * 1e3, 3)  # seconds -> ms
            lines.append(json.dumps(dict(zip(keys, values, strict=True))))
        if lines:
            self._write("\n".join(lines) + "\n")

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing to do
            pass
