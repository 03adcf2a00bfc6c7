"""Offline inference on images and videos with the official output format.

Per frame and person (``<stem>_<person>``):
``smplx/*.npz`` (official keys and shapes), ``meta/*.json`` (focal, princpt,
bbox (processed, xywh), bbox_detector (raw, xywh)), optional ``mesh/*.obj``;
per frame ``overlay/<stem>.jpg`` with the mesh rendered through the full-frame
camera; for videos also ``overlay.mp4``.

Every file appears atomically (temporary name, then rename), so a killed run leaves whole
files or none; ``overlay.mp4`` is written as ``overlay.partial.mp4`` and renamed when
finalised. ``run.json`` says whether the run finished (``"complete": true``), was stopped
(``"stopped_by": "SIGTERM"``) or is still going / was killed (``"complete": false``).
An output folder that already holds results is refused unless ``overwrite=True``, which
removes the earlier results first (only the entries this module writes).
"""
from __future__ import annotations

import datetime as _dt
import io
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from .atomic import atomic_file, json_safe, write_bytes_atomic, write_json_atomic
from .errors import UserError
from .inference import Prediction, Predictor
from .media import VideoReader, VideoWriter, read_image
from .stop import signal_name, stop_requested

#: Draws a frame's people over it: ``overlay(image_bgr, persons) -> image_bgr`` (the offline
#: commands pass :class:`viewers.mesh_overlay.PersonOverlay`; None skips the overlay).
OverlayFn = Callable[[np.ndarray, Sequence], np.ndarray]

