"""Options and loaders the commands share (model, offline output, streams)."""
from __future__ import annotations

import argparse
import math
import os
import signal
import socket
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from engines.errors import UserError


def add_examples(p: argparse.ArgumentParser, *examples: str) -> None:
    """End the command's ``--help`` with a few example command lines."""
    p.epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    p.formatter_class = argparse.RawDescriptionHelpFormatter


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="s32",
                   help="checkpoint path, or a size name (s32, b32, l32, h32, h32_correct) resolved in the "
                        "weights cache (see `mocap weights`). Default: s32")
    p.add_argument("--body-models", default=None, metavar="DIR",
                   help="directory holding smplx/SMPLX_NEUTRAL.npz (default: $MOCAP_BODY_MODELS or the cache)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the network runs")


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_offline_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier run in --out (by default such a folder is refused)")
    p.add_argument("--bbox", nargs=4, type=finite_float, action="append", metavar=("X", "Y", "W", "H"),
                   help="person box in pixels (xywh) instead of the detector; repeat for several people")
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "auto"],
                   help="backend; torch (default) runs the network op for op like the official code")
    p.add_argument("--save-mesh", action="store_true", help="also write mesh/<name>.obj")
    p.add_argument("--no-overlay", action="store_true", help="skip rendering the overlay images")
    p.add_argument("--no-boxes", action="store_true", help="overlay: draw the meshes without boxes and ids")
    p.add_argument("--max-people", type=int, default=None, metavar="N",
                   help=f"at most N people per frame (default: everyone found, up to {MAX_PEOPLE}; "
                        "1 = the largest person, the official default)")


#: People per frame when ``--max-people`` is not given (bounds the detector's passes).
MAX_PEOPLE = 10


def check_boxes(boxes) -> None:
    """--bbox values: width and height must be positive."""
    for box in boxes or ():
        if box[2] <= 0 or box[3] <= 0:
            values = " ".join(f"{v:g}" for v in box)
            raise UserError(f"--bbox {values}: width and height must be > 0 (X Y W H in pixels)")


def check_output_file(path: Optional[Path], option: str) -> None:
    """Fail before any work when ``path`` (an output file option) cannot be written."""
    if path is None:
        return
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise UserError(f"{option} {path}: the folder {parent} {why}")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: the folder {parent} is not writable")


def exit_code(stats) -> int:
    """Exit code of an offline run: 128 + N when signal N stopped it early (SIGINT 130,
    SIGTERM 143, SIGHUP 129), 1 when no frame could be processed, else 0."""
    if stats.stopped:
        return 128 + int(stats.stopped_by or signal.SIGINT)
    return 0 if stats.frames else 1


def max_people(args) -> int:
    """``--max-people`` of the offline commands (default :data:`MAX_PEOPLE`), checked."""
    n = MAX_PEOPLE if args.max_people is None else args.max_people
    if n < 1:
        raise UserError("--max-people must be at least 1")
    return n


def run_offline(args, inputs: Sequence[Path]) -> int:
    """``mocap image`` / ``mocap video`` once their inputs are checked: the library run
    (:func:`realtime.offline.run_session`) with the options as plain values, the summary line, the
    exit code."""
    from realtime.offline import run_session

    stats = run_session(args.command, inputs, args.out, checkpoint=args.checkpoint, body_models=args.body_models,
                        device=args.device, engine=args.engine, bbox=args.bbox,
                        max_people=1 if args.bbox else max_people(args), save_mesh=args.save_mesh,
                        overlay=not args.no_overlay, boxes=not args.no_boxes, overwrite=args.overwrite,
                        max_frames=getattr(args, "max_frames", None))
    print(f"mocap {args.command}: {stats.summary()}; results in {args.out}")
    return exit_code(stats)


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


def check_stream_args(args) -> None:
    """Check --osc and --zmq (and the VMC settings) before anything slow is loaded."""
    for target in osc_targets(args.osc):
        host_port(target, 39539)
    if args.zmq and args.zmq.lower() != "none":
        zmq_endpoint(args.zmq)
    if not getattr(args, "vmc_jaw_open_max", 0.5) > 0:
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


def add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--osc", action="append", default=None, metavar="HOST:PORT",
                   help="VMC/OSC receiver (Marionette), or 'none'. Default 127.0.0.1:39539. Repeat for several "
                        "avatars: each target drives one person (the first: the largest, or --performer)")
    p.add_argument("--osc-split", action="store_true",
                   help="split bone bundles under 1400 bytes (for Wi-Fi / LAN receivers)")
    p.add_argument("--osc-no-raw", action="store_true", help="do not send the raw /SMPLX address space")
    p.add_argument("--vmc-root", choices=["root", "hips"], default="root",
                   help="where the body's position and orientation go: /VMC/Ext/Root/Pos (root, default) or the "
                        "Hips bone (hips); try the other if the avatar floats, spins or sticks in place")
    p.add_argument("--vmc-recenter", action="store_true",
                   help="the first frame's position becomes the avatar's origin (default: the camera is the origin)")
    p.add_argument("--vmc-zero-positions", action="store_true",
                   help="send zero positions for every bone but Hips (for receivers that stretch limbs)")
    p.add_argument("--vmc-jaw-open-max", type=float, default=0.5, metavar="RAD",
                   help="jaw opening (radians) that maps to the mouth blend value 1.0 (default 0.5)")
    p.add_argument("--zmq", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="ZMQ PUB endpoint to bind, or 'none'. Default tcp://127.0.0.1:5555")


def make_sinks(args, body_model, record_dir: Optional[Path] = None, record_video: bool = False,
               source_desc: str = "", fps: Optional[float] = None) -> List:
    sinks = []
    try:
        targets = osc_targets(args.osc)
        if targets:
            from realtime.sinks.osc_vmc import PerformerRouter, VMCSink

            pinned = getattr(args, "performer", None)
            router = PerformerRouter(len(targets), pinned=pinned) if (len(targets) > 1 or pinned is not None) else None
            for slot, target in enumerate(targets):
                host, port = host_port(target, 39539)
                sinks.append(VMCSink(host, port, body_model, split_bundles=args.osc_split,
                                     send_raw=not args.osc_no_raw, router=router, slot=slot,
                                     root_motion=args.vmc_root, recenter=args.vmc_recenter,
                                     zero_positions=args.vmc_zero_positions, jaw_open_max=args.vmc_jaw_open_max))
        if args.zmq and args.zmq.lower() != "none":
            from realtime.sinks.zmq_pub import ZMQSink

            try:
                sinks.append(ZMQSink(zmq_endpoint(args.zmq)))
            except OSError as exc:
                raise UserError(f"{exc} (is another program, perhaps another mocap, using it? choose another "
                                f"endpoint with --zmq, or --zmq none)") from None
        if record_dir is not None:
            from realtime.sinks.recorder import Recorder

            sinks.append(Recorder(record_dir, save_video=record_video, fps=fps, source=source_desc))
    except BaseException as exc:
        for s in sinks:
            s.close()
        if isinstance(exc, (OSError, ValueError)):
            raise UserError(str(exc)) from None
        raise
    return sinks
