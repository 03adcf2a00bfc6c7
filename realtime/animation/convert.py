"""Recorded takes to animation files: read, resample, place, write (``mocap convert``).

:func:`convert` reads a recording or a result folder (:mod:`.take`), builds each person's
constant-rate animation in the export world frame (:mod:`.motion`) on the skeleton and mesh
of the user's SMPL-X model with the take's settled betas (:mod:`.skeleton`), and writes one
file per person with the format's writer. Every file appears atomically: it is written under
a temporary name in the target folder and renamed, so a failure never leaves a half-written
file under the final name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

from engines.atomic import atomic_path
from engines.errors import UserError

from . import bvh, fbx, gltf, npz_addon
from .grounding import MIN_FEET_IN_VIEW, feet_in_view, ground_motions
from .motion import Motion, build_motion, describe_gaps, place_on_floor, settled_betas
from .resample import MAX_GAP
from .skeleton import open_body_model, shaped_body
from .smoothing import SmoothSettings
from .take import Take, load_take

#: Frame rate of the output when neither --fps nor the recording gives one.
DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class Format:
    suffix: str
    write: Callable  # write(motion, path, mesh)
    needs_mesh: bool
    needs_bpy: bool = False


FORMATS: Dict[str, Format] = {
    "npz": Format(".npz", npz_addon.write_npz, needs_mesh=False),
    "bvh": Format(".bvh", bvh.write_bvh, needs_mesh=False),
    "glb": Format(".glb", gltf.write_glb, needs_mesh=True),
    "fbx": Format(".fbx", fbx.write_fbx, needs_mesh=True, needs_bpy=True),
}


@dataclass
class Written:
    path: Path
    person_id: int
    frames: int
    fps: float


@dataclass
class Report:
    files: List[Written] = field(default_factory=list)
    #: What the user should know (lost frames, held gaps, assumptions), one line each.
    warnings: List[str] = field(default_factory=list)


def format_for(out: Path, to: Optional[str]) -> str:
    """The format named by ``to``, or guessed from ``out``'s suffix; they must agree."""
    by_suffix = {f.suffix: name for name, f in FORMATS.items()}
    suffix = out.suffix.lower()
    if to is None:
        if suffix not in by_suffix:
            raise UserError(f"cannot tell the format from {out.name!r}: pass --to {'|'.join(FORMATS)}")
        return by_suffix[suffix]
    if to not in FORMATS:
        raise UserError(f"unknown format {to!r}: use one of {', '.join(FORMATS)}")
    if suffix and suffix != FORMATS[to].suffix:
        raise UserError(f"--out {out.name} does not end in {FORMATS[to].suffix} (the --to {to} format)")
    return to


def output_paths(out: Path, fmt: str, person_ids: List[int], several: bool) -> Dict[int, Path]:
    """``out`` for one person; ``<stem>_<id><suffix>`` each when a take has several people."""
    if not out.suffix:
        out = out.with_suffix(FORMATS[fmt].suffix)
    if not several:
        return {person_ids[0]: out}
    return {pid: out.with_name(f"{out.stem}_{pid}{out.suffix}") for pid in person_ids}


def check_writable(folder: Path) -> None:
    if not folder.is_dir():
        raise UserError(f"cannot write into {folder}: no such folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into {folder}: permission denied")


def write_atomic(fmt: Format, motion: Motion, path: Path, mesh) -> None:
    """Write under a temporary name in the same folder (with the format's extension), then rename
    onto ``path`` (:func:`engines.atomic.atomic_path`)."""
    try:
        with atomic_path(path, keep_suffix=True) as tmp:
            fmt.write(motion, tmp, mesh)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def output_rate(take: Take, fps: Optional[float]) -> float:
    if take.kind == "results":
        return float(take.frame_rate)  # the folder's own rate (load_take applied --fps)
    if fps is not None:
        return float(fps)
    return float(take.frame_rate) if take.frame_rate else DEFAULT_FPS


