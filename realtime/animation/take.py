"""A take: what a recording or a result folder holds, as one time series per person.

Two inputs are understood:

* a recording of ``mocap live --record`` (format: :mod:`realtime.recording`): times are the
  capture timestamps, people are told apart by their track id. A truncated recording is read
  up to its last intact frame, and what was lost is said in :attr:`Take.notes`.
* a result folder of ``mocap video`` / ``mocap image``: ``DIR/smplx/<frame>_<id>.npz`` in
  the official layout. Frame ``n`` of a video is at its real timestamp, recorded in the folder's
  ``video.json`` (``frame_times``; phones write variable-frame-rate clips), else at
  ``(n - 1) / fps`` seconds; ``fps`` is read from ``video.json`` unless given (a given ``fps``
  places frames on its grid). Files whose
  frame part is not a number (``mocap image`` results) are taken one frame each, in file
  name order. Unreadable files are skipped and named in the notes.

Parameters stay as SMPLer-X gives them (camera frame, hand poses relative to the hand mean);
:mod:`realtime.animation.motion` turns them into an animation.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from engines.errors import UserError
from engines.types import PARAM_SHAPES, PREDICTED_KEYS

from ..results import open_results, read_camera, read_params, results_dir

log = logging.getLogger(__name__)


@dataclass
class PersonTrack:
    """One person's parameters at the moments they were seen (times increasing)."""

    person_id: int
    times: np.ndarray                 # (N,) seconds from the start of the take
    params: Dict[str, np.ndarray]     # official key -> (N, *official shape) float64
    #: (N, 8) where the person was in the image: raw detector box (x, y, w, h), focal (fx, fy) and
    #: principal point (cx, cy) in pixels; None when the source does not say (grounding uses it to
    #: tell whether the feet were in view).
    view: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class Take:
    source: Path
    kind: str                         # "recording" or "results"
    #: Seconds from the first to the last frame of the take (anyone seen or not).
    duration: float
    #: The source's own frame rate, when it records one.
    frame_rate: Optional[float]
    persons: Dict[int, PersonTrack]
    #: Things the user should know: what was lost or assumed while reading.
    notes: List[str] = field(default_factory=list)


def _stack(person_id: int, samples: Sequence[tuple]) -> PersonTrack:
    """Samples ``(t, params)`` or ``(t, params, view)`` (view: 8 floats, see PersonTrack.view)."""
    samples = sorted(samples, key=lambda s: s[0])
    times = np.array([s[0] for s in samples], np.float64)
    keep = np.concatenate([[True], np.diff(times) > 0])  # one sample per moment
    params = {k: np.stack([np.asarray(getattr(s[1], k), np.float64).reshape(PARAM_SHAPES[k]) for s in samples])[keep]
              for k in PREDICTED_KEYS}
    views = [s[2] if len(s) > 2 else None for s in samples]
    view = np.stack(views)[keep] if all(v is not None for v in views) else None
    return PersonTrack(person_id=person_id, times=times[keep], params=params, view=view)


def _view(bbox_detector, focal, princpt) -> Optional[np.ndarray]:
    try:
        v = np.concatenate([np.asarray(bbox_detector, np.float64).reshape(4), np.asarray(focal, np.float64).reshape(2),
                            np.asarray(princpt, np.float64).reshape(2)])
    except (TypeError, ValueError):
        return None
    return v if np.all(np.isfinite(v)) else None


def _tracks(samples: Dict[int, List[tuple]]) -> Dict[int, PersonTrack]:
    return {pid: _stack(pid, s) for pid, s in sorted(samples.items())}


def is_recording(path: Path) -> bool:
    from ..recording import FRAMES_FILE

    return (path.is_file() and path.name == FRAMES_FILE) or (path / FRAMES_FILE).is_file()


