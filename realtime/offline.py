"""Offline inference on images and videos with the official output format.

Per frame and person (``<stem>_<person>``): ``smplx/*.npz`` (official keys and shapes),
``meta/*.json`` (focal, princpt, bbox (processed, xywh), bbox_detector (raw, xywh), the
person's ``track_id`` and the detector ``score``), optional ``mesh/*.obj``; per frame
``overlay/<stem>.jpg`` with the meshes rendered through the full-frame camera; for videos
also ``overlay.mp4`` and ``video.json`` (the video's frame rate, so that the folder can be
turned into an animation at the right speed).

Every person found is processed, in one batched network call per frame. In images, people
are numbered by decreasing box size (``<stem>_0`` is the largest: the official single-person
choice). In videos, ``<frame:05d>_<id>`` carries a track id that stays with the person across
frames (:class:`engines.tracking.PersonTracker`, the detector run on every frame as the
official demo does, the model's joints bridging frames where the detector misses someone).

The folder itself (layout, atomic files, ``run.json``, ``video.json``, which folder may be
reused) belongs to :mod:`realtime.results`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model loads with the session, not with the command line's option defaults
    from engines.inference import Prediction, Predictor
from engines.stop import signal_name, stop_requested

from .results import ResultWriter, result_names, write_video_info

#: Draws a frame's people over it: ``overlay(image_bgr, persons) -> image_bgr`` (the offline
#: commands pass :class:`viewers.mesh_overlay.PersonOverlay`; None skips the overlay).
OverlayFn = Callable[[np.ndarray, Sequence], np.ndarray]

log = logging.getLogger(__name__)

#: People per frame of ``mocap image`` / ``mocap video`` when ``--max-people`` is not given (bounds the
#: detector's passes).
MAX_PEOPLE = 10


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
    #: Track ids that appeared (videos).
    track_ids: List[int] = field(default_factory=list)
    #: Why this engine ran when none was asked for (:func:`engines.backends.offline_choice`), or None.
    engine_choice: Optional[str] = None

    def add(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds

    def summary(self) -> str:
        parts = [f"{self.frames} frame(s), {self.persons} person(s)"]
        if self.stopped:
            parts.insert(0, "stopped early" + (f" by {signal_name(self.stopped_by)}" if self.stopped_by else ""))
        if self.track_ids:
            parts.append(f"{len(self.track_ids)} track(s): ids {', '.join(map(str, self.track_ids[:10]))}")
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


def find_boxes(image_bgr: np.ndarray, detector, manual_boxes: Optional[Sequence[Sequence[float]]]
               ) -> Tuple[List[np.ndarray], List[float]]:
    """The people's boxes (largest first) and detector scores; ``--bbox`` boxes score 1."""
    if manual_boxes:
        return [np.asarray(b, np.float64) for b in manual_boxes], [1.0] * len(manual_boxes)
    found = detector.detect(image_bgr)
    return [d.bbox_xywh.astype(np.float64) for d in found], [d.score for d in found]


def _stopped(stop: Optional[threading.Event], stats: RunStats) -> bool:
    """True (and noted in ``stats``) once ``stop`` is set."""
    if stop is None or not stop.is_set():
        return False
    stats.stopped = True
    stats.stopped_by = stop_requested()
    return True


def image_people(image: np.ndarray, detector, manual_boxes, predict: Callable, stats: Optional[RunStats] = None
                 ) -> List[Prediction]:
    """A still image's people as ``mocap image`` finds and predicts them: ``person.track_id`` the
    box's index (people are numbered largest first), ``score`` the detector's."""
    t0 = time.perf_counter()
    boxes, scores = find_boxes(image, detector, manual_boxes)
    t1 = time.perf_counter()
    preds = predict(image, boxes) if boxes else []
    if stats is not None:
        stats.add("detect", t1 - t0)
        stats.add("model", time.perf_counter() - t1)
    return [pred.named(pred.box_index, scores[pred.box_index]) for pred in preds]


