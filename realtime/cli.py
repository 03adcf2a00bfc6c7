"""The ``mocap`` command line: one entry point, one sub-command per job."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

log = logging.getLogger("mocap")


class UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="s32",
                   help="checkpoint path, or a size name (s32, b32, l32, h32, h32_correct) resolved in the "
                        "weights cache (see `mocap weights`). Default: s32")
    p.add_argument("--body-models", default=None, metavar="DIR",
                   help="directory holding smplx/SMPLX_NEUTRAL.npz (default: $MOCAP_BODY_MODELS or the cache)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")


def _add_offline_args(p: argparse.ArgumentParser) -> None:
    _add_model_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--bbox", nargs=4, type=float, action="append", metavar=("X", "Y", "W", "H"),
                   help="person box in pixels (xywh) instead of the detector; repeat for several people")
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "auto"],
                   help="backend; torch (default) runs the network op for op like the official code")
    p.add_argument("--save-mesh", action="store_true", help="also write mesh/<name>.obj")
    p.add_argument("--no-overlay", action="store_true", help="skip rendering the overlay images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mocap", description="Whole-body SMPL-X motion capture with SMPLer-X.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"mocap {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("image", help="SMPL-X from images (official output format)")
    p.add_argument("images", nargs="+", type=Path, help="image files or directories of images")
    _add_offline_args(p)
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("video", help="SMPL-X from every frame of a video (official output format + overlay.mp4)")
    p.add_argument("video", type=Path)
    _add_offline_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("weights", help="download or list the official SMPLer-X checkpoints")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    d = wsub.add_parser("download", help="fetch checkpoints from the HuggingFace repo caizhongang/SMPLer-X")
    d.add_argument("names", nargs="+", help="s32 b32 l32 h32 h32_correct")
    d.add_argument("--dir", type=Path, default=None, help="target directory (default: the weights cache)")
    d.add_argument("--force", action="store_true", help="download again even if present")
    d.set_defaults(func=cmd_weights_download)
    ls = wsub.add_parser("list", help="show the cache and which checkpoints are present")
    ls.set_defaults(func=cmd_weights_list)

    from . import live

    live.register(sub)
    try:
        from engines import commands
    except ImportError:  # the export/bench commands are optional
        commands = None
    if commands is not None:
        commands.register(sub)
    return parser


# --------------------------------------------------------------------------- helpers
def _detector(args):
    if args.bbox:
        return None
    from engines.detector import PersonDetector

    return PersonDetector(static=args.command == "image")


def _predictor(args):
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


def _expand_images(items: List[Path]) -> List[Path]:
    from realtime.offline import IMAGE_EXTS

    out = []
    for item in items:
        if item.is_dir():
            out += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        else:
            out.append(item)
    if not out:
        raise UserError("no images given (directories were empty)")
    return out


# --------------------------------------------------------------------------- commands
def cmd_image(args) -> int:
    from realtime.offline import run_images

    images = _expand_images(args.images)
    missing = [str(p) for p in images if not p.is_file()]
    if missing and len(missing) == len(images):
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    predictor = _predictor(args)
    detector = _detector(args)
    try:
        stats = run_images(images, predictor, args.out, detector=detector, manual_boxes=args.bbox,
                           save_mesh=args.save_mesh, overlay=not args.no_overlay)
    finally:
        if detector is not None:
            detector.close()
    print(f"mocap image: {stats.summary()}; results in {args.out}")
    return 0 if stats.frames else 1


def cmd_video(args) -> int:
    from realtime.offline import run_video

    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}")
    predictor = _predictor(args)
    detector = _detector(args)
    try:
        stats = run_video(args.video, predictor, args.out, detector=detector, manual_boxes=args.bbox,
                          save_mesh=args.save_mesh, overlay=not args.no_overlay, max_frames=args.max_frames)
    except (IOError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
    finally:
        if detector is not None:
            detector.close()
    print(f"mocap video: {stats.summary()}; results in {args.out}")
    return 0 if stats.frames else 1


def cmd_weights_download(args) -> int:
    from engines.checkpoints import CheckpointError, download

    for name in args.names:
        try:
            path = download(name, args.dir, force=args.force)
        except CheckpointError as exc:
            raise UserError(str(exc)) from exc
        print(f"{name}: {path}")
    return 0


def cmd_weights_list(args) -> int:
    from engines.checkpoints import FILES
    from engines.paths import weights_dir

    root = weights_dir()
    print(f"weights cache: {root}")
    for name, fname in FILES.items():
        p = root / fname
        state = f"{p.stat().st_size / 1e6:.1f} MB" if p.is_file() else "not downloaded"
        print(f"  {name:12s} {fname:32s} {state}")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
