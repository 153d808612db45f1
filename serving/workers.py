"""`tffm serve --num_workers N`: N server processes sharing both ports.

One Python process runs Python code on one core at a time (the GIL); on a
box with several cores, several worker processes serve more requests. The
parent reserves the ports (binding them with SO_REUSEPORT, without
listening), starts the workers (`spawn`: nothing of the parent's threads
is inherited), each of which loads the models itself and binds both ports
with SO_REUSEPORT, so the kernel spreads new connections over them (the
first at once, for liveness; the others once their models are loaded, so
no connection lands on a worker that cannot serve yet). SIGTERM / SIGINT
to the parent goes to every worker, which drain as one server would; a
worker whose parent is gone (killed) stops by itself. A worker killed by a
signal (SIGKILL, the OOM killer) is replaced by a new one, which listens
once its models are loaded: only the requests in flight on the dead one
fail. A worker that exits with an error (a model that cannot be loaded)
stops them all, and the parent exits 1. Costs: each worker
holds its own copy of every model (memory times N) and its own batching
queue; `/readyz` and gRPC health answer for the worker a connection lands
on; `/metrics` adds up all workers (the others' counts up to a second old).
"""

import dataclasses
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

LOG_PREFIX = "tffm serve"


def serve_workers(options: Any, serve: Callable[[Any], int]) -> int:
    """Runs `options.processes` workers of `serve` until SIGTERM / SIGINT."""
    reserved = []
    ports: dict[str, int | None] = {"grpc_port": None, "rest_port": None}
    for key in ports:
        port = getattr(options, key)
        if port is not None:
            sock = _reserve(options.host, port)
            reserved.append(sock)
            ports[key] = sock.getsockname()[1]
    share = tempfile.mkdtemp(prefix="tffm-serve-metrics-")
    child = dataclasses.replace(
        options,
        processes=1,
        reuse_port=True,
        metrics_dir=share,
        grpc_port=ports["grpc_port"],
        rest_port=ports["rest_port"],
    )
    context = multiprocessing.get_context("spawn")

    def spawn(i: int, listen_when_ready: bool) -> Any:
        return context.Process(
            target=_worker,
            args=(
                serve,
                dataclasses.replace(child, listen_when_ready=listen_when_ready),
            ),
            name=f"worker-{i}",
        )

    # The first answers liveness at once; the others listen only once
    # their models are loaded, so no request reaches a worker that cannot
    # serve it.
    workers = [spawn(i, i > 0) for i in range(options.processes)]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for worker in workers:
        worker.start()
    print(
        f"{LOG_PREFIX}: listening {ports} with {len(workers)} worker processes",
        flush=True,
    )
    code = 0
    try:
        while any(w.is_alive() for w in workers):
            for i, worker in enumerate(workers):
                worker.join(0.2)
                if worker.exitcode in (None, 0) or stopping:
                    continue
                if worker.exitcode < 0:  # killed by a signal: replace it
                    print(
                        f"{LOG_PREFIX}: {worker.name} (pid {worker.pid}) was "
                        f"killed by signal {-worker.exitcode}; starting a "
                        "new one",
                        file=sys.stderr,
                        flush=True,
                    )
                    workers[i] = spawn(i, True)
                    workers[i].start()
                    continue
                print(
                    f"{LOG_PREFIX}: {worker.name} exited with "
                    f"{worker.exitcode}; stopping the others",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                stop(signal.SIGTERM, None)
            time.sleep(0.05)
        # Stopped by our SIGTERM before it could install its handler (still
        # loading): -SIGTERM is a clean stop too.
        clean = (0, -signal.SIGTERM) if stopping else (0,)
        if any(w.exitcode not in clean for w in workers):
            code = code or 1
    finally:
        for sock in reserved:
            sock.close()
        shutil.rmtree(share, ignore_errors=True)
    return code


def _worker(serve: Callable[[Any], int], options: Any) -> None:
    parent = os.getppid()

    def watch() -> None:  # the parent killed (SIGKILL): stop, gracefully
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
    sys.exit(serve(options))


def _reserve(host: str, port: int) -> socket.socket:
    """Binds `port` (0: a free one) with SO_REUSEPORT, without listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
