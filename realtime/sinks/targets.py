"""Where the live results go, as plain values: the ``--osc`` VMC targets, the ``--zmq`` endpoint and
the VMC settings (:class:`StreamTargets`), their checks (before anything slow loads) and the sink
factory that ``mocap live`` and ``mocap replay`` share."""
from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from engines.errors import UserError


@dataclass(frozen=True)
class StreamTargets:
    """``--osc`` targets (None: the default receiver; ``["none"]``: none), ``--zmq`` (``"none"``: off)
    and the VMC options, as the command line's options describe them."""

    osc: Optional[Sequence[str]] = None
    zmq: str = "tcp://127.0.0.1:5555"
    osc_split: bool = False
    osc_no_raw: bool = False
    vmc_root: str = "root"
    vmc_recenter: bool = False
    vmc_zero_positions: bool = False
    vmc_jaw_open_max: float = 0.5
    #: Track id that drives the first target (None: the largest person).
    performer: Optional[int] = None


def host_port(text: str, default_port: int, option: str = "--osc", resolve: bool = True) -> Tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``[IPv6]:PORT`` or a bare IPv6 address as (host, port), with the
    port checked to be 1-65535 and the host resolved; raises :class:`UserError` naming ``option``."""
    text = text.strip()
    hint = f"use HOST:PORT, e.g. 127.0.0.1:{default_port} or [::1]:{default_port}, or 'none'"
    has_port = False
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:]
        if end <= 1 or (rest and not rest.startswith(":")):
            raise UserError(f"bad {option} value {text!r}: {hint}")
        host, has_port, port_text = text[1:end], bool(rest), rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 address: no port given
        host, port_text = text, ""
    else:
        host, sep, port_text = text.rpartition(":")
        has_port = bool(sep)
        if not sep:
            host = text
    if not host:
        raise UserError(f"bad {option} value {text!r}: the host is missing; {hint}")
    port = default_port
    if has_port:
        if not port_text.isdigit():
            raise UserError(f"bad {option} value {text!r}: port {port_text!r} is not a number; {hint}")
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise UserError(f"bad {option} value {text!r}: port {port} is outside 1-65535")
    if resolve:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise UserError(f"bad {option} value {text!r}: cannot resolve host {host!r} ({why}); "
                            f"use an IP address such as 127.0.0.1 or a host name this machine knows") from None
    return host, port


_ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")


def zmq_endpoint(text: str, option: str = "--zmq") -> str:
    """Check a ZMQ endpoint for binding: ``tcp://HOST:PORT`` (port 1-65535 or ``*``; HOST an
    address, ``*``, ``[IPv6]`` or an interface), ``ipc://PATH`` or ``inproc://NAME``."""
    hint = "use tcp://HOST:PORT, e.g. tcp://127.0.0.1:5555 (tcp://*:5555 for every interface), or 'none'"
    text = text.strip()
    if not text.startswith(_ZMQ_SCHEMES):
        raise UserError(f"bad {option} value {text!r}: {hint}")
    if not text.startswith("tcp://"):
        return text
    rest = text[len("tcp://"):]
    if rest.startswith("["):
        end = rest.find("]")
        if end <= 1 or not rest[end + 1:].startswith(":"):
            raise UserError(f"bad {option} value {text!r}: {hint}")
        host, port_text = rest[1:end], rest[end + 2:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or ":" in host:
            raise UserError(f"bad {option} value {text!r}: {hint} (IPv6 addresses go in brackets: tcp://[::1]:5555)")
    if not host:
        raise UserError(f"bad {option} value {text!r}: the host is missing; {hint}")
    if port_text != "*":
        if not port_text.isdigit():
            raise UserError(f"bad {option} value {text!r}: port {port_text!r} is not a number; {hint}")
        if not 1 <= int(port_text) <= 65535:
            raise UserError(f"bad {option} value {text!r}: port {int(port_text)} is outside 1-65535")
    return text


def check_streams(streams: "StreamTargets") -> None:
    """Check --osc and --zmq (and the VMC settings) before anything slow is loaded."""
    for target in osc_targets(streams.osc):
        host_port(target, 39539)
    if streams.zmq and streams.zmq.lower() != "none":
        zmq_endpoint(streams.zmq)
    if not streams.vmc_jaw_open_max > 0:
        raise UserError("--vmc-jaw-open-max must be > 0 radians")


def osc_targets(values: Optional[List[str]]) -> List[str]:
    """The ``--osc`` targets: the default receiver when none is given, none for ``none``."""
    if not values:
        return ["127.0.0.1:39539"]
    if any(v.lower() == "none" for v in values):
        if len(values) > 1:
            raise UserError("--osc none cannot be combined with other --osc targets")
        return []
    return list(values)


def make_sinks(streams: StreamTargets, body_model, record_dir: Optional[Path] = None, record_video: bool = False,
               source_desc: str = "", fps: Optional[float] = None) -> List:
    """The sinks ``streams`` asks for (one VMC sink per ``--osc`` target, ZMQ) and the recorder of
    ``record_dir``; what cannot open (a busy port, a folder that is a file) is a UserError."""
    sinks = []
    try:
        targets = osc_targets(streams.osc)
        if targets:
            from .osc_vmc import PerformerRouter, VMCSink

            pinned = streams.performer
            router = PerformerRouter(len(targets), pinned=pinned) if (len(targets) > 1 or pinned is not None) else None
            for slot, target in enumerate(targets):
                host, port = host_port(target, 39539)
                sinks.append(VMCSink(host, port, body_model, split_bundles=streams.osc_split,
                                     send_raw=not streams.osc_no_raw, router=router, slot=slot,
                                     root_motion=streams.vmc_root, recenter=streams.vmc_recenter,
                                     zero_positions=streams.vmc_zero_positions, jaw_open_max=streams.vmc_jaw_open_max))
        if streams.zmq and streams.zmq.lower() != "none":
            from .zmq_pub import ZMQSink

            try:
                sinks.append(ZMQSink(zmq_endpoint(streams.zmq)))
            except OSError as exc:
                raise UserError(f"{exc} (is another program, perhaps another mocap, using it? choose another "
                                f"endpoint with --zmq, or --zmq none)") from None
        if record_dir is not None:
            from .recorder import Recorder

            sinks.append(Recorder(record_dir, save_video=record_video, fps=fps, source=source_desc,
                                  body_models=getattr(body_model, "path", None)))
    except BaseException as exc:
        for s in sinks:
            s.close()
        if isinstance(exc, (OSError, ValueError)):
            raise UserError(str(exc)) from None
        raise
    return sinks
