"""The work behind ``mocap web``, without the page: checks on uploads, the offline run on the
engine thread, the files a page or an API call gets, and the clean-up of each session's files.

Everything is written under one folder of the tool's cache (:func:`work_root`:
``<cache>/web/<server id>/``), which the page server also uses as Gradio's temporary folder
(``GRADIO_TEMP_DIR``): uploads land there, results are made there and served from there without
a second copy, and the whole folder is removed when the server stops. Inside it each session has
a folder with a random name (never a name taken from a request); it is removed when the session
ends (the browser tab closes) or, for API clients, which never say goodbye, :data:`KEEP_S`
seconds after its last job. An upload is used only when it lies inside that folder, and is
copied into the job's folder under a name the server chooses.

The run itself is the project's: ``realtime.offline.run_images`` / ``run_video`` (official result
layout), the overlay of :class:`viewers.mesh_overlay.PersonOverlay`, the animation files of
:func:`realtime.animation.convert.convert` and the still GLB of
:func:`realtime.animation.gltf.build_posed_glb`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from engines.errors import UserError

from .jobs import Job, JobLine

log = logging.getLogger(__name__)

#: Seconds a session's files are kept after its last job when it never ends (API clients).
KEEP_S = 3600.0
#: Job folders kept per session (the page shows the newest; the one before may still be downloading).
KEEP_JOBS = 2
#: People per frame at most (the offline commands' default bound).
DEFAULT_MAX_PEOPLE = 10
#: Animation formats offered per person for videos, in the order shown.
ANIMATION_FORMATS = ("npz", "bvh", "glb", "fbx")
#: What the page says instead of an FBX file when Blender's bpy is missing.
FBX_MISSING = "FBX needs the blender extra: pip install 'smplerx-mocap[blender]' (Python 3.11), then restart mocap web"
#: Results zip name (its top folder is ``results/``: smplx/, meta/, overlay/, run.json...).
RESULTS_ZIP = "mocap_results.zip"


@dataclass
class WebSettings:
    """What ``mocap web`` was started with."""

    checkpoint: str = "s32"
    body_models: Optional[str] = None
    device: str = "cpu"
    max_people: int = DEFAULT_MAX_PEOPLE
    max_upload_mb: float = 200.0
    max_frames: Optional[int] = None
    max_waiting: int = 4
    examples: Optional[Path] = None


def checkpoint_choices(default: str) -> Dict[str, str]:
    """Model choices for the page, label -> ``--checkpoint`` value: ``default`` first (a size
    name, or a file shown by its name), then every official checkpoint in the weights cache
    (what ``mocap weights list`` shows as present)."""
    from engines.checkpoints import FILES, cached_checkpoints

    choices: Dict[str, str] = {}
    path = Path(str(default)).expanduser()
    if str(default).lower() in FILES:
        choices[str(default).lower()] = str(default).lower()
    elif path.is_file():
        choices[path.name] = str(path)
    else:
        choices[str(default)] = str(default)
    for name in cached_checkpoints():
        choices.setdefault(name, name)
    return choices


def check_model_files(checkpoint: str, body_models: Optional[str]) -> None:
    """:class:`UserError` (with the fix) when the default checkpoint or the body model is missing:
    a server that cannot run a single job says so at start, not on the first upload."""
    from engines.body_model import BodyModelNotFound, check_smplx_file, find_smplx_file
    from engines.checkpoints import CheckpointError, resolve_checkpoint

    try:
        resolve_checkpoint(checkpoint)
        check_smplx_file(find_smplx_file(body_models))
    except (CheckpointError, BodyModelNotFound, ValueError) as exc:
        raise UserError(str(exc)) from None


def fbx_available() -> Optional[str]:
    """None when FBX files can be written here (Blender's ``bpy`` is installed), else why not.
    Looked up without importing it: the server never loads Blender itself (see :func:`write_fbx_files`)."""
    import importlib.util

    return None if importlib.util.find_spec("bpy") is not None else FBX_MISSING


def write_fbx_files(results: Path, out: Path, person_ids: List[int], body_models: Optional[str],
                    timeout: float = 600.0) -> Tuple[Dict[int, Path], Optional[str]]:
    """Every person's FBX (``out/person_<id>.fbx``) by ``mocap convert --to fbx`` in a child process:
    Blender's ``bpy`` must run on a process's main thread (on another it crashes the process), and
    the server's jobs run on its engine thread. Returns the files and the one-line reason when it failed."""
    import subprocess
    import sys

    if not person_ids:
        return {}, None
    target = out / "person.fbx"
    cmd = [sys.executable, "-m", "realtime.cli", "convert", str(results), "--to", "fbx", "--out", str(target)]
    if body_models:
        cmd += ["--body-models", str(body_models)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {}, f"FBX export took longer than {timeout:.0f} s and was stopped"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {}, f"FBX export failed: {lines[-1] if lines else f'exit code {done.returncode}'}"
    files: Dict[int, Path] = {}
    for pid in person_ids:
        path = out / f"person_{pid}.fbx"
        if len(person_ids) == 1 and target.is_file():
            os.replace(target, path)
        if path.is_file():
            files[pid] = path
    return files, None


def floor_glb(size: float = 2.0) -> bytes:
    """A grey square floor, ``size`` metres a side: what the 3-D view shows before a result (and
    when nobody was found). Gradio's 3-D view loads its renderer when it first gets a file; one
    given at page load has it ready when the result arrives (one given only with the result can be
    dropped by a second update of the same value while the renderer loads)."""
    import numpy as np

    from realtime.animation.gltf import build_posed_glb

    h = size / 2
    quad = np.array([[-h, 0.0, -h], [h, 0.0, -h], [h, 0.0, h], [-h, 0.0, h]])
    return build_posed_glb([quad], np.array([[0, 1, 2], [0, 2, 3]]), colors=[(0.45, 0.45, 0.5)], names=["floor"])


def work_root() -> Path:
    """A fresh folder for one server under the tool's cache: ``<cache>/web/<pid>-<random>``."""
    from engines.paths import cache_dir

    base = cache_dir() / "web"
    if base.is_dir():  # what a server that was killed (no clean-up) left behind
        for old in base.iterdir():
            pid, _, rest = old.name.partition("-")
            if old.is_dir() and pid.isdigit() and len(rest) == 8 and not _alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
    root = base / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=False)
    return root.resolve()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@dataclass
class Session:
    folder: Path
    jobs: List[Path] = field(default_factory=list)
    active: int = 0
    closed: bool = False
    last_used: float = field(default_factory=time.monotonic)
    running: List[Job] = field(default_factory=list)


@dataclass
class ImageResult:
    overlay: Optional[Path]
    scene_glb: Optional[Path]
    people: List[List]
    results_zip: Path
    message: str


@dataclass
class VideoResult:
    overlay_video: Optional[Path]
    scene_glb: Optional[Path]
    people: List[List]
    results_zip: Path
    animation_files: List[Path]
    message: str


IMAGE_HEADERS = ["id", "x", "y", "width", "height", "score"]
VIDEO_HEADERS = ["id", "frames", "first frame", "last frame", "mean score"]


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def zip_folder(folder: Path, out: Path, top: str = "results") -> Path:
    """``folder``'s files in a zip under ``top/`` (written atomically)."""
    tmp = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
    os.replace(tmp, out)
    return out


def _metas(results: Path) -> List[dict]:
    out = []
    for path in sorted((results / "meta").glob("*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


def image_people_rows(results: Path) -> List[List]:
    """The people table of an image result folder: id, box (x, y, w, h, pixels), detector score."""
    rows = []
    for meta in _metas(results):
        box = [round(float(v), 1) for v in meta.get("bbox_detector") or (0, 0, 0, 0)]
        score = meta.get("score")
        rows.append([int(meta.get("track_id", 0)), *box, None if score is None else round(float(score), 3)])
    return sorted(rows, key=lambda r: r[0])


def video_people_rows(results: Path) -> List[List]:
    """The people table of a video result folder: id, frames seen, first and last frame, mean score."""
    seen: Dict[int, List[Tuple[int, Optional[float]]]] = {}
    for meta in _metas(results):
        seen.setdefault(int(meta.get("track_id", 0)), []).append((int(meta.get("frame", 0)), meta.get("score")))
    rows = []
    for pid in sorted(seen):
        frames = sorted(f for f, _ in seen[pid])
        scores = [float(s) for _, s in seen[pid] if s is not None]
        rows.append([pid, len(frames), frames[0], frames[-1],
                     round(sum(scores) / len(scores), 3) if scores else None])
    return rows


class WebService:
    """Uploads in, result files out, one job at a time (see the module docstring)."""

    def __init__(self, settings: WebSettings, root: Optional[Path] = None):
        if settings.max_people < 1:
            raise UserError("--max-people must be at least 1")
        if not settings.max_upload_mb > 0:
            raise UserError("--max-upload-mb must be > 0")
        if settings.max_frames is not None and settings.max_frames < 1:
            raise UserError("--max-frames must be >= 1")
        check_model_files(settings.checkpoint, settings.body_models)  # before anything is served
        self.settings = settings
        self.root = Path(root).resolve() if root is not None else work_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.sessions_dir = self.root / "sessions"
        self.sessions_dir.mkdir(exist_ok=True)
        self.floor_glb = self.root / "floor.glb"
        self.floor_glb.write_bytes(floor_glb())
        self.choices = checkpoint_choices(settings.checkpoint)
        self.default_choice = next(iter(self.choices))
        self.fbx_missing = fbx_available()
        self.line = JobLine(settings.max_waiting)
        self._lock = threading.Lock()
        self._sessions: Dict[str, Session] = {}
        # engine-thread state: the loaded model, detectors and the overlay renderer
        self._model: Optional[Tuple[str, object]] = None
        self._detectors: Dict[Tuple[bool, int], object] = {}
        self._overlay = None
        self._closing = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, name="mocap-web-sweep", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self, every_s: float = 300.0) -> None:
        while not self._closing.wait(every_s):
            self.sweep()

    # ---------------------------------------------------------------- sessions
    def _session(self, key: str) -> Session:
        with self._lock:
            session = self._sessions.get(key)
            if session is None or session.closed:
                folder = self.sessions_dir / uuid.uuid4().hex  # never a name from the request
                folder.mkdir()
                session = self._sessions[key] = Session(folder)
            session.last_used = time.monotonic()
            return session

    def end_session(self, key: str) -> None:
        """The browser tab closed: stop its jobs and remove its files once they have ended."""
        with self._lock:
            session = self._sessions.pop(key, None)
            if session is None:
                return
            session.closed = True
            for job in session.running:
                job.stop.set()
        self._clean(session)

    def _clean(self, session: Session) -> None:
        with self._lock:
            if not session.closed or session.active:
                return
        shutil.rmtree(session.folder, ignore_errors=True)

    def sweep(self, keep_s: float = KEEP_S) -> None:
        """End the sessions idle for more than ``keep_s`` seconds (API clients never end theirs)."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k, s in self._sessions.items() if not s.active and now - s.last_used > keep_s]
        for key in stale:
            self.end_session(key)

    def close(self) -> None:
        """Stop every job, release the models and remove everything this server wrote."""
        self._closing.set()
        try:
            self.line.call(self._release)
        except Exception:  # noqa: BLE001 -- closing anyway
            pass
        self.line.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _release(self) -> None:
        for det in self._detectors.values():
            det.close()
        self._detectors.clear()
        if self._overlay is not None:
            self._overlay.close()
        self._overlay = None
        self._model = None

    # ----------------------------------------------------------------- uploads
    def _take_upload(self, session: Session, upload, kinds: Sequence[str], what: str, folder: Path) -> Path:
        """Check an uploaded file (inside this server's folder, within the size limit, an allowed
        type by name) and copy it into ``folder`` under a name of the server's choosing."""
        if not upload:
            raise UserError(f"no {what} given: upload one first")
        path = Path(str(upload)).resolve()
        if not _inside(path, self.root) or _inside(path, self.sessions_dir) or not path.is_file():
            raise UserError(f"that {what} was not uploaded to this server: upload it again")
        size = path.stat().st_size
        limit = self.settings.max_upload_mb * 1e6
        if size > limit:
            raise UserError(f"the {what} is {size / 1e6:.0f} MB, over this server's limit of "
                            f"{self.settings.max_upload_mb:g} MB (mocap web --max-upload-mb)")
        suffix = path.suffix.lower()
        if suffix not in kinds:
            raise UserError(f"{path.suffix or 'a file without an extension'} is not a {what} type this tool "
                            f"reads: use one of {', '.join(kinds)}")
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{'photo' if what == 'photo' else 'clip'}{suffix}"
        shutil.copyfile(path, dest)
        return dest

    def _new_job_folder(self, session: Session) -> Path:
        folder = session.folder / uuid.uuid4().hex[:12]
        folder.mkdir()
        with self._lock:
            session.jobs.append(folder)
            old, session.jobs[:] = session.jobs[:-KEEP_JOBS], session.jobs[-KEEP_JOBS:]
        for path in old:
            shutil.rmtree(path, ignore_errors=True)
        return folder

    def _submit(self, session: Session, fn) -> Job:
        def done(job: Job) -> None:  # ran or not
            with self._lock:
                session.active -= 1
                if job in session.running:
                    session.running.remove(job)
            self._clean(session)

        job = Job(fn, owner=session)
        job.on_done = done
        with self._lock:
            session.active += 1
            session.running.append(job)
        try:
            return self.line.submit(job)
        except BaseException:
            with self._lock:
                session.active -= 1
                session.running.remove(job)
            raise

    def _people(self, max_people) -> int:
        n = self.settings.max_people if max_people in (None, "") else int(max_people)
        if not 1 <= n <= self.settings.max_people:
            raise UserError(f"people per frame must be 1-{self.settings.max_people} on this server")
        return n

    def _label(self, label: Optional[str]) -> str:
        label = label or self.default_choice
        if label not in self.choices:
            raise UserError(f"unknown model {label!r}: choose one of {', '.join(self.choices)}")
        return label

    # -------------------------------------------------------------------- jobs
    def start_image(self, session_key: str, upload, model: Optional[str] = None, max_people=None) -> Job:
        """Check the photo and put its job in line (:class:`~.jobs.Busy` when the line is full);
        the job's result is an :class:`ImageResult`."""
        from engines.media import IMAGE_EXTENSIONS

        return self._start(session_key, upload, model, max_people, IMAGE_EXTENSIONS, "photo", self._run_image)

    def start_video(self, session_key: str, upload, model: Optional[str] = None, max_people=None) -> Job:
        """Check the clip and put its job in line; the job's result is a :class:`VideoResult`."""
        from engines.media import VIDEO_EXTENSIONS

        return self._start(session_key, upload, model, max_people, VIDEO_EXTENSIONS, "video", self._run_video)

    def _start(self, session_key: str, upload, model, max_people, kinds, what: str, run) -> Job:
        self.sweep()
        label, people = self._label(model), self._people(max_people)
        session = self._session(session_key)
        folder = self._new_job_folder(session)
        try:
            source = self._take_upload(session, upload, kinds, what, folder / "input")
            return self._submit(session, lambda job: run(job, folder, source, label, people))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # refused: nothing of it is kept
            raise

    # ------------------------------------------------------ on the engine thread
    def _predictor(self, label: str):
        from engines.body_model import BodyModelNotFound
        from engines.checkpoints import CheckpointError
        from engines.inference import Predictor

        if self._model is None or self._model[0] != label:
            self._model = None  # one model in memory at a time
            if self._overlay is not None:
                self._overlay.close()
                self._overlay = None
            try:
                predictor = Predictor.from_files(self.choices[label], self.settings.body_models,
                                                 device=self.settings.device, engine="torch")
            except (CheckpointError, BodyModelNotFound) as exc:
                raise UserError(str(exc)) from None
            self._model = (label, predictor)
        return self._model[1]

    def _detector(self, static: bool, people: int):
        from engines.detector import PersonDetector

        key = (static, people)
        if key not in self._detectors:
            for old in [k for k in self._detectors if k[0] == static]:
                self._detectors.pop(old).close()
            self._detectors[key] = PersonDetector(static=static, max_people=people)
        return self._detectors[key]

    def _overlay_fn(self, faces, keep: list):
        """The overlay renderer (one per model, on this thread) wrapped to keep each frame's people."""
        from viewers.mesh_overlay import PersonOverlay

        if self._overlay is None:
            self._overlay = PersonOverlay(faces)
        overlay = self._overlay

        def draw(image, persons):
            keep[:] = list(persons)
            return overlay(image, persons)

        return draw

    def _scene_glb(self, persons, faces, out: Path) -> Optional[Path]:
        from realtime.animation.gltf import build_posed_glb
        from viewers.mesh_overlay import person_color

        shown = [p for p in persons if p.vertices is not None]
        if not shown:
            return None
        colors = [tuple(c / 255.0 for c in person_color(p.track_id)[::-1]) for p in shown]
        out.write_bytes(build_posed_glb([p.vertices for p in shown], faces, colors,
                                        names=[f"person-{p.track_id}" for p in shown]))
        return out

    def _run_image(self, job: Job, folder: Path, photo: Path, label: str, people: int) -> ImageResult:
        from engines.media import read_image
        from realtime.offline import run_images

        job.progress = (None, "reading the photo")
        try:
            read_image(photo)
        except IOError:
            raise UserError("the uploaded file is not a photo this tool can read (JPEG, PNG, WebP, BMP or TIFF)") from None
        job.progress = (None, "loading the model")
        predictor = self._predictor(label)
        detector = self._detector(True, people)
        persons: list = []
        results = folder / "results"
        job.progress = (None, "finding people")
        stats = run_images([photo], predictor, results, detector=detector,
                           overlay=self._overlay_fn(predictor.body_model.faces, persons), progress=False,
                           stop=job.stop, run_info={"command": "web image", "model": label})
        if stats.failed:
            raise UserError("the uploaded file is not a photo this tool can read")
        glb = self._scene_glb(persons, predictor.body_model.faces, folder / "people.glb")
        rows = image_people_rows(results)
        overlay = results / "overlay" / f"{photo.stem}.jpg"
        message = (f"{len(rows)} person(s) found (model {label})" if rows else
                   "No person found in this photo: try one where people are larger or less hidden.")
        return ImageResult(overlay if overlay.is_file() else None, glb, rows,
                           zip_folder(results, folder / RESULTS_ZIP), message)

    def _run_video(self, job: Job, folder: Path, clip: Path, label: str, people: int) -> VideoResult:
        from engines.media import VideoReader, VideoUnreadable
        from realtime.offline import run_video

        try:
            with VideoReader(clip) as reader:
                total = reader.frame_count or None
        except VideoUnreadable:
            raise UserError("the uploaded file is not a video this tool can read (MP4, MOV, AVI, MKV, WebM)") from None
        if self.settings.max_frames:
            total = min(total or self.settings.max_frames, self.settings.max_frames)
        job.progress = (0.0, "loading the model")
        predictor = self._predictor(label)
        detector = self._detector(False, people)
        persons: list = []
        results = folder / "results"

        def on_frame(index: int, preds) -> None:
            job.progress = (min(1.0, index / total) if total else None,
                            f"frame {index}" + (f" of {total}" if total else ""))

        stats = run_video(clip, predictor, results, detector=detector,
                          overlay=self._overlay_fn(predictor.body_model.faces, persons), progress=False,
                          max_frames=self.settings.max_frames, on_frame=on_frame, stop=job.stop,
                          run_info={"command": "web video", "model": label})
        if job.stop.is_set():
            raise UserError("the job was stopped")
        if stats.frames == 0:
            raise UserError("no frame of the uploaded video could be decoded: the file is damaged or not a video")
        rows = video_people_rows(results)
        notes = [f"{stats.frames} frame(s), {len(rows)} person(s) (model {label})"]
        if not rows:
            notes = [f"No person found in any of the {stats.frames} frame(s)."]
        if stats.input_problem:
            notes.append(stats.input_problem)
        job.progress = (1.0, "writing the animation files")
        files = self._animation_files(results, folder / "animation", [r[0] for r in rows], notes)
        glbs = [f for f in files if f.suffix == ".glb"]
        overlay = results / "overlay.mp4"
        return VideoResult(overlay if overlay.is_file() else None, glbs[0] if glbs else None, rows,
                           zip_folder(results, folder / RESULTS_ZIP), files, " ".join(notes))

    def _animation_files(self, results: Path, out: Path, person_ids: List[int], notes: List[str]) -> List[Path]:
        """Per person: the SMPL-X add-on npz, BVH, GLB and (with bpy) FBX, through ``mocap convert``'s code."""
        from realtime.animation.convert import convert

        out.mkdir(exist_ok=True)
        files: List[Path] = []
        fbx: Dict[int, Path] = {}
        if not self.fbx_missing and person_ids:
            fbx, why = write_fbx_files(results, out, person_ids, self.settings.body_models)
            if why:
                notes.append(why)
        for pid in person_ids:
            for fmt in ANIMATION_FORMATS:
                if fmt == "fbx":
                    files += [fbx[pid]] if pid in fbx else []
                    continue
                try:
                    report = convert(results, out / f"person_{pid}.{fmt}", to=fmt, person=pid,
                                     body_models=self.settings.body_models)
                except UserError as exc:
                    notes.append(f"person {pid} {fmt}: {exc}")
                    continue
                files += [w.path for w in report.files]
        return files
