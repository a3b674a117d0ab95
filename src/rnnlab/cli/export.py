"""rnnlab export: a run's model as an ONNX file that onnxruntime runs without PyTorch; the
optional extra `export`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import checkpoint
from ..errors import UsageError
from .flags import add_force, check_output_file

SUMMARY = "a run's model as an ONNX file (runs with onnxruntime, no PyTorch)"
EXAMPLE = "example: rnnlab export runs/mine --format onnx -o model.onnx"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="file format")
    parser.add_argument("-o", "--output", default="model.onnx", help="file to write")
    parser.add_argument(
        "--weights", choices=tuple(checkpoint.WEIGHTS), default="best", help="which weights"
    )
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    output = check_output_file(args.output, "-o", reading=[args.run], force=args.force)
    try:
        from ..export import export_onnx
    except ImportError as e:
        raise UsageError(
            f"rnnlab export needs the export extra ({e.name} is missing): "
            "pip install 'rnnlab[export]'"
        ) from None
    result = export_onnx(
        Path(args.run), output, checkpoint.WEIGHTS[args.weights], overwrite=args.force
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['path']}: {result['bytes']:,} bytes, inputs {', '.join(result['inputs'])}, "
            f"outputs {', '.join(result['outputs'])} (sample with docs/onnx_sample.py)"
        )
    return 0
