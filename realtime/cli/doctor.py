"""``mocap doctor``: what this machine has for the tool, and what to do about what it lacks."""
from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "doctor", help="check packages, weights, body model, cameras, display, CUDA, ports and caches",
        description="Checks everything mocap needs, in seconds, and says how to fix what is missing. "
                    "Exit code 0: `mocap live` can run (a camera is optional: a video file works too).",
        epilog="examples:\n  mocap doctor\n  mocap doctor --checkpoint b32 --body-models ~/body_models\n"
               "  mocap doctor --no-cameras",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="s32", help="checkpoint to look for (size name or path). Default s32")
    p.add_argument("--body-models", default=None, metavar="DIR", help="SMPL-X model directory to look in")
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT", help="ZMQ endpoint to test")
    p.add_argument("--no-cameras", action="store_true", help="do not try to open cameras")
    p.set_defaults(func=cmd_doctor)

    c = sub.add_parser("cache", help="list or clear the tool's caches (weights, exported engines, body models)",
                       epilog="examples:\n  mocap cache list\n  mocap cache clear            # exported engines only\n"
                              "  mocap cache clear --weights  # also the downloaded checkpoints",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = c.add_subparsers(dest="cache_command", required=True)
    ls = csub.add_parser("list", help="each cache folder with its size",
                         epilog="examples:\n  mocap cache list", formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.set_defaults(func=cmd_cache_list)
    cl = csub.add_parser("clear", help="delete exported engines (rebuilt on demand); --weights: checkpoints too",
                         epilog="examples:\n  mocap cache clear\n  mocap cache clear --weights",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cl.add_argument("--weights", action="store_true", help="also delete downloaded checkpoints")
    cl.set_defaults(func=cmd_cache_clear)


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def cmd_doctor(args) -> int:
    from realtime.diagnostics import run_all

    checks = run_all(args.checkpoint, args.body_models, args.zmq, cameras=not args.no_cameras)
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{_MARK[c.status]}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            print(f"{'':6}{'':<{width}}  fix: {c.fix}")
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        print(f"\nmocap live cannot run yet: {len(failed)} problem(s) above (FAIL).", file=sys.stderr)
        return 1
    print("\nmocap live can run.")
    return 0


def cmd_cache_list(args) -> int:
    from realtime.diagnostics import cache_entries, folder_size, human_size

    for name, path in cache_entries().items():
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        print(f"{name:12s} {human_size(folder_size(path)):>9s}  {path}")
        for f in files[:20]:
            print(f"{'':12s} {human_size(f.stat().st_size):>9s}    {f.relative_to(path)}")
    return 0


def cmd_cache_clear(args) -> int:
    from realtime.diagnostics import clear_cache, human_size

    freed = clear_cache(["engines"] + (["weights"] if args.weights else []))
    for name, n in freed.items():
        print(f"cleared {name}: {human_size(n)}")
    return 0
