"""ZeroMQ PUB output: one message per frame in the schema of :mod:`realtime.codec`.

Frames: without a topic each message is a single ZMQ frame (the msgpack payload);
with ``topic=b"..."`` it is a two-frame multipart ``[topic, payload]`` and
subscribers subscribe to that topic.
"""
from __future__ import annotations

import logging
from typing import Optional

import zmq

from engines.types import FrameResult

from ..codec import pack, result_to_dict

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class ZMQSink:
    """Publishes each result on a ZMQ PUB socket; never blocks (drops when full).

    Args:
        endpoint: where to bind (``tcp://127.0.0.1:5555``; ``tcp://*:5555`` for the LAN).
        topic: optional topic frame (bytes or str) sent before the payload.
        sndhwm: send high-water mark (messages queued per subscriber before dropping).
            ZMQ frees queue slots in batches, so very small values (1-4) drop frames
            even for a subscriber that keeps up when frames come back to back; 10 is
            about 0.3 s at 30 fps. A PUB socket drops silently at the mark: ``dropped``
            only counts sends ZMQ refused (EAGAIN) or failed.
        bind: bind (default) or connect the PUB socket.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, topic=None, sndhwm: int = 10,
                 bind: bool = True, context: Optional[zmq.Context] = None):
        self.endpoint = endpoint
        self.topic = topic.encode("utf-8") if isinstance(topic, str) else topic
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, int(sndhwm))
        self._sock.setsockopt(zmq.LINGER, 0)
        if "://[" in endpoint:  # an IPv6 address: ZMQ sockets are IPv4-only unless told otherwise
            self._sock.setsockopt(zmq.IPV6, 1)
        try:
            if bind:
                self._sock.bind(endpoint)
            else:
                self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise OSError(f"ZMQ PUB cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc
        #: Actual endpoint (resolves ``tcp://127.0.0.1:*`` wildcards).
        self.last_endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self.sent = 0
        self.dropped = 0
        self._closed = False

    def send(self, result: FrameResult) -> None:
        """Serialise and publish one frame with NOBLOCK; a full queue drops it (counted)."""
        if self._closed:
            return
        payload = pack(result_to_dict(result))
        try:
            if self.topic is not None:
                self._sock.send_multipart([self.topic, payload], flags=zmq.NOBLOCK)
            else:
                self._sock.send(payload, flags=zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            self.dropped += 1
        except zmq.ZMQError as exc:
            self.dropped += 1
            log.warning("ZMQ send failed on %s: %s", self.endpoint, exc)

    def close(self) -> None:
        """Close the socket at once (linger 0: queued messages are discarded)."""
        if not self._closed:
            self._closed = True
            self._sock.close(linger=0)

    def __enter__(self) -> "ZMQSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
