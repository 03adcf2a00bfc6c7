"""``mocap video`` / ``mocap image`` split into stages that can run in different processes and
machines (the Ray executor schedules them; nothing here imports Ray):

1. :func:`track_and_predict` -- one input: its frames, the people found and followed exactly as
   ``mocap video`` does (:class:`realtime.offline.VideoPeople`: the tracker learns from each frame's
   predictions, so a video goes frame after frame), their crops made here by
   :meth:`engines.inference.Predictor.preprocess`, the network run by ``infer`` somewhere else;
   yields chunks of frames with their named people.
2. :class:`EngineStage` -- the network and the SMPL-X layer over the crops of many calls at once
   (frames of several inputs in one batch), turned back into per-frame predictions by
   :func:`engines.inference.assemble_predictions` (what ``Predictor.predict`` uses).
3. :class:`InputWriter` -- one input's result folder, written with the writers of
   :mod:`realtime.offline` (npz / json / overlay images / overlay.mp4 / video.json, the same files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from engines.inference import Prediction

#: Frames per chunk sent from an input's task to its writer.
CHUNK_FRAMES = 4


@dataclass
class FrameCrops:
    """One frame's boxes and crops as :meth:`Predictor.predict` derives them."""

    index: int
    #: Raw boxes (xywh, detector or ``--bbox``) and, for those that survive clipping, their
    #: position in that list, processed boxes and crop-to-frame affines.
    raw_boxes: List[np.ndarray]
    kept: List[int]
    boxes: List[np.ndarray]
    invs: List[np.ndarray]


@dataclass
class CropChunk:
    """What an engine needs: the crops of some frames, stacked."""

    frames: List[FrameCrops]
    #: (N, 3, 512, 384) float32 network input (N = crops in the chunk; None when N = 0).
    img: Optional[np.ndarray]

    @property
    def crops(self) -> int:
        return 0 if self.img is None else int(self.img.shape[0])


#: ``infer(chunk) -> [(frame index, [Prediction])]``, one entry per frame of the chunk.
InferFn = Callable[[CropChunk], List[Tuple[int, List[Prediction]]]]


@dataclass
class PeopleChunk:
    """What the writer needs: frames (BGR) with their people (``person.track_id`` = the name,
    ``score`` the detector's), in order."""

    frames: List[Tuple[int, np.ndarray, List[Prediction]]]


@dataclass
class InputStart:
    kind: str
    #: The frame rate used (30 when the container does not say) and the frames to expect.
    fps: float
    total: Optional[int]
    #: For ``video.json`` and ``run.json``: the container's own rate (0: unknown) and frame count.
    container_fps: float = 0.0
    frame_count: Optional[int] = None
    #: What was turned to bring the input upright (EXIF orientation, video rotation), or None.
    orientation: Optional[str] = None


@dataclass
class InputEnd:
    frames: int
    #: Frames that could not be decoded, and the reader's one-line account of it (or None).
    undecodable: int = 0
    problem: Optional[str] = None
    #: Videos: every decoded frame's real timestamp (seconds) by frame number, for ``video.json``.
    frame_times: Optional[Dict[int, float]] = None
    variable_frame_rate: bool = False


_IMAGE_DETECTORS: Dict[int, object] = {}


def _image_detector(max_people: int):
    """One still-image detector per process (stateless between images, as in ``mocap image DIR``)."""
    if max_people not in _IMAGE_DETECTORS:
        from engines.detector import PersonDetector

        _IMAGE_DETECTORS[max_people] = PersonDetector(static=True, max_people=max_people)
    return _IMAGE_DETECTORS[max_people]


def crops_of_frame(index: int, image_bgr: np.ndarray, raw_boxes: Sequence[np.ndarray]) -> Tuple[FrameCrops, List]:
    """A frame's crops exactly as :meth:`Predictor.predict` makes them on the CPU (and the patches)."""
    from engines import geometry as G
    from engines.inference import Predictor

    if not raw_boxes:
        return FrameCrops(index, [], [], [], []), []
    rgb = G.bgr_to_rgb_float(image_bgr)
    kept, patches, boxes, invs = Predictor.preprocess(rgb, raw_boxes)  # as Predictor.predict, without an engine
    return FrameCrops(index, [np.asarray(b, np.float64) for b in raw_boxes], kept, boxes, invs), patches


def crop_predictor(infer: InferFn):
    """A ``predict(image, boxes)`` like :meth:`Predictor.predict` that crops here and runs the
    network through ``infer``."""
    from engines import geometry as G

    def predict(image_bgr: np.ndarray, boxes: Sequence[np.ndarray]) -> List[Prediction]:
        fc, patches = crops_of_frame(0, image_bgr, boxes)
        if not fc.kept:
            return []
        return infer(CropChunk([fc], G.to_input_batch(patches)))[0][1]

    return predict