#: What a run writes at the top of its output folder (and what ``overwrite`` removes).
RESULT_DIRS = ("smplx", "meta", "overlay", "mesh")
RESULT_FILES = ("overlay.mp4", "overlay.partial.mp4", "run.json")
RUN_FILE = "run.json"

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    frames: int = 0
    persons: int = 0
    empty_frames: int = 0
    failed: List[str] = field(default_factory=list)
    stage_seconds: Dict[str, float] = field(default_factory=dict)
    #: Frames of a video that could not be decoded (mid-file, or a truncated tail).
    undecodable: int = 0
    #: One-line account of the input's damage (from the video reader), or None.
    input_problem: Optional[str] = None
    #: True when the run was stopped before its end; ``stopped_by``: the signal, if one did it.
    stopped: bool = False
    stopped_by: Optional[int] = None

    def add(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def summary(self) -> str:
        parts = [f"{self.frames} frame(s), {self.persons} person(s)"]
        if self.stopped:
            parts.insert(0, "stopped early" + (f" by {signal_name(self.stopped_by)}" if self.stopped_by else ""))
        if self.empty_frames:
            parts.append(f"{self.empty_frames} frame(s) without a person")
        if self.failed:
            parts.append(f"{len(self.failed)} failed: {', '.join(self.failed[:5])}")
        if self.input_problem:
            parts.append(self.input_problem)
        if self.frames:
            per = ", ".join(f"{k} {1000 * v / self.frames:.1f} ms" for k, v in self.stage_seconds.items())
            parts.append(f"per frame: {per}")
        return "; ".join(parts)


def save_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Wavefront OBJ like the official ``save_obj`` (1-based ``f a/a b/b c/c``), atomically."""
    with atomic_file(path, "w", fsync=False) as fh:
        fh.write("".join(f"v {v[0]:f} {v[1]:f} {v[2]:f}\n" for v in vertices))
        fh.write("".join(f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}\n" for a, b, c in faces))


def existing_results(out_dir: Path) -> List[str]:
    """The result entries (folders with files, videos, run.json) already in ``out_dir``."""
    found = []
    for name in RESULT_DIRS:
        d = out_dir / name
        if d.is_dir() and any(d.iterdir()):
            found.append(f"{name}/")
    found += [name for name in RESULT_FILES if (out_dir / name).exists()]
    return found


def check_output_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Raise :class:`UserError` (with the fix) when ``out_dir`` cannot take this run's results:
    a file is in the way, or it holds an earlier run's results and ``overwrite`` is off. Cheap;
    run it before anything slow, then :func:`prepare_output_dir`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder: choose a folder path")
    for parent in out_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot create the output folder --out {out_dir}: {parent} is a file, not a folder")
            break
    if out_dir.is_dir():
        found = existing_results(out_dir)
        if found and not overwrite:
            raise UserError(f"--out {out_dir} already holds results of an earlier run ({', '.join(found)}): "
                            f"pass --overwrite to replace them, or choose another folder")


def prepare_output_dir(out_dir: Path, overwrite: bool = False) -> Path:
    """Create ``out_dir`` after :func:`check_output_dir`, removing an earlier run's results when
    ``overwrite`` (only the entries this module writes; other files stay)."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in RESULT_DIRS:
            if (out_dir / name).is_dir():
                shutil.rmtree(out_dir / name)
        for name in RESULT_FILES:
            (out_dir / name).unlink(missing_ok=True)
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to the output folder --out {out_dir}: {exc.strerror or exc}") from None
    return out_dir


def _floats(values) -> List[Optional[float]]:
    return json_safe([float(v) for v in values])


def _encode_jpg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    if not ok:
        raise IOError("JPEG encoding failed")
    return buf.tobytes()


class ResultWriter:
    """Writes predictions in the official layout under ``out_dir``, every file atomically,
    with ``run.json`` marking the run incomplete until :meth:`finish`."""

    def __init__(self, out_dir: Path, faces: np.ndarray, save_mesh: bool = False,
                 run_info: Optional[Dict[str, Any]] = None):
        self.out_dir = Path(out_dir)
        self.faces = faces
        self.save_mesh = save_mesh
        for sub in ("smplx", "meta", "overlay") + (("mesh",) if save_mesh else ()):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
        self.run: Dict[str, Any] = {"complete": False, **(run_info or {}),
                                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat()}
        write_json_atomic(self.out_dir / RUN_FILE, self.run)

    def write_person(self, name: str, pred: Prediction, source: str, frame_index: Optional[int] = None) -> None:
        p = pred.person
        buf = io.BytesIO()
        np.savez(buf, **pred.npz_dict())
        write_bytes_atomic(self.out_dir / "smplx" / f"{name}.npz", buf.getvalue(), fsync=False)
        meta = {
            "focal": _floats(p.focal),
            "princpt": _floats(p.princpt),
            "bbox": _floats(p.bbox),
            "bbox_detector": _floats(p.bbox_detector),
            "bbox_id": int(p.track_id),
            "img_path": source,
            "lhand_bbox": _floats(pred.lhand_bbox),
            "rhand_bbox": _floats(pred.rhand_bbox),
            "face_bbox": _floats(pred.face_bbox),
        }
        if frame_index is not None:
            meta["frame"] = int(frame_index)
        write_json_atomic(self.out_dir / "meta" / f"{name}.json", meta, indent=4, fsync=False)
        if self.save_mesh and p.vertices is not None:
            save_obj(self.out_dir / "mesh" / f"{name}.obj", p.vertices, self.faces)

    def write_overlay(self, stem: str, image: np.ndarray) -> None:
        write_bytes_atomic(self.out_dir / "overlay" / f"{stem}.jpg", _encode_jpg(image), fsync=False)

    def finish(self, stats: RunStats) -> None:
        """Mark the run complete (or stopped, with the signal) in ``run.json``."""
        self.run.update({
            "complete": not stats.stopped,
            "stopped_by": signal_name(stats.stopped_by) if stats.stopped_by is not None else None,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "frames": stats.frames, "persons": stats.persons, "empty_frames": stats.empty_frames,
            "failed": stats.failed, "undecodable_frames": stats.undecodable, "input_problem": stats.input_problem,
        })
        write_json_atomic(self.out_dir / RUN_FILE, self.run)


def find_boxes(image_bgr: np.ndarray, detector, manual_boxes: Optional[Sequence[Sequence[float]]]) -> List[np.ndarray]:
    if manual_boxes:
        return [np.asarray(b, np.float64) for b in manual_boxes]
    return [d.bbox_xywh.astype(np.float64) for d in detector.detect(image_bgr)]


def _stopped(stop: Optional[threading.Event], stats: RunStats) -> bool:
    """True (and noted in ``stats``) once ``stop`` is set."""
    if stop is None or not stop.is_set():
        return False
    stats.stopped = True
    stats.stopped_by = stop_requested()
    return True


def run_images(paths: Sequence[Path], predictor: Predictor, out_dir: Path, detector=None,
               manual_boxes=None, save_mesh: bool = False, overlay: Optional[OverlayFn] = None,
               progress: bool = True, stop: Optional[threading.Event] = None,
               run_info: Optional[Dict[str, Any]] = None) -> RunStats:
    """``mocap image``: every image, every person; bad files are reported, not fatal.
    ``stop``: set it to end the run after the current image (the results so far are kept)."""
    from tqdm import tqdm

    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh, run_info)
    render = overlay
    stats = RunStats()
    for path in tqdm(list(paths), desc="images", unit="img", disable=not progress):
        if _stopped(stop, stats):
            break
        path = Path(path)
        try:
            image = read_image(path)
        except IOError as exc:
            log.error("%s", exc)
            stats.failed.append(path.name)
            continue
        stats.frames += 1
        t0 = time.perf_counter()
        boxes = find_boxes(image, detector, manual_boxes)
        t1 = time.perf_counter()
        preds = predictor.predict(image, boxes) if boxes else []
        t2 = time.perf_counter()
        stats.add("detect", t1 - t0)
        stats.add("model", t2 - t1)
        if not preds:
            stats.empty_frames += 1
            log.warning("%s: no person found; no parameters written", path.name)
        for k, pred in enumerate(preds):
            writer.write_person(f"{path.stem}_{k}", pred, str(path))
        stats.persons += len(preds)
        t3 = time.perf_counter()
        stats.add("write", t3 - t2)
        if render is not None:
            writer.write_overlay(path.stem, render(image, [p.person for p in preds]))
            stats.add("render", time.perf_counter() - t3)
    writer.finish(stats)
    return stats


