"""`mocap web` and `mocap live --viewer web` without a browser: the job line, the upload checks and
clean-up of the service, the posed-mesh GLB, the live page server over real HTTP on 127.0.0.1.
The browser and gradio_client tests are in test_web_browser.py."""
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.errors import UserError
from realtime.web.jobs import Busy, Job, JobLine

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ job line
def test_job_line_runs_one_at_a_time_says_how_many_are_ahead_and_refuses_when_full():
    line = JobLine(max_waiting=2)
    gate = threading.Event()
    running = []

    def work(job):
        running.append(job)
        assert len([j for j in running if not j.done.is_set()]) == 1  # one job at a time
        gate.wait(10)
        return len(running)

    first = line.submit(Job(work))
    assert first.started.wait(5)
    second, third = line.submit(Job(work)), line.submit(Job(work))
    assert (first.ahead(), second.ahead(), third.ahead()) == (0, 1, 2)
    with pytest.raises(Busy, match=r"busy: 3 job\(s\) ahead and the line is full"):
        line.submit(Job(work))
    second.stop.set()  # given up while waiting: it never runs
    gate.set()
    for job in (first, second, third):
        assert job.wait(10)
    assert first.result == 1 and third.result == 2 and second.result is None and not second.started.is_set()
    line.close()


def test_job_line_keeps_the_error_of_a_job_and_goes_on():
    line = JobLine(max_waiting=2)

    def bad(job):
        raise UserError("nope")

    failed = line.submit(Job(bad))
    ok = line.submit(Job(lambda job: 42))
    assert failed.wait(5) and ok.wait(5)
    assert isinstance(failed.error, UserError) and ok.result == 42
    line.close()


# ------------------------------------------------------------------------------------------ service
@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(root))
    return root


@pytest.fixture
def service(cache, s32_ckpt, smplx_dir):
    from realtime.web.service import WebService, WebSettings

    svc = WebService(WebSettings(checkpoint=str(s32_ckpt), body_models=str(smplx_dir), max_upload_mb=1.0,
                                 max_people=2))
    yield svc
    svc.close()


def _upload(service, src: Path, name: str) -> Path:
    """A file as Gradio stores an upload: in a folder of the server's root."""
    folder = service.root / "a1b2c3"
    folder.mkdir(exist_ok=True)
    dest = folder / name
    if isinstance(src, bytes):
        dest.write_bytes(src)
    else:
        shutil.copyfile(src, dest)
    return dest


def _error_of(job) -> str:
    assert job.wait(60)
    assert isinstance(job.error, UserError), job.error
    return str(job.error)


def test_service_works_only_inside_the_cache_and_removes_everything_at_close(cache, s32_ckpt, smplx_dir):
    from realtime.web.service import WebService, WebSettings

    svc = WebService(WebSettings(checkpoint=str(s32_ckpt), body_models=str(smplx_dir)))
    assert svc.root.parent == (cache / "web").resolve()
    svc.close()
    assert list((cache / "web").iterdir()) == []


def test_upload_checks_give_one_clear_line(service, tmp_path, media_dir):
    outside = tmp_path / "elsewhere.jpg"
    shutil.copyfile(media_dir / "coco_000785_skier.jpg", outside)
    with pytest.raises(UserError, match="was not uploaded to this server"):
        service.start_image("s", str(outside))  # a path from a request is never opened outside the server's folder
    with pytest.raises(UserError, match="was not uploaded to this server"):
        service.start_image("s", str(service.root / "a1b2c3" / ".." / ".." / "elsewhere.jpg"))
    with pytest.raises(UserError, match="no photo given"):
        service.start_image("s", None)
    big = _upload(service, b"\xff\xd8" + b"\0" * 1_500_000, "big.jpg")
    with pytest.raises(UserError, match=r"the photo is 2 MB, over this server's limit of 1 MB"):
        service.start_image("s", str(big))
    text = _upload(service, b"hello", "notes.txt")
    with pytest.raises(UserError, match=r"\.txt is not a photo type"):
        service.start_image("s", str(text))
    with pytest.raises(UserError, match="people per frame must be 1-2"):
        service.start_image("s", str(text), max_people=5)
    with pytest.raises(UserError, match="unknown model"):
        service.start_image("s", str(text), model="x99")


def test_a_renamed_non_image_and_an_unreadable_video_are_clear_errors(service):
    fake = _upload(service, b"this is not a photo at all" * 100, "holiday.jpg")
    assert "not a photo this tool can read" in _error_of(service.start_image("s", str(fake)))
    clip = _upload(service, b"\0\1\2garbage" * 5000, "clip.mp4")
    assert "not a video this tool can read" in _error_of(service.start_video("s", str(clip)))
    assert service._model is None  # both refused before the model was loaded


