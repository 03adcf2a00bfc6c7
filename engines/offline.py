"""Offline inference on images and videos with the official output format.

Per frame and person (``<stem>_<person>``): ``smplx/*.npz`` (official keys and shapes),
``meta/*.json`` (focal, princpt, bbox (processed, xywh), bbox_detector (raw, xywh), the
person's ``track_id`` and the detector ``score``), optional ``mesh/*.obj``; per frame
``overlay/<stem>.jpg`` with the meshes rendered through the full-frame camera; for videos
also ``overlay.mp4`` and ``video.json`` (the video's frame rate, so that the folder can be
turned into an animation at the right speed; see :func:`read_video_info`).

Every person found is processed, in one batched network call per frame. In images, people
are numbered by decreasing box size (``<stem>_0`` is the largest: the official single-person
choice). In videos, ``<frame:05d>_<id>`` carries a track id that stays with the person across
frames (:class:`engines.tracking.PersonTracker`, the detector run on every frame as the
official demo does, the model's joints bridging frames where the detector misses someone).
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .inference import Prediction, Predictor
from .media import VideoWriter, read_image

#: Draws a frame's people over it: ``overlay(image_bgr, persons) -> image_bgr`` (the offline
#: commands pass :class:`viewers.mesh_overlay.PersonOverlay`; None skips the overlay).
OverlayFn = Callable[[np.ndarray, Sequence], np.ndarray]


log = logging.getLogger(__name__)

#: Written by ``mocap video`` next to ``smplx/``: ``{"fps": float or null, "first_frame": 1,
#: "frame_count": int or null, "source": path}``. Frame ``n`` (file ``<n:05d>_<person>``) is at
#: ``(n - first_frame) / fps`` seconds into the video.
VIDEO_INFO_FILE = "video.json"


def write_video_info(out_dir: Path, fps: Optional[float], frame_count: Optional[int], source: str) -> None:
    """Write :data:`VIDEO_INFO_FILE` atomically (``fps`` None when the container does not say)."""
    info = {"fps": float(fps) if fps and math.isfinite(fps) and fps > 0 else None, "first_frame": 1,
            "frame_count": int(frame_count) if frame_count else None, "source": source}
    path = Path(out_dir) / VIDEO_INFO_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_video_info(out_dir: Path) -> Optional[Dict]:
    """The :data:`VIDEO_INFO_FILE` of a result folder, or None if it has none (or it is unreadable)."""
    path = Path(out_dir) / VIDEO_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


@dataclass
class RunStats:
    frames: int = 0
    persons: int = 0
    empty_frames: int = 0
    failed: List[str] = field(default_factory=list)
    stage_seconds: Dict[str, float] = field(default_factory=dict)
    #: Track ids that appeared (videos).
    track_ids: List[int] = field(default_factory=list)

    def add(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def summary(self) -> str:
        parts = [f"{self.frames} frame(s), {self.persons} person(s)"]
        if self.track_ids:
            parts.append(f"{len(self.track_ids)} track(s): ids {', '.join(map(str, self.track_ids[:10]))}")
        if self.empty_frames:
            parts.append(f"{self.empty_frames} frame(s) without a person")
        if self.failed:
            parts.append(f"{len(self.failed)} failed: {', '.join(self.failed[:5])}")
        if self.frames:
            per = ", ".join(f"{k} {1000 * v / self.frames:.1f} ms" for k, v in self.stage_seconds.items())
            parts.append(f"per frame: {per}")
        return "; ".join(parts)


def save_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Wavefront OBJ like the official ``save_obj`` (1-based ``f a/a b/b c/c``)."""
    with open(path, "w") as fh:
        fh.write("".join(f"v {v[0]:f} {v[1]:f} {v[2]:f}\n" for v in vertices))
        fh.write("".join(f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}\n" for a, b, c in faces))


class ResultWriter:
    """Writes predictions in the official layout under ``out_dir``."""

    def __init__(self, out_dir: Path, faces: np.ndarray, save_mesh: bool = False):
        self.out_dir = Path(out_dir)
        self.faces = faces
        self.save_mesh = save_mesh
        for sub in ("smplx", "meta", "overlay") + (("mesh",) if save_mesh else ()):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)

    def write_person(self, name: str, pred: Prediction, source: str, frame_index: Optional[int] = None) -> None:
        p = pred.person
        np.savez(self.out_dir / "smplx" / f"{name}.npz", **pred.npz_dict())
        meta = {
            "focal": [float(v) for v in p.focal],
            "princpt": [float(v) for v in p.princpt],
            "bbox": [float(v) for v in p.bbox],
            "bbox_detector": [float(v) for v in p.bbox_detector],
            "bbox_id": int(p.track_id),
            "track_id": int(p.track_id),
            "score": None if pred.score is None else float(pred.score),
            "img_path": source,
            "lhand_bbox": [float(v) for v in pred.lhand_bbox],
            "rhand_bbox": [float(v) for v in pred.rhand_bbox],
            "face_bbox": [float(v) for v in pred.face_bbox],
        }
        if frame_index is not None:
            meta["frame"] = int(frame_index)
        with open(self.out_dir / "meta" / f"{name}.json", "w") as fh:
            json.dump(meta, fh, indent=4)
        if self.save_mesh and p.vertices is not None:
            save_obj(self.out_dir / "mesh" / f"{name}.obj", p.vertices, self.faces)


