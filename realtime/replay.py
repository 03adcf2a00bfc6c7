"""Replay a recorded session, or ``mocap video`` results, into live sinks.

Two inputs are understood:

* a recording directory written by :class:`realtime.sinks.recorder.Recorder` (format: :mod:`realtime.recording`)
  (``meta.json`` + ``frames.bin``), paced by the recorded capture timestamps;
* a directory of official-format results (``DIR/smplx/<frame:05d>_<person>.npz``
  and optionally ``DIR/meta/<frame:05d>_<person>.json`` with ``focal``, ``princpt``,
  ``bbox``, ``bbox_detector``), paced at ``fps``. Frame numbers missing between
  the first and last file are sent as empty frames, so the timing is kept. The
  image size is not stored there and is taken as twice the principal point.

Replayed frames keep their frame ids and parameters; ``t_capture_ns`` is restamped
with the replay clock (perf_counter_ns) and recorded stage times are shifted by the
same amount, so latency figures downstream stay meaningful.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from engines.types import PREDICTED_KEYS, FrameResult, Person, SMPLXParams

log = logging.getLogger(__name__)

_OFFICIAL_NAME = re.compile(r"^(\d+)_(\d+)\.npz$")


@dataclass
class ReplayStats:
    frames_sent: int = 0
    loops: int = 0
    duration_s: float = 0.0


def _official_dir(path: Path) -> Optional[Path]:
    """The ``smplx`` folder of an official results directory, or None."""
    if (path / "smplx").is_dir():
        return path / "smplx"
    if path.name == "smplx" and any(path.glob("*.npz")):
        return path
    return None


def load_official(path: Union[str, Path]) -> List[Tuple[float, FrameResult]]:
    """(time offset in frames, FrameResult) for an official-format results directory."""
    path = Path(path)
    smplx_dir = _official_dir(path)
    if smplx_dir is None:
        raise FileNotFoundError(f"{path}: no smplx/ folder of official results")
    meta_dir = smplx_dir.parent / "meta"
    by_frame: Dict[int, List[Tuple[int, Path]]] = {}
    for f in smplx_dir.iterdir():
        m = _OFFICIAL_NAME.match(f.name)
        if m:
            by_frame.setdefault(int(m.group(1)), []).append((int(m.group(2)), f))
    if not by_frame:
        raise FileNotFoundError(f"{smplx_dir}: no <frame>_<person>.npz files")
    first, last = min(by_frame), max(by_frame)
    out: List[Tuple[float, FrameResult]] = []
    image_size: Tuple[int, int] = (0, 0)
    for frame in range(first, last + 1):
        persons = []
        for person_idx, npz in sorted(by_frame.get(frame, [])):
            try:
                with np.load(npz) as data:
                    params = SMPLXParams.from_dict({k: data[k] for k in PREDICTED_KEYS})
            except (OSError, ValueError, KeyError) as exc:
                raise ValueError(f"{npz}: not a valid SMPL-X result file: {exc}") from exc
            meta = {}
            meta_path = meta_dir / (npz.stem + ".json")
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise ValueError(f"{meta_path}: invalid JSON: {exc}") from exc
            princpt = np.asarray(meta.get("princpt", [0.0, 0.0]), np.float32).reshape(-1)[:2]
            bbox = np.asarray(meta.get("bbox", [0.0, 0.0, 0.0, 0.0]), np.float32).reshape(-1)[:4]
            persons.append(Person(
                track_id=person_idx, params=params, bbox=bbox,
                bbox_detector=np.asarray(meta.get("bbox_detector", bbox), np.float32).reshape(-1)[:4],
                focal=np.asarray(meta.get("focal", [0.0, 0.0]), np.float32).reshape(-1)[:2],
                princpt=princpt,
            ))
            if "princpt" in meta:
                image_size = (int(round(2 * float(princpt[0]))), int(round(2 * float(princpt[1]))))
        out.append((float(frame - first), FrameResult(frame_id=frame, t_capture_ns=0, image_size=image_size,
                                                      persons=persons)))
    for _, r in out:  # frames before the first meta file get the size too
        if r.image_size == (0, 0):
            r.image_size = image_size
    return out


def _load(path: Path, fps: float) -> List[Tuple[float, FrameResult]]:
    """(seconds from the start, FrameResult) for either input kind."""
    from .recording import FRAMES_FILE, load_recording

    if not path.exists():
        raise FileNotFoundError(f"replay input {path} does not exist")
    if path.is_file() or (path / FRAMES_FILE).is_file():
        rec = load_recording(path)
        if not rec.frames:
            raise ValueError(f"recording {path} holds no complete frame")
        t0 = rec.frames[0].t_capture_ns
        return [((f.t_capture_ns - t0) * 1e-9, f) for f in rec.frames]
    if _official_dir(path) is not None:
        return [(k / fps, f) for k, f in load_official(path)]
    raise FileNotFoundError(f"{path} is neither a recording (meta.json + {FRAMES_FILE}) "
                            f"nor a directory of official results (smplx/*.npz)")


def _restamp(result: FrameResult, now_ns: int) -> FrameResult:
    shift = now_ns - result.t_capture_ns
    return FrameResult(frame_id=result.frame_id, t_capture_ns=now_ns, image_size=result.image_size,
                       persons=[Person(p.track_id, p.params.copy(), p.bbox, p.bbox_detector, p.focal, p.princpt)
                                for p in result.persons],
                       t_stages={k: v + shift for k, v in result.t_stages.items()}
                       if result.t_capture_ns else {})


def replay(path: Union[str, Path], sinks: Sequence, speed: float = 1.0, loop: bool = False,
           stop_event: Optional[threading.Event] = None, fps: float = 30.0) -> ReplayStats:
    """Send a recording or official results to ``sinks`` at the recorded pace.

    Args:
        path: recording directory / ``frames.bin``, or official results directory.
        sinks: objects with ``send(FrameResult)`` (not closed here).
        speed: playback rate (2.0 = twice as fast); must be > 0.
        loop: start over at the end until ``stop_event`` is set.
        stop_event: set it to stop early.
        fps: frame rate of official results (recordings carry their own timestamps).

    Returns:
        :class:`ReplayStats` with the number of frames sent.
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    timeline = _load(path, fps)
    stop = stop_event or threading.Event()
    stats = ReplayStats()
    start = time.perf_counter()
    while not stop.is_set():
        t_loop = time.perf_counter()
        for offset, result in timeline:
            delay = t_loop + offset / speed - time.perf_counter()
            if delay > 0 and stop.wait(delay):
                break
            if stop.is_set():
                break
            out = _restamp(result, time.perf_counter_ns())
            for sink in sinks:
                sink.send(out)
            stats.frames_sent += 1
        else:
            stats.loops += 1
            if loop:
                # keep the frame period between the last frame and the next loop's first
                period = (timeline[-1][0] / max(len(timeline) - 1, 1)) if len(timeline) > 1 else 1.0 / fps
                if stop.wait(period / speed):
                    break
                continue
        break
    stats.duration_s = time.perf_counter() - start
    log.info("replayed %d frames from %s", stats.frames_sent, path)
    return stats
