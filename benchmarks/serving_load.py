"""Load test of `tffm serve` (REST and gRPC) on loopback.

Starts each server as a subprocess on 127.0.0.1, then, per server and
transport: 20,000 requests from 16 concurrent clients at batch 1 and 2,000
at batch 64 (`--scale` multiplies the counts), after a short warm-up run;
throughput, p50 / p99 latency, errors, connection resets, and the CPU time
per request of the server (its whole process tree) and of the load
generator. Servers: `tffm serve` as configured by default (batching off,
TF Serving's default), with `--num_workers 2` and with `--enable_batching`.
Then the server's RSS under a streamed 50 MB body and with 100 stalled
clients (connected, half a header sent). All traffic stays on loopback and
every loop is bounded. Writes the table to benchmarks/RESULTS.md.

The load generator is h2load (Debian's `nghttp2-client`: C, HTTP/1.1 for
REST, HTTP/2 for gRPC, a per-request log for the percentiles) when it is on
PATH; otherwise Python asyncio clients in 4 processes (they cost much more
CPU per request, taken from the same cores: the table says which ran).
gRPC answers errors in HTTP/2 trailers, which h2load does not read, so
errors are counted by the server (`tffm_serving_errors_total`).

    python benchmarks/serving_load.py [--scale 1.0] [--servers LABEL,...]
        [--client auto|h2load|python] [--no-record]
    python benchmarks/serving_load.py --mlserver [--scale 0.25] [--rounds 2]

`--mlserver`: the side by side with MLServer 1.7.1 instead
(`benchmarks/mlserver_side.py`): both servers up, every API measured in
alternating rounds, the ratios against MLServer's V2 REST and gRPC.
"""

