"""The ``mocap`` command line: one entry point, one file per sub-command."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from engines.errors import UserError

from . import batch, bench, convert, doctor, export, image, live, replay, video, weights

log = logging.getLogger("mocap")

#: Sub-commands in the order ``mocap --help`` lists them.
COMMANDS = (image, video, batch, live, replay, convert, weights, export, bench, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mocap", description="Whole-body SMPL-X motion capture with SMPLer-X.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mocap {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    # keep mediapipe/TFLite's C++ start-up chatter out of the status line
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # exporter internals, not news for a user
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mocap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mocap {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("smplerx-mocap")
    except Exception:  # not installed as a package (running from a checkout)
        return "0.1.0"

