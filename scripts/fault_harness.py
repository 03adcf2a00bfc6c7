"""Shared parts of the long fault-injection scripts (``fault_kill.py``, ``fault_signals.py``,
``fault_consumer.py``, ``soak.py``): a work folder with a random-weight checkpoint and the
synthetic SMPL-X file, `mocap live` as a real subprocess, real receivers on 127.0.0.1 (a ZMQ
subscriber that counts frame ids, one that never reads, a UDP socket for VMC) and per-process
samples of RSS, threads and open file descriptors from /proc.

Random weights only exercise the plumbing: nothing these scripts print is a motion-capture result.
"""
from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def media_dir() -> Path:
    env = os.environ.get("MOCAP_MEDIA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "media"


def prepare_models(work: Path) -> Dict[str, Path]:
    """A centred random-weight S32 checkpoint and the synthetic SMPL-X file under ``work``."""
    from bench_live import centred_checkpoint
    from engines.synthetic import write_synthetic_smplx

    work.mkdir(parents=True, exist_ok=True)
    body = work / "body_models"
    if not (body / "smplx" / "SMPLX_NEUTRAL.npz").is_file():
        write_synthetic_smplx(body)
    ckpt = work / "smpler_x_s32.pth.tar"
    if not ckpt.is_file():
        centred_checkpoint(ckpt)
    return {"checkpoint": ckpt, "body_models": body}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def live_command(models: Dict[str, Path], source: str, *extra: str, engine: str = "torch") -> List[str]:
    return [sys.executable, "-m", "realtime.cli", "live", "--source", source, "--viewer", "none",
            "--engine", engine, "--checkpoint", str(models["checkpoint"]),
            "--body-models", str(models["body_models"]), *extra]


def default_signals() -> None:
    """For ``preexec_fn``: the child starts with default SIGINT/SIGTERM/SIGHUP even when this script
    runs under ``nohup`` or as a background job (which ignore SIGHUP / SIGINT, and mocap keeps an
    inherited ignore, as it should)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def spawn(cmd: Sequence[str], threads: int = 1, log_path: Optional[Path] = None,
          env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """Start a command from the repository root with ``threads`` compute threads (the machine is shared)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               **(env or {}))
    out = open(log_path, "w") if log_path else subprocess.DEVNULL
    return subprocess.Popen(list(cmd), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT if log_path
                            else subprocess.DEVNULL, text=True, preexec_fn=default_signals)


class ZmqCounter(threading.Thread):
    """A SUB socket that reads every message and keeps the frame ids it received and the number of
    people in each."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True, name="zmq-counter")
        import zmq

        from realtime.codec import unpack

        self._unpack = unpack
        self._zmq = zmq
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 100)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        self.sock.connect(endpoint)
        self.frame_ids: List[int] = []
        self.people: List[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                msg = self._unpack(self.sock.recv())
            except self._zmq.Again:
                continue
            self.frame_ids.append(int(msg["frame_id"]))
            self.people.append(len(msg["persons"]))

    def close(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close(0)


class ZmqNeverReads:
    """A SUB socket that connects and never reads (the slow consumer)."""

    def __init__(self, endpoint: str):
        import zmq

        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(0)


class UdpCounter(threading.Thread):
    """A UDP receiver that counts datagrams (the VMC/OSC stream)."""

    def __init__(self, read: bool = True):
        super().__init__(daemon=True, name="udp-counter")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.datagrams = 0
        self.read = read
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if not self.read:
                time.sleep(0.2)
                continue
            try:
                self.sock.recv(65536)
                self.datagrams += 1
            except socket.timeout:
                continue

    def close(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close()


def proc_sample(pid: int) -> Optional[Dict[str, int]]:
    """RSS (kB), threads and open file descriptors of ``pid`` from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_kb": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"]), "fds": fds}


def wait_for(predicate, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def machine() -> Dict[str, str]:
    import numpy
    import torch

    load = os.getloadavg()
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__,
            "load_average": " ".join(f"{x:.2f}" for x in load)}
