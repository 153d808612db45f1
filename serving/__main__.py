"""`python -m serving`: the same as `tffm serve`."""

import argparse
import sys

from serving import cli


def main() -> int:
    """Parses `tffm serve`'s arguments and serves."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve tffm raw-input ONNX models with TF Serving's "
        "REST and gRPC APIs.",
    )
    cli.add_arguments(parser)
    args = parser.parse_args()
    try:
        return cli.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"tffm serve: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
