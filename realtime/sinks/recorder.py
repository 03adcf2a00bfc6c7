"""The recording sink: writes a session to a recording directory (format in
:mod:`realtime.recording`) as it happens.

The writer thread flushes each record to the OS as soon as it is written, so a
killed *process* loses only frames still queued in memory (normally none or one),
and fsyncs every ``fsync_every`` frames and on close, so a power loss loses at most
about that many. JPEG files were chosen over a video container because every finished
frame survives a kill without any index/trailer; ``ffmpeg -framerate FPS -i
DIR/video/%06d.jpg out.mp4`` makes a video.

Writing happens on a background thread: ``send`` only serialises the record and
queues it. Records are never dropped; video frames are dropped (counted in
``dropped_images``) when more than ``max_pending_images`` are waiting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Optional, Tuple, Union

import numpy as np

from engines.atomic import write_bytes_atomic, write_json_atomic
from engines.types import FrameResult

from ..codec import SCHEMA, pack, result_to_dict
from ..recording import FRAMES_FILE, META_FILE, RECORDING_SCHEMA, VIDEO_DIR, encode_record, tool_version

log = logging.getLogger(__name__)


class Recorder:
    """A Sink that writes the session to ``directory`` as it happens.

    Args:
        directory: created if missing; an existing ``frames.bin`` there is an error.
        save_video: also write ``FrameResult.image`` as numbered JPEGs.
        fps: nominal frame rate stored in the metadata (informational; replay uses
            the recorded capture timestamps).
        source: free-text description of the input (camera index, file path...).
        image_size: (width, height) if known now; otherwise taken from the first frame.
        fsync_every: fsync the frames file every N frames.
        jpeg_quality: 0-100.
        body_models: the SMPL-X model the session ran with (its ``.npz``), remembered in the
            metadata so that ``mocap replay`` / ``mocap convert`` find it without ``--body-models``.
    """

    def __init__(self, directory: Union[str, Path], save_video: bool = False, fps: Optional[float] = None,
                 *, source: Optional[str] = None, image_size: Optional[Tuple[int, int]] = None,
                 fsync_every: int = 30, jpeg_quality: int = 90, max_pending_images: int = 8,
                 body_models: Optional[str] = None):
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"recording directory {self.directory} is a file: choose a folder path")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "a part of the path is a file" if isinstance(exc, (NotADirectoryError, FileExistsError)) \
                else (exc.strerror or str(exc))
            raise OSError(f"cannot create recording directory {self.directory}: {why}") from None
        self.frames_path = self.directory / FRAMES_FILE
        if self.frames_path.exists():
            raise FileExistsError(f"{self.frames_path} already exists: choose a new recording directory")
        self.save_video = save_video
        self.fsync_every = max(1, int(fsync_every))
        self.jpeg_quality = int(jpeg_quality)
        self.max_pending_images = int(max_pending_images)
        if save_video:
            (self.directory / VIDEO_DIR).mkdir(exist_ok=True)
        self.meta: Dict[str, Any] = {
            "schema": RECORDING_SCHEMA,
            "frame_schema": SCHEMA,
            "tool": "smplerx-mocap",
            "tool_version": tool_version(),
            "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "start_unix_ns": time.time_ns(),
            "start_perf_counter_ns": time.perf_counter_ns(),
            "source": source,
            "body_models": str(body_models) if body_models else None,
            "image_size": list(image_size) if image_size else None,
            "fps": fps,
            "frames_file": FRAMES_FILE,
            "video": {"format": "jpeg-sequence", "dir": VIDEO_DIR, "pattern": "%06d.jpg"} if save_video else None,
            "complete": False,
        }
        write_json_atomic(self.directory / META_FILE, self.meta)
        self._file = open(self.frames_path, "ab")
        self.count = 0  # records queued
        self.written = 0
        self.dropped_images = 0
        self.errors = 0
        #: The first write failure (a full disk, a folder gone read-only...) as one line; from then on
        #: the recorder writes nothing more and counts the records it lost in ``lost``.
        self.problem: Optional[str] = None
        self.lost = 0
        self._pending_images = 0
        self._queue: Deque[Tuple[bytes, Optional[np.ndarray], Optional[str]]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._closed = False
        self._meta_dirty = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # -- Sink protocol

    def send(self, result: FrameResult) -> None:
        """Serialise the frame and queue it for writing (never waits on the disk)."""
        with self._cond:
            if self._closing:
                return
            index = self.count
            self.count += 1
            image, image_name = None, None
            if self.save_video and result.image is not None:
                if self._pending_images < self.max_pending_images:
                    image, image_name = result.image, f"{index:06d}.jpg"
                    self._pending_images += 1
                else:
                    self.dropped_images += 1
            if self.meta["image_size"] is None and result.image_size:
                self.meta["image_size"] = [int(result.image_size[0]), int(result.image_size[1])]
                self._meta_dirty = True
            record = result_to_dict(result)
            record["index"] = index
            record["image"] = f"{VIDEO_DIR}/{image_name}" if image_name else None
            self._queue.append((pack(record), image, image_name))
            self._cond.notify()

    def close(self) -> None:
        """Write everything queued, fsync, and mark the metadata complete."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify()
        self._thread.join()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            if self.problem is None:
                self._failed(self.frames_path, exc, record_lost=False)
        finally:
            try:
                self._file.close()
            except OSError:
                pass  # the flush above already failed and said why
        self.meta.update({
            "complete": True,
            "end_time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "num_frames": self.written,
            "dropped_images": self.dropped_images,
        })
        if self.problem is not None:
            self.meta.update({"complete": False, "problem": self.problem, "lost_frames": self.lost})
        try:
            write_json_atomic(self.directory / META_FILE, self.meta)
        except OSError as exc:  # the frames are what counts; the reader copes with an older meta.json
            if self.problem is None:
                self._failed(self.directory / META_FILE, exc, record_lost=False)
        self._closed = True

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writer thread

    def _update_meta(self, meta: Dict[str, Any]) -> None:
        try:
            write_json_atomic(self.directory / META_FILE, meta)
        except OSError as exc:
            log.warning("recorder: cannot update %s: %s", self.directory / META_FILE, exc)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                payload, image, image_name = self._queue.popleft()
                meta = dict(self.meta) if self._meta_dirty else None
                self._meta_dirty = False
            if self.problem is not None:  # the disk failed: what is written stays intact, nothing more is tried
                self.lost += 1
                with self._cond:
                    self._pending_images -= image is not None
                continue
            if meta is not None:
                self._update_meta(meta)
            if image is not None:
                self._write_image(image, image_name)
                with self._cond:
                    self._pending_images -= 1
            try:
                self._file.write(encode_record(payload))
                self._file.flush()
                self.written += 1
                if self.written % self.fsync_every == 0:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                self._failed(self.frames_path, exc)

    def _failed(self, path: Path, exc: OSError, record_lost: bool = True) -> None:
        """Note the first write failure (one log line, not one per frame) and stop writing;
        ``record_lost``: the frame's record was not written (not only its image)."""
        self.errors += 1
        self.lost += record_lost
        if self.problem is None:
            self.problem = (f"cannot write the recording {path}: {exc.strerror or exc}; the {self.written} "
                            f"frame(s) recorded before it are kept, the rest of the session is not recorded")
            log.error("recorder: %s", self.problem)

    def _write_image(self, image: np.ndarray, name: str) -> None:
        import cv2  # only needed with save_video

        path = self.directory / VIDEO_DIR / name
        try:
            ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), self.jpeg_quality])
        except cv2.error as exc:
            ok = False
            log.warning("recorder: cannot encode %s: %s", path, exc)
        if not ok:
            self.errors += 1
            log.warning("recorder: JPEG encoding failed for %s", path)
            return
        try:
            write_bytes_atomic(path, buf.tobytes(), fsync=False)
        except OSError as exc:
            self._failed(path, exc, record_lost=False)