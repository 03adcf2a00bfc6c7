#!/usr/bin/env python
"""Screenshots of both live viewers: what `--viewer open3d` and `--viewer overlay` show for one
real frame. With a display (a desktop, or Xvfb) the Open3D viewer is a real, visible window; without
one it renders offscreen through EGL. Each viewer is shot in its own process (Open3D's windowing
starts once per process: the visible window and the overlay's EGL renderer cannot share one).

    xvfb-run -s "-screen 0 1280x720x24" .venv/bin/python scripts/viewer_screenshots.py --out docs/images
    .venv/bin/python scripts/viewer_screenshots.py --out /tmp/shots [--checkpoint s32 --body-models DIR]

Without real weights it uses random weights in the official layout with a camera head that
centres the body in its box (the mesh is then a random pose: it shows where things are drawn,
not a result) and the synthetic SMPL-X stand-in; pass --checkpoint/--body-models for real ones.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--photo", type=Path, default=None, help="default: coco_000785_skier.jpg from the media")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--body-models", default=None)
    ap.add_argument("--only", choices=["overlay", "open3d"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only is None:  # one process per viewer
        import subprocess

        for which in ("overlay", "open3d"):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", which], check=True)
        print(f"wrote {args.out / 'overlay.png'} and {args.out / 'open3d.png'}")
        return 0

    import cv2

    from engines.benchmark import BENCH_BOX, media_dir
    from engines.inference import Predictor
    from engines.types import FrameResult
    from viewers.mesh_overlay import PersonOverlay
    from viewers.open3d_viewer import Open3DViewer
    from viewers.preview import compose_overlay, stats_lines

    args.out.mkdir(parents=True, exist_ok=True)
    photo = args.photo or media_dir() / "coco_000785_skier.jpg"
    frame = cv2.imread(str(photo))
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        body_dir = args.body_models
        if body_dir is None:
            from engines.synthetic import write_synthetic_smplx

            write_synthetic_smplx(tmp / "bm")
            body_dir = tmp / "bm"
        checkpoint = args.checkpoint
        if checkpoint is None:
            from bench_live import centred_checkpoint

            checkpoint = centred_checkpoint(tmp / "centred.pth.tar")
        predictor = Predictor.from_files(checkpoint, body_dir)
        people = [p.named(p.box_index).person for p in predictor.predict(frame, [BENCH_BOX])]
    h, w = frame.shape[:2]
    result = FrameResult(1, 0, (w, h), people, image=frame)
    stats = {"fps_in": 30.0, "fps_out": 30.0, "drops": 0, "latency_ms": {"track": 0.5, "infer": 4.0, "filter": 0.8}}
    faces = predictor.body_model.faces
    if args.only == "overlay":
        with PersonOverlay(faces) as overlay:
            cv2.imwrite(str(args.out / "overlay.png"), compose_overlay(result, stats, overlay))
        return 0
    from viewers.open3d_viewer import display_available

    with Open3DViewer(faces, headless=not display_available()) as viewer:  # the live viewer's own size
        viewer.update([p.vertices for p in people], ids=[p.track_id for p in people], image=frame,
                      camera=(tuple(people[0].focal), tuple(people[0].princpt)), lines=stats_lines(result, stats))
        for _ in range(3):  # a real window settles over a few event rounds
            viewer.step()
        viewer.capture(args.out / "open3d.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
