"""``mocap web``: the demo in a browser (photo and video tabs, 3-D view, downloads, an API)."""
from __future__ import annotations

import sys
from pathlib import Path

from engines.errors import UserError

from .common import add_examples, add_model_args


def register(sub) -> None:
    p = sub.add_parser("web", help="the demo in a browser: photo and video tabs, 3-D view, downloads, an API "
                                   "(needs the [web] extra)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; reach a remote one through "
                        "an SSH tunnel rather than opening it with 0.0.0.0)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    add_model_args(p)
    p.add_argument("--max-people", type=int, default=10, metavar="N",
                   help="at most N people per frame; the page's slider goes up to N (default 10)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, metavar="M",
                   help="largest upload accepted, in megabytes (default 200)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="process at most the first N frames of an uploaded clip (default: all)")
    p.add_argument("--max-waiting", type=int, default=4, metavar="N",
                   help="jobs that may wait while one runs; more are told the server is busy (default 4)")
    p.add_argument("--examples", type=Path, default=None, metavar="DIR",
                   help="photos and clips of DIR become clickable examples (default: $MOCAP_MEDIA_DIR or "
                        "../shared/media when present; nothing is downloaded)")
    add_examples(p, "mocap web",
                 "mocap web --checkpoint b32 --device cuda --max-people 4",
                 "mocap web --port 8080 --max-upload-mb 50 --examples ~/Pictures/poses")
    p.set_defaults(func=cmd_web)


def cmd_web(args) -> int:
    import threading

    from engines.benchmark import media_dir

    from .. import signals
    from ..web.demo import serve
    from ..web.service import WebSettings

    if not 1 <= args.port <= 65535:
        raise UserError(f"--port {args.port} is outside 1-65535")
    if args.max_waiting < 0:
        raise UserError("--max-waiting must be >= 0")
    examples = args.examples
    if examples is not None and not examples.is_dir():
        raise UserError(f"--examples {examples}: no such folder")
    if examples is None and media_dir().is_dir():
        examples = media_dir()
    settings = WebSettings(checkpoint=args.checkpoint, body_models=args.body_models, device=args.device,
                           max_people=args.max_people, max_upload_mb=args.max_upload_mb, max_frames=args.max_frames,
                           max_waiting=args.max_waiting, examples=examples)
    stop = threading.Event()

    def ready(url: str) -> None:
        print(f"mocap web: serving on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)

    with signals.deliver_to(stop):
        serve(settings, args.host, args.port, stop=stop, ready=ready)
    print("mocap web: stopped; its temporary files are removed", file=sys.stderr)
    return 0
