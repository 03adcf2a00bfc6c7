#!/usr/bin/env python
"""Example subscriber for the ZMQ output (schema ``smplerx-mocap/1``).

Prints, per message: the frame id, the latency ``now - t_capture_ns`` in ms (only
meaningful when publisher and subscriber run on the same machine: both use
``time.perf_counter_ns()``), and per person the track id, the pelvis translation
and the first body-pose joint.

    python scripts/zmq_subscriber.py --endpoint tcp://127.0.0.1:5555 --count 100

Needs only ``pyzmq`` and ``msgpack`` (copy it into any project).
"""
from __future__ import annotations

import argparse
import sys
import time

import msgpack
import zmq


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555", help="publisher endpoint to connect to")
    ap.add_argument("--topic", default=None, help="topic the publisher sends (omit when it sends none)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many messages (0 = forever)")
    ap.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds without data (0 = never)")
    args = ap.parse_args(argv)

    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 4)  # a slow printer should see fresh frames, not a backlog
    sub.setsockopt(zmq.SUBSCRIBE, args.topic.encode() if args.topic else b"")
    if args.timeout > 0:
        sub.setsockopt(zmq.RCVTIMEO, int(args.timeout * 1000))
    sub.connect(args.endpoint)
    print(f"listening on {args.endpoint} (Ctrl+C to stop)", file=sys.stderr)
    n = 0
    try:
        while args.count <= 0 or n < args.count:
            try:
                parts = sub.recv_multipart()
            except zmq.Again:
                print("no data: timed out", file=sys.stderr)
                return 1
            msg = msgpack.unpackb(parts[-1], raw=False)
            now = time.perf_counter_ns()
            latency_ms = (now - msg["t_capture_ns"]) / 1e6
            stages = ", ".join(f"{k} {(v - msg['t_capture_ns']) / 1e6:.1f}" for k, v in msg.get("t_stages", {}).items())
            line = f"frame {msg['frame_id']:6d}  latency {latency_ms:7.1f} ms  persons {len(msg['persons'])}"
            if stages:
                line += f"  [stages ms: {stages}]"
            print(line)
            for p in msg["persons"]:
                t = p["transl"][0]
                hip = p["body_pose"][0]
                print(f"    track {p['track_id']:3d}  transl ({t[0]:+.3f}, {t[1]:+.3f}, {t[2]:+.3f}) m"
                      f"  left_hip ({hip[0]:+.3f}, {hip[1]:+.3f}, {hip[2]:+.3f}) rad"
                      f"  jaw {p['jaw_pose'][0][0]:+.3f}")
            n += 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