import argparse
import asyncio
import datetime
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from results import record_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
CLIENTS = 16
PREDICT = "/v1/models/ctr:predict"
GRPC_PREDICT = "/tensorflow.serving.PredictionService/Predict"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid`'s process tree so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:
            continue
    return total


def rss_mb(pid: int) -> float:
    total = 0.0
    for member in tree(pid):
        try:
            with open(f"/proc/{member}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def threads(pid: int) -> int:
    return sum(len(os.listdir(f"/proc/{p}/task")) for p in tree(pid))


def start(command: list[str], url: str, ready_path: str, env=None):
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(url, timeout=1) as sock:
                sock.sendall(f"GET {ready_path} HTTP/1.0\r\n\r\n".encode())
                if b" 200 " in sock.recv(100):
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start: {command}")


def body_for(size: int, rng: np.random.Generator) -> bytes:
    from serving_front import raw_batch

    return json.dumps({"inputs": raw_batch(size, rng)}).encode()


def grpc_request(size, rng) -> bytes:
    from serving_front import raw_batch

    from serving import protos
    from serving import tensors

    request = protos.PredictRequest()
    request.model_spec.name = "ctr"
    for name, values in raw_batch(size, rng).items():
        array = np.array(
            values, dtype=object if name.startswith("C") else np.float32
        )
        request.inputs[name].CopyFrom(tensors.make_tensor_proto(array))
    return request.SerializeToString()


def server_errors(rest_port: int) -> float:
    """`tffm_serving_errors_total`, all series added (0 if no metrics)."""
    try:
        with socket.create_connection(("127.0.0.1", rest_port), 5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return 0.0
    return sum(
        float(m.group(1))
        for m in re.finditer(
            rb"^tffm_serving_errors_total\{[^}]*\} (\S+)$", data, re.M
        )
    )


# === h2load ===


def h2load(url, body_path, total, grpc: bool, workdir: str) -> dict:
    log = os.path.join(workdir, "h2load.log")
    command = ["h2load", "-n", str(total), "-c", str(CLIENTS), "-m", "1"]
    command += ["-d", body_path, "--log-file", log]
    if grpc:
        command += [
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
    else:
        command += ["--h1", "-H", "content-type: application/json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=900
    ).stdout
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    done = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        out,
    )
    finished = re.search(r"finished in ([\d.]+)(m?s)", out)
    if done is None or finished is None:
        raise RuntimeError(f"h2load: {out[-2000:]}")
    elapsed = float(finished.group(1)) / (
        1000 if finished.group(2) == "ms" else 1
    )
    rows = np.loadtxt(log, dtype=np.int64, ndmin=2)
    ok = rows[:, 1] == 200
    # h2load: `failed` includes `errored` (connection errors: resets,
    # timeouts); HTTP-level failures are the difference.
    failed, errored = int(done.group(5)), int(done.group(6))
    return {
        "latencies": rows[ok, 2] / 1e6,
        "http_errors": failed - errored,
        "resets": errored,
        "seconds": elapsed or seconds,
        "client_cpu": client,
    }


# === Python fallback: asyncio clients in separate processes ===


async def _rest_client(address, head, body, count, latencies, counts):
    reader = writer = None
    for _ in range(count):
        start = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(*address)
            writer.write(head + body)
            status = await reader.readline()
            if not status:  # closed before answering: a reset, as h2load
                raise ConnectionResetError
            length, close = None, status.startswith(b"HTTP/1.0")
            while (line := await reader.readline()) not in (b"\r\n", b""):
                key, _, value = line.decode().partition(":")
                key, value = key.strip().lower(), value.strip().lower()
                if key == "content-length":
                    length = int(value)
                elif key == "connection":
                    close = value == "close"
            if length is None:  # the body runs to the end of the connection
                await reader.read()
                close = True
            else:
                await reader.readexactly(length)
            if close:  # HTTP/1.0 or "Connection: close": a new one next time
                writer.close()
                writer = None
            if b" 200 " not in status:
                counts["errors"] += 1
                continue
        except (ConnectionError, asyncio.IncompleteReadError):
            counts["resets"] += 1
            writer = None
            continue
        latencies.append(time.perf_counter() - start)
    if writer is not None:
        writer.close()


async def _grpc_client(channel, request, count, latencies, counts, path):
    import grpc

    call = channel.unary_unary(path)
    for _ in range(count):
        start = time.perf_counter()
        try:
            await call(request, timeout=30)
        except grpc.aio.AioRpcError:
            counts["errors"] += 1
            continue
        latencies.append(time.perf_counter() - start)


def _python_worker(kind, address, payload, count, tasks, queue, path=None):
    latencies: list[float] = []
    counts = {"errors": 0, "resets": 0}
    per_task = [count // tasks + (i < count % tasks) for i in range(tasks)]

    async def main():
        if kind == "grpc":
            import grpc

            async with grpc.aio.insecure_channel(address) as channel:
                await asyncio.gather(
                    *(
                        _grpc_client(
                            channel,
                            payload,
                            n,
                            latencies,
                            counts,
                            path or GRPC_PREDICT,
                        )
                        for n in per_task
                    )  # fmt: skip
                )
        else:
            head = (
                f"POST {path or PREDICT} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode()
            await asyncio.gather(
                *(
                    _rest_client(address, head, payload, n, latencies, counts)
                    for n in per_task
                )  # fmt: skip
            )

    asyncio.run(main())
    queue.put((latencies, counts))


def python_load(kind, address, payload, total, processes=4, path=None):
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    counts = [
        total // processes + (i < total % processes) for i in range(processes)
    ]
    workers = [
        context.Process(
            target=_python_worker,
            args=(
                kind,
                address,
                payload,
                n,
                CLIENTS // processes,
                queue,
                path,
            ),  # fmt: skip
        )
        for n in counts
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=900) for _ in workers]
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "latencies": np.array([x for r in results for x in r[0]]),
        "http_errors": sum(r[1]["errors"] for r in results),
        "resets": sum(r[1]["resets"] for r in results),
        "seconds": seconds,
        "client_cpu": (after.ru_utime - before.ru_utime)
        + (after.ru_stime - before.ru_stime),
    }


# === One run ===


def measure(server, transport, size, total, rest_port, grpc_port, payload,
            workdir, use_h2load, path=None) -> dict:  # fmt: skip
    """One row; `path`: another request path than TF Serving's predict."""
    grpc = transport.endswith("gRPC")
    body_path = os.path.join(
        workdir, f"{transport.replace(' ', '-')}-{size}.bin"
    )
    with open(body_path, "wb") as f:  # gRPC: the length-prefixed frame
        f.write(
            b"\0" + struct.pack(">I", len(payload)) + payload
            if grpc
            else payload
        )
    if use_h2load:
        url = (
            f"http://127.0.0.1:{grpc_port}{path or GRPC_PREDICT}"
            if grpc
            else f"http://127.0.0.1:{rest_port}{path or PREDICT}"
        )

        def run(n):
            return h2load(url, body_path, n, grpc, workdir)
    else:
        address = f"127.0.0.1:{grpc_port}" if grpc else ("127.0.0.1", rest_port)

        def run(n):
            kind = "grpc" if grpc else "rest"
            return python_load(kind, address, payload, n, path=path)

    run(max(200, total // 20))  # warm-up, not recorded
    errors_before = server_errors(rest_port)
    cpu_before = cpu_seconds(server.pid)
    result = run(total)
    result["server_cpu"] = cpu_seconds(server.pid) - cpu_before
    result["errors"] = result["http_errors"] + int(
        server_errors(rest_port) - errors_before
    )
    return result


def stress(address, pid) -> dict:
    """RSS under a streamed 50 MB body and with 100 stalled clients."""
    import select

    before = rss_mb(pid)
    answer = "no answer"
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(
            b"POST /v1/models/ctr:predict HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * (1 << 20)
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        sent = 0
        try:
            while sent < 50 << 20:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered before the end
                sock.sendall(framed)
                sent += len(chunk)
            else:
                sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(200).split(b"\r\n")[0].decode()
        except OSError as error:
            answer = f"closed ({error.__class__.__name__})"
    big = rss_mb(pid)
    stalled = []
    for _ in range(100):
        sock = socket.create_connection(address, timeout=5)
        sock.sendall(b"POST /v1/models/ctr:predict HTTP/1.1\r\nHost: x\r\n")
        stalled.append(sock)
    time.sleep(1.0)
    with_stalled = rss_mb(pid), threads(pid)
    for sock in stalled:
        sock.close()
    return {
        "rss_before_mb": round(before, 1),
        "50MB_streamed_body_answer": answer,
        "MB_sent_before_the_answer": sent >> 20,
        "rss_after_50MB_mb": round(big, 1),
        "rss_with_100_stalled_mb": round(with_stalled[0], 1),
        "threads_with_100_stalled": with_stalled[1],
    }


# === Where the CPU goes: the floors and the stages, at batch 1 and 64 ===


def _echo_rest(port: int) -> None:
    """uvicorn as `tffm serve` runs it, with an app that only answers."""
    import uvicorn

    from serving import http_protocol
    from serving.server import _loop_factory

    answer = b'{"outputs":{"probability":[[0.5]],"logit":[[0.0]]}}'

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(answer)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=http_protocol.protocol_class(30),
        lifespan="off", proxy_headers=False, access_log=False,
        log_level="warning", server_header=False, date_header=False,
    )  # fmt: skip
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(uvicorn.Server(config).serve())


def _echo_grpc(port: int) -> None:
    """grpcio's server as `tffm serve` runs it, with a handler that answers."""
    import concurrent.futures

    import grpc

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(16))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService", {"Predict": handler}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def floors(payloads, workdir, use_h2load) -> dict:
    """Server CPU per request of the bare frameworks (no model, no parsing)."""
    found = {}
    for transport, target in (("REST", _echo_rest), ("gRPC", _echo_grpc)):
        port = free_port()
        process = multiprocessing.get_context("spawn").Process(
            target=target, args=(port,)
        )
        process.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

            class Handle:  # what `measure` needs of a server
                pid = process.pid

            result = measure(
                Handle, transport, 1, 10_000, port, port,
                payloads[1][transport == "gRPC"], workdir, use_h2load,
            )  # fmt: skip
            found[transport] = summary(10_000, result)
        finally:
            process.terminate()
            process.join(10)
    return found


def stages(raw_path: str, payloads) -> dict:
    """CPU µs of each step of one request, in this process, by batch size."""
    from serving import OnnxPredictor
    from serving.metrics import Metrics

    predictor = OnnxPredictor(raw_path, threads=1)
    metrics = Metrics()

    def cost(fn, repeats):
        for _ in range(max(20, repeats // 10)):
            fn()
        times = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(repeats):
                fn()
            times.append((time.process_time() - start) / repeats * 1e6)
        return float(np.median(times))

    return {
        size: _stage_costs(
            predictor,
            metrics,
            body,
            request_bytes,
            cost,
            2000 if size == 1 else 200,
        )  # fmt: skip
        for size, (body, request_bytes) in payloads.items()
    }


def _stage_costs(predictor, metrics, body, request_bytes, cost, repeats):
    from serving import protos
    from serving import rest_json
    from serving import tensors
    from serving.grpc_service import _raw_inputs

    document = rest_json.parse_body(body)
    raw, rows = rest_json.columns_from_request(document, predictor.features)
    feeds = predictor.feed(raw)
    outputs = predictor.run(feeds)
    request = protos.PredictRequest.FromString(request_bytes)
    grpc_raw = _raw_inputs(request, predictor.features)

    def response():
        message = protos.PredictResponse()
        for name, value in outputs.items():
            message.outputs[name].CopyFrom(tensors.make_tensor_proto(value))
        return message.SerializeToString()

    features = predictor.features
    return {
        "REST: JSON parse": cost(lambda: rest_json.parse_body(body), repeats),
        "REST: columns": cost(
            lambda: rest_json.columns_from_request(document, features), repeats
        ),
        "REST: feed": cost(lambda: predictor.feed(raw), repeats),
        "REST: response JSON": cost(
            lambda: rest_json.response_json(outputs, rows), repeats
        ),
        "metrics": cost(
            lambda: metrics.observe("ctr", "predict", "rest", "OK", 1e-3),
            repeats,
        ),
        "gRPC: parse": cost(
            lambda: protos.PredictRequest.FromString(request_bytes), repeats
        ),
        "gRPC: tensors -> columns": cost(
            lambda: _raw_inputs(request, features), repeats
        ),
        "gRPC: feed": cost(lambda: predictor.feed(grpc_raw), repeats),
        "gRPC: response": cost(response, repeats),
        "onnxruntime run": cost(lambda: predictor.run(feeds), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "tffm-serving-front"),
    )
    parser.add_argument(
        "--client", choices=["auto", "h2load", "python"], default="auto"
    )
    parser.add_argument(
        "--servers",
        help="comma-separated row labels to run (default: all), e.g. "
        "'tffm serve --num_workers 2'",
    )
    parser.add_argument(
        "--mlserver",
        action="store_true",
        help="only the side by side: tffm serve and MLServer 1.7.1 (its own "
        "venv, made in --workdir), alternating rounds, REST and gRPC",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    load_before = os.getloadavg()
    from serving_front import build

    raw_path, _ = build(args.workdir)
    base = os.path.join(args.workdir, "serve", "ctr", "1")
    os.makedirs(base, exist_ok=True)
    if not os.path.exists(os.path.join(base, "model.onnx")):
        os.link(raw_path, os.path.join(base, "model.onnx"))
    use_h2load = args.client == "h2load" or (
        args.client == "auto" and shutil.which("h2load") is not None
    )
    rng = np.random.default_rng(0)
    payloads = {
        size: (body_for(size, rng), grpc_request(size, rng)) for size in (1, 64)
    }
    runs = [(1, int(20_000 * args.scale)), (64, int(2_000 * args.scale))]
    batching = os.path.join(args.workdir, "batching.config")
    with open(batching, "w") as f:
        f.write(
            "max_batch_size { value: 256 }\n"
            "batch_timeout_micros { value: 1000 }\n"
            "max_enqueued_batches { value: 1000 }\n"
            "num_batch_threads { value: 2 }\n"
        )
    python = sys.executable
    tffm = [
        python, "-m", "serving", f"--model_base_path={os.path.dirname(base)}",
        "--model_name=ctr", "--host=127.0.0.1",
    ]  # fmt: skip
    if args.mlserver:
        compare_mlserver(args, tffm, raw_path, use_h2load, load_before)
        return
    servers = {
        "tffm serve": tffm,
        "tffm serve --num_workers 2": [*tffm, "--num_workers=2"],
        "tffm serve --enable_batching": [
            *tffm, "--enable_batching",
            f"--batching_parameters_file={batching}",
        ],
    }  # fmt: skip
    if args.servers:
        chosen = [name.strip() for name in args.servers.split(",")]
        unknown = sorted(set(chosen) - set(servers))
        if unknown:
            parser.error(f"unknown --servers {unknown}; known: {list(servers)}")
        servers = {name: servers[name] for name in chosen}
    rows, stresses = [], {}
    workdir = tempfile.mkdtemp(prefix="serving-load-")
    for label, command in servers.items():
        rest_port, grpc_port = free_port(), free_port()
        command = [
            *command,
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
        ]
        process = start(command, ("127.0.0.1", rest_port), "/readyz")
        try:
            for size, total in runs:
                for transport in ("REST", "gRPC"):
                    payload = payloads[size][transport == "gRPC"]
                    result = measure(
                        process, transport, size, total, rest_port, grpc_port,
                        payload, workdir, use_h2load,
                    )  # fmt: skip
                    rows.append((label, transport, size, total, result))
                    print(label, transport, size, summary(total, result)[:4])
            if label == "tffm serve":
                stresses[label] = stress(("127.0.0.1", rest_port), process.pid)
        finally:
            process.terminate()
            process.wait(60)
    floor = floors(payloads, workdir, use_h2load)
    steps = stages(raw_path, payloads)
    shutil.rmtree(workdir, ignore_errors=True)
    record(args, rows, stresses, use_h2load, load_before, floor, steps)


def compare_mlserver(args, tffm, raw_path, use_h2load, load_before) -> None:
    """tffm serve and MLServer up together, measured in alternating rounds."""
    import mlserver_side
    from serving_front import raw_batch

    mlserver = mlserver_side.build_venv(args.workdir)
    ports = {name: (free_port(), free_port()) for name in ("tffm", "ml")}
    folder = mlserver_side.model_folder(
        args.workdir, raw_path, *ports["ml"], free_port()
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    tffm_serve = start(
        [*tffm, f"--rest_api_port={ports['tffm'][0]}",
         f"--port={ports['tffm'][1]}"],
        ("127.0.0.1", ports["tffm"][0]), "/readyz",
    )  # fmt: skip
    ml = None
    rows = []
    workdir = tempfile.mkdtemp(prefix="serving-load-")
    try:
        ml = start(
            [mlserver, "start", folder],
            ("127.0.0.1", ports["ml"][0]),
            "/v2/models/ctr/ready",
            env=env,
        )
        rng = np.random.default_rng(0)
        runs = [(1, int(20_000 * args.scale)), (64, int(2_000 * args.scale))]
        payloads = {}
        for size, _ in runs:
            raw = raw_batch(size, rng)
            payloads[size] = {
                "REST": json.dumps({"inputs": raw}).encode(),
                "gRPC": _tf_request(raw),
                "V2 REST": mlserver_side.v2_body(raw),
                "V2 gRPC": mlserver_side.v2_grpc_request(raw),
            }
        _check_same_answers(ports, payloads[64])
        plan = [
            ("tffm serve", "REST", None),
            ("tffm serve", "V2 REST", mlserver_side.V2_INFER),
            ("MLServer 1.7.1", "V2 REST", mlserver_side.V2_INFER),
            ("tffm serve", "gRPC", None),
            ("tffm serve", "V2 gRPC", mlserver_side.V2_GRPC_INFER),
            ("MLServer 1.7.1", "V2 gRPC", mlserver_side.V2_GRPC_INFER),
        ]
        for round_ in range(1, args.rounds + 1):
            for size, total in runs:
                for label, transport, path in plan:
                    process = tffm_serve if label == "tffm serve" else ml
                    rest, grpc_port = ports["tffm" if process is tffm_serve
                                            else "ml"]  # fmt: skip
                    result = measure(
                        process, transport, size, total, rest, grpc_port,
                        payloads[size][transport], workdir, use_h2load, path,
                    )  # fmt: skip
                    rows.append((round_, label, transport, size, total, result))
                    print(round_, label, transport, size,
                          summary(total, result)[:4])  # fmt: skip
    finally:
        for process in (tffm_serve, ml):
            if process is not None:
                process.terminate()
                process.wait(60)
        shutil.rmtree(workdir, ignore_errors=True)
    record_mlserver(args, rows, use_h2load, load_before)


def _tf_request(raw) -> bytes:
    from serving import protos
    from serving import tensors

    request = protos.PredictRequest()
    request.model_spec.name = "ctr"
    for name, values in raw.items():
        array = np.array(
            values, dtype=object if name.startswith("C") else np.float32
        )
        request.inputs[name].CopyFrom(tensors.make_tensor_proto(array))
    return request.SerializeToString()


def _check_same_answers(ports, payloads) -> None:
    """Both servers give the same probabilities over V2 gRPC and REST."""
    import grpc

    from serving import v2_protos

    answers = []
    for name in ("tffm", "ml"):
        rest, grpc_port = ports[name]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                response_deserializer=v2_protos.ModelInferResponse.FromString,
            )
            response = call(payloads["V2 gRPC"], timeout=30)
        index = [o.name for o in response.outputs].index("probability")
        output = response.outputs[index]
        if index < len(response.raw_output_contents):
            values = np.frombuffer(
                response.raw_output_contents[index], dtype="<f4"
            )
        else:
            values = np.array(output.contents.fp32_contents, np.float32)
        answers.append(values)
        request = _v2_rest_probability(rest, payloads["V2 REST"])
        answers.append(np.array(request, np.float32))
    for other in answers[1:]:
        np.testing.assert_allclose(other, answers[0], atol=1e-5)


def _v2_rest_probability(port, body) -> list:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/ctr/infer",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        document = json.loads(response.read())
    output = next(o for o in document["outputs"] if o["name"] == "probability")
    return np.asarray(output["data"], np.float32).reshape(-1).tolist()


def record_mlserver(args, rows, use_h2load, load_before) -> None:
    import grpc
    import onnxruntime

    load = os.getloadavg()
    client = (
        "h2load (nghttp2, C; HTTP/1.1 keep-alive for REST, HTTP/2 for gRPC)"
        if use_h2load
        else "Python asyncio clients in 4 processes"
    )
    lines = [
        f"### tffm serve and MLServer 1.7.1 side by side ({datetime.datetime.now():%Y-%m-%d %H:%M}, `benchmarks/serving_load.py --mlserver --scale {args.scale} --rounds {args.rounds}`)\n",  # noqa: E501
        f"Loopback, both servers up together, measured in alternating "
        f"rounds (one row after the other, same payloads), {CLIENTS} "
        f"concurrent connections from {client}, on the same "
        f"{os.cpu_count()} cores. {platform.machine()}, Python "
        f"{platform.python_version()}, grpcio {grpc.__version__}, onnxruntime "
        f"{onnxruntime.__version__}. Load average before: "
        f"{' / '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{' / '.join(f'{x:.2f}' for x in load)}. MLServer 1.7.1 in its own "
        "venv, a custom runtime around `serving.OnnxPredictor` "
        "(`benchmarks/mlserver_side.py`), `parallel_workers: 0` (inference "
        "in the server process); `tffm serve` with its defaults (batching "
        "off, one process). REST is TF Serving's API for `tffm serve`, V2 "
        "the Open Inference Protocol (JSON tensors; gRPC `contents`). "
        "Errors: HTTP failures, and gRPC errors counted by `tffm serve` (for "
        "MLServer's gRPC, h2load does not read trailers: its answers were "
        "checked once against `tffm serve`'s before the rounds).\n",
        "| round | server | API | batch | requests | requests/s | rows/s | p50 ms | p99 ms | errors | server CPU µs/req |",  # noqa: E501
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",  # noqa: E501
    ]
    rates = {}
    for round_, label, transport, size, total, result in rows:
        rate, p50, p99, errors, resets, server, _ = summary(total, result)
        rates.setdefault((label, transport, size), []).append((rate, p99))
        lines.append(
            f"| {round_} | {label} | {transport} | {size} | {total:,} | "
            f"{rate:,.0f} | {rate * size:,.0f} | {p50:.1f} | {p99:.1f} | "
            f"{errors + resets} | {server:,.0f} |"
        )
    lines += [
        "",
        "Ratios, `tffm serve` / MLServer's V2 on the same transport (mean "
        "requests/s over the rounds; p99 ms of both):",
        "",
        "| tffm serve API | batch | ratio | p99 tffm / MLServer |",
        "| --- | ---: | ---: | --- |",
    ]
    for (label, transport, size), figures in rates.items():
        if label != "tffm serve":
            continue
        base = rates.get(
            ("MLServer 1.7.1", "V2 gRPC" if "gRPC" in transport else "V2 REST",
             size)
        )  # fmt: skip
        if not base:
            continue
        mine = np.mean([r for r, _ in figures])
        theirs = np.mean([r for r, _ in base])
        lines.append(
            f"| {transport} | {size} | {mine / theirs:.2f}x | "
            f"{np.mean([p for _, p in figures]):.1f} / "
            f"{np.mean([p for _, p in base]):.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        record_section("serving_load --mlserver", text)


def summary(total: int, result: dict) -> tuple:
    latencies = result["latencies"]
    p50, p99 = (
        np.percentile(latencies, [50, 99]) * 1e3 if len(latencies) else (0, 0)
    )
    rate = total / result["seconds"]
    return (
        rate,
        p50,
        p99,
        result["errors"],
        result["resets"],
        result["server_cpu"] / total * 1e6,
        result["client_cpu"] / total * 1e6,
    )


def record(args, rows, stresses, use_h2load, load_before, floor, steps):
    import grpc
    import onnxruntime
    import uvicorn

    load = os.getloadavg()
    client = (
        "h2load (nghttp2, C; HTTP/1.1 keep-alive for REST, HTTP/2 for gRPC)"
        if use_h2load
        else "Python asyncio clients in 4 processes"
    )
    busy = " (other work shared the cores)" if load_before[0] > 0.8 else ""
    lines = [
        f"\n### Serving load ({datetime.datetime.now():%Y-%m-%d %H:%M}, `benchmarks/serving_load.py --scale {args.scale}`)\n",  # noqa: E501
        f"Loopback, {CLIENTS} concurrent connections from {client}, on the "
        f"same {os.cpu_count()} cores as the server. {platform.machine()}, "
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"grpcio {grpc.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"numpy {np.__version__}. Load average (1 / 5 / 15 min) before: "
        f"{' / '.join(f'{x:.2f}' for x in load_before)}{busy}; after: "
        f"{' / '.join(f'{x:.2f}' for x in load)}. Model: DeepFM, 26 hashed + "
        "13 numeric raw features, embedding 16, MLP 400-400-400. CPU columns: "
        "CPU time per request of the server's process tree and of the load "
        "generator; gRPC errors counted by the server.\n",
        "| server | transport | batch | requests | requests/s | rows/s | p50 ms | p99 ms | errors | resets | server CPU µs/req | client CPU µs/req |",  # noqa: E501
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",  # noqa: E501
    ]
    for label, transport, size, total, result in rows:
        rate, p50, p99, errors, resets, server, client_cpu = summary(
            total, result
        )
        lines.append(
            f"| {label} | {transport} | {size} | {total:,} | {rate:,.0f} | "
            f"{rate * size:,.0f} | {p50:.1f} | {p99:.1f} | {errors} | "
            f"{resets} | {server:,.0f} | {client_cpu:,.0f} |"
        )
    lines.append("")
    for label, figures in stresses.items():
        lines.append(f"- {label}: {json.dumps(figures)}")
    lines += [
        "",
        "Where the server's CPU goes (same run): the bare frameworks under "
        "the same load generator (an app or handler that only answers, "
        "batch-1 payloads), and each step of a request timed alone in one "
        "process (CPU µs, median of 5):",
        "",
        "| step | batch 1 | batch 64 |",
        "| --- | ---: | ---: |",
    ]
    for transport, figures in floor.items():
        name = "uvicorn + uvloop" if transport == "REST" else "grpcio server"
        lines.append(
            f"| {name}, nothing else ({figures[0]:,.0f} requests/s) | "
            f"{figures[5]:,.0f} | |"
        )
    for step in steps[1]:
        lines.append(
            f"| {step} | {steps[1][step]:,.1f} | {steps[64][step]:,.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        record_section("serving_load", text)


if __name__ == "__main__":
    main()