def write_image_results(writer: ResultWriter, path: Path, image: np.ndarray, preds: Sequence[Prediction],
                        overlay: Optional[OverlayFn], stats: Optional[RunStats] = None,
                        name: Optional[str] = None) -> None:
    """What ``mocap image`` writes for one image: ``<name>_<k>`` per person (``k``: the box's index,
    largest first) and ``overlay/<name>.jpg``; ``name`` the image's stem unless given
    (:func:`realtime.results.result_names` when two inputs share a stem)."""
    path = Path(path)
    name = path.stem if name is None else name
    t0 = time.perf_counter()
    for pred in preds:
        writer.write_person(f"{name}_{pred.person.track_id}", pred, str(path))
    t1 = time.perf_counter()
    if stats is not None:
        stats.add("write", t1 - t0)
    if overlay is not None:
        writer.write_overlay(name, overlay(image, [p.person for p in preds]))
        if stats is not None:
            stats.add("render", time.perf_counter() - t1)


class VideoFrames:
    """The decoded frames of a video file as ``mocap video`` reads them (:class:`engines.media.
    VideoReader`'s rules: sequential reads, a frame's number from its position in the file,
    counting from 1; an undecodable frame leaves its number unused), at most ``max_frames``.

    Raises ``VideoUnreadable`` (an ``IOError``) when the file is missing or cannot be opened.
    """

    def __init__(self, path: Path, max_frames: Optional[int] = None, orientation: bool = True):
        self.path = Path(path)
        from engines.media import VideoReader

        self.reader = VideoReader(self.path, orientation=orientation)
        self.max_frames = max_frames
        self.fps = self.reader.fps
        #: The container's own frame rate (0 when it does not say; ``fps`` is then 30).
        self.container_fps = self.reader.fps if self.reader.fps_known else 0.0
        self.frame_count = self.reader.frame_count
        total = self.reader.frame_count or None
        if max_frames:
            total = min(total or max_frames, max_frames)
        #: Frames to expect (capped by ``max_frames``), None when unknown.
        self.total = total
        self.decoded = 0

    def __iter__(self):
        """Yields ``(index, image_bgr)`` for every decoded frame."""
        while self.max_frames is None or self.decoded < self.max_frames:
            item = self.reader.step()
            if item is None:
                return
            position, image = item
            if image is None:
                continue
            self.decoded += 1
            yield position + 1, image

    @property
    def undecodable(self) -> int:
        return self.reader.corrupt + self.reader.missing_tail

    @property
    def frame_times(self) -> Dict[int, float]:
        """Seconds into the video of every frame handed out, by frame number (from 1)."""
        return {pos + 1: t for pos, t in self.reader.frame_times.items()}

    def write_info(self, out_dir: Path, source: str) -> None:
        """:data:`VIDEO_INFO_FILE` for this video (with the frame times read so far)."""
        write_video_info(out_dir, self.container_fps, self.total, source, self.frame_times,
                         self.reader.orientation_note, self.reader.variable_frame_rate)

    @property
    def problem(self) -> Optional[str]:
        return self.reader.problem

    @property
    def skipped(self) -> List[str]:
        return [self.reader.problem] if self.reader.problem else []

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "VideoFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: ``predict(image_bgr, boxes) -> [Prediction]``, each with its ``box_index`` in ``boxes``
#: (:meth:`Predictor.predict`, or a stand-in that runs the network elsewhere).
PredictFn = Callable[[np.ndarray, Sequence[np.ndarray]], List["Prediction"]]


