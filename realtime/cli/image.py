"""``mocap image``: SMPL-X from images, in the official output format."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

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


def _expand_images(items: List[Path]) -> Tuple[List[Path], List[str]]:
    """The images named by ``items`` (folders: their images) and the files of another type found
    in those folders or given by name (named in the summary and run.json, never skipped silently)."""
    from engines.media import list_images, media_kind, unsupported_files

    out, unsupported = [], []
    for item in items:
        if item.is_dir():
            out += list_images(item)
            unsupported += [str(p) for p in unsupported_files(item)] + [str(p) for p in sorted(item.iterdir())
                                                                         if p.is_file() and media_kind(p) == "video"]
        elif item.suffix and media_kind(item) != "image":
            unsupported.append(str(item))
        else:
            out.append(item)
    if not out:
        from engines.media import accepted_types

        what = f"; not images: {', '.join(unsupported[:5])}" if unsupported else " (directories were empty)"
        raise UserError(f"no images given{what} ({accepted_types()})")
    return out, unsupported


def cmd_image(args) -> int:
    from realtime.results import check_output_dir

    check_boxes(args.bbox)
    images, unsupported = _expand_images(args.images)
    if unsupported:
        from engines.media import IMAGE_EXTENSIONS

        print(f"mocap image: {len(unsupported)} file(s) not read (not an image type: {' '.join(IMAGE_EXTENSIONS)}): "
              f"{', '.join(unsupported[:10])}" + (" ..." if len(unsupported) > 10 else ""))
    missing = [str(p) for p in images if not p.is_file()]
    if missing and len(missing) == len(images):
        raise UserError(f"image(s) not found: {', '.join(missing)}")
    check_output_dir(args.out, args.overwrite)  # before the slow model load
    return run_offline(args, images, not_read=unsupported)