def find_boxes(image_bgr: np.ndarray, detector, manual_boxes: Optional[Sequence[Sequence[float]]]
               ) -> Tuple[List[np.ndarray], List[float]]:
    """The people's boxes (largest first) and detector scores; ``--bbox`` boxes score 1."""
    if manual_boxes:
        return [np.asarray(b, np.float64) for b in manual_boxes], [1.0] * len(manual_boxes)
    found = detector.detect(image_bgr)
    return [d.bbox_xywh.astype(np.float64) for d in found], [d.score for d in found]


def write_image_results(writer: ResultWriter, path: Path, image: np.ndarray, preds: Sequence[Prediction],
                        overlay: Optional[OverlayFn], stats: Optional[RunStats] = None) -> None:
    """What ``mocap image`` writes for one image: ``<stem>_<k>`` per person and ``overlay/<stem>.jpg``."""
    path = Path(path)
    t0 = time.perf_counter()
    for pred in preds:  # people are numbered by their box's index (largest first)
        writer.write_person(f"{path.stem}_{pred.person.track_id}", pred, str(path))
    t1 = time.perf_counter()
    if stats is not None:
        stats.add("write", t1 - t0)
    if overlay is not None:
        cv2.imwrite(str(writer.out_dir / "overlay" / f"{path.stem}.jpg"), overlay(image, [p.person for p in preds]))
        if stats is not None:
            stats.add("render", time.perf_counter() - t1)


class VideoFrames:
    """The frames of a video file as ``mocap video`` reads them: numbered from 1, at most
    ``max_frames``; a corrupt frame mid-file is skipped (10 at most) and named in :attr:`skipped`.

    Raises ``FileNotFoundError`` / ``IOError`` when the file is missing or cannot be opened.
    """

    MAX_SKIPPED = 10

    def __init__(self, path: Path, max_frames: Optional[int] = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise IOError(f"cannot open video {self.path} (unsupported format or corrupt file)")
        self.max_frames = max_frames
        #: The container's frame rate (0 when it does not say) and the one used (30 then).
        self.container_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = self.container_fps or 30.0
        total = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if max_frames:
            total = min(total or max_frames, max_frames)
        #: Frames the file says it has (capped by ``max_frames``), None when unknown.
        self.total = total
        #: ``frame@N`` for every corrupt frame that was skipped.
        self.skipped: List[str] = []

    def __iter__(self):
        """Yields ``(index, image_bgr)``."""
        cap, total = self._cap, self.total
        index = 0
        while self.max_frames is None or index < self.max_frames:
            ok, image = cap.read()
            if not ok:
                pos = cap.get(cv2.CAP_PROP_POS_FRAMES)
                if total and pos < total and len(self.skipped) < self.MAX_SKIPPED:  # a corrupt frame mid-file
                    self.skipped.append(f"frame@{int(pos)}")
                    cap.set(cv2.CAP_PROP_POS_FRAMES, pos + 1)
                    continue
                break
            index += 1
            yield index, image

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoResults:
    """What ``mocap video`` writes per frame: ``<index:05d>_<k>`` per person, ``overlay/<index:05d>.jpg``
    and the frame appended to ``overlay.mp4`` (opened on the first frame at the video's rate)."""

    def __init__(self, writer: ResultWriter, source: Path, fps: float, overlay: Optional[OverlayFn]):
        self.writer = writer
        self.source = Path(source)
        self.fps = fps
        self.overlay = overlay
        self._video: Optional[VideoWriter] = None

    def write(self, index: int, image: np.ndarray, preds: Sequence[Prediction],
              stats: Optional[RunStats] = None) -> None:
        t0 = time.perf_counter()
        for pred in preds:  # named by the person's track id
            self.writer.write_person(f"{index:05d}_{pred.person.track_id}", pred, f"{self.source}#{index}",
                                     frame_index=index)
        t1 = time.perf_counter()
        if stats is not None:
            stats.add("write", t1 - t0)
        if self.overlay is not None:
            frame = self.overlay(image, [p.person for p in preds])
            t2 = time.perf_counter()
            cv2.imwrite(str(self.writer.out_dir / "overlay" / f"{index:05d}.jpg"), frame)
            if self._video is None:
                self._video = VideoWriter(self.writer.out_dir / "overlay.mp4", self.fps, (image.shape[1], image.shape[0]))
            self._video.write(frame)
            if stats is not None:
                stats.add("render", t2 - t1)
                stats.add("encode", time.perf_counter() - t2)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


def run_images(paths: Sequence[Path], predictor: Predictor, out_dir: Path, detector=None,
               manual_boxes=None, save_mesh: bool = False, overlay: Optional[OverlayFn] = None,
               progress: bool = True) -> RunStats:
    """``mocap image``: every image, every person; bad files are reported, not fatal."""
    from tqdm import tqdm

    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh)
    stats = RunStats()
    for path in tqdm(list(paths), desc="images", unit="img", disable=not progress):
        path = Path(path)
        try:
            image = read_image(path)
        except IOError as exc:
            log.error("%s", exc)
            stats.failed.append(path.name)
            continue
        stats.frames += 1
        t0 = time.perf_counter()
        boxes, scores = find_boxes(image, detector, manual_boxes)
        t1 = time.perf_counter()
        preds = predictor.predict(image, boxes) if boxes else []
        t2 = time.perf_counter()
        stats.add("detect", t1 - t0)
        stats.add("model", t2 - t1)
        if not preds:
            stats.empty_frames += 1
            log.warning("%s: no person found; no parameters written", path.name)
        for pred in preds:
            pred.score = scores[pred.person.track_id]  # the box's index: people are numbered largest first
        stats.persons += len(preds)
        write_image_results(writer, path, image, preds, overlay, stats)
    return stats


