"""VMC protocol (OSC over UDP) output: the avatar pose for VTuber tools.

One sink drives one avatar (one performer). Which person that is: the first person of the
result, or, with several targets (one port per avatar, as Unity and Unreal receivers need),
the person a shared :class:`PerformerRouter` gives this sink's slot. Per frame with a performer:

1. bone bundle(s): ``/VMC/Ext/Root/Pos "root" px py pz qx qy qz qw`` followed by
   one ``/VMC/Ext/Bone/Pos <HumanBodyBones name> px py pz qx qy qz qw`` per bone
   (55 bones). One bundle, or with ``split_bundles=True`` several bundles each at
   most ``max_bundle_bytes`` long (the datagram size is measured).
2. blend bundle: ``/VMC/Ext/Blend/Val <name> v`` (``A`` and ``JawOpen`` from the
   jaw opening) and, last, ``/VMC/Ext/Blend/Apply``.
3. with ``send_raw=True``, one bundle per person with the raw SMPL-X parameters
   (the ``/SMPLX`` address space, below).
4. ``/VMC/Ext/OK 1 3 0`` (V2.5 form: loaded, calibrated, normal mode; ``ok_v25=False``
   sends the 1-argument form).
5. exactly one ``/VMC/Ext/T <seconds since the sink started>``.

Frames without this sink's performer: ``/VMC/Ext/OK 0`` (model "not loaded": no bones follow) and the
frame's single ``/VMC/Ext/T``; receivers keep the last pose. ``on_empty="nothing"``
sends nothing at all.

Raw ``/SMPLX`` address space (one bundle per person, every person of the frame):

* ``/SMPLX/frame  i frame_id, i track_id, i person_index, i num_persons``
* ``/SMPLX/<name> i frame_id, i track_id, f × n`` for ``name`` in global_orient (3),
  body_pose (63), left_hand_pose (45), right_hand_pose (45), jaw_pose (3), betas (10),
  expression (10), transl (3): the official parameters flattened row-major,
  axis-angle in the OpenCV camera frame, hand poses relative to the hand mean.
* ``/SMPLX/camera i frame_id, i track_id, f fx, fy, cx, cy, f bx, by, bw, bh``
  (full-frame focal, principal point and the model's xywh box, pixels).

All floats are float32 (``f``), ints int32 (``i``), strings UTF-8 (``s``): the
encoder below writes OSC 1.0 itself (no numpy scalars or doubles can leak out).
Building and sending happen on a background thread with a latest-only slot, so
``send()`` never blocks; frames that arrive while the previous one is still being
sent replace the pending one and are counted in ``dropped``.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..retarget import RestModel, Retargeter, UnityPose
from ..slot import LatestSlot
from engines.types import PREDICTED_KEYS, FrameResult, Person

log = logging.getLogger(__name__)

DEFAULT_PORT = 39539
#: OSC bundle header plus the "immediately" time tag.
_BUNDLE_HEAD = b"#bundle\x00" + struct.pack(">Q", 1)


# --------------------------------------------------------------------------- OSC 1.0 encoder

def _osc_string(s: str) -> bytes:
    b = s.encode("utf-8") + b"\x00"
    return b + b"\x00" * (-len(b) % 4)


def osc_message(address: str, *args) -> bytes:
    """Encode one OSC message. Python ``float`` → ``f`` (float32), ``int`` → ``i``, ``str`` → ``s``.

    numpy scalars are accepted and cast; ``bool`` and anything else raise TypeError.
    """
    tags = [","]
    data = []
    for a in args:
        if isinstance(a, (bool, np.bool_)):
            raise TypeError(f"OSC argument of unsupported type bool for {address}")
        if isinstance(a, (float, np.floating)):
            tags.append("f")
            data.append(struct.pack(">f", float(a)))
        elif isinstance(a, (int, np.integer)):
            tags.append("i")
            data.append(struct.pack(">i", int(a)))
        elif isinstance(a, str):
            tags.append("s")
            data.append(_osc_string(a))
        else:
            raise TypeError(f"OSC argument of unsupported type {type(a).__name__} for {address}")
    return _osc_string(address) + _osc_string("".join(tags)) + b"".join(data)


def _osc_floats(address: str, head: Sequence[int], values: np.ndarray) -> bytes:
    """Fast path: ``address`` with int32 ``head`` arguments then float32 ``values``."""
    values = np.asarray(values, dtype=">f4").reshape(-1)
    tags = "," + "i" * len(head) + "f" * len(values)
    return (_osc_string(address) + _osc_string(tags) + struct.pack(f">{len(head)}i", *head)
            + values.tobytes())


def osc_bundle(messages: Iterable[bytes]) -> bytes:
    """Encode an OSC bundle (time tag "immediately") of already encoded messages."""
    return _BUNDLE_HEAD + b"".join(struct.pack(">i", len(m)) + m for m in messages)


def pack_bundles(messages: List[bytes], max_bytes: int) -> List[bytes]:
    """Greedily pack messages, in order, into bundles no larger than ``max_bytes``."""
    bundles, current, size = [], [], len(_BUNDLE_HEAD)
    for m in messages:
        if len(_BUNDLE_HEAD) + 4 + len(m) > max_bytes:
            raise ValueError(f"an OSC message of {len(m)} bytes cannot fit a {max_bytes}-byte bundle")
        if current and size + 4 + len(m) > max_bytes:
            bundles.append(osc_bundle(current))
            current, size = [], len(_BUNDLE_HEAD)
        current.append(m)
        size += 4 + len(m)
    if current:
        bundles.append(osc_bundle(current))
    return bundles


# --------------------------------------------------------------------------- VMC messages

def _pose7(address: str, name: str, pos: np.ndarray, quat: np.ndarray) -> bytes:
    vals = np.concatenate([np.asarray(pos, np.float64).reshape(3), np.asarray(quat, np.float64).reshape(4)])
    return _osc_string(address) + _osc_string(",sfffffff") + _osc_string(name) + vals.astype(">f4").tobytes()


def vmc_pose_messages(pose: UnityPose) -> Tuple[List[bytes], List[bytes]]:
    """(Root/Pos + Bone/Pos messages, Blend/Val messages + Blend/Apply) for one pose."""
    bones = [_pose7("/VMC/Ext/Root/Pos", "root", pose.root_pos, pose.root_quat)]
    bones += [_pose7("/VMC/Ext/Bone/Pos", name, p, q) for name, (p, q) in pose.bones.items()]
    blend = [osc_message("/VMC/Ext/Blend/Val", str(k), float(v)) for k, v in pose.blend.items()]
    blend.append(osc_message("/VMC/Ext/Blend/Apply"))
    return bones, blend


def smplx_raw_messages(person: Person, frame_id: int, index: int, count: int) -> List[bytes]:
    """The ``/SMPLX/...`` messages of one person (see the module docstring)."""
    fid, tid = int(frame_id), int(person.track_id)
    msgs = [osc_message("/SMPLX/frame", fid, tid, int(index), int(count))]
    for key in PREDICTED_KEYS:
        msgs.append(_osc_floats(f"/SMPLX/{key}", (fid, tid), getattr(person.params, key)))
    cam = np.concatenate([np.asarray(person.focal, np.float64).reshape(-1)[:2],
                          np.asarray(person.princpt, np.float64).reshape(-1)[:2],
                          np.asarray(person.bbox, np.float64).reshape(-1)[:4]])
    msgs.append(_osc_floats("/SMPLX/camera", (fid, tid), cam))
    return msgs


# --------------------------------------------------------------------------- the sink

class PerformerRouter:
    """Shares a frame's people among ``slots`` VMC targets, one performer each, and keeps them.

    Slot 0 gets the primary performer: the track ``pinned`` if given, else the person with the
    largest box; the other slots get the remaining people, largest first. A slot keeps its
    track id while that person is seen at least every ``release_s`` seconds (the tracker
    brings briefly hidden people back with their id), so avatars never swap performers.
    """

    def __init__(self, slots: int, pinned: Optional[int] = None, release_s: float = 1.5):
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = int(slots)
        self.pinned = pinned
        self.release_ns = int(float(release_s) * 1e9)
        self._owner: List[Optional[int]] = [None] * self.slots
        self._last_seen: dict = {}
        self._frame: Optional[Tuple[int, int]] = None
        self._routed: List[Optional[Person]] = [None] * self.slots
        self._lock = threading.Lock()

    def person_for(self, slot: int, result: FrameResult) -> Optional[Person]:
        """This frame's performer of ``slot`` (None: nobody for that avatar now)."""
        with self._lock:
            key = (int(result.frame_id), int(result.t_capture_ns))
            if key != self._frame:
                self._frame = key
                self._routed = self._route(result)
            return self._routed[slot]

    def _route(self, result: FrameResult) -> List[Optional[Person]]:
        now = int(result.t_capture_ns)
        by_id = {p.track_id: p for p in result.persons}
        for tid in by_id:
            self._last_seen[tid] = now
        for k, owner in enumerate(self._owner):  # free slots whose performer is gone for good
            if owner is not None and now - self._last_seen.get(owner, now) > self.release_ns:
                self._owner[k] = None
        taken = {o for o in self._owner if o is not None}
        free = sorted((p for p in result.persons if p.track_id not in taken),
                      key=lambda p: -float(p.bbox[2] * p.bbox[3]))
        if self.pinned is not None:
            if self._owner[0] != self.pinned and self.pinned in by_id and self.pinned not in taken:
                self._owner[0] = self.pinned
                free = [p for p in free if p.track_id != self.pinned]
        for k in range(self.slots):
            if self._owner[k] is None and free and not (k == 0 and self.pinned is not None):
                self._owner[k] = free.pop(0).track_id
        return [by_id.get(owner) if owner is not None else None for owner in self._owner]


