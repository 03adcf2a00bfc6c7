"""``mocap video`` / ``mocap image`` split into stages that can run in different processes and
machines (the Ray executor schedules them; nothing here imports Ray):

1. :func:`decode_and_detect` -- frames of one input, the detector's boxes and the model's crops, in
   chunks of a few frames (CPU). Crops are made by :meth:`engines.inference.Predictor.preprocess`,
   so they are the crops ``mocap video`` feeds the network.
2. :class:`EngineStage` -- the network and the SMPL-X layer over the crops of many chunks at once
   (frames of several inputs in one batch), turned back into per-frame predictions by
   :func:`engines.inference.assemble_predictions` (what ``Predictor.predict`` uses).
3. :class:`InputWriter` -- one input's result folder, written frame by frame with the writers of
   :mod:`engines.offline` (npz / json / overlay images / overlay.mp4, the same files).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from engines.inference import Prediction

#: Frames per chunk sent from a decoder to the engines.
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
    #: Per raw box: the detector's score and the person's track id (videos; images: the box index).
    scores: List[float] = field(default_factory=list)
    ids: List[int] = field(default_factory=list)


@dataclass
class CropChunk:
    """What the engines need from a chunk: the crops of all its frames, stacked."""

    frames: List[FrameCrops]
    #: (N, 3, 512, 384) float32 network input (N = crops in the chunk; None when N = 0).
    img: Optional[np.ndarray]

    @property
    def crops(self) -> int:
        return 0 if self.img is None else int(self.img.shape[0])


@dataclass
class ImageChunk:
    """What the writer needs from a chunk: the frames themselves (BGR)."""

    frames: List[Tuple[int, np.ndarray]]


@dataclass
class InputStart:
    kind: str
    fps: float
    total: Optional[int]
    #: The container's own frame rate (0: it does not say), for ``video.json``.
    container_fps: float = 0.0


@dataclass
class InputEnd:
    frames: int
    skipped_frames: List[str] = field(default_factory=list)


_STATIC_DETECTOR = None


def _image_detector(max_people: int):
    """One detector in still-image mode per process (stateless between images, as in ``mocap image``)."""
    global _STATIC_DETECTOR
    if _STATIC_DETECTOR is None or _STATIC_DETECTOR.max_people != max_people:
        from engines.detector import PersonDetector

        _STATIC_DETECTOR = PersonDetector(static=True, max_people=max_people)
    return _STATIC_DETECTOR


def crops_of_frame(index: int, image_bgr: np.ndarray, raw_boxes: Sequence[np.ndarray],
                   scores: Sequence[float] = (), ids: Sequence[int] = ()) -> Tuple[FrameCrops, List]:
    """A frame's crops exactly as :meth:`Predictor.predict` makes them (and the patches)."""
    from engines import geometry as G
    from engines.inference import Predictor

    scores = list(scores) or [1.0] * len(raw_boxes)
    ids = list(ids) or list(range(len(raw_boxes)))
    if not len(raw_boxes):
        return FrameCrops(index, [], [], [], []), []
    rgb = G.bgr_to_rgb_float(image_bgr)
    # preprocess uses no predictor state: the same code path as Predictor.predict, without an engine
    kept, patches, boxes, invs = Predictor.preprocess(None, rgb, raw_boxes)
    return FrameCrops(index, [np.asarray(b, np.float64) for b in raw_boxes], kept, boxes, invs, scores, ids), patches


def _chunk(frames: List[Tuple[int, np.ndarray, FrameCrops, List]]) -> Tuple[CropChunk, ImageChunk]:
    from engines import geometry as G

    patches = [p for _, _, _, ps in frames for p in ps]
    img = G.to_input_batch(patches) if patches else None
    return CropChunk([fc for _, _, fc, _ in frames], img), ImageChunk([(i, im) for i, im, _, _ in frames])


