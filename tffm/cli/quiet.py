"""Keeps the frameworks' internal logging off a user's terminal.

TensorFlow (and XLA, gRPC) log through Abseil before anything can configure
it: `TF_CPP_MIN_LOG_LEVEL` no longer silences the start-up lines, and
runtime lines ("Local rendezvous is aborting") come from C++ threads. So
the command line filters file descriptor 2 itself: Abseil-format log lines
are dropped, everything else (Python tracebacks, warnings, our messages)
passes through unchanged. `--verbose` turns the filter off.
"""

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

# "I0000 00:00:1795543890.337211    4867 port.cc:153] ..." (severity, date,
# time, thread, file:line), and Abseil's own notice before its init.
_NATIVE_LOG = re.compile(
    rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] |"
    rb"WARNING: All log messages before absl::InitializeLog)"
)
# Python-side framework chatter that says nothing about the user's job.
_QUIET_LOGGERS = ("tensorflow", "tf2onnx", "absl", "jax._src.xla_bridge")


@contextlib.contextmanager
def quiet_frameworks() -> Iterator[None]:
    """Filters native log lines from stderr and mutes framework loggers."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # Deprecation notices of the frameworks' own internals.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        with _filtered_stderr():
            yield


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real fd (pytest, IDE)
        yield
        return
    sys.stderr.flush()
    original = os.dup(stderr_fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, stderr_fd)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not _NATIVE_LOG.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="tffm-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, stderr_fd)  # closes the pipe's last write end
        thread.join(timeout=5)
        os.close(original)
