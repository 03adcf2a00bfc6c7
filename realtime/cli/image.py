"""``mocap image``: SMPL-X from images, in the official output format."""
from __future__ import annotations

from pathlib import Path
from typing import List

from engines.errors import UserError

from .common import add_examples, add_offline_args, check_boxes, run_offline


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


def cmd_image(args) -> int:
    from realtime.results import check_output_dir

    check_boxes(args.bbox)
    images = _expand_images(args.images)
    missing = [str(p) for p in images if not p.is_file()]
    if missing and len(missing) == len(images):
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    check_output_dir(args.out, args.overwrite)  # before the slow model load
    return run_offline(args, images)
