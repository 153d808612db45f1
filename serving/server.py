"""One `tffm serve` process: models, REST (uvicorn) and gRPC (grpcio).

Startup: the ports open at once (liveness answers), models load and warm up
in the background, then readiness turns 200 and gRPC health SERVING.
A model that cannot be loaded at start-up (no version serves, one failed)
ends the server: the error, naming the file, is logged and `serve` returns
1, as TF Serving does not start without its models.
SIGTERM / SIGINT: readiness turns 503, both servers stop taking new work
at once, in-flight requests on both finish within one `grace` period,
batchers drain, exit 0.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from serving import http_protocol
from serving.access_log import AccessLog
from serving.grpc_service import GrpcServer
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.model_config import PROMETHEUS_PATH
from serving.model_config import BatchingParameters
from serving.model_config import ModelConfig
from serving.model_config import SslConfig
from serving.rest import RestApp
from serving.service import Service

LOG = logging.getLogger("tffm.serve")


@dataclasses.dataclass
class ServerOptions:
    """Everything `tffm serve` can be told (see `serving.cli` for flags)."""

    models: list[ModelConfig]
    host: str = "0.0.0.0"  # noqa: S104 (a server; --host narrows it)
    grpc_port: int | None = 8500  # None: no gRPC; 0: any free port
    rest_port: int | None = 8501  # None: no REST; 0: any free port
    batching: BatchingParameters | None = None
    session_threads: int = 1
    workers: int = dataclasses.field(
        default_factory=lambda: os.cpu_count() or 1
    )
    grpc_workers: int = 16
    poll_seconds: float = 1.0
    max_body_bytes: int = 16 << 20
    read_timeout: float = 30.0
    keep_alive: float = 15.0
    max_connections: int = 2048
    request_timeout: float = 30.0
    grace: float = 10.0
    access_log: bool = True
    processes: int = 1  # > 1: worker processes sharing the ports
    ssl: SslConfig | None = None  # TLS on the gRPC port
    # Where REST serves Prometheus metrics (empty: nowhere).
    metrics_paths: tuple[str, ...] = ("/metrics", PROMETHEUS_PATH)
    # Set by `serving.workers` in each worker process:
    reuse_port: bool = False  # bind with SO_REUSEPORT beside the others
    metrics_dir: str | None = None  # where the workers share their counts
    listen_when_ready: bool = False  # load first: no traffic before ready


def serve(options: ServerOptions) -> int:
    """Runs the server until SIGTERM / SIGINT; returns the exit status."""
    if options.processes > 1:
        from serving import workers  # deferred: protobuf

        return workers.serve_workers(options, serve)
    _configure_logging()
    access_log = AccessLog() if options.access_log else None
    metrics = Metrics()
    if options.metrics_dir is not None:
        metrics.share(options.metrics_dir)
    executor = concurrent.futures.ThreadPoolExecutor(
        options.workers, thread_name_prefix="predict"
    )
    manager = ModelManager(
        options.models,
        executor=executor,
        threads=options.session_threads,
        batching=options.batching,
        on_batch=metrics.observe_batch,
    )
    service = Service(manager, metrics)
    if options.listen_when_ready:
        # A second worker: the ports already answer (the first worker), so
        # this one joins them only once it can serve.
        manager.start(options.poll_seconds)
        if _failed(manager):
            manager.stop()
            executor.shutdown(wait=False)
            if access_log is not None:
                access_log.close()
            return 1
    grpc_server = None
    if options.grpc_port is not None:
        grpc_server = GrpcServer(
            service,
            _join(options.host, options.grpc_port),
            max_workers=options.grpc_workers,
            max_message_bytes=options.max_body_bytes,
            timeout=options.request_timeout,
            access_log=access_log,
            reuse_port=options.reuse_port,
            ssl=options.ssl,
        )
        grpc_server.start()
    app = RestApp(
        service,
        max_body_bytes=options.max_body_bytes,
        read_timeout=options.read_timeout,
        request_timeout=options.request_timeout,
        access_log=access_log,
        metrics_paths=options.metrics_paths,
    )
    sock = None
    if options.rest_port is not None:
        sock = _bind(options.host, options.rest_port, options.reuse_port)
    ports = {
        "grpc_port": grpc_server.port if grpc_server else None,
        "rest_port": sock.getsockname()[1] if sock else None,
    }
    print(f"tffm serve: listening {ports}", flush=True)

    failed = threading.Event()
    stopping = _Stopping(grpc_server, options.grace)

    def load() -> None:
        if not options.listen_when_ready:
            manager.start(options.poll_seconds)
            if _failed(manager):
                failed.set()
                stopping.loop_started.wait()
                os.kill(os.getpid(), signal.SIGTERM)
                return
        if grpc_server is not None and manager.ready and not app.shutting_down:
            grpc_server.set_serving(True)
        LOG.info("ready: %s", manager.ready)

    loader = threading.Thread(target=load, daemon=True, name="loader")
    loader.start()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_run(app, sock, options, stopping, manager))
    finally:
        stopping.begin()  # no-op after a signal: it has begun already
        stopping.wait()
        manager.stop()
        executor.shutdown(wait=True)
        if access_log is not None:
            access_log.close()
    LOG.info("stopped")
    return 1 if failed.is_set() else 0


def _failed(manager: ModelManager) -> bool:
    """Logs the models that cannot be served; whether there are any."""
    failures = manager.failures()
    for name, error in failures.items():
        LOG.error("model %r cannot be served, stopping: %s", name, error)
    return bool(failures)


class _Stopping:
    """Stops gRPC the moment shutdown begins, and waits for it later.

    REST (uvicorn) and gRPC stop taking new work together and their in-
    flight requests share one grace period: gRPC's `stop(grace)` returns at
    once, and is waited for only after uvicorn has drained.
    """

    def __init__(self, grpc_server: GrpcServer | None, grace: float) -> None:
        self.grpc_server = grpc_server
        self.grace = grace
        self._done: threading.Event | None = None
        self.loop_started = threading.Event()  # the signal handlers are set

    def begin(self) -> None:
        if self.grpc_server is not None and self._done is None:
            self._done = self.grpc_server.stop(self.grace)

    def wait(self) -> None:
        if self._done is not None:
            self._done.wait(self.grace + 5)  # grpc cancels calls at `grace`


async def _run(
    app: RestApp,
    sock: socket.socket | None,
    options: ServerOptions,
    stopping: "_Stopping",
    manager: ModelManager,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    uvicorn_server = None
    grpc_server = stopping.grpc_server

    def begin_shutdown() -> None:
        LOG.info("shutting down")
        app.shutting_down = True
        stopping.begin()
        if uvicorn_server is not None:
            uvicorn_server.should_exit = True
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, begin_shutdown)
    stopping.loop_started.set()
    if sock is None:
        await stop.wait()
        return
    uvicorn_server = _uvicorn_server(app, options)
    # Readiness for gRPC health once loading is done (polled cheaply).
    watcher = asyncio.ensure_future(_watch_ready(manager, grpc_server, stop))
    await uvicorn_server.serve(sockets=[sock])
    watcher.cancel()


async def _watch_ready(
    manager: ModelManager, grpc_server: GrpcServer | None, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        if manager.ready and grpc_server is not None:
            grpc_server.set_serving(True)
            return
        await asyncio.sleep(0.1)


def _uvicorn_server(app: RestApp, options: ServerOptions) -> Any:
    import uvicorn  # optional: the [serving] extra

    config = uvicorn.Config(
        app,
        http=http_protocol.protocol_class(options.read_timeout),
        lifespan="off",
        proxy_headers=False,  # no middleware wrapping every request
        access_log=False,
        log_level="warning",
        timeout_keep_alive=int(options.keep_alive),
        timeout_graceful_shutdown=int(options.grace),
        limit_concurrency=options.max_connections,
        backlog=4096,
        server_header=False,
        date_header=False,
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # ours are installed
            yield

    return Server(config)


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # the kernel spreads connections over the workers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The uvloop event loop where it is installed (the `[serving]` extra).

    The loop is made here, not by uvicorn: `uvicorn.Server.serve()` runs
    on the caller's loop, so its `loop="auto"` would never apply.
    """
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _configure_logging() -> None:
    main = logging.getLogger("tffm.serve")
    if not main.handlers:
        main_handler = logging.StreamHandler(sys.stderr)
        main_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        main.addHandler(main_handler)
    main.setLevel(logging.INFO)
