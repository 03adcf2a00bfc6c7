"""Fault injection on videos: a truncated clip whose index sits at the front (what a cut download or a
killed writer with faststart leaves) and a clip with an undecodable frame. `mocap video` and
`mocap live` read them through the same reader and never produce a result for a frame that was
not decoded."""
from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from engines.media import VideoReader
from realtime.cli import main

from .test_capture import _decode_index, _write_avi_with_broken_frame

N_FRAMES = 16


def write_faststart_clip(path, still, n=N_FRAMES, size=(320, 240), fps=30):
    """H.264 with the moov index at the front, panning across a real photo, frame number drawn in."""
    img = cv2.imread(str(still))
    container = av.open(str(path), "w", options={"movflags": "faststart"})
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    for i in range(n):
        x = 200 + 6 * i
        frame = cv2.resize(img[100:580, x:x + 640], size)
        cv2.putText(frame, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 255), 3)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory, media_dir):
    root = tmp_path_factory.mktemp("clips")
    full = write_faststart_clip(root / "full.mp4", media_dir / "mpii_004645041.jpg")
    data = full.read_bytes()
    assert data[4:8] == b"ftyp" and data.find(b"moov") < data.find(b"mdat")  # the index is at the front
    cut = root / "truncated.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # B-frames lost mid-file as well as the tail
    reference = [image for _, image in VideoReader(full)]
    assert len(reference) == N_FRAMES
    return {"full": full, "cut": cut, "reference": reference}


def _which_frame(image, reference) -> int:
    return int(np.argmin([np.abs(image.astype(int) - r).mean() for r in reference]))


def test_reader_gives_each_decoded_frame_its_true_position(clips):
    reader = VideoReader(clips["cut"])
    assert reader.frame_count == N_FRAMES  # the index at the front promises every frame
    got = list(reader)
    assert 0 < len(got) < N_FRAMES
    for position, image in got:  # the pixels are those of the frame the position names
        assert _which_frame(image, clips["reference"]) == position
    positions = [p for p, _ in got]
    assert positions == sorted(set(positions))
    assert reader.corrupt + reader.missing_tail + len(got) == N_FRAMES
    assert reader.missing_tail == N_FRAMES - 1 - positions[-1] and "truncated" in reader.problem


def test_reader_skips_an_undecodable_frame_mid_file(tmp_path):
    reader = VideoReader(_write_avi_with_broken_frame(tmp_path / "b.avi", 10, broken=4))
    got = list(reader)
    assert [p for p, _ in got] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [_decode_index(im) for _, im in got] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert reader.corrupt == 1 and reader.missing_tail == 0


@pytest.mark.slow
def test_video_and_live_agree_on_a_truncated_clip(tmp_path, clips, s32_ckpt, smplx_dir, capsys):
    decoded = [p for p, _ in VideoReader(clips["cut"])]
    out = tmp_path / "vid"
    model = ["--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir)]
    assert main(["video", str(clips["cut"]), "--out", str(out), "--bbox", "40", "20", "200", "210", *model]) == 0
    stdout = capsys.readouterr().out
    assert f"{len(decoded)} frame(s)" in stdout and "truncated" in stdout
    names = sorted(p.stem for p in (out / "smplx").glob("*.npz"))
    assert names == [f"{p + 1:05d}_0" for p in decoded]  # one result per decoded frame, none invented
    overlays = sorted((out / "overlay").glob("*.jpg"))
    for jpg in overlays:  # each overlay was drawn on the frame its number names
        frame = int(jpg.stem) - 1
        assert _which_frame(cv2.imread(str(jpg)), clips["reference"]) == frame
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(decoded)
    assert not (out / "overlay.partial.mp4").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["frames"] == len(decoded)
    assert run["undecodable_frames"] == N_FRAMES - len(decoded)

    summary = tmp_path / "live.json"
    assert main(["live", "--source", str(clips["cut"]), "--no-pace", "--viewer", "none", "--osc", "none",
                 "--zmq", "none", "--engine", "torch", *model, "--summary-json", str(summary),
                 "--record", str(tmp_path / "rec")]) == 0
    s = json.loads(summary.read_text())
    assert s["frames_out"] == len(decoded) and s["corrupt"] == N_FRAMES - len(decoded)
    from realtime.recording import load_recording

    recording = load_recording(tmp_path / "rec")
    assert len(recording) == len(decoded) and recording.meta["fps"] == 30.0  # was null for video sources
    assert "truncated" in s["source_problem"]
