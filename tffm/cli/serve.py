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
        "docs/serving.md.",
    )
    try:
        from serving import cli as serving_cli  # optional: [serving] extra
    except Exception as error:  # noqa: BLE001 (missing, or cannot load)
        # The other commands still parse; `tffm serve` says why it cannot
        # run (a missing extra is named first by `check_installed`).
        reason = f"{type(error).__name__}: {error}"

        def unavailable(args: argparse.Namespace) -> int:
            raise ValueError(f"the [serving] extra cannot load: {reason}")

        parser.add_argument("rest", nargs=argparse.REMAINDER)
        parser.set_defaults(run=unavailable)
        return
    serving_cli.add_arguments(parser)
    parser.set_defaults(run=serving_cli.run)
