"""``mocap convert``: a recorded take to an animation file (SMPL-X add-on npz, BVH, GLB, FBX)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_examples


def register(sub) -> None:
    p = sub.add_parser("convert", help="a recording or a `mocap video`/`mocap image` result folder to an "
                                       "animation file: npz (SMPL-X Blender add-on), BVH, GLB or FBX")
    p.add_argument("input", type=Path, help="recording directory (mocap live --record) or result folder (smplx/)")
    p.add_argument("--to", choices=["npz", "bvh", "glb", "fbx"], default=None,
                   help="output format (default: from the --out suffix); fbx needs the [blender] extra")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="output file, or an existing folder to write <input name>.<format> into; with several "
                        "people one file each, FILE's stem + _<id>")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that already exist (by default an existing file is refused)")
    p.add_argument("--person", type=int, default=None, metavar="ID", help="convert only this person (track id)")
    p.add_argument("--fps", type=float, default=None, metavar="F",
                   help="frame rate of a result folder, placing frames on a k/F grid (default: the frame timestamps "
                        "in its video.json); for a recording, the output "
                        "frame rate (default: the recording's, else 30)")
    p.add_argument("--body-models", default=None, metavar="DIR",
                   help="directory holding smplx/SMPLX_NEUTRAL.npz (default: the one a recording was made "
                        "with, else $MOCAP_BODY_MODELS or the cache)")
    p.add_argument("--place", choices=["floor", "camera"], default="floor",
                   help="floor (default): start above the origin, feet on y=0; camera: keep the camera frame "
                        "(camera at the origin looking down -z)")
    p.add_argument("--max-gap", type=float, default=0.5, metavar="S",
                   help="interpolate across gaps up to S seconds where the person was not seen; longer gaps "
                        "hold the last seen pose (default 0.5)")
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="zero-lag smoothing of every rotation, the root (depth most) and the expression, one-frame "
                        "outliers replaced (default: on; --no-smooth writes the raw estimates)")
    p.add_argument("--ground", action=argparse.BooleanOptionalAction, default=None,
                   help="fit the floor under the feet, plant the feet during contacts, turn the take so the floor "
                        "is level at y=0 (default: on with --place floor; --no-ground: one constant shift)")
    add_examples(p, "mocap convert takes/take1 --to fbx --out take1.fbx",
                 "mocap convert takes/take1 --to npz --out raw.npz --no-smooth --no-ground",
                 "mocap convert results/dance --to glb --out dance.glb --person 0",
                 "mocap convert takes/take1 --to npz --out take1.npz --fps 30")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from realtime.animation.convert import convert

    report = convert(args.input, args.out, to=args.to, person=args.person, fps=args.fps,
                     body_models=args.body_models, place=args.place, max_gap=args.max_gap, smooth=args.smooth,
                     ground=args.ground, overwrite=args.overwrite)
    for line in report.warnings:
        print(f"mocap convert: warning: {line}", file=sys.stderr)
    for w in report.files:
        print(f"mocap convert: person {w.person_id}: {w.frames} frame(s) at {w.fps:g} fps "
              f"({(w.frames - 1) / w.fps:.2f} s) -> {w.path}")
    return 0
