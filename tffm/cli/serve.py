"""`tffm serve`: the onnxruntime model server of `serving/`."""

import argparse


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm serve` to `commands` (its flags are `serving.cli`'s)."""
    parser = commands.add_parser(
        "serve",
        parents=[common],
        help="serve ONNX models over TF Serving's REST and gRPC APIs",
        description="A TF Serving-compatible model server over onnxruntime "
        "(no TensorFlow): TF Serving's flags, models.config, REST and gRPC "
        "APIs, batching, health and Prometheus metrics. See "
        "serving/README.md.",
    )
    try:
        from serving import cli as serving_cli  # deferred: protobuf
    except Exception:  # noqa: BLE001 (the [serving] extra missing or unusable)
        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(run=lambda args: 2)
        return
    serving_cli.add_arguments(parser)
    parser.set_defaults(run=serving_cli.run)