class VideoPeople:
    """The people of each frame of a video as ``mocap video`` finds and names them: boxes from a
    :class:`engines.tracking.PersonTracker` fed by ``detector`` (the detector on every frame, its
    ``max_people`` the bound; ``--bbox`` boxes instead keep their index as id), the prediction,
    then the tracker learns from it and names each box's person (track id) with its detector score."""

    def __init__(self, detector, manual_boxes, fps: float, grace_s: float = 1.0):
        from engines.detection_schedule import DetectionSchedule
        from engines.tracking import PersonTracker

        self.detector = detector
        self.manual_boxes = manual_boxes
        self.fps = fps
        self.tracker = None
        if not manual_boxes:
            tracker = PersonTracker(max_people=getattr(detector, "max_people", 1), grace_s=grace_s,
                                    confirm_passes=max(2, int(round(fps * 0.5))))
            self.tracker = DetectionSchedule(detector, tracker, redetect_every=1)

    def frame(self, index: int, image: np.ndarray, predict: PredictFn,
              stats: Optional[RunStats] = None) -> List[Prediction]:
        """Frame ``index``'s people: ``person.track_id`` their id, ``score`` the detector's."""
        t1 = time.perf_counter()
        now = (index - 1) / self.fps
        if self.tracker is None:
            boxes, scores = find_boxes(image, self.detector, self.manual_boxes)
            targets = None
        else:
            targets = self.tracker.update(image, now)
            boxes, scores = [t.bbox_xywh for t in targets], [t.score for t in targets]
        t2 = time.perf_counter()
        preds = predict(image, boxes) if boxes else []
        t3 = time.perf_counter()
        if targets is None:  # --bbox boxes: the box's index is the id
            ids = {p.box_index: p.box_index for p in preds}
        else:
            ids = self.tracker.identify(targets, {p.box_index: p.person for p in preds}, now,
                                        (image.shape[1], image.shape[0]))
        if stats is not None:
            stats.add("detect", t2 - t1)
            stats.add("model", t3 - t2)
        return [p.named(ids[p.box_index], scores[p.box_index]) for p in preds]


class VideoResults:
    """What ``mocap video`` writes per frame: ``<index:05d>_<track id>`` per person,
    ``overlay/<index:05d>.jpg`` and the frame appended to ``overlay.mp4`` (opened on the first frame
    at the video's rate, finalised by :meth:`close`)."""

    def __init__(self, writer: ResultWriter, source: Path, fps: float, overlay: Optional[OverlayFn],
                 frame_time: Optional[Callable[[int], Optional[float]]] = None):
        self.writer = writer
        #: Frame number -> its time in the source (seconds): overlay.mp4 then keeps a variable frame rate.
        self.frame_time = frame_time
        self.source = Path(source)
        self.fps = fps
        self.overlay = overlay
        self._video = None  # engines.media.VideoWriter, opened on the first frame

    def write(self, index: int, image: np.ndarray, preds: Sequence[Prediction],
              stats: Optional[RunStats] = None) -> None:
        t0 = time.perf_counter()
        for pred in preds:
            self.writer.write_person(f"{index:05d}_{pred.person.track_id}", pred, f"{self.source}#{index}",
                                     frame_index=index)
        t1 = time.perf_counter()
        if stats is not None:
            stats.add("write", t1 - t0)
        if self.overlay is not None:
            frame = self.overlay(image, [p.person for p in preds])
            t2 = time.perf_counter()
            self.writer.write_overlay(f"{index:05d}", frame)
            if self._video is None:
                from engines.media import VideoWriter

                self._video = VideoWriter(self.writer.out_dir / "overlay.mp4", self.fps,
                                          (image.shape[1], image.shape[0]), timestamps=self.frame_time is not None)
            self._video.write(frame, self.frame_time(index) if self.frame_time is not None else None)
            if stats is not None:
                stats.add("render", t2 - t1)
                stats.add("encode", time.perf_counter() - t2)

    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