def decode_and_detect(path: Path, kind: str, manual_boxes=None, max_frames: Optional[int] = None,
                      chunk_frames: int = CHUNK_FRAMES, max_people: int = 10
                      ) -> Iterator[Union[InputStart, Tuple[CropChunk, ImageChunk], InputEnd]]:
    """Yields :class:`InputStart`, then ``(CropChunk, ImageChunk)`` pairs, then :class:`InputEnd`.
    Raises ``IOError`` / ``FileNotFoundError`` for an input that cannot be read.

    In videos the people get track ids from the detections alone (matched frame to frame by box
    overlap): the predictions come back later, on another machine, so the model's joints cannot
    bridge a frame where the detector misses someone, as they do in ``mocap video``. Where the
    detector sees everyone in every frame, ids and files are those of ``mocap video``."""
    from engines.offline import VideoFrames, find_boxes

    path = Path(path)
    if kind == "image":
        from engines.media import read_image

        image = read_image(path)
        detector = None if manual_boxes else _image_detector(max_people)
        yield InputStart("image", 0.0, 1)
        fc, patches = crops_of_frame(1, image, *find_boxes(image, detector, manual_boxes))
        yield _chunk([(1, image, fc, patches)])
        yield InputEnd(1)
        return
    detector = tracker = None
    with VideoFrames(path, max_frames) as frames:
        try:
            if not manual_boxes:
                from engines.detector import PersonDetector
                from engines.tracking import PersonTracker

                detector = PersonDetector(static=False, max_people=max_people)  # fresh per video, as in `mocap video`
                tracker = PersonTracker(detector, max_people=max_people, redetect_every=1)
            yield InputStart("video", frames.fps, frames.total, frames.container_fps)
            count = 0
            batch: List = []
            for index, image in frames:
                count += 1
                if tracker is None:
                    fc, patches = crops_of_frame(index, image, *find_boxes(image, None, manual_boxes))
                else:
                    now = (index - 1) / frames.fps
                    targets = tracker.update(image, now)
                    tracker.observe(targets, [None] * len(targets), now, (image.shape[1], image.shape[0]))
                    fc, patches = crops_of_frame(index, image, [t.bbox_xywh.astype(np.float64) for t in targets],
                                                 [t.score for t in targets], [t.track_id for t in targets])
                batch.append((index, image, fc, patches))
                if len(batch) >= chunk_frames:
                    yield _chunk(batch)
                    batch = []
            if batch:
                yield _chunk(batch)
            yield InputEnd(count, list(frames.skipped))
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
            parts = [self._forward(img[s:s + self.batch_size]) for s in range(0, len(img), self.batch_size)]
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
                    for pred in preds:  # the box index -> the person's score and track id
                        k = pred.person.track_id
                        pred.score = fc.scores[k] if fc.scores else None
                        pred.person.track_id = fc.ids[k] if fc.ids else k
                per_frame.append((fc.index, preds))
                offset += n
            results.append(per_frame)
        return results

    def _forward(self, img: np.ndarray):
        """Network, then SMPL-X, for a stack of crops, as :meth:`Predictor.launch` runs them on the CPU:
        (outputs, vertices or None, joints), camera translation added."""
        import torch

        from engines.body_model import network_inputs

        p = self.predictor
        with torch.inference_mode():
            out = p.engine.run({"img": img})
            tt = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
            verts, joints = p.body_model(*network_inputs(tt))
            trans = tt["cam_trans"]
            verts = (verts + trans[:, None]).numpy() if p.with_mesh else None
            return out, verts, (joints + trans[:, None]).numpy()


class InputWriter:
    """One input's result folder, written as ``mocap video`` / ``mocap image`` write it. ``overlay``
    draws the people over a frame (None: no overlay); its owner closes it."""

    def __init__(self, out_dir: Path, source: Path, start: InputStart, faces: np.ndarray, save_mesh: bool,
                 overlay=None):
        from engines.offline import ResultWriter, VideoResults, write_video_info

        self.source = Path(source)
        self.kind = start.kind
        self._overlay = overlay
        self.writer = ResultWriter(out_dir, faces, save_mesh)
        if start.kind == "video":
            write_video_info(out_dir, start.container_fps, start.total, str(self.source))
        self._video = VideoResults(self.writer, self.source, start.fps, overlay) if start.kind == "video" else None
        self.frames = self.persons = self.empty_frames = 0

    def write(self, images: ImageChunk, predictions: Optional[List[Tuple[int, List[Prediction]]]]) -> int:
        """Write a chunk (``predictions`` None: nobody in any of its frames); returns its frame count."""
        from engines.offline import write_image_results

        preds_by_index = dict(predictions or [])
        for index, image in images.frames:
            preds = preds_by_index.get(index, [])
            self.frames += 1
            self.persons += len(preds)
            self.empty_frames += 0 if preds else 1
            if self._video is not None:
                self._video.write(index, image, preds)
            else:
                write_image_results(self.writer, self.source, image, preds, self._overlay)
        return len(images.frames)

    def close(self, complete: bool = False) -> None:
        """Finalise the overlay video; ``complete``: every frame was written (run.json says so)."""
        if self._video is not None:
            self._video.close()
        if complete:
            from engines.offline import RunStats

            self.writer.finish(RunStats(frames=self.frames, persons=self.persons, empty_frames=self.empty_frames))
