"""The official results folder, written and read in one place.

Layout (the official demo's, plus what this tool adds)::

    OUT/run.json                  how the run went: command, inputs, result names, complete or not,
                                  the files it wrote (what ``--overwrite`` may remove)
    OUT/video.json                ``mocap video``: frame rate, first frame, frame count, source
    OUT/smplx/<name>_<k>.npz      SMPL-X parameters of person ``k`` (official keys and shapes)
    OUT/meta/<name>_<k>.json      camera (focal, princpt), boxes, track id, detector score, source
    OUT/mesh/<name>_<k>.obj       the mesh (``--save-mesh``)
    OUT/overlay/<name>.jpg        the meshes drawn over the frame
    OUT/overlay.mp4               ``mocap video``: the overlay frames as a video

``<name>`` is the image's file stem (``mocap image``; made unique when two inputs share one) or the
frame number ``%05d`` (``mocap video``). Every file appears atomically. :class:`ResultWriter` writes
a folder, :func:`check_output_dir` / :func:`prepare_output_dir` decide whether a folder may take a
run (only a folder of ours is reused), :func:`open_results` reads one back (``mocap replay``,
``mocap convert``, ``mocap batch``'s exports), checking every array's shape.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from engines.atomic import atomic_file, json_safe, write_bytes_atomic, write_json_atomic
from engines.errors import UserError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.inference import Prediction
from engines.stop import raise_if_stopped, signal_name
from engines.types import PARAM_SHAPES, PREDICTED_KEYS, SMPLXParams

#: What a run writes at the top of its output folder (and what ``overwrite`` removes).
RESULT_DIRS = ("smplx", "meta", "overlay", "mesh")
RESULT_FILES = ("overlay.mp4", "overlay.partial.mp4", "run.json", "video.json")
RUN_FILE = "run.json"
#: Written by ``mocap video`` next to ``smplx/``: ``{"fps": float or null, "first_frame": 1,
#: "frame_count": int or null, "source": path, "orientation": what was turned or null,
#: "variable_frame_rate": bool, "frame_times": [seconds or null, ...]}``. Frame ``n`` (file
#: ``<n:05d>_<person>``) is at ``frame_times[n - first_frame]`` seconds into the video (its real
#: timestamp; null for a frame that was not decoded), or ``(n - first_frame) / fps`` in folders
#: written before frame times were recorded.
VIDEO_INFO_FILE = "video.json"


def write_video_info(out_dir: Path, fps: Optional[float], frame_count: Optional[int], source: str,
                     frame_times: Optional[Dict[int, float]] = None, orientation: Optional[str] = None,
                     variable_frame_rate: bool = False) -> None:
    """Write :data:`VIDEO_INFO_FILE` atomically (``fps`` None when the container does not say;
    ``frame_times``: seconds by frame number, from ``first_frame``)."""
    info = {"fps": float(fps) if fps and math.isfinite(fps) and fps > 0 else None, "first_frame": 1,
            "frame_count": int(frame_count) if frame_count else None, "source": source}
    if orientation is not None or variable_frame_rate or frame_times:
        info.update(orientation=orientation, variable_frame_rate=bool(variable_frame_rate))
    if frame_times:
        last = max(frame_times)
        info["frame_times"] = [None if frame_times.get(n) is None else round(float(frame_times[n]), 6)
                               for n in range(1, last + 1)]
    write_json_atomic(Path(out_dir) / VIDEO_INFO_FILE, info, indent=2, fsync=False)


def read_video_info(out_dir: Path) -> Optional[Dict]:
    """The :data:`VIDEO_INFO_FILE` of a result folder, or None if it has none (or it is unreadable)."""
    path = Path(out_dir) / VIDEO_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


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


def read_run(out_dir: Path) -> Optional[Dict]:
    """The ``run.json`` of a folder this tool wrote (a JSON object naming its command), else None."""
    try:
        run = json.loads((Path(out_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return run if isinstance(run, dict) and isinstance(run.get("command"), str) else None


def check_output_dir(out_dir: Path, overwrite: bool = False) -> None:
    """Raise :class:`UserError` (with the fix) when ``out_dir`` cannot take this run's results:
    a file is in the way, it holds files of ours' names that this tool did not write (never
    touched, ``overwrite`` or not), or it holds an earlier run's results and ``overwrite`` is off.
    Cheap; run it before anything slow, then :func:`prepare_output_dir`."""
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
        if found and read_run(out_dir) is None:
            raise UserError(f"--out {out_dir} holds {', '.join(found)} that mocap did not write (no run.json of "
                            f"ours): choose another folder (nothing there is touched, --overwrite or not)")
        if found and not overwrite:
            raise UserError(f"--out {out_dir} already holds results of an earlier run ({', '.join(found)}): "
                            f"pass --overwrite to replace them, or choose another folder")


def earlier_files(out_dir: Path) -> List[Path]:
    """What the earlier run in ``out_dir`` wrote, as its ``run.json`` lists it (``written``); for a
    run that did not finish (killed: no list), the files in our folders with the names that run
    writes (its result names, or any ``<name>_<k>`` for a folder of an older version)."""
    out_dir = Path(out_dir)
    run = read_run(out_dir) or {}
    written = run.get("written")
    paths: List[Path] = [out_dir / RUN_FILE]
    if run.get("command") == "video":
        paths += [out_dir / name for name in RESULT_FILES if name != RUN_FILE]
    if isinstance(written, dict):
        for stem in written.get("results", []):
            paths += [out_dir / "smplx" / f"{stem}.npz", out_dir / "meta" / f"{stem}.json",
                      out_dir / "mesh" / f"{stem}.obj"]
        paths += [out_dir / "overlay" / f"{name}.jpg" for name in written.get("overlays", [])]
    else:
        names = set(run.get("names", {}).values()) if isinstance(run.get("names"), dict) else None

        def ours(stem: str) -> bool:
            if names is None:
                return True
            return stem in names or (run.get("command") == "video" and stem.isdigit())

        for sub, ext in (("smplx", ".npz"), ("meta", ".json"), ("mesh", ".obj")):
            for f in (out_dir / sub).glob(f"*{ext}"):
                m = _RESULT_NAME.match(f.stem)
                if m and ours(m.group(1)):
                    paths.append(f)
        paths += [f for f in (out_dir / "overlay").glob("*.jpg") if ours(f.stem)]
    tmp = [p.with_name(p.name + ".tmp") for p in paths]  # what a killed writer left
    return [p for p in paths + tmp if p.is_file()]


def prepare_output_dir(out_dir: Path, overwrite: bool = False, inputs: Sequence[Path] = ()) -> Path:
    """Create ``out_dir`` after :func:`check_output_dir`; with ``overwrite``, first remove what the
    earlier run of ours wrote there (:func:`earlier_files`) -- never one of ``inputs``, never a file
    we did not write; our folders go only when that leaves them empty."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    keep = {Path(p).resolve() for p in inputs}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for f in earlier_files(out_dir):
                if f.resolve() not in keep:
                    f.unlink()
            for name in RESULT_DIRS:
                if (out_dir / name).is_dir() and not any((out_dir / name).iterdir()):
                    (out_dir / name).rmdir()
        probe = out_dir / ".write-test.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to the output folder --out {out_dir}: {exc.strerror or exc}") from None
    return out_dir