def run_video(path: Path, predictor: Predictor, out_dir: Path, detector=None, manual_boxes=None,
              save_mesh: bool = False, overlay: Optional[OverlayFn] = None, progress: bool = True,
              max_frames: Optional[int] = None, on_frame: Optional[Callable[[int, List[Prediction]], None]] = None,
              grace_s: float = 1.0) -> RunStats:
    """``mocap video``: every frame (numbered from 1 like the official demo), overlay.mp4.

    People get track ids (``<frame>_<id>``) from a tracker around ``detector`` (its
    ``max_people`` bounds the people per frame); ``--bbox`` boxes keep their index as id.
    ``grace_s``: how long someone may be unseen and come back with their id.
    """
    from .tracking import PersonTracker
    from tqdm import tqdm

    path = Path(path)
    frames = VideoFrames(path, max_frames)
    fps = frames.fps
    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh)
    write_video_info(out_dir, frames.container_fps, frames.total, str(path))
    results = VideoResults(writer, path, fps, overlay)
    stats = RunStats()
    tracker = None
    if not manual_boxes:
        tracker = PersonTracker(detector, max_people=getattr(detector, "max_people", 1), redetect_every=1,
                                grace_s=grace_s, confirm_passes=max(2, int(round(fps * 0.5))))
    ids_seen = set()
    bar = tqdm(total=frames.total, desc=path.name, unit="frame", disable=not progress)
    try:
        t0 = time.perf_counter()
        for index, image in frames:
            stats.frames += 1
            t1 = time.perf_counter()
            now = (index - 1) / fps
            if tracker is None:
                boxes, scores = find_boxes(image, detector, manual_boxes)
                targets = None
            else:
                targets = tracker.update(image, now)
                boxes, scores = [t.bbox_xywh for t in targets], [t.score for t in targets]
            t2 = time.perf_counter()
            preds = predictor.predict(image, boxes) if boxes else []
            t3 = time.perf_counter()
            if targets is not None:
                by_box = {p.person.track_id: p for p in preds}
                seen = [None if by_box.get(i) is None else (by_box[i].person.joints_2d, by_box[i].person.joints[0])
                        for i in range(len(targets))]
                ids = tracker.observe(targets, seen, now, (image.shape[1], image.shape[0]))
            if not preds:
                stats.empty_frames += 1
            for pred in preds:
                k = pred.person.track_id  # index of the box
                pred.score = scores[k]
                if targets is not None:
                    pred.person.track_id = ids.get(targets[k].track_id, targets[k].track_id)
                ids_seen.add(pred.person.track_id)
            stats.persons += len(preds)
            stats.track_ids = sorted(ids_seen)
            stats.add("decode", t1 - t0)
            stats.add("detect", t2 - t1)
            stats.add("model", t3 - t2)
            results.write(index, image, preds, stats)
            if on_frame is not None:
                on_frame(index, preds)
            bar.update(1)
            bar.set_postfix(persons=len(preds))
            t0 = time.perf_counter()
    finally:
        stats.failed.extend(frames.skipped)
        bar.close()
        frames.close()
        results.close()
    return stats