def convert(source: Union[str, Path], out: Union[str, Path], to: Optional[str] = None,
            person: Optional[int] = None, fps: Optional[float] = None,
            body_models: Optional[Union[str, Path]] = None, place: str = "floor",
            max_gap: float = MAX_GAP, smooth: bool = True, ground: Optional[bool] = None,
            overwrite: bool = False) -> Report:
    """Convert a take to ``to`` (npz, bvh, glb, fbx) at ``out``; see the module docstring.

    ``smooth``: zero-lag smoothing and outlier removal first (:mod:`.smoothing`). ``ground``:
    a fitted floor, planted feet and a gravity-aligned root (:mod:`.grounding`); by default on
    with ``place="floor"``, and only possible with it.

    ``fps``: for a result folder, its frame rate (else its ``video.json``); for a recording,
    the output frame rate (else the recording's nominal rate, else 30). ``out`` may be an existing
    folder: the file is then ``<input name>.<format>`` in it. A file that exists is refused unless
    ``overwrite``. Raises :class:`UserError` for anything the user can fix.
    """
    out = Path(out)
    if out.is_dir():
        if to is None:
            raise UserError(f"--out {out} is a folder: pass --to {'|'.join(FORMATS)} (or give a file name)")
        source_path = Path(source).resolve()
        stem = (source_path.parent if source_path.is_file() else source_path).name or "take"
        out = out / f"{stem}{FORMATS[to].suffix}"
    name = format_for(out, to)
    fmt = FORMATS[name]
    if fmt.needs_bpy:
        fbx.require_bpy()
    if not max_gap >= 0:
        raise UserError(f"--max-gap must be >= 0, got {max_gap:g}")
    if ground is None:
        ground = place == "floor"
    if ground and place != "floor":
        raise UserError("--ground puts the floor at y = 0: it needs --place floor (or pass --no-ground)")
    check_writable(out.parent if str(out.parent) else Path("."))
    take = load_take(source, fps=fps)
    report = Report(warnings=list(take.notes))
    rate = output_rate(take, fps)
    if person is not None:
        if person not in take.persons:
            seen = ", ".join(str(p) for p in take.persons)
            raise UserError(f"no person {person} in {source}: the take has person(s) {seen}")
        tracks = [take.persons[person]]
    else:
        tracks = list(take.persons.values())
    paths = output_paths(out, name, [t.person_id for t in tracks], several=len(tracks) > 1)
    taken = [str(p) for p in paths.values() if p.exists()]
    if taken and not overwrite:
        raise UserError(f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}: pass --overwrite to "
                        f"replace {'it' if len(taken) == 1 else 'them'}, or choose another --out")
    folders = [str(p) for p in paths.values() if p.is_dir()]
    if folders:
        raise UserError(f"{', '.join(folders)} is a folder: choose another --out")
    if body_models is None:  # a recording remembers the model it was made with
        from realtime.recording import remembered_body_models

        body_models = remembered_body_models(source)
    model = open_body_model(body_models)
    bodies, motions = [], []
    for track in tracks:
        body = shaped_body(model, settled_betas(track))
        motion = build_motion(track, body, rate, take.duration, place="camera" if ground else place,
                              max_gap=max_gap, smooth=SmoothSettings() if smooth else None, report=report.warnings)
        report.warnings.extend(describe_gaps(track, take.duration, max_gap))
        bodies.append(body)
        motions.append(motion)
    if ground:
        if motions[0].n_frames < 2:
            report.warnings.append("a single frame cannot show where the floor is: the pose is put on the floor "
                                   "under its lowest foot, not grounded")
            motions = [place_on_floor(m) for m in motions]
        else:
            grounded = []
            for track, body, motion in zip(tracks, bodies, motions):
                seen = feet_in_view(track, body)
                if seen is not None and seen < MIN_FEET_IN_VIEW:
                    report.warnings.append(f"person {track.person_id}: the feet are in view in only {100 * seen:.0f}% "
                                           f"of the frames (upper body): not grounded, put on the floor under the "
                                           f"lowest foot as --no-ground does")
                    place_on_floor(motion)
                else:
                    grounded.append(motion)
            report.warnings.extend(ground_motions(grounded))
    for track, body, motion in zip(tracks, bodies, motions):
        if motion.n_frames == 1:
            report.warnings.append(f"person {track.person_id}: the take is a single frame: "
                                   f"the file holds one still pose")
        write_atomic(fmt, motion, paths[track.person_id], body.mesh if fmt.needs_mesh else None)
        report.files.append(Written(paths[track.person_id], track.person_id, motion.n_frames, rate))
    return report
