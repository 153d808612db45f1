"""`tffm serve`: TF Serving's command line, over onnxruntime.

`add_arguments(parser)` adds the flags (TF Serving's names and meanings
where TF Serving has the flag) and `run(args)` serves until SIGTERM:

    tffm serve --model_config_file models.config
    tffm serve --model_base_path /models/ctr --model_name ctr
    tffm serve model.onnx --model_name ctr

A base path holds numbered version directories, each with the raw-input
ONNX as `model.onnx` (`<base>/<version>/model.onnx`).
"""

import argparse
import os

from serving.manager import single_file_model
from serving.model_config import ModelConfig
from serving.model_config import read_batching_parameters
from serving.model_config import read_model_config
from serving.model_config import read_monitoring_config
from serving.model_config import read_ssl_config
from serving.server import ServerOptions
from serving.server import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds `tffm serve`'s arguments to `parser`."""
    parser.add_argument(
        "model",
        nargs="?",
        help="a single raw-input .onnx file to serve (instead of a base path "
        "or a model config file)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8500,
        help="gRPC port (0: no gRPC). Default 8500",
    )
    parser.add_argument(
        "--rest_api_port",
        type=int,
        default=8501,
        help="REST port (0: no REST). Default 8501",
    )
    parser.add_argument(
        "--host",
        default="0.0.0.0",  # noqa: S104 (a server)
        help="address to bind both ports on. Default 0.0.0.0",
    )
    parser.add_argument(
        "--model_config_file",
        help="TF Serving ModelServerConfig text file (models.config); "
        "relative base_paths are read from the file's directory",
    )
    parser.add_argument(
        "--model_name", default="default", help="model name. Default 'default'"
    )
    parser.add_argument(
        "--model_base_path",
        help="directory of numbered version directories (<v>/model.onnx)",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between scans for new versions (0: scan once). Default 1",
    )
    parser.add_argument(
        "--enable_batching",
        action="store_true",
        help="batch concurrent requests on the server",
    )
    parser.add_argument(
        "--batching_parameters_file",
        help="TF Serving BatchingParameters text file (max_batch_size, "
        "batch_timeout_micros, max_enqueued_batches, num_batch_threads, "
        "allowed_batch_sizes)",
    )
    parser.add_argument(
        "--ssl_config_file",
        help="TF Serving SSLConfig text file (server_key, server_cert: PEM "
        "text; custom_ca, client_verify): TLS on the gRPC port",
    )
    parser.add_argument(
        "--monitoring_config_file",
        help="TF Serving MonitoringConfig text file (prometheus_config { "
        "enable: true path: ... }): where REST serves Prometheus metrics "
        "(without it: /metrics and /monitoring/prometheus/metrics)",
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        "--session_threads",
        dest="session_threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads per model run (0: one per core). "
        "Default 1: requests run in parallel instead",
    )
    parser.add_argument(
        "--rest_api_num_threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads running unbatched REST predictions (gRPC runs them in "
        "its handler threads). Default: cores",
    )
    parser.add_argument(
        "--num_workers",
        type=int,
        default=1,
        help="server processes sharing both ports (SO_REUSEPORT); each "
        "loads every model. Default 1",
    )
    parser.add_argument(
        "--grpc_max_threads",
        type=int,
        default=16,
        help="threads answering gRPC calls. Default 16",
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30_000,
        help="deadline of one prediction, and of a request body's arrival. "
        "Default 30000",
    )
    parser.add_argument(
        "--rest_api_max_body_bytes",
        type=int,
        default=16 << 20,
        help="largest request body (REST) or message (gRPC). Default 16 MiB",
    )
    parser.add_argument(
        "--max_connections",
        type=int,
        default=2048,
        help="open REST connections before new ones get 503. Default 2048",
    )
    parser.add_argument(
        "--grace_seconds",
        type=float,
        default=10.0,
        help="on SIGTERM, how long in-flight requests may finish. Default 10",
    )
    parser.add_argument(
        "--no_access_log",
        action="store_true",
        help="no JSON access log line per request on stderr",
    )


def run(args: argparse.Namespace) -> int:
    """Serves what `args` names until SIGTERM; returns the exit status."""
    batching = None
    if args.enable_batching:
        batching = read_batching_parameters(args.batching_parameters_file)
    elif args.batching_parameters_file:
        raise ValueError("--batching_parameters_file needs --enable_batching.")
    options = ServerOptions(
        models=_models(args),
        host=args.host,
        grpc_port=args.port or None,
        rest_port=args.rest_api_port or None,
        batching=batching,
        session_threads=_positive(args, "session_threads", zero=True),
        workers=_positive(args, "rest_api_num_threads"),
        grpc_workers=_positive(args, "grpc_max_threads"),
        poll_seconds=args.file_system_poll_wait_seconds,
        max_body_bytes=_positive(args, "rest_api_max_body_bytes"),
        read_timeout=_positive(args, "rest_api_timeout_in_ms") / 1000,
        request_timeout=args.rest_api_timeout_in_ms / 1000,
        max_connections=_positive(args, "max_connections"),
        grace=args.grace_seconds,
        access_log=not args.no_access_log,
        processes=_positive(args, "num_workers"),
        ssl=read_ssl_config(args.ssl_config_file)
        if args.ssl_config_file
        else None,
    )
    if args.monitoring_config_file:
        path = read_monitoring_config(args.monitoring_config_file)
        options.metrics_paths = (path,) if path else ()
    if options.grpc_port is None and options.rest_port is None:
        raise ValueError(
            "Both --port and --rest_api_port are 0: nothing to serve."
        )
    return serve(options)


def _models(args: argparse.Namespace) -> list[ModelConfig]:
    given = [
        flag
        for flag, value in (
            ("a model file", args.model),
            ("--model_config_file", args.model_config_file),
            ("--model_base_path", args.model_base_path),
        )
        if value
    ]
    if len(given) != 1:
        raise ValueError(
            "Give exactly one of a model file, --model_config_file and "
            f"--model_base_path. Received: {given or 'none'}"
        )
    if args.model_config_file:
        return read_model_config(args.model_config_file)
    if args.model:
        if not args.model.endswith(".onnx") or not os.path.isfile(args.model):
            raise FileNotFoundError(
                f"{args.model!r} is not an .onnx file. Serve a directory with "
                "--model_base_path."
            )
        return [single_file_model(args.model, args.model_name)]
    if not os.path.isdir(args.model_base_path):
        raise FileNotFoundError(
            f"--model_base_path {args.model_base_path!r} is not a directory."
        )
    return [
        ModelConfig(
            name=args.model_name,
            base_path=os.path.abspath(args.model_base_path),
        )
    ]


def _positive(args: argparse.Namespace, name: str, zero: bool = False) -> int:
    value = getattr(args, name)
    if value < (0 if zero else 1):
        raise ValueError(
            f"--{name} must be a {'non-negative' if zero else 'positive'} "
            f"integer. Received: {value}"
        )
    return int(value)
