"""Phone media: photos with an EXIF orientation, videos with rotation metadata, variable-frame-rate
clips, and files of types the tool does not read (issue 17). Real photos from the shared media,
turned into what phones write (tests/phone_media.py)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engines.media import (EXIF_ORIENTATIONS, VideoReader, VideoUnreadable, check_video_path, image_with_orientation,
                           media_kind, read_image)
from tests.phone_media import frames_from, set_rotation, stored_for, write_clip, write_exif_jpeg

VFR_MS = [0, 33, 66, 150, 183, 400, 433, 466, 600, 633, 700, 733]


@pytest.fixture(scope="module")
def photo(media_dir):
    return cv2.imread(str(media_dir / "coco_000785_skier.jpg"))


def _close(a, b, tol=4.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < tol


@pytest.mark.parametrize("orientation", range(1, 9))
def test_photo_is_turned_upright_by_its_exif_orientation(tmp_path, photo, orientation):
    from PIL import Image, ImageOps

    path = write_exif_jpeg(tmp_path / "IMG_0001.jpg", stored_for(photo, orientation), orientation)
    image, turned = image_with_orientation(path)
    assert _close(image, photo)  # upright: as the camera saw it
    assert turned == (None if orientation == 1 else EXIF_ORIENTATIONS[orientation])
    with Image.open(path) as im:  # the way Pillow's viewer-side transpose shows it
        shown = cv2.cvtColor(np.asarray(ImageOps.exif_transpose(im).convert("RGB")), cv2.COLOR_RGB2BGR)
    assert _close(image, shown, tol=2.0)
    as_stored = read_image(path, orientation=False)  # the official load_img: EXIF ignored
    assert _close(as_stored, stored_for(photo, orientation))


def _rotated_clip(tmp_path, photo, degrees, name="portrait.mp4", times_ms=None):
    frames = frames_from(photo, len(times_ms) if times_ms else 8)
    path = write_clip(tmp_path / name, frames, times_ms)
    return set_rotation(path, degrees) if degrees else path, frames


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_video_frames_are_turned_by_the_rotation_metadata(tmp_path, photo, degrees):
    path, frames = _rotated_clip(tmp_path, photo, degrees)
    turn = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}[degrees]
    with VideoReader(path) as reader:
        got = list(reader)
        assert reader.rotation == degrees and str(degrees) in reader.orientation_note
        assert reader.frame_size == (got[0][1].shape[1], got[0][1].shape[0])
    assert [p for p, _ in got] == list(range(len(frames)))
    for (_, image), frame in zip(got, frames):
        assert _close(image, cv2.rotate(frame, turn), tol=6.0)
    cap = cv2.VideoCapture(str(path))  # FFmpeg's own autorotation (players do the same) agrees
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, shown = cap.read()
    cap.release()
    assert ok and np.array_equal(shown, got[0][1])
    with VideoReader(path, orientation=False) as reader:  # as stored
        first = next(iter(reader))[1]
        assert reader.rotation == 0 and "not applied" in reader.orientation_note
    assert _close(first, frames[0], tol=6.0)


def test_variable_frame_rate_clip_is_intact_and_keeps_its_timestamps(tmp_path, photo):
    path, frames = _rotated_clip(tmp_path, photo, 0, "vfr.mp4", VFR_MS)
    with VideoReader(path) as reader:
        got = list(reader)
        assert reader.variable_frame_rate
        assert reader.problem is None and reader.corrupt == 0 and reader.missing_tail == 0
        assert [p for p, _ in got] == list(range(len(VFR_MS)))
        assert [round(reader.frame_times[p] * 1000) for p, _ in got] == VFR_MS
    for (_, image), frame in zip(got, frames):
        assert _close(image, frame, tol=6.0)
    constant, _ = _rotated_clip(tmp_path, photo, 0, "cfr.mp4")
    with VideoReader(constant) as reader:
        list(reader)
        assert not reader.variable_frame_rate


def test_live_file_source_turns_frames_and_stamps_real_times(tmp_path, photo):
    from realtime.capture import VideoFileSource

    path, frames = _rotated_clip(tmp_path, photo, 90, "phone.mp4", VFR_MS)
    src = VideoFileSource(path, pace=False)
    src.start()
    got = []
    try:
        while len(got) < len(VFR_MS):
            frame = src.read(timeout=5.0)
            if frame is None:
                break
            got.append(frame)
    finally:
        src.stop()
    assert len(got) == len(VFR_MS)
    assert got[0].image.shape[:2] == (frames[0].shape[1], frames[0].shape[0])  # portrait
    assert [round(f.source_time * 1000) for f in got] == VFR_MS
    assert src.stats()["corrupt"] == 0


def test_live_image_folder_turns_photos_upright(tmp_path, photo):
    from realtime.capture import ImageFolderSource

    write_exif_jpeg(tmp_path / "a.jpg", stored_for(photo, 6), 6)
    src = ImageFolderSource(tmp_path, pace=False)
    src.start()
    try:
        frame = src.read(timeout=5.0)
    finally:
        src.stop()
    assert frame is not None and _close(frame.image, photo)


def test_results_and_replay_use_the_recorded_frame_times(tmp_path):
    from realtime.animation.take import load_take
    from realtime.replay import load_timeline
    from realtime.results import write_video_info
    from tests.takes import write_results
    from engines.synthetic import synthetic_take

    params = synthetic_take(len(VFR_MS))
    folder = write_results(tmp_path / "res", {0: params})
    write_video_info(folder, 17.0, len(VFR_MS), "vfr.mp4", {k + 1: t / 1000 for k, t in enumerate(VFR_MS)},
                     None, True)
    take = load_take(folder)
    times = [round(t * 1000) for t in take.persons[0].times]
    assert times == VFR_MS and abs(take.duration - 0.733) < 1e-9
    assert any("variable frame rate" in n for n in take.notes)
    grid = load_take(folder, fps=17.0)  # an explicit --fps places frames on its grid
    assert [round(t, 6) for t in grid.persons[0].times] == [round(k / 17.0, 6) for k in range(len(VFR_MS))]


def test_one_list_of_types_for_every_command(tmp_path):
    assert media_kind("clip.GIF") == "video" and media_kind("a.HEIC") == "image" and media_kind("notes.txt") is None
    check_video_path(tmp_path / "a.gif")
    with pytest.raises(VideoUnreadable, match="is an image"):
        check_video_path(tmp_path / "photo.jpg")
    with pytest.raises(VideoUnreadable, match="not a supported video type"):
        check_video_path(tmp_path / "notes.txt")
    from realtime.batch.inputs import expand_inputs

    (tmp_path / "d").mkdir()
    for name in ("a.jpg", "b.gif", "notes.txt", "raw.dng", ".hidden"):
        (tmp_path / "d" / name).write_bytes(b"x")
    inputs, problems = expand_inputs([tmp_path / "d"])
    assert sorted(m.path.name for m in inputs) == ["a.jpg", "b.gif"]
    assert sorted(p.path.split("/")[-1] for p in problems if p.not_read) == ["notes.txt", "raw.dng"]


def test_heic_photo_read_with_pillow_heif_or_named(tmp_path, photo, monkeypatch):
    path = tmp_path / "IMG_0002.heic"
    try:
        import pillow_heif
    except ImportError:
        path.write_bytes(b"\0\0\0\x18ftypheic")
        with pytest.raises(IOError, match="pillow-heif"):
            read_image(path)
        return
    from PIL import Image

    pillow_heif.register_heif_opener()
    Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)).save(path, quality=95)
    assert _close(read_image(path), photo, tol=6.0)
    import sys

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as on an install without the extra
    with pytest.raises(IOError, match="pillow-heif"):
        read_image(path)


@pytest.mark.slow
def test_mocap_video_and_image_on_phone_media(tmp_path, photo, media_dir, s32_ckpt, smplx_dir, capsys):
    from realtime.cli import main

    cap = cv2.VideoCapture(str(media_dir / "posetrack_1280x720.mp4"))
    frames = []
    while len(frames) < 5:
        ok, image = cap.read()
        assert ok
        frames.append(cv2.resize(image, (320, 180)))
    cap.release()
    times = [0, 40, 70, 160, 190]
    clip = set_rotation(write_clip(tmp_path / "IMG_0003.MOV", frames, times), 90)  # portrait, VFR
    model = ["--checkpoint", str(s32_ckpt), "--body-models", str(smplx_dir)]
    out = tmp_path / "vid"
    assert main(["video", str(clip), "--out", str(out), "--bbox", "20", "60", "140", "200", *model]) == 0
    stdout = capsys.readouterr().out
    assert "5 frame(s)" in stdout and "undecodable" not in stdout and "truncated" not in stdout
    info = json.loads((out / "video.json").read_text())
    assert info["orientation"].startswith("rotate 90 clockwise") and info["variable_frame_rate"] is True
    assert [round(t * 1000) for t in info["frame_times"]] == times
    assert json.loads((out / "run.json").read_text())["orientation"] == info["orientation"]
    shown = cv2.VideoCapture(str(out / "overlay.mp4"))
    ok, first = shown.read()
    assert ok and first.shape[:2] == (320, 180)  # portrait, the way players show the phone clip
    shown.release()
    import av

    with av.open(str(out / "overlay.mp4")) as played:  # with the source's own timing
        assert [round(float(f.time) * 1000) for f in played.decode(video=0)] == times
    assert cv2.imread(str(out / "overlay" / "00001.jpg")).shape[:2] == (320, 180)
    # the animation is placed at the real times: 5 samples over 0.19 s
    from realtime.animation.take import load_take

    take = load_take(out)
    assert [round(t * 1000) for t in next(iter(take.persons.values())).times] == times
    # the official behaviour on request: pixels as stored, nothing turned
    raw = tmp_path / "raw"
    assert main(["video", str(clip), "--out", str(raw), "--bbox", "20", "20", "200", "140", "--ignore-orientation",
                 "--no-overlay", *model]) == 0
    assert json.loads((raw / "video.json").read_text())["orientation"].startswith("not applied")

    photos = tmp_path / "photos"
    photos.mkdir()
    write_exif_jpeg(photos / "IMG_0004.jpg", stored_for(photo, 8), 8)
    (photos / "IMG_0004.AAE").write_text("<plist/>")  # the sidecar iPhones copy along: named, not read
    capsys.readouterr()
    out = tmp_path / "img"
    assert main(["image", str(photos), "--out", str(out), "--bbox", "10", "10", "100", "200", *model]) == 0
    stdout = capsys.readouterr().out
    assert "1 file(s) not read" in stdout and "IMG_0004.AAE" in stdout
    run = json.loads((out / "run.json").read_text())
    assert run["orientation"] == "exif"
    assert run["oriented"] == {str(photos / "IMG_0004.jpg"): "rotate 90 counter-clockwise"}
    assert run["not_read"] == [str(photos / "IMG_0004.AAE")]
    assert cv2.imread(str(out / "overlay" / "IMG_0004.jpg")).shape == photo.shape


def test_live_source_of_another_type_is_one_clear_line(tmp_path):
    from realtime.capture import CaptureError, open_source

    notes = tmp_path / "notes.txt"
    notes.write_text("not a video")
    with pytest.raises(CaptureError, match="not a supported video type"):
        open_source(str(notes))
    clip = write_clip(tmp_path / "clip.M4V", frames_from(np.full((60, 80, 3), 90, np.uint8), 3))  # case-blind
    assert type(open_source(str(clip))).__name__ == "VideoFileSource"


def test_batch_turns_inputs_like_mocap_video_unless_told_not_to(tmp_path, photo):
    from realtime.batch.options import BatchOptions
    from realtime.batch.stages import InputEnd, InputStart, PeopleChunk, track_and_predict

    clip, _ = _rotated_clip(tmp_path, photo, 90, "IMG_0005.MOV", VFR_MS[:5])
    for orientation, shape in ((True, (160, 96)), (False, (96, 160))):
        items = list(track_and_predict(clip, "video", lambda image, boxes: [], [[0, 0, 10, 10]],
                                       orientation=orientation))
        start, end = items[0], items[-1]
        assert isinstance(start, InputStart) and isinstance(end, InputEnd)
        assert start.orientation.startswith("rotate 90" if orientation else "not applied")
        frames = [f for item in items if isinstance(item, PeopleChunk) for f in item.frames]
        assert [f[1].shape[:2] for f in frames] == [shape] * 5
        assert [round(end.frame_times[n] * 1000) for n in sorted(end.frame_times)] == VFR_MS[:5]
        assert end.variable_frame_rate and end.undecodable == 0
    # the default keeps the identity of batches written before the option existed
    assert "orientation" not in BatchOptions("c").results_identity()
    assert BatchOptions("c", orientation=False).results_identity()["orientation"] is False
