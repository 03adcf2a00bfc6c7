"""Options and loaders the commands share (model, offline output, streams)."""
from __future__ import annotations

import argparse
import math
import signal
import sys
from pathlib import Path
from typing import Sequence

from engines.errors import UserError
from realtime.offline import MAX_PEOPLE


def add_examples(p: argparse.ArgumentParser, *examples: str) -> None:
    """End the command's ``--help`` with a few example command lines."""
    p.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="s32",
                   help="checkpoint path, or a size name (s32, b32, l32, h32, h32_correct) resolved in the "
                        "weights cache (see `mocap weights`). Default: s32")
    p.add_argument("--body-models", default=None, metavar="DIR",
                   help="directory holding smplx/SMPLX_NEUTRAL.npz (default: $MOCAP_BODY_MODELS or the cache)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_offline_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in --out (by default such a folder is refused)")
    p.add_argument("--bbox", nargs=4, type=finite_float, action="append", metavar=("X", "Y", "W", "H"),
                   help="person box in pixels (xywh) instead of the detector; repeat for several people")
    p.add_argument("--engine", default=None, choices=["torch", "onnx", "auto", "aoti"],
                   help="backend; torch runs the network op for op like the official code (bit-exact). Default "
                        "for image/video: the fastest engine that is ready and stays within the documented "
                        "tolerance (CPU: ONNX Runtime once mocap live or mocap export --to onnx has cached it, "
                        "else torch; CUDA: fp32 with CUDA graphs); the choice is printed and kept in run.json. "
                        "mocap batch: torch")
    p.add_argument("--save-mesh", action="store_true", help="also write mesh/<name>.obj")
    p.add_argument("--ignore-orientation", action="store_true",
                   help="keep the pixels as stored: do not turn photos by their EXIF orientation or videos by "
                        "their rotation metadata (the official load_img ignores both; by default they are applied "
                        "and run.json / video.json say what was turned)")
    p.add_argument("--no-overlay", action="store_true", help="skip rendering the overlay images")
    p.add_argument("--no-boxes", action="store_true", help="overlay: draw the meshes without boxes and ids")
    p.add_argument("--max-people", type=int, default=None, metavar="N",
                   help=f"at most N people per frame (default: everyone found, up to {MAX_PEOPLE}; "
                        "1 = the largest person, the official default)")




def check_boxes(boxes) -> None:
    """--bbox values: width and height must be positive."""
    for box in boxes or ():
        if box[2] <= 0 or box[3] <= 0:
            values = " ".join(f"{v:g}" for v in box)
            raise UserError(f"--bbox {values}: width and height must be > 0 (X Y W H in pixels)")


def exit_code(stats) -> int:
    """Exit code of an offline run: 128 + N when signal N stopped it early (SIGINT 130,
    SIGTERM 143, SIGHUP 129), 1 when no frame could be processed, else 0."""
    if stats.stopped:
        return 128 + int(stats.stopped_by or signal.SIGINT)
    return 0 if stats.frames else 1


def max_people(args) -> int:
    """``--max-people`` of the offline commands (default :data:`MAX_PEOPLE`), checked."""
    n = MAX_PEOPLE if args.max_people is None else args.max_people
    if n < 1:
        raise UserError("--max-people must be at least 1")
    return n


def run_offline(args, inputs: Sequence[Path], not_read: Sequence[str] = ()) -> int:
    """``mocap image`` / ``mocap video`` once their inputs are checked: the library run
    (:func:`realtime.offline.run_session`) with the options as plain values, the summary line, the
    exit code."""
    from realtime.offline import run_session

    stats = run_session(args.command, inputs, args.out, checkpoint=args.checkpoint, body_models=args.body_models,
                        device=args.device, engine=args.engine, bbox=args.bbox,
                        max_people=1 if args.bbox else max_people(args), save_mesh=args.save_mesh,
                        overlay=not args.no_overlay, boxes=not args.no_boxes, overwrite=args.overwrite,
                        max_frames=getattr(args, "max_frames", None), orientation=not args.ignore_orientation,
                        not_read=list(not_read))
    print(f"mocap {args.command}: {stats.summary()}; results in {args.out}")
    if stats.engine_choice:  # said after the run, so that a failure stays one line
        print(f"mocap {args.command}: engine: {stats.engine_choice}; --engine torch runs the official path op for op",
              file=sys.stderr)
    return exit_code(stats)


def stream_targets(args):
    """The stream options of ``mocap live`` / ``mocap replay`` as plain values."""
    from realtime.sinks.targets import StreamTargets

    return StreamTargets(osc=args.osc, zmq=args.zmq, osc_split=args.osc_split, osc_no_raw=args.osc_no_raw,
                         vmc_root=args.vmc_root, vmc_recenter=args.vmc_recenter,
                         vmc_zero_positions=args.vmc_zero_positions, vmc_jaw_open_max=args.vmc_jaw_open_max,
                         performer=getattr(args, "performer", None))


def add_stream_args(p: argparse.ArgumentParser, per_source: bool = False) -> None:
    """The VMC/OSC and ZMQ options; ``per_source`` (``mocap live``): ``--zmq`` repeatable, one per
    ``--source`` (the last one counts with one source)."""
    p.add_argument("--osc", action="append", default=None, metavar="HOST:PORT",
                   help="VMC/OSC receiver (Marionette), or 'none'. Default 127.0.0.1:39539. Repeat for several "
                        "avatars: each target drives one person (the first: the largest, or --performer)")
    p.add_argument("--osc-split", action="store_true",
                   help="split bone bundles under 1400 bytes (for Wi-Fi / LAN receivers)")
    p.add_argument("--osc-no-raw", action="store_true", help="do not send the raw /SMPLX address space")
    p.add_argument("--vmc-root", choices=["root", "hips"], default="root",
                   help="where the body's position and orientation go: /VMC/Ext/Root/Pos (root, default) or the "
                        "Hips bone (hips); try the other if the avatar floats, spins or sticks in place")
    p.add_argument("--vmc-recenter", action="store_true",
                   help="the first frame's position becomes the avatar's origin (default: the camera is the origin)")
    p.add_argument("--vmc-zero-positions", action="store_true",
                   help="send zero positions for every bone but Hips (for receivers that stretch limbs)")
    p.add_argument("--vmc-jaw-open-max", type=float, default=0.5, metavar="RAD",
                   help="jaw opening (radians) that maps to the mouth blend value 1.0 (default 0.5)")
    if per_source:
        p.add_argument("--zmq", action="append", default=None, metavar="ENDPOINT",
                       help="ZMQ PUB endpoint to bind, or 'none'. Default tcp://127.0.0.1:5555. With several "
                            "--source values: once per source in their order (default tcp://127.0.0.1:5555+k for "
                            "stream k from 0), or once as 'none'")
    else:
        p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                       help="ZMQ PUB endpoint to bind, or 'none'. Default tcp://127.0.0.1:5555")