def track_and_predict(path: Path, kind: str, predict, manual_boxes=None, max_people: int = 1,
                      max_frames: Optional[int] = None, chunk_frames: int = CHUNK_FRAMES, orientation: bool = True
                      ) -> Iterator[Union[InputStart, PeopleChunk, InputEnd]]:
    """Yields :class:`InputStart`, then :class:`PeopleChunk` s, then :class:`InputEnd`: the people of
    every frame as ``mocap video`` / ``mocap image`` find, predict and name them, with ``predict``
    (:func:`crop_predictor`) for the network. Raises ``IOError`` / ``FileNotFoundError`` for an
    input that cannot be read."""
    from realtime.offline import VideoFrames, VideoPeople, image_people

    path = Path(path)
    if kind == "image":
        from engines.media import image_with_orientation

        image, turned = image_with_orientation(path, orientation)
        detector = None if manual_boxes else _image_detector(max_people)
        yield InputStart("image", 0.0, 1, orientation=turned)
        preds = image_people(image, detector, manual_boxes, predict)
        yield PeopleChunk([(1, image, preds)])
        yield InputEnd(1)
        return
    detector = None
    with VideoFrames(path, max_frames, orientation) as frames:
        try:
            if not manual_boxes:
                from engines.detector import PersonDetector

                detector = PersonDetector(static=False, max_people=max_people)  # fresh, as in `mocap video`
            people = VideoPeople(detector, manual_boxes, frames.fps)
            yield InputStart("video", frames.fps, frames.total, frames.container_fps, frames.frame_count,
                             frames.reader.orientation_note)
            count = 0
            batch: List = []
            for index, image in frames:
                count += 1
                batch.append((index, image, people.frame(index, image, predict)))
                if len(batch) >= chunk_frames:
                    yield PeopleChunk(batch)
                    batch = []
            if batch:
                yield PeopleChunk(batch)
            yield InputEnd(count, frames.undecodable, frames.problem, frames.frame_times,
                           frames.reader.variable_frame_rate)
        finally:
            if detector is not None:
                detector.close()


class EngineStage:
    """The network + SMPL-X layer of a :class:`Predictor`, run over the crops of many chunks at once
    (``batch_size`` crops per forward), giving each chunk its per-frame predictions."""

    def __init__(self, predictor, batch_size: int = 8):
        self.predictor = predictor
        self.batch_size = max(1, int(batch_size))

    def infer(self, chunks: Sequence[CropChunk]) -> List[List[Tuple[int, List[Prediction]]]]:
        from engines.inference import assemble_predictions

        imgs = [c.img for c in chunks if c.img is not None]
        out: Dict[str, np.ndarray] = {}
        verts = joints = None
        if imgs:
            img = np.concatenate(imgs) if len(imgs) > 1 else imgs[0]
            parts = [self.predictor.forward(img[s:s + self.batch_size]) for s in range(0, len(img), self.batch_size)]
            out = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
            verts = np.concatenate([p[1] for p in parts]) if self.predictor.with_mesh else None
            joints = np.concatenate([p[2] for p in parts])
        results, offset = [], 0
        for chunk in chunks:
            per_frame = []
            for fc in chunk.frames:
                n = len(fc.kept)
                preds = []
                if n:
                    rows = slice(offset, offset + n)
                    preds = assemble_predictions({k: v[rows] for k, v in out.items()},
                                                 verts[rows] if verts is not None else None, joints[rows],
                                                 fc.kept, fc.boxes, fc.invs, fc.raw_boxes)
                per_frame.append((fc.index, preds))
                offset += n
            results.append(per_frame)
        return results


class InputWriter:
    """One input's result folder, written as ``mocap video`` / ``mocap image`` write it (``run.json``
    marks it complete in :meth:`close`). ``overlay`` draws the people over a frame (None: no
    overlay); its owner closes it."""

    def __init__(self, out_dir: Path, source: Path, start: InputStart, faces: np.ndarray, save_mesh: bool,
                 overlay=None):
        from realtime.offline import VideoResults
        from realtime.results import ResultWriter, write_video_info

        self.source = Path(source)
        self.kind = start.kind
        self._overlay = overlay
        video = start.kind == "video"
        run_info = {"input": str(self.source), "frames_in_index": start.frame_count} if video else {}
        self.writer = ResultWriter(out_dir, faces, save_mesh,
                                   {**run_info, "command": "batch", "orientation": start.orientation})
        self._video = None
        self._start = start
        self._out_dir = Path(out_dir)
        if video:
            write_video_info(out_dir, start.container_fps, start.total, str(self.source),
                             orientation=start.orientation)
            self._video = VideoResults(self.writer, self.source, start.fps, overlay)
        self.frames = self.persons = self.empty_frames = 0

    def write(self, chunk: PeopleChunk) -> int:
        """Write a chunk of frames; returns its frame count."""
        from realtime.offline import write_image_results

        for index, image, preds in chunk.frames:
            self.frames += 1
            self.persons += len(preds)
            self.empty_frames += 0 if preds else 1
            if self._video is not None:
                self._video.write(index, image, preds)
            else:
                write_image_results(self.writer, self.source, image, preds, self._overlay)
        return len(chunk.frames)

    def close(self, end: Optional[InputEnd] = None) -> None:
        """Finalise overlay.mp4; with the input's ``end`` (every frame written), mark ``run.json`` complete."""
        if self._video is not None:
            self._video.close()
        if end is not None:
            from realtime.offline import RunStats
            from realtime.results import write_video_info

            if self._video is not None and end.frame_times:
                write_video_info(self._out_dir, self._start.container_fps, self._start.total, str(self.source),
                                 end.frame_times, self._start.orientation, end.variable_frame_rate)

            self.writer.finish(RunStats(frames=self.frames, persons=self.persons, empty_frames=self.empty_frames,
                                        undecodable=end.undecodable, input_problem=end.problem))
