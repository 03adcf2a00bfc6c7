"""Replay a recorded session, or ``mocap video`` results, into live sinks.

Two inputs are understood:

* a recording directory written by :class:`realtime.sinks.recorder.Recorder` (format: :mod:`realtime.recording`)
  (``meta.json`` + ``frames.bin``), paced by the recorded capture timestamps;
* a result folder of ``mocap video`` or ``mocap image`` (read by :mod:`realtime.results`),
  paced at ``fps``. Frame numbers missing between the first and last file are sent as empty
  frames, so the timing is kept; image results are one frame per image, in name order. The
  image size is not stored there and is taken as twice the principal point.

Replayed frames keep their frame ids and parameters; ``t_capture_ns`` is restamped
with the replay clock (perf_counter_ns) and recorded stage times are shifted by the
same amount, so latency figures downstream stay meaningful.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from engines.types import FrameResult, Person

from .results import ResultFile, open_results, read_camera, read_params, results_dir

log = logging.getLogger(__name__)

@dataclass
class ReplayStats:
    frames_sent: int = 0
    loops: int = 0
    duration_s: float = 0.0


def load_official(path: Union[str, Path], problems: Optional[List[str]] = None) -> List[Tuple[float, FrameResult]]:
    """(time offset in frames, FrameResult) for a result folder of ``mocap video`` or ``mocap image``
    (read by :mod:`realtime.results`; image results are one frame per image, in name order).

    A damaged result file (truncated, not an npz, arrays missing or of other shapes) or camera
    metadata file is skipped, logged and described in ``problems``; only when no file is readable
    is it an error (ValueError)."""
    folder = open_results(Path(path))  # FileNotFoundError naming the path when there is nothing
    frame_of = folder.frame_numbers()
    by_frame: Dict[int, List[ResultFile]] = {}
    for f in folder.files:
        by_frame.setdefault(frame_of[f.name], []).append(f)
    first, last = min(by_frame), max(by_frame)
    out: List[Tuple[float, FrameResult]] = []
    skipped: List[str] = [] if problems is None else problems
    image_size: Tuple[int, int] = (0, 0)
    for frame in range(first, last + 1):
        persons = []
        for f in by_frame.get(frame, []):
            try:
                params = read_params(f.npz)
            except ValueError as exc:
                skipped.append(str(exc))
                log.warning("%s", exc)
                continue
            try:
                camera = read_camera(f.meta)
            except ValueError as exc:
                msg = f"{exc}; camera left at zero"
                skipped.append(msg)
                log.warning("%s", msg)
                camera = None
            if camera is None:
                camera = {"focal": np.zeros(2, np.float32), "princpt": np.zeros(2, np.float32),
                          "bbox": np.zeros(4, np.float32), "bbox_detector": np.zeros(4, np.float32)}
            else:
                image_size = (int(round(2 * float(camera["princpt"][0]))), int(round(2 * float(camera["princpt"][1]))))
            persons.append(Person(track_id=f.person, params=params, **camera))
        frame_id = frame if folder.numbered else frame + 1
        out.append((float(frame - first), FrameResult(frame_id=frame_id, t_capture_ns=0, image_size=image_size,
                                                      persons=persons)))
    for _, r in out:  # frames before the first meta file get the size too
        if r.image_size == (0, 0):
            r.image_size = image_size
    if not any(r.persons for _, r in out):
        raise ValueError(f"{folder.root / 'smplx'}: no readable result file ({len(skipped)} damaged: {skipped[0]})")
    return out


@dataclass
class Timeline:
    """What :func:`replay` sends: (seconds from the start, frame) pairs, and what was skipped."""

    path: Path
    items: List[Tuple[float, FrameResult]]
    problems: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def _video_clock(path: Path, items: List[Tuple[float, FrameResult]]) -> Optional[List[float]]:
    """Seconds from the first result frame of every item, from the real frame timestamps that
    ``mocap video`` records in ``video.json`` (a phone's variable-frame-rate clip is not on a
    ``k / fps`` grid); None when the folder records none for some frame."""
    from realtime.results import read_video_info

    info = read_video_info(path) or {}
    times, base = info.get("frame_times"), info.get("first_frame", 1)
    if not isinstance(times, list) or not isinstance(base, int) or not items:
        return None
    out = []
    for _, result in items:
        k = result.frame_id - base
        t = times[k] if 0 <= k < len(times) else None
        if not isinstance(t, (int, float)):
            return None
        out.append(float(t))
    return [t - out[0] for t in out]


def load_timeline(path: Union[str, Path], fps: float = 30.0, frame_times: bool = True) -> Timeline:
    """Read a recording or an official results directory for :func:`replay`.

    A ``mocap video`` folder's frames are placed at their real timestamps (``video.json``) when
    ``frame_times``, else at ``k / fps``.

    Raises FileNotFoundError (nothing replayable there) or ValueError (nothing intact), both
    naming the path; damage that leaves something intact is skipped and listed in ``problems``."""
    from .recording import FRAMES_FILE, load_recording

    path = Path(path)
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not path.exists():
        raise FileNotFoundError(f"replay input {path} does not exist")
    if path.is_file() or (path / FRAMES_FILE).is_file():
        rec = load_recording(path)
        if not rec.frames:
            raise ValueError(f"recording {path} holds no intact frame" +
                             (f" ({'; '.join(rec.problems())})" if rec.problems() else ""))
        t0 = rec.frames[0].t_capture_ns
        return Timeline(path, [((f.t_capture_ns - t0) * 1e-9, f) for f in rec.frames], rec.problems())
    if results_dir(path) is not None:
        problems: List[str] = []
        items = [(k / fps, f) for k, f in load_official(path, problems)]
        clock = _video_clock(path, items) if frame_times else None
        if clock is not None:
            items = [(t, f) for t, (_, f) in zip(clock, items)]
        return Timeline(path, items, problems)
    raise FileNotFoundError(f"{path} is neither a recording (meta.json + {FRAMES_FILE}) "
                            f"nor a directory of official results (smplx/*.npz)")


def replay_banner(timeline: Timeline, speed: float, sinks: Sequence) -> str:
    """The line ``mocap replay`` prints before it starts: what, how long, and where to."""
    seconds = timeline.items[-1][0] if timeline.items else 0.0
    from .sinks import describe_sinks

    where = describe_sinks(sinks)
    return (f"mocap replay: {len(timeline)} frame(s), {seconds / speed:.1f} s at {speed:g}x from {timeline.path} "
            f"-> {where} (Ctrl-C stops)")


def _restamp(result: FrameResult, now_ns: int) -> FrameResult:
    shift = now_ns - result.t_capture_ns
    return FrameResult(frame_id=result.frame_id, t_capture_ns=now_ns, image_size=result.image_size,
                       persons=[Person(p.track_id, p.params.copy(), p.bbox, p.bbox_detector, p.focal, p.princpt)
                                for p in result.persons],
                       t_stages={k: v + shift for k, v in result.t_stages.items()}
                       if result.t_capture_ns else {})


def replay(path: Union[str, Path, Timeline], sinks: Sequence, speed: float = 1.0, loop: bool = False,
           stop_event: Optional[threading.Event] = None, fps: float = 30.0, progress: bool = False) -> ReplayStats:
    """Send a recording or official results to ``sinks`` at the recorded pace.

    Args:
        path: recording directory / ``frames.bin``, official results directory, or a
            :class:`Timeline` from :func:`load_timeline`.
        sinks: objects with ``send(FrameResult)`` (not closed here).
        speed: playback rate (2.0 = twice as fast); must be > 0.
        loop: start over at the end until ``stop_event`` is set.
        stop_event: set it to stop early.
        fps: frame rate of official results (recordings carry their own timestamps).
        progress: show a progress bar (frames sent, on stderr).

    Returns:
        :class:`ReplayStats` with the number of frames sent.
    """
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    timeline = path.items if isinstance(path, Timeline) else load_timeline(path, fps).items
    stop = stop_event or threading.Event()
    stats = ReplayStats()
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(timeline), desc="replay", unit="frame", dynamic_ncols=True)
    try:
        _send_all(timeline, sinks, speed, loop, stop, stats, fps, bar)
    finally:
        if bar is not None:
            bar.close()
    stats.duration_s = time.perf_counter() - start
    log.debug("replayed %d frames", stats.frames_sent)
    return stats


def _send_all(timeline, sinks, speed, loop, stop, stats, fps, bar) -> None:
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
            if bar is not None:
                bar.update(1)
        else:
            stats.loops += 1
            if loop:
                if bar is not None:
                    bar.reset()
                # keep the frame period between the last frame and the next loop's first
                period = (timeline[-1][0] / max(len(timeline) - 1, 1)) if len(timeline) > 1 else 1.0 / fps
                if stop.wait(period / speed):
                    break
                continue
        break
