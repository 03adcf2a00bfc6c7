"""Options and loaders the commands share (model, offline output, streams)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from engines.errors import UserError


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="s32",
                   help="checkpoint path, or a size name (s32, b32, l32, h32, h32_correct) resolved in the "
                        "weights cache (see `mocap weights`). Default: s32")
    p.add_argument("--body-models", default=None, metavar="DIR",
                   help="directory holding smplx/SMPLX_NEUTRAL.npz (default: $MOCAP_BODY_MODELS or the cache)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")


def add_offline_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--bbox", nargs=4, type=float, action="append", metavar=("X", "Y", "W", "H"),
                   help="person box in pixels (xywh) instead of the detector; repeat for several people")
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "auto"],
                   help="backend; torch (default) runs the network op for op like the official code")
    p.add_argument("--save-mesh", action="store_true", help="also write mesh/<name>.obj")
    p.add_argument("--no-overlay", action="store_true", help="skip rendering the overlay images")
    p.add_argument("--no-boxes", action="store_true", help="overlay: draw the meshes without boxes and ids")
    p.add_argument("--max-people", type=int, default=None, metavar="N",
                   help=f"at most N people per frame (default: everyone found, up to {MAX_PEOPLE}; "
                        "1 = the largest person, the official default)")


#: People per frame when ``--max-people`` is not given (bounds the detector's passes).
MAX_PEOPLE = 10


def load_detector(args):
    if args.bbox:
        return None
    from engines.detector import PersonDetector

    n = MAX_PEOPLE if args.max_people is None else args.max_people
    if n < 1:
        raise UserError("--max-people must be at least 1")
    return PersonDetector(static=args.command == "image", max_people=n)


def load_predictor(args):
    from engines.body_model import BodyModelNotFound
    from engines.checkpoints import CheckpointError
    from engines.inference import Predictor

    try:
        return Predictor.from_files(args.checkpoint, args.body_models, device=args.device,
                                    engine=getattr(args, "engine", "torch"))
    except (CheckpointError, BodyModelNotFound) as exc:
        raise UserError(str(exc)) from exc
    except RuntimeError as exc:
        if "CUDA" in str(exc):
            raise UserError(str(exc)) from exc
        raise


def host_port(text: str, default_port: int):
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        return host, int(port)
    except ValueError:
        raise UserError(f"bad --osc value {text!r}: use HOST:PORT, e.g. 127.0.0.1:39539, or 'none'") from None


def osc_targets(values: Optional[List[str]]) -> List[str]:
    """The ``--osc`` targets: the default receiver when none is given, none for ``none``."""
    if not values:
        return ["127.0.0.1:39539"]
    if any(v.lower() == "none" for v in values):
        if len(values) > 1:
            raise UserError("--osc none cannot be combined with other --osc targets")
        return []
    return list(values)


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--osc", action="append", default=None, metavar="HOST:PORT",
                   help="VMC/OSC receiver (Marionette), or 'none'. Default 127.0.0.1:39539. Repeat for several "
                        "avatars: each target drives one person (the first: the largest, or --performer)")
    p.add_argument("--osc-split", action="store_true",
                   help="split bone bundles under 1400 bytes (for Wi-Fi / LAN receivers)")
    p.add_argument("--osc-no-raw", action="store_true", help="do not send the raw /SMPLX address space")
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="ZMQ PUB endpoint to bind, or 'none'. Default tcp://127.0.0.1:5555")


def make_sinks(args, body_model, record_dir: Optional[Path] = None, record_video: bool = False,
               source_desc: str = "", fps: Optional[float] = None) -> List:
    sinks = []
    try:
        targets = osc_targets(args.osc)
        if targets:
            from realtime.sinks.osc_vmc import PerformerRouter, VMCSink

            pinned = getattr(args, "performer", None)
            router = PerformerRouter(len(targets), pinned=pinned) if (len(targets) > 1 or pinned is not None) else None
            for slot, target in enumerate(targets):
                host, port = host_port(target, 39539)
                sinks.append(VMCSink(host, port, body_model, split_bundles=args.osc_split,
                                     send_raw=not args.osc_no_raw, router=router, slot=slot))
        if args.zmq and args.zmq.lower() != "none":
            from realtime.sinks.zmq_pub import ZMQSink

            sinks.append(ZMQSink(args.zmq))
        if record_dir is not None:
            from realtime.sinks.recorder import Recorder

            sinks.append(Recorder(record_dir, save_video=record_video, fps=fps, source=source_desc))
    except (OSError, FileExistsError, ValueError) as exc:
        for s in sinks:
            s.close()
        raise UserError(str(exc)) from exc
    return sinks