def run_images(paths: Sequence[Path], predictor: Predictor, out_dir: Path, detector=None,
               manual_boxes=None, save_mesh: bool = False, overlay: Optional[OverlayFn] = None,
               progress: bool = True, stop: Optional[threading.Event] = None,
               run_info: Optional[Dict[str, Any]] = None, orientation: bool = True) -> RunStats:
    """``mocap image``: every image, every person; bad files are reported, not fatal.
    ``stop``: set it to end the run after the current image (the results so far are kept).
    ``orientation``: turn photos upright by their EXIF orientation (False: as stored, as the
    official ``load_img``); what was turned is listed in ``run.json`` (``oriented``)."""
    from tqdm import tqdm

    from engines.media import image_with_orientation

    paths = [Path(p) for p in paths]
    names = result_names(paths)
    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh,
                          {**(run_info or {}), "names": {str(p): n for p, n in zip(paths, names)},
                           "orientation": "exif" if orientation else "as stored"})
    oriented: Dict[str, str] = {}
    writer.run["oriented"] = oriented
    stats = RunStats()
    for path, name in tqdm(list(zip(paths, names)), desc="images", unit="img", disable=not progress):
        if _stopped(stop, stats):
            break
        path = Path(path)
        try:
            image, turned = image_with_orientation(path, orientation)
        except IOError as exc:
            log.error("%s", exc)
            stats.failed.append(path.name)
            continue
        if turned:
            oriented[str(path)] = turned
        stats.frames += 1
        preds = image_people(image, detector, manual_boxes, predictor.predict, stats)
        if not preds:
            stats.empty_frames += 1
            log.warning("%s: no person found; no parameters written", path.name)
        stats.persons += len(preds)
        write_image_results(writer, path, image, preds, overlay, stats, name)
    writer.finish(stats)
    return stats


def run_video(path: Path, predictor: Predictor, out_dir: Path, detector=None, manual_boxes=None,
              save_mesh: bool = False, overlay: Optional[OverlayFn] = None, progress: bool = True,
              max_frames: Optional[int] = None, on_frame: Optional[Callable[[int, List[Prediction]], None]] = None,
              stop: Optional[threading.Event] = None, run_info: Optional[Dict[str, Any]] = None,
              grace_s: float = 1.0, orientation: bool = True) -> RunStats:
    """``mocap video``: every decoded frame, numbered by its position in the file from 1 like the
    official demo (an undecodable frame leaves its number unused; no result is ever written for a
    frame that was not decoded), overlay.mp4 and video.json. People get track ids
    (``<frame>_<id>``) from a tracker around ``detector`` (its ``max_people`` bounds the people per
    frame); ``--bbox`` boxes keep their index as id. ``grace_s``: how long someone may be unseen
    and come back with their id. ``stop``: set it to end after the current frame with overlay.mp4
    finalised. ``orientation``: turn frames by the video's rotation metadata (False: as stored);
    ``video.json`` says what was turned and holds every frame's real timestamp."""
    from tqdm import tqdm

    frames = VideoFrames(path, max_frames, orientation)  # raises VideoUnreadable (an IOError) naming the file
    fps = frames.fps
    writer = ResultWriter(out_dir, predictor.body_model.faces, save_mesh,
                          {"input": str(path), "frames_in_index": frames.frame_count, **(run_info or {}),
                           "orientation": frames.reader.orientation_note})
    frames.write_info(out_dir, str(path))
    vfr = frames.reader.variable_frame_rate
    results = VideoResults(writer, path, fps, overlay,
                           (lambda n: frames.reader.frame_times.get(n - 1)) if vfr else None)
    people = VideoPeople(detector, manual_boxes, fps, grace_s)
    stats = RunStats()
    ids_seen = set()
    bar = tqdm(total=frames.total, desc=Path(path).name, unit="frame", disable=not progress)
    try:
        t0 = time.perf_counter()
        for index, image in frames:
            if _stopped(stop, stats):
                break
            stats.frames += 1
            stats.add("decode", time.perf_counter() - t0)
            preds = people.frame(index, image, predictor.predict, stats)
            if not preds:
                stats.empty_frames += 1
            ids_seen.update(p.person.track_id for p in preds)
            stats.persons += len(preds)
            results.write(index, image, preds, stats)
            if on_frame is not None:
                on_frame(index, preds)
            bar.update(1)
            bar.set_postfix(persons=len(preds))
            t0 = time.perf_counter()
    finally:
        bar.close()
        frames.close()
        results.close()
        stats.track_ids = sorted(ids_seen)
    stats.undecodable = frames.undecodable
    stats.input_problem = frames.problem
    frames.write_info(out_dir, str(path))  # now with every frame's timestamp
    writer.finish(stats)
    return stats


