"""Load test of `tffm serve` (REST and gRPC) vs the old REST server, loopback.

Starts each server as a subprocess on 127.0.0.1, then, per server and
transport: 20,000 requests from 16 concurrent clients at batch 1 and 2,000
at batch 64 (`--scale` multiplies the counts); throughput, p50 / p99
latency, errors and connection resets. Then the server's RSS under a 50 MB
body and with 100 stalled clients (connected, half a header sent). All
traffic stays on loopback and every loop is bounded. Appends the table to
benchmarks/RESULTS.md.

    python benchmarks/serving_load.py [--scale 1.0] [--no-record]
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
RESULTS = os.path.join(HERE, "RESULTS.md")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def start(command: list[str], url: str, ready_path: str) -> subprocess.Popen:
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
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


async def rest_load(address, path, body, total, clients, keep_alive=True):
    """(latencies, errors, resets) of `total` POSTs from `clients` tasks."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    latencies, errors, resets = [], 0, 0
    remaining = total

    async def client():
        nonlocal remaining, errors, resets
        reader = writer = None
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(*address)
                writer.write(head + body)
                status = await reader.readline()
                length, close = 0, not keep_alive
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    key, _, value = line.decode().partition(":")
                    if key.lower() == "content-length":
                        length = int(value)
                    if key.lower() == "connection" and "close" in value.lower():
                        close = True
                if length:
                    await reader.readexactly(length)
                elif close:
                    await reader.read()
                if b" 200 " not in status:
                    errors += 1
                if close or status.startswith(b"HTTP/1.0"):
                    writer.close()
                    writer = None
            except (
                ConnectionResetError,
                BrokenPipeError,
                asyncio.IncompleteReadError,
            ):
                resets += 1
                writer = None
                continue
            latencies.append(time.perf_counter() - start)
        if writer is not None:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, resets, time.perf_counter() - start


async def grpc_load(address, request_bytes, total, clients):
    import grpc

    latencies, errors = [], 0
    remaining = total
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=None,
            response_deserializer=None,
        )

        async def client():
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                try:
                    await call(request_bytes, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, 0, time.perf_counter() - start


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


def stress(address, pid) -> dict:
    """RSS under a 50 MB body and with 100 stalled clients."""
    before = rss_mb(pid)
    with socket.create_connection(address, timeout=30) as sock:
        size = 50 << 20
        sock.sendall(
            f"POST /v1/models/ctr:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        sent = 0
        chunk = b" " * (1 << 20)
        try:
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        try:
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
        "50MB_body_answer": answer,
        "rss_after_50MB_mb": round(big, 1),
        "rss_with_100_stalled_mb": round(with_stalled[0], 1),
        "threads_with_100_stalled": with_stalled[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "tffm-serving-front"),
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    from serving_front import build

    raw_path, _ = build(args.workdir)
    base = os.path.join(args.workdir, "serve", "ctr", "1")
    os.makedirs(base, exist_ok=True)
    if not os.path.exists(os.path.join(base, "model.onnx")):
        os.link(raw_path, os.path.join(base, "model.onnx"))
    rng = np.random.default_rng(0)
    runs = [(1, int(20_000 * args.scale)), (64, int(2_000 * args.scale))]
    rows, stresses = [], {}
    python = sys.executable

    servers = {
        "tffm serve": [
            python, "-m", "serving", f"--model_base_path={os.path.dirname(base)}",  # noqa: E501
            "--model_name=ctr", "--host=127.0.0.1", "--no_access_log",
        ],
        "old rest_server (baseline)": [
            python, os.path.join(HERE, "baseline_rest_server.py"),
            f"--model={raw_path}", "--name=ctr",
        ],
    }  # fmt: skip
    for label, command in servers.items():
        rest_port, grpc_port = free_port(), free_port()
        if label == "tffm serve":
            command = [
                *command,
                f"--port={grpc_port}",
                f"--rest_api_port={rest_port}",
            ]
            ready = "/readyz"
        else:
            command = [*command, f"--port={rest_port}"]
            ready = "/v1/models/ctr"
        process = start(command, ("127.0.0.1", rest_port), ready)
        try:
            for size, total in runs:
                body = body_for(size, rng)
                result = asyncio.run(
                    rest_load(
                        ("127.0.0.1", rest_port),
                        "/v1/models/ctr:predict",
                        body,
                        total,
                        16,
                    )
                )
                rows.append((label, "REST", size, total, *result))
                if label == "tffm serve":
                    request = grpc_request(size, rng)
                    result = asyncio.run(
                        grpc_load(f"127.0.0.1:{grpc_port}", request, total, 16)
                    )
                    rows.append((label, "gRPC", size, total, *result))
            stresses[label] = stress(("127.0.0.1", rest_port), process.pid)
        finally:
            process.terminate()
            process.wait(30)
    load = os.getloadavg()
    import grpc
    import onnxruntime
    import uvicorn

    lines = [
        f"\n### Serving load ({datetime.date.today()}, `benchmarks/serving_load.py --scale {args.scale}`)\n",  # noqa: E501
        f"Loopback, 16 concurrent clients (asyncio, same machine: the load "
        f"generator shares the {os.cpu_count()} cores). Python "
        f"{platform.python_version()}, uvicorn {uvicorn.__version__}, grpcio "
        f"{grpc.__version__}, onnxruntime {onnxruntime.__version__}; load "
        f"average at the end {load[0]:.2f} / {load[1]:.2f} (1 / 5 min). "
        "Model: DeepFM, 26 hashed + 13 numeric features, MLP 400-400-400.\n",
        "| server | transport | batch | requests | requests/s | rows/s | p50 ms | p99 ms | errors | resets |",  # noqa: E501
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (
        label,
        transport,
        size,
        total,
        latencies,
        errors,
        resets,
        seconds,
    ) in rows:
        p50, p99 = (
            np.percentile(latencies, [50, 99]) * 1e3 if latencies else (0, 0)
        )
        rate = total / seconds
        lines.append(
            f"| {label} | {transport} | {size} | {total:,} | {rate:,.0f} | "
            f"{rate * size:,.0f} | {p50:.1f} | {p99:.1f} | {errors} | {resets} |"  # noqa: E501
        )
    lines.append("")
    for label, figures in stresses.items():
        lines.append(f"- {label}: {json.dumps(figures)}")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        with open(RESULTS, "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