def result_names(paths: Sequence[Path]) -> List[str]:
    """The result name of each input image: its file stem (the official name), unless another input
    has the same stem; then what tells them apart is added, so that the name says which input it
    came from: the extension (``a.jpg``, ``a.png`` -> ``a-jpg``, ``a-png``), else the folder
    (``phone1/IMG_0001.jpg`` -> ``phone1-IMG_0001``), else both, else a number."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    names = list(stems)
    for stem in set(stems):
        group = [k for k, s in enumerate(stems) if s == stem]
        if len(group) < 2:
            continue
        for make in (lambda p: f"{p.stem}-{p.suffix.lstrip('.')}", lambda p: f"{p.parent.name}-{p.stem}",
                     lambda p: f"{p.parent.name}-{p.stem}-{p.suffix.lstrip('.')}"):
            tried = [make(paths[k]) for k in group]
            if len(set(tried)) == len(tried):
                break
        else:
            tried = [f"{stem}-{n + 1}" for n in range(len(group))]
        for k, name in zip(group, tried):
            names[k] = name
    taken = set()
    for k, name in enumerate(names):  # a made-up name that is another input's stem
        base, n = name, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names[k] = name
    return names


def _floats(values) -> List[Optional[float]]:
    return json_safe([float(v) for v in values])


def _encode_jpg(image: np.ndarray) -> bytes:
    import cv2

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
        #: What this run wrote (listed in run.json by :meth:`finish`: what ``--overwrite`` may remove).
        self.results: List[str] = []
        self.overlays: List[str] = []
        write_json_atomic(self.out_dir / RUN_FILE, self.run)

    def write_person(self, name: str, pred: Prediction, source: str, frame_index: Optional[int] = None) -> None:
        p = pred.person
        self.results.append(name)
        buf = io.BytesIO()
        np.savez(buf, **pred.npz_dict())
        write_bytes_atomic(self.out_dir / "smplx" / f"{name}.npz", buf.getvalue(), fsync=False)
        meta = {
            "focal": _floats(p.focal),
            "princpt": _floats(p.princpt),
            "bbox": _floats(p.bbox),
            "bbox_detector": _floats(p.bbox_detector),
            "bbox_id": int(p.track_id),
            "track_id": int(p.track_id),
            "score": None if pred.score is None else float(pred.score),
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
        self.overlays.append(stem)
        write_bytes_atomic(self.out_dir / "overlay" / f"{stem}.jpg", _encode_jpg(image), fsync=False)

    def finish(self, stats) -> None:
        """Mark the run complete (or stopped, with the signal) in ``run.json`` (``stats``: the
        run's :class:`realtime.offline.RunStats`)."""
        self.run.update({
            "complete": not stats.stopped,
            "stopped_by": signal_name(stats.stopped_by) if stats.stopped_by is not None else None,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "frames": stats.frames, "persons": stats.persons, "empty_frames": stats.empty_frames,
            "failed": stats.failed, "undecodable_frames": stats.undecodable, "input_problem": stats.input_problem,
            "written": {"results": self.results, "overlays": self.overlays},
        })
        write_json_atomic(self.out_dir / RUN_FILE, self.run)


# ------------------------------------------------------------------------------------------ reading

_RESULT_NAME = re.compile(r"^(.+)_(\d+)$")


def results_dir(path: Path) -> Optional[Path]:
    """The ``smplx`` folder of a result folder (given as the folder or its ``smplx``), or None."""
    path = Path(path)
    if (path / "smplx").is_dir():
        return path / "smplx"
    if path.name == "smplx" and path.is_dir():
        return path
    return None


@dataclass(frozen=True)
class ResultFile:
    """One person's result: ``smplx/<name>_<person>.npz`` and its ``meta/`` twin (may be absent)."""

    name: str
    person: int
    npz: Path
    meta: Path


@dataclass
class ResultFolder:
    """A result folder of ``mocap video`` or ``mocap image`` as :func:`open_results` finds it."""

    root: Path
    files: List[ResultFile]
    #: ``video.json`` (``mocap video``), None for image results or when absent/unreadable.
    video: Optional[Dict]

    @property
    def numbered(self) -> bool:
        """True for video results (every name a frame number)."""
        return all(f.name.isdigit() for f in self.files)

    def frame_numbers(self) -> Dict[str, int]:
        """Each result name's frame: a video's frame number, or for image results the image's place
        in name order (from 0: one image, one frame)."""
        if self.numbered:
            return {f.name: int(f.name) for f in self.files}
        return {name: k for k, name in enumerate(sorted({f.name for f in self.files}))}

    @property
    def fps(self) -> Optional[float]:
        """The frame rate ``video.json`` records, or None."""
        fps = (self.video or {}).get("fps")
        return float(fps) if isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0 else None


def open_results(path: Path) -> ResultFolder:
    """The result files of a folder (or its ``smplx/``), sorted by name and person. Raises
    FileNotFoundError naming the path when it holds no ``smplx/<name>_<person>.npz``."""
    smplx_dir = results_dir(path)
    if smplx_dir is None:
        raise FileNotFoundError(f"{path}: no smplx/ folder of results")
    files = []
    for f in smplx_dir.glob("*.npz"):
        m = _RESULT_NAME.match(f.stem)
        if m:
            files.append(ResultFile(m.group(1), int(m.group(2)), f, smplx_dir.parent / "meta" / f"{f.stem}.json"))
    if not files:
        raise FileNotFoundError(f"{smplx_dir}: no <frame>_<person>.npz result files")
    files.sort(key=lambda f: (f.name, f.person))
    return ResultFolder(smplx_dir.parent, files, read_video_info(smplx_dir.parent))


def read_params(npz: Path) -> SMPLXParams:
    """The parameters of one result file, every array checked against the official shape;
    ValueError naming the file when it is damaged (a killed writer leaves a truncated zip, a wrong
    file misses arrays or has other shapes)."""
    try:
        with np.load(npz, allow_pickle=False) as data:
            values = {k: np.asarray(data[k], np.float32) for k in PREDICTED_KEYS}
    except KeyError as exc:
        raise ValueError(f"{npz}: not a valid SMPL-X result file: array {exc} missing; skipped") from None
    except Exception as exc:  # zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError (pickles)...
        raise_if_stopped()
        raise ValueError(f"{npz}: not a valid SMPL-X result file ({type(exc).__name__}: {exc}); skipped") from None
    for k, v in values.items():
        if v.size != int(np.prod(PARAM_SHAPES[k])):
            raise ValueError(f"{npz}: not a valid SMPL-X result file: {k} has shape {v.shape}, "
                             f"expected {PARAM_SHAPES[k]}; skipped")
    return SMPLXParams.from_dict({k: v.reshape(PARAM_SHAPES[k]) for k, v in values.items()})


def read_camera(meta_path: Path) -> Optional[Dict[str, np.ndarray]]:
    """``focal`` (2), ``princpt`` (2), ``bbox`` and ``bbox_detector`` (4, xywh) of a ``meta/`` file
    as float32, or None when there is none; ValueError naming the file when it is damaged."""
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        bbox = np.asarray(meta.get("bbox", [0.0] * 4), np.float32).reshape(-1)
        camera = {"focal": np.asarray(meta.get("focal", [0.0, 0.0]), np.float32).reshape(-1),
                  "princpt": np.asarray(meta.get("princpt", [0.0, 0.0]), np.float32).reshape(-1), "bbox": bbox,
                  "bbox_detector": np.asarray(meta.get("bbox_detector", bbox), np.float32).reshape(-1)}
        sizes = {"focal": 2, "princpt": 2, "bbox": 4, "bbox_detector": 4}
        wrong = [k for k, n in sizes.items() if camera[k].shape != (n,)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} has the wrong length")
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{meta_path}: unreadable camera metadata ({exc})") from None
    return camera
