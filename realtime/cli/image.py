"""``mocap image``: SMPL-X from images, in the official output format."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import List

from engines.errors import UserError

from .. import signals
from .common import add_examples, add_offline_args, check_boxes, exit_code, load_detector, load_predictor, write_failure


def register(sub) -> None:
    p = sub.add_parser("image", help="SMPL-X from images (official output format)")
    p.add_argument("images", nargs="+", type=Path, help="image files or directories of images")
    add_offline_args(p)
    add_examples(p, "mocap image photo.jpg --out results/",
                 "mocap image photos/ --out results/ --max-people 1 --save-mesh",
                 "mocap image photo.jpg --out results/ --bbox 120 40 200 420")
    p.set_defaults(func=cmd_image)


def _expand_images(items: List[Path]) -> List[Path]:
    from engines.media import list_images

    out = []
    for item in items:
        out += list_images(item) if item.is_dir() else [item]
    if not out:
        raise UserError("no images given (directories were empty)")
    return out


def _overlay(args, predictor):
    if args.no_overlay:
        return None
    from viewers.mesh_overlay import PersonOverlay

    return PersonOverlay(predictor.body_model.faces, boxes=not args.no_boxes)


def cmd_image(args) -> int:
    from engines.offline import check_output_dir, prepare_output_dir, run_images

    check_boxes(args.bbox)
    images = _expand_images(args.images)
    missing = [str(p) for p in images if not p.is_file()]
    if missing and len(missing) == len(images):
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    check_output_dir(args.out, args.overwrite)  # before the slow model load
    predictor = load_predictor(args)
    detector = load_detector(args)
    overlay = _overlay(args, predictor)
    stop = threading.Event()
    try:
        prepare_output_dir(args.out, args.overwrite)
        with signals.deliver_to(stop):
            stats = run_images(images, predictor, args.out, detector=detector, manual_boxes=args.bbox,
                               save_mesh=args.save_mesh, overlay=overlay, stop=stop,
                               run_info={"command": "image", "inputs": [str(p) for p in images]})
    except OSError as exc:  # the disk is full, the folder went away...
        raise UserError(write_failure(args.out, exc)) from None
    finally:
        if detector is not None:
            detector.close()
        if overlay is not None:
            overlay.close()
    print(f"mocap image: {stats.summary()}; results in {args.out}")
    return exit_code(stats)