class VMCSink:
    """Sends each result as VMC (and raw SMPL-X) OSC packets over UDP.

    Args:
        host, port: the receiver (Marionette: 39539; VSeeFace/VMC as Performer: 39540).
        body_model: an :class:`engines.body_model.BodyModel` for rest offsets and hand
            means; or pass ``rest`` (a :class:`RestModel`) instead.
        split_bundles: split the bone bundle into datagrams ≤ ``max_bundle_bytes``.
        send_raw: also send the ``/SMPLX`` address space.
        root_motion, recenter, zero_positions, jaw_open_max, shape: see
            :class:`realtime.retarget.Retargeter`.
        ok_v25: send ``/VMC/Ext/OK 1 3 0`` instead of ``/VMC/Ext/OK 1``.
        on_empty: ``"ok0"`` (default) or ``"nothing"`` for frames with nobody.
        router, slot: a :class:`PerformerRouter` shared by several sinks and this sink's slot
            in it; the raw ``/SMPLX`` bundle then carries this sink's performer only.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, body_model=None, *,
                 rest: Optional[RestModel] = None, split_bundles: bool = False,
                 max_bundle_bytes: int = 1400, send_raw: bool = True, root_motion: str = "root",
                 recenter: bool = False, zero_positions: bool = False, jaw_open_max: float = 0.5,
                 shape: str = "first", ok_v25: bool = True, on_empty: str = "ok0",
                 router: Optional[PerformerRouter] = None, slot: int = 0):
        if rest is None:
            if body_model is None:
                raise ValueError("VMCSink needs body_model= (a BodyModel) or rest= (a RestModel)")
            rest = RestModel.from_body_model(body_model)
        if on_empty not in ("ok0", "nothing"):
            raise ValueError(f"on_empty must be 'ok0' or 'nothing', got {on_empty!r}")
        if max_bundle_bytes < 256:
            raise ValueError(f"max_bundle_bytes must be >= 256, got {max_bundle_bytes}")
        self.retarget = Retargeter(rest, root_motion=root_motion, recenter=recenter,
                                   zero_positions=zero_positions, jaw_open_max=jaw_open_max, shape=shape)
        self.split_bundles = split_bundles
        self.max_bundle_bytes = int(max_bundle_bytes)
        self.send_raw = send_raw
        self.ok_v25 = ok_v25
        self.on_empty = on_empty
        self.router = router
        self.slot = int(slot)
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"VMC port {port} is outside 1-65535")
        try:
            family, _, _, _, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve VMC receiver host {host!r}: {exc.strerror}") from None
        self._addr = addr
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # connecting fixes the local address to the interface that reaches the receiver (the
            # loopback one for 127.0.0.1) instead of a socket bound on every interface, and makes
            # the socket ignore datagrams from anyone but the receiver
            self._sock.connect(addr)
        except OSError as exc:
            self._sock.close()
            raise ValueError(f"cannot send VMC to {host}:{port}: {exc.strerror or exc}") from None
        self._t0 = time.perf_counter()
        #: Frames fully sent, datagrams that failed (e.g. an ICMP "port unreachable" surfaced by
        #: the OS); frames handed to ``send`` and those replaced before sending: :attr:`received`,
        #: :attr:`dropped`.
        self.sent = 0
        self.send_errors = 0
        self._slot: LatestSlot[FrameResult] = LatestSlot()  # the sender thread takes the newest frame
        self._thread = threading.Thread(target=self._run, name="vmc-sink", daemon=True)
        self._thread.start()

    # -- Sink protocol

    def send(self, result: FrameResult) -> None:
        """Queue ``result`` for sending (latest only); never blocks on the network."""
        chosen = result.persons
        if self.router is not None:
            performer = self.router.person_for(self.slot, result)
            chosen = [] if performer is None else [performer]
        persons = [Person(p.track_id, p.params.copy(), np.array(p.bbox), np.array(p.bbox_detector),
                          np.array(p.focal), np.array(p.princpt),
                          grounded=None if p.grounded is None else dict(p.grounded)) for p in chosen]
        snapshot = FrameResult(result.frame_id, result.t_capture_ns, tuple(result.image_size), persons)
        self._slot.put(snapshot)  # refused once closed; replaces (and counts) an unsent frame

    @property
    def received(self) -> int:
        return self._slot.put_count

    @property
    def dropped(self) -> int:
        return self._slot.dropped

    def close(self) -> None:
        """Send the pending frame, stop the thread and release the socket."""
        if self._slot.closed:
            return
        self._slot.close()
        self._thread.join(timeout=5.0)
        self._sock.close()

    def __enter__(self) -> "VMCSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> dict:
        return {"received": self.received, "sent": self.sent, "dropped": self.dropped,
                "send_errors": self.send_errors}

    # -- worker

    def _run(self) -> None:
        while True:
            result = self._slot.get()
            if result is None:  # closed, and the last frame was sent
                return
            try:
                datagrams = self.build_datagrams(result)
            except (ValueError, TypeError, FloatingPointError) as exc:
                log.warning("VMC: frame %s not sent: %s", result.frame_id, exc)
                continue
            except Exception:  # keep the sender alive whatever one frame holds
                log.exception("VMC: frame %s not sent", result.frame_id)
                continue
            for d in datagrams:
                try:
                    self._sock.send(d)
                except OSError as exc:  # no listener / network down: UDP is best effort
                    self.send_errors += 1
                    log.debug("VMC: send to %s failed: %s", self._addr, exc)
            if datagrams:
                self.sent += 1

    def build_datagrams(self, result: FrameResult) -> List[bytes]:
        """Every datagram of one frame, in sending order (public for tests and tools)."""
        out: List[bytes] = []
        t = osc_message("/VMC/Ext/T", float(time.perf_counter() - self._t0))
        if not result.persons:
            if self.on_empty == "nothing":
                return []
            return [osc_message("/VMC/Ext/OK", 0), t]
        track_id = result.persons[0].track_id
        if track_id != getattr(self, "_track_id", track_id):
            self.retarget.reset_shape()  # a new performer: take bone lengths from their betas
        self._track_id = track_id
        pose = self.retarget(result.persons[0].params, grounded=result.persons[0].grounded)
        bones, blend = vmc_pose_messages(pose)
        if self.split_bundles:
            out += pack_bundles(bones, self.max_bundle_bytes)
            out += pack_bundles(blend, self.max_bundle_bytes)
        else:
            out += [osc_bundle(bones), osc_bundle(blend)]
        if self.send_raw:
            n = len(result.persons)
            for i, person in enumerate(result.persons):
                raw = smplx_raw_messages(person, result.frame_id, i, n)
                out += pack_bundles(raw, self.max_bundle_bytes) if self.split_bundles else [osc_bundle(raw)]
        out.append(osc_message("/VMC/Ext/OK", 1, 3, 0) if self.ok_v25 else osc_message("/VMC/Ext/OK", 1))
        out.append(t)
        return out