def test_a_video_without_one_decodable_frame_is_a_clear_error(service, tmp_path, media_dir):
    """A real MP4 cut to its header and first bytes: the container opens, no frame decodes."""
    data = (media_dir / "street_walk_960x540.mp4").read_bytes()
    clip = _upload(service, data[:4096], "cut.mp4")
    message = _error_of(service.start_video("s", str(clip)))
    assert "not a video this tool can read" in message or "no frame of the uploaded video" in message


def test_photo_job_official_zip_scene_glb_and_session_cleanup(service, media_dir):
    import zipfile

    import pygltflib

    photo = _upload(service, media_dir / "coco_000785_skier.jpg", "skier.jpg")
    job = service.start_image("tab-1", str(photo), max_people=1)
    assert job.wait(300) and job.error is None, job.error
    r = job.result
    assert r.people and r.people[0][0] == 0 and len(r.people[0]) == 6
    names = zipfile.ZipFile(r.results_zip).namelist()
    assert {"results/smplx/photo_0.npz", "results/meta/photo_0.json", "results/overlay/photo.jpg",
            "results/run.json"} <= set(names)
    overlay = cv2.imread(str(r.overlay))
    assert overlay.shape == cv2.imread(str(media_dir / "coco_000785_skier.jpg")).shape
    glb = pygltflib.GLTF2().load(str(r.scene_glb))
    assert len(glb.meshes) == 1 and glb.accessors[glb.meshes[0].primitives[0].attributes.POSITION].count == 10475
    assert r.scene_glb.is_relative_to(service.root) and r.results_zip.is_relative_to(service.root)
    folder = r.results_zip.parent.parent
    assert folder.is_dir() and photo.exists()
    service.end_session("tab-1")  # the browser tab closed: its copies and results go
    assert not folder.exists() and not any((service.root / "sessions").iterdir())
    assert photo.exists()  # Gradio's upload (content-addressed, maybe another tab's too): its delete_cache removes it


def test_ending_a_session_stops_its_waiting_job(service, media_dir):
    gate = threading.Event()
    blocker = service.line.submit(Job(lambda job: gate.wait(30)))
    photo = _upload(service, media_dir / "coco_000785_skier.jpg", "skier.jpg")
    job = service.start_image("tab-2", str(photo))
    assert job.ahead() == 1
    service.end_session("tab-2")
    gate.set()
    assert blocker.wait(10) and job.wait(10)
    assert not job.started.is_set()  # never ran
    assert not any((service.root / "sessions").iterdir())


def test_model_choices_list_the_cached_checkpoints(cache, tmp_path):
    from engines.checkpoints import FILES
    from realtime.web.service import checkpoint_choices

    weights = cache / "weights"
    weights.mkdir(parents=True)
    (weights / FILES["b32"]).write_bytes(b"x")
    (weights / FILES["l32"]).write_bytes(b"x")
    assert list(checkpoint_choices("s32")) == ["s32", "b32", "l32"]
    mine = tmp_path / "mine.pth.tar"
    mine.write_bytes(b"x")
    assert checkpoint_choices(str(mine)) == {"mine.pth.tar": str(mine), "b32": "b32", "l32": "l32"}


def test_fbx_missing_is_said_on_the_page(monkeypatch):
    import importlib.util

    from realtime.web import service as svc

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else real(name, *a))
    assert svc.fbx_available() == svc.FBX_MISSING and "blender extra" in svc.FBX_MISSING


# ---------------------------------------------------------------------------------------- posed GLB
def test_posed_glb_puts_camera_space_meshes_in_gltf_axes(tmp_path, body_model):
    import pygltflib

    from realtime.animation.gltf import build_posed_glb

    verts = np.random.default_rng(0).normal(size=(10475, 3)) * 0.3 + [0.0, 0.0, 3.0]  # 3 m in front
    data = build_posed_glb([verts, verts + [1.0, 0.0, 0.0]], body_model.faces, colors=[(1, 0, 0), (0, 1, 0)])
    path = tmp_path / "people.glb"
    path.write_bytes(data)
    doc = pygltflib.GLTF2().load(str(path))
    assert len(doc.nodes) == 2 and len(doc.materials) == 2
    acc = doc.accessors[doc.meshes[0].primitives[0].attributes.POSITION]
    view = doc.bufferViews[acc.bufferView]
    got = np.frombuffer(doc.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength], np.float32)
    np.testing.assert_allclose(got.reshape(-1, 3), (verts * [1, -1, -1]).astype(np.float32))
    assert acc.max[2] < 0  # in front of the camera -> along -z, where glTF viewers look
    _validate(path)


