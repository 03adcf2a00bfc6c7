"""The batch output folder: who owns it, what is done in it, and how results appear there atomically.

``DIR/manifest.jsonl`` is a journal: the first line names the format and the settings the results
depend on; every later line is the whole current entry of one input (``input`` = its absolute path,
``output`` = its result folder under DIR, ``state`` = running / done / failed / interrupted, the
error, counts, the source's size and mtime). The last line of an input wins. Lines are appended and
fsynced one by one, so a kill loses at most a torn last line, which is ignored; each run starts by
rewriting the journal compacted (one line per input) under a temporary name, then renaming it.

A result folder is written under ``DIR/.tmp/`` and renamed to ``DIR/<output>`` only when complete;
an input is done when its journal line says so *and* its folder is there and the source file has
not changed since. ``DIR/.lock`` (an advisory ``flock``) keeps two batches out of one folder; ``DIR/.logs/`` keeps what
the worker processes print. Result folders never start with a dot, so these names cannot clash.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from engines.atomic import write_text_atomic
from engines.errors import UserError

from .inputs import MediaInput

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
TMP = ".tmp"
LOCK = ".lock"
#: Output of the local worker processes (one file per worker, appended run after run).
LOGS = ".logs"
FORMAT = "smplerx-mocap batch"
VERSION = 1
#: Names under DIR that are never result folders.
RESERVED = (MANIFEST, MANIFEST + ".tmp", TMP, LOCK, LOGS)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _settings_diff(old: Dict, new: Dict) -> List[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]


def read_journal(path: Path) -> Tuple[Dict, Dict[str, Dict], int]:
    """(header, entries by input, number of unreadable lines) of a manifest; raises UserError when
    the file is not a batch manifest."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeError) as exc:
        raise UserError(f"cannot read the batch manifest {path}: {exc}") from exc
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"{path} is not a mocap batch manifest; choose another --out folder")
    if header.get("version") != VERSION:
        raise UserError(f"{path} has manifest version {header.get('version')}, this mocap reads version {VERSION}")
    entries: Dict[str, Dict] = {}
    bad = 0
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            entries[entry["input"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            bad += 1  # a line torn by a kill mid-write
    return header, entries, bad


class BatchDir:
    """An output folder owned by one batch (see the module docstring). Use :meth:`open`."""

    def __init__(self, root: Path, settings: Dict):
        self.root = Path(root)
        self.settings = settings
        self.entries: Dict[str, Dict] = {}
        self._lock_fd: Optional[int] = None
        self._journal = None

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(cls, root: Path, settings: Dict, overwrite: bool = False) -> "BatchDir":
        """Create or reopen ``root`` for a batch with ``settings``; UserError when it belongs to
        another batch, to something else, or is in use by a running batch. ``overwrite``: start over,
        removing the batch found there (the result folders its manifest lists, and the manifest)."""
        bdir = cls(root, settings)
        bdir._open(overwrite)
        return bdir

    def _open(self, overwrite: bool = False) -> None:
        root = self.root
        if root.exists() and not root.is_dir():
            raise UserError(f"--out {root} is a file, not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the output folder {root}: {exc.strerror or exc}") from exc
        self._lock()
        try:
            manifest = root / MANIFEST
            was_batch = manifest.is_file()
            if was_batch and overwrite:
                self._remove_batch(manifest)
            if manifest.is_file():
                header, self.entries, bad = read_journal(manifest)
                diff = _settings_diff(header.get("settings", {}), self.settings)
                if diff:
                    raise UserError(f"{root} holds a batch made with other settings ({'; '.join(diff)}); "
                                    "rerun with the same settings to resume it, pass --overwrite to start it over, "
                                    "or choose another --out folder")
                if bad:
                    log.warning("%s: %d unreadable line(s) ignored (a write cut short)", manifest, bad)
                self._header = header
            elif not was_batch:
                others = sorted(p.name for p in root.iterdir() if p.name not in (TMP, LOCK))
                if others:
                    shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                    raise UserError(f"{root} is not empty ({shown}) and is not a mocap batch folder (no {MANIFEST}); "
                                    "choose a new or empty --out folder (--overwrite only replaces a batch)")
            if not manifest.is_file():
                self._header = {"format": FORMAT, "version": VERSION, "created": _now(), "settings": self.settings}
            for entry in self.entries.values():
                if entry.get("state") == "running":
                    entry["state"] = "interrupted"
                    entry["error"] = "interrupted: the batch stopped while this input was in progress"
            self._compact()
            self._journal = open(manifest, "a")
            shutil.rmtree(root / TMP, ignore_errors=True)  # leftovers of a run that was killed
            (root / TMP).mkdir()
        except BaseException:
            self.close()
            raise

    def _remove_batch(self, manifest: Path) -> None:
        """Remove the batch in this folder: the result folders its manifest names, then the manifest."""
        _, entries, _ = read_journal(manifest)
        for entry in entries.values():
            name = entry.get("output")
            if name and name not in RESERVED and "/" not in name and (self.root / name).is_dir():
                shutil.rmtree(self.root / name)
        shutil.rmtree(self.root / TMP, ignore_errors=True)
        manifest.unlink()

    def _lock(self) -> None:
        import fcntl

        path = self.root / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise UserError(f"{self.root} is in use by another running mocap batch"
                                f"{f' (pid {holder})' if holder else ''}; wait for it or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _compact(self) -> None:
        lines = [json.dumps(self._header)] + [json.dumps(e) for e in self.entries.values()]
        write_text_atomic(self.root / MANIFEST, "\n".join(lines) + "\n")

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "BatchDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ entries
    def record(self, media: MediaInput, **fields) -> Dict:
        """Update the entry of ``media`` and append it to the journal (durable on return)."""
        entry = dict(self.entries.get(media.key, {"input": media.key, "kind": media.kind}))
        entry.update(fields)
        entry["updated"] = _now()
        self.entries[media.key] = entry
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        return entry

    def is_done(self, media: MediaInput) -> bool:
        """Done, its folder in place, and the source unchanged since."""
        entry = self.entries.get(media.key)
        if not entry or entry.get("state") != "done" or not (self.root / entry.get("output", "")).is_dir():
            return False
        try:
            st = media.path.stat()
        except OSError:
            return True  # the source is gone; its results stay valid
        return (st.st_size, st.st_mtime_ns) == (entry.get("source_size"), entry.get("source_mtime_ns"))

    def output_name(self, media: MediaInput) -> str:
        """The result folder of ``media``: kept from earlier runs, else its file stem, made unique."""
        entry = self.entries.get(media.key)
        if entry and entry.get("output"):
            return entry["output"]
        taken = set(RESERVED) | {e["output"] for e in self.entries.values() if e.get("output")}
        base = media.path.stem.lstrip(".") or "input"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        self.entries[media.key] = {"input": media.key, "kind": media.kind, "output": name}
        return name

    # ------------------------------------------------------------------ result folders
    def new_tmp(self, name: str) -> Path:
        """A fresh temporary folder for the results of ``name`` (not created)."""
        return self.root / TMP / f"{name}.{uuid.uuid4().hex[:8]}"

    def commit(self, name: str, tmp: Path) -> Path:
        """Move a complete result folder into place (replacing a stale one)."""
        final = self.root / name
        if final.exists():
            stale = self.new_tmp(f"stale-{name}")
            os.rename(final, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, final)
        return final

    def logs_dir(self) -> Path:
        path = self.root / LOGS
        path.mkdir(exist_ok=True)
        return path

    def discard(self, tmp: Optional[Path]) -> None:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