def run_video(path: Path, predictor: Predictor, out_dir: Path, detector=None, manual_boxes=None,
              save_mesh: bool = False, overlay: Optional[OverlayFn] = None, progress: bool = True,
              max_frames: Optional[int] = None, on_frame: Optional[Callable[[int, List[Prediction]], None]] = None,
              stop: Optional[threading.Event] = None, run_info: Optional[Dict[str, Any]] = None) -> RunStats:
    """``mocap video``: every decoded frame, numbered by its position in the file from 1 like the
    official demo (an undecodable frame leaves its number unused; no result is ever written for a
    frame that was not decoded), and overlay.mp4. ``stop``: set it to end after the current frame
    with overlay.mp4 finalised."""
    from tqdm import tqdm

    reader = VideoReader(path)  # raises VideoUnreadable (an IOError) naming the file
    total = reader.frame_count or None
    if max_frames:
        total = min(total or max_frames, max_frames)
    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh,
                          {"input": str(path), "frames_in_index": reader.frame_count, **(run_info or {})})
    render = overlay
    video = None
    stats = RunStats()
    bar = tqdm(total=total, desc=Path(path).name, unit="frame", disable=not progress)
    try:
        while max_frames is None or stats.frames < max_frames:
            if _stopped(stop, stats):
                break
            t0 = time.perf_counter()
            item = reader.step()
            if item is None:
                break
            position, image = item
            if image is None:
                continue
            index = position + 1
            stats.frames += 1
            t1 = time.perf_counter()
            boxes = find_boxes(image, detector, manual_boxes)
            t2 = time.perf_counter()
            preds = predictor.predict(image, boxes) if boxes else []
            t3 = time.perf_counter()
            if not preds:
                stats.empty_frames += 1
            for k, pred in enumerate(preds):
                writer.write_person(f"{index:05d}_{k}", pred, f"{path}#{index}", frame_index=index)
            stats.persons += len(preds)
            t4 = time.perf_counter()
            if render is not None:
                frame = render(image, [p.person for p in preds])
                t5 = time.perf_counter()
                writer.write_overlay(f"{index:05d}", frame)
                if video is None:
                    video = VideoWriter(Path(out_dir) / "overlay.mp4", reader.fps, (image.shape[1], image.shape[0]))
                video.write(frame)
                stats.add("render", t5 - t4)
                stats.add("encode", time.perf_counter() - t5)
            stats.add("decode", t1 - t0)
            stats.add("detect", t2 - t1)
            stats.add("model", t3 - t2)
            stats.add("write", t4 - t3)
            if on_frame is not None:
                on_frame(index, preds)
            bar.update(1)
            bar.set_postfix(persons=len(preds))
    finally:
        bar.close()
        reader.close()
        if video is not None:
            video.close()
    stats.undecodable = reader.corrupt + reader.missing_tail
    stats.input_problem = reader.problem
    writer.finish(stats)
    return stats
