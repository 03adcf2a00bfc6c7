"""``mocap weights``: download or list the official SMPLer-X checkpoints."""
from __future__ import annotations

from pathlib import Path


from .common import add_examples


def register(sub) -> None:
    p = sub.add_parser("weights", help="download or list the official SMPLer-X checkpoints")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    d = wsub.add_parser("download", help="fetch checkpoints from the HuggingFace repo caizhongang/SMPLer-X")
    d.add_argument("names", nargs="+", help="s32 b32 l32 h32 h32_correct")
    d.add_argument("--dir", type=Path, default=None, help="target directory (default: the weights cache)")
    d.add_argument("--force", action="store_true", help="download again even if present")
    add_examples(d, "mocap weights download s32", "mocap weights download s32 b32 --dir /data/weights")
    d.set_defaults(func=cmd_weights_download)
    ls = wsub.add_parser("list", help="show the cache and which checkpoints are present")
    add_examples(ls, "mocap weights list")
    ls.set_defaults(func=cmd_weights_list)


def cmd_weights_download(args) -> int:
    from engines.checkpoints import download

    for name in args.names:
        path = download(name, args.dir, force=args.force)  # CheckpointError: a UserError
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
