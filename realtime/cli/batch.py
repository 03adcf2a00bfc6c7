"""``mocap batch``: many videos and images into one output folder, resumable, on local worker
processes or on a Ray cluster."""
from __future__ import annotations

import argparse
from pathlib import Path

from realtime.batch.options import EXPORT_FORMATS

from .common import add_examples, add_offline_args, check_boxes, max_people


def register(sub) -> None:
    p = sub.add_parser("batch", help="many videos / images into one folder, resumable (local workers or Ray)",
                       description="Each input gets DIR/<name>/ in the layout of `mocap video` / `mocap image`; "
                                   "DIR/manifest.jsonl records what is done; a rerun skips it and retries failures.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="video or image files, folders (their videos and images), or .txt files listing paths")
    add_offline_args(p)
    p.add_argument("--max-frames", type=int, default=None, help="stop each video after this many frames")
    p.add_argument("--export", nargs="+", default=[], choices=EXPORT_FORMATS, metavar="FORMAT",
                   help=f"also write animation files into each result folder ({', '.join(EXPORT_FORMATS)}; "
                        "as `mocap convert`: <name>.<ext>, or <name>_<id>.<ext> per person); fbx needs the "
                        "[blender] extra")
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="--export files smoothed as by `mocap convert` (default: on; the smplx/ results stay raw)")
    p.add_argument("--ground", action=argparse.BooleanOptionalAction, default=True,
                   help="--export files grounded as by `mocap convert --place floor` (default: on)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes (default: one on CPU, byte-identical to mocap video; one per GPU on CUDA); "
                        "with --ray: engine actors (default: one per GPU)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: a local instance, or join the cluster at ADDRESS (HOST:PORT of its head). "
                        "Needs pip install 'smplerx-mocap[batch]'")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="with --ray: crops per network call, across frames and videos (default 16 on CUDA, 4 on CPU)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_examples(p, "mocap batch videos/ --out dataset/",
                 "mocap batch list.txt extra.mp4 --out dataset/ --max-people 1 --export bvh glb",
                 "mocap batch videos/ --out dataset/ --device cuda --engine auto --ray=10.0.0.5:6379")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from engines.errors import UserError
    from realtime.batch.options import resolve_options
    from realtime.batch.runner import run_batch

    check_boxes(args.bbox)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    options = resolve_options(args.checkpoint, args.body_models, args.device, args.engine or "torch", args.bbox,
                              max_people(args), args.save_mesh,
                              not args.no_overlay, not args.no_boxes, args.max_frames, args.export,
                              export_smooth=args.smooth, export_ground=args.ground,
                              orientation=not args.ignore_orientation)
    report = run_batch(args.inputs, args.out, options, workers=args.workers, use_ray=args.ray is not None,
                       ray_address=None if args.ray in (None, "local") else args.ray, batch_size=args.batch_size,
                       progress=not args.no_progress, verbose=args.verbose, overwrite=args.overwrite)
    print(f"mocap batch: {report.summary()}")
    return 0 if report.ok else 1
