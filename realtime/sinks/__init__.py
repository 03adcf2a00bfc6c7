"""Where results go: VMC/OSC (:mod:`.osc_vmc`), ZMQ (:mod:`.zmq_pub`) and recordings (:mod:`.recorder`)."""
from __future__ import annotations

from typing import Sequence


def describe_sink(sink) -> str:
    """Where ``sink`` sends, in a few words (``VMC/OSC udp://127.0.0.1:39539``), for start-up lines."""
    addr = getattr(sink, "_addr", None)
    if addr is not None:  # VMCSink: the receiver it is connected to
        return f"VMC/OSC udp://{addr[0]}:{addr[1]}"
    endpoint = getattr(sink, "last_endpoint", None)
    if endpoint is not None:  # ZMQSink
        return f"ZMQ PUB {endpoint}"
    directory = getattr(sink, "directory", None)
    if directory is not None:  # Recorder
        return f"recording in {directory}"
    return type(sink).__name__


def describe_sinks(sinks: Sequence) -> str:
    """:func:`describe_sink` of every sink, comma-separated ("no output" when there is none)."""
    return ", ".join(describe_sink(s) for s in sinks) or "no output"
