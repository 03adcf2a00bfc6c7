"""The ``mocap`` command line: one entry point, one file per sub-command."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from engines.errors import UserError
from engines.stop import StopRequested, signal_name, stop_requested

from .. import signals

from . import batch, bench, convert, doctor, eval, export, image, live, replay, train, video, weights, web

log = logging.getLogger("mocap")

#: Sub-commands in the order ``mocap --help`` lists them.
COMMANDS = (image, video, batch, live, web, replay, convert, weights, export, bench, eval, train, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mocap", description="Whole-body SMPL-X motion capture with SMPLer-X.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mocap {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command. Exit codes: 0 done, 1 nothing produced, 2 a user error (one line on stderr),
    128 + N stopped by signal N before the command could finish (SIGINT 130, SIGTERM 143, SIGHUP 129),
    70 an internal error (one line; the traceback with ``-v``)."""
    # keep mediapipe/TFLite's C++ start-up chatter out of the status line
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # OpenCV's and FFmpeg's own complaints, which our one-line messages replace
        os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import warnings

        for category in (FutureWarning, DeprecationWarning):  # library internals, not news for a user
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|onnx|onnxscript|smplx)\b")
    else:
        os.environ["MOCAP_VERBOSE"] = "1"  # engines.quiet lets native libraries talk
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from engines.quiet import StderrFilter, quiet_loggers

    quiet_loggers()  # exporter internals (torchvision notices...), not news for a user

    chatter = StderrFilter() if not args.verbose else None  # MediaPipe/absl/TFLite notices from C++
    if chatter is not None:
        chatter.start()
    signals.install()
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:  # noqa: BLE001 -- every way out gets one clear line
        return _report(args, exc)
    finally:
        signals.uninstall()
        if chatter is not None:
            chatter.stop()


def _report(args, exc: BaseException) -> int:
    """One line on stderr for ``exc`` and the exit code."""
    signum = stop_requested()
    if isinstance(exc, StopRequested):
        signum = exc.signum
    if signum is not None and not isinstance(exc, SystemExit):
        # a stop signal, possibly turned into another exception by a library it interrupted
        print(f"mocap {args.command}: stopped by {signal_name(signum)}", file=sys.stderr)
        return 128 + signum
    if isinstance(exc, UserError):
        print(f"mocap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, KeyboardInterrupt):
        print(f"mocap {args.command}: interrupted", file=sys.stderr)
        return 130
    if isinstance(exc, SystemExit):
        raise exc
    if isinstance(exc, MemoryError):
        print(f"mocap {args.command}: error: out of memory", file=sys.stderr)
        return 70
    if args.verbose:
        log.exception("internal error")
    print(f"mocap {args.command}: internal error: {type(exc).__name__}: {exc} "
          f"(a bug: please report it with the output of `mocap -v {args.command} ...`)", file=sys.stderr)
    return 70


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("smplerx-mocap")
    except Exception:  # not installed as a package (running from a checkout)
        return "0.1.0"