def _validate(path: Path) -> None:
    """The Khronos glTF validator's verdict (skipped without node and gltf-validator, failed in CI)."""
    import os
    import subprocess

    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "gltf-validator").is_dir():
        if os.environ.get("CI"):
            pytest.fail("the Khronos glTF validator is missing (CI must have it: .ci/run installs it)")
        pytest.skip("the Khronos glTF validator is not installed (npm install --no-save gltf-validator)")
    res = subprocess.run([node, str(REPO / "tests" / "validate_gltf.mjs"), str(path)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]


# -------------------------------------------------------------------------------------- live page
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(frame_id: int, value: int):
    from engines.types import FrameResult

    image = np.full((120, 160, 3), value, np.uint8)
    return FrameResult(frame_id=frame_id, t_capture_ns=0, image_size=(160, 120), persons=[], image=image)


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def test_live_page_serves_newest_frames_and_numbers_to_many_browsers():
    from realtime.web.live_page import LivePage

    page = LivePage(None, "127.0.0.1", _free_port()).start()
    try:
        status, headers, html = _get(page.url)
        assert status == 200 and b"/live.js" in html and b"http" not in html.replace(b"http-equiv", b"")
        for asset in ("live.js", "live.css"):
            body = _get(page.url + asset)[2]
            assert b"http://" not in body and b"https://" not in body  # nothing from the internet
        for bad in ("../realtime/web/static/live.html", "static/live.html", "%2e%2e/etc/passwd", "live.html"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(page.url + bad)
            assert err.value.code == 404
        page.publish(_result(1, 40), {"fps_in": 30.0})
        results = []

        def viewer():
            status, headers, body = _get(page.url + "frame.jpg?after=0")
            results.append((int(headers["X-Frame-Seq"]), cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)))

        viewers = [threading.Thread(target=viewer) for _ in range(8)]
        for t in viewers:
            t.start()
        for t in viewers:
            t.join(15)
        assert len(results) == 8 and all(seq == 1 and abs(int(img.mean()) - 40) <= 2 for seq, img in results)
        # a newer frame wakes a waiting browser
        later = []
        waiter = threading.Thread(target=lambda: later.append(_get(page.url + "frame.jpg?after=1")))
        waiter.start()
        time.sleep(0.3)
        page.publish(_result(2, 200), {"fps_in": 29.0})
        waiter.join(10)
        assert later and later[0][1]["X-Frame-Seq"] == "2"
        assert abs(int(cv2.imdecode(np.frombuffer(later[0][2], np.uint8), cv2.IMREAD_COLOR).mean()) - 200) <= 2
        stats = json.loads(_get(page.url + "stats.json")[2])
        assert stats["frame_id"] == 2 and stats["fps_in"] == 29.0 and stats["people"] == 0
    finally:
        page.close()


@pytest.mark.slow
def test_a_stalled_browser_never_slows_publishing():
    """A client that opens connections and never reads: publish() still returns at once, every time."""
    from realtime.web.live_page import LivePage

    page = LivePage(None, "127.0.0.1", _free_port()).start()
    stalled = []
    try:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", page.port))
            s.sendall(b"GET /frame.jpg?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads the answer
            stalled.append(s)
        for k in range(200):  # would hang here if publishing waited for a browser
            page.publish(_result(k, k % 255))
        assert page.slot.dropped > 0  # older results were replaced, not queued
        deadline = time.monotonic() + 10
        while page.stats().get("frame_id") != 199 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert page.stats()["frame_id"] == 199  # the newest one reached the page
    finally:
        for s in stalled:
            s.close()
        page.close()


def test_live_page_port_in_use_is_a_clear_error():
    from realtime.web.live_page import LivePage

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(UserError, match=r"cannot serve the live page on 127.0.0.1:\d+.*--web-port"):
            LivePage(None, "127.0.0.1", s.getsockname()[1]).start()


def test_live_numbers_never_show_nan():
    from realtime.web.live_page import live_numbers

    n = live_numbers({"in_fps": 30.0, "out_fps": float("nan"), "latency_ms_median": 12.5, "dropped": 3,
                      "frames_out": 9})
    assert n == {"fps_in": 30.0, "fps_out": None, "latency_ms": 12.5, "latency_p95_ms": None, "dropped": 3,
                 "frames": 9}


def test_mocap_web_without_its_model_says_so_before_serving(cache, smplx_dir, tmp_path, capsys):
    from realtime.cli import main

    assert main(["web", "--checkpoint", "b32", "--body-models", str(smplx_dir), "--port", "7999"]) == 2
    assert "checkpoint 'b32' is not downloaded yet" in capsys.readouterr().err
    assert main(["web", "--checkpoint", "s32", "--body-models", str(tmp_path / "none"), "--port", "7999"]) == 2
    assert not (cache / "web").exists() or not any((cache / "web").iterdir())


def test_mocap_web_checks_its_options(capsys):
    from realtime.cli import main

    assert main(["web", "--port", "70000"]) == 2
    assert "--port 70000 is outside 1-65535" in capsys.readouterr().err
    assert main(["web", "--examples", "/no/such/folder"]) == 2
    assert "--examples /no/such/folder: no such folder" in capsys.readouterr().err