def write_failure(out_dir: Path, exc: OSError) -> str:
    """The one line for a result that could not be written."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return (f"cannot write results in --out {out_dir}{where}: {exc.strerror or exc}; the results written so far "
            f"are kept and run.json marks the run incomplete")


def run_session(command: str, inputs: Sequence[Path], out: Path, *, checkpoint: str, body_models=None,
                device: str = "cpu", engine: Optional[str] = None, bbox=None, max_people: int = MAX_PEOPLE,
                save_mesh: bool = False, overlay: bool = True, boxes: bool = True, overwrite: bool = False,
                max_frames: Optional[int] = None, progress: bool = True, orientation: bool = True,
                not_read: Sequence[str] = ()) -> RunStats:
    """``mocap image`` (``command="image"``: every image of ``inputs``) or ``mocap video`` (the one
    video of ``inputs``) as one call: load the model, the detector (none with ``bbox``: the people's
    boxes) and the overlay renderer, prepare ``out`` (:func:`realtime.results.prepare_output_dir`:
    only a folder of ours is reused, ``overwrite`` removes only what our earlier run wrote, never one
    of ``inputs``), run with the stop signals ending it cleanly, close what was opened. ``engine``
    None: :func:`engines.backends.offline_choice` (why, in the stats; the engine in run.json). ``orientation``:
    turn photos/frames by their EXIF orientation / rotation metadata (False: as stored, as the official
    code); ``not_read``: files of other types found in the inputs, listed in run.json. A write
    failure (disk full, read-only folder) and an unreadable video raise one-line UserErrors."""
    import threading

    from engines.detector import PersonDetector
    from engines.errors import UserError
    from engines.inference import Predictor
    from engines.media import VideoUnreadable

    from . import signals
    from .results import prepare_output_dir

    inputs = [Path(p) for p in inputs]
    precision = why = None
    if engine is None:  # the fastest ready engine within the documented tolerance
        from engines.backends import offline_choice

        engine, precision, why = offline_choice(checkpoint, device)
    predictor = Predictor.from_files(checkpoint, body_models, device=device, engine=engine, precision=precision)
    detector = None if bbox else PersonDetector(static=command == "image", max_people=max_people)
    renderer = None
    if overlay:
        from viewers.mesh_overlay import PersonOverlay

        renderer = PersonOverlay(predictor.body_model.faces, boxes=boxes)
    stop = threading.Event()
    try:
        prepare_output_dir(out, overwrite, inputs)
        with signals.deliver_to(stop):
            if command == "image":
                stats = run_images(inputs, predictor, out, detector=detector, manual_boxes=bbox,
                                   save_mesh=save_mesh, overlay=renderer, progress=progress, stop=stop,
                                   run_info={"command": "image", "engine": predictor.engine.describe(),
                                             "inputs": [str(p) for p in inputs],
                                             "not_read": list(not_read)}, orientation=orientation)
            else:
                stats = run_video(inputs[0], predictor, out, detector=detector, manual_boxes=bbox,
                                  save_mesh=save_mesh, overlay=renderer, progress=progress, max_frames=max_frames,
                                  stop=stop, run_info={"command": "video", "engine": predictor.engine.describe()},
                                  orientation=orientation)
            stats.engine_choice = why
            return stats
    except VideoUnreadable as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # the disk is full, the folder went away...
        raise UserError(write_failure(out, exc)) from None
    finally:
        if detector is not None:
            detector.close()
        if renderer is not None:
            renderer.close()