def load_recording_take(path: Path) -> Take:
    from ..recording import load_recording

    try:
        rec = load_recording(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the recording {path}: {exc}") from None
    notes: List[str] = []
    recorded = rec.meta.get("num_frames") if rec.meta.get("complete") else None
    if rec.truncated:
        if recorded:
            notes.append(f"the recording ends in a damaged record: {len(rec.frames)} of {recorded} frames "
                         f"are intact and converted, {recorded - len(rec.frames)} are lost")
        else:
            notes.append(f"the recording ends in an incomplete record (the session did not close cleanly): "
                         f"the {len(rec.frames)} intact frames are converted, anything after them is lost")
    elif not rec.meta.get("complete", True):
        notes.append("the recording was not closed cleanly (meta.json says incomplete); all its intact frames "
                     "are converted")
    if not rec.frames:
        raise UserError(f"the recording {path} holds no intact frame: nothing to convert")
    t0 = min(f.t_capture_ns for f in rec.frames)
    samples: Dict[int, List[tuple]] = {}
    for frame in rec.frames:
        t = (frame.t_capture_ns - t0) * 1e-9
        for person in frame.persons:
            samples.setdefault(int(person.track_id), []).append(
                (t, person.params, _view(person.bbox_detector, person.focal, person.princpt)))
    duration = max((f.t_capture_ns - t0) * 1e-9 for f in rec.frames)
    fps = rec.meta.get("fps")
    fps = float(fps) if isinstance(fps, (int, float)) and fps > 0 else None
    return Take(source=Path(path), kind="recording", duration=duration, frame_rate=fps,
                persons=_tracks(samples), notes=notes)


def _read_view(meta: Path) -> Optional[np.ndarray]:
    """The box and camera of a result file from its ``meta/<name>.json`` (None when absent or damaged)."""
    try:
        cam = read_camera(meta)
    except ValueError:
        return None
    return None if cam is None else _view(cam["bbox_detector"], cam["focal"], cam["princpt"])


def _frame_clock(info: Dict, frame_of: Dict[str, int], first: int, rate: float) -> Optional[Dict[str, float]]:
    """Seconds from frame ``first`` of every result frame, from the real timestamps that
    ``video.json`` records (``frame_times``; a phone's variable-frame-rate clip is not on a
    ``k / fps`` grid); None when it records none for some of them."""
    times = info.get("frame_times")
    base = int(info.get("first_frame", 1))
    if not isinstance(times, list) or not times:
        return None

    def at(n: int) -> Optional[float]:
        k = n - base
        t = times[k] if 0 <= k < len(times) else None
        return float(t) if isinstance(t, (int, float)) and math.isfinite(t) else None

    t_first = at(first)
    if t_first is None:  # the first frame was not decoded: count back from frame base
        t0 = at(base)
        t_first = None if t0 is None else t0 + (first - base) / rate
    out = {}
    for stem, n in frame_of.items():
        t = at(n)
        if t is None or t_first is None:
            return None
        out[stem] = t - t_first
    return out


def load_results_take(path: Path, fps: Optional[float] = None) -> Take:
    try:
        folder = open_results(path)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    notes: List[str] = []
    frame_of = folder.frame_numbers()
    recorded_fps = folder.fps
    if folder.numbered:
        first = min(frame_of.values())
        if folder.video:  # a video's frame n is at (n - first_frame) / fps, also when nobody was seen in its first frames
            first = min(first, int(folder.video.get("first_frame", 1)))
    else:  # mocap image results: one frame per image, in file name order
        first = 0
        if len(frame_of) > 1:
            notes.append(f"{len(frame_of)} image results taken as consecutive frames in file name order")
    if fps is not None:
        if recorded_fps is not None and abs(fps - recorded_fps) > 1e-6:
            notes.append(f"--fps {fps:g} overrides the folder's recorded {recorded_fps:g} fps")
        rate = float(fps)
    elif recorded_fps is not None:
        rate = recorded_fps
    elif len(frame_of) > 1:
        raise UserError(f"{folder.root} does not record its frame rate (no video.json with fps): "
                        f"pass --fps F (the frame rate of the video it came from)")
    else:
        rate = 30.0  # a single frame: the rate does not matter
    info = folder.video or {}
    time_of = _frame_clock(info, frame_of, first, rate) if folder.numbered and fps is None else None
    if time_of is None:
        time_of = {stem: (n - first) / rate for stem, n in frame_of.items()}
    elif info.get("variable_frame_rate"):
        notes.append("variable frame rate: frames placed at their timestamps from video.json")
    samples: Dict[int, List[tuple]] = {}
    bad: List[str] = []
    for f in folder.files:
        try:
            params = read_params(f.npz)
        except ValueError as exc:
            log.debug("%s", exc)
            bad.append(f.npz.name)
            continue
        samples.setdefault(f.person, []).append((time_of[f.name], params, _read_view(f.meta)))
    if bad:
        notes.append(f"{len(bad)} unreadable result file(s) skipped: {', '.join(bad[:5])}"
                     + (" ..." if len(bad) > 5 else ""))
    if not samples:
        raise UserError(f"no readable result file in {folder.root / 'smplx'}")
    return Take(source=Path(path), kind="results", duration=max(time_of.values()),
                frame_rate=rate, persons=_tracks(samples), notes=notes)


def load_take(path: Union[str, Path], fps: Optional[float] = None) -> Take:
    """Read a recording or a result folder (see the module docstring).

    ``fps`` is the frame rate of a result folder (overrides its ``video.json``); it is not
    used for recordings, which carry capture timestamps.
    """
    path = Path(path)
    if fps is not None and not fps > 0:
        raise UserError(f"--fps must be > 0, got {fps:g}")
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if is_recording(path):
        take = load_recording_take(path)
    elif results_dir(path) is not None:
        take = load_results_take(path, fps)
    else:
        raise UserError(f"{path} is neither a recording (meta.json + frames.bin) "
                        f"nor a result folder of mocap video / mocap image (smplx/*.npz)")
    if not take.persons:
        raise UserError(f"nobody was seen in {path}: nothing to convert")
    return take
