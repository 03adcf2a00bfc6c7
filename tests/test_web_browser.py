"""`mocap web` and `mocap live --viewer web` end to end: real servers (child processes on 127.0.0.1),
gradio_client calls of /predict_image and /predict_video, and pages in real headless Chromium
(Debian's chromium and chromedriver, driven by Selenium pointed at them: nothing is downloaded).

Random-weight checkpoint and synthetic SMPL-X: the meshes are meaningless; the tests check that
the page shows what the tool made (overlay, 3-D view, downloads), not what the mesh looks like.
Screenshots are kept in the test's temporary folder (printed on failure), or in
$MOCAP_TEST_ARTEFACTS when it is set.
"""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.slow


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must have it: .ci/run installs it)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A ``mocap`` command in a child process, its stderr in a log file."""

    def __init__(self, args, env, cwd: Path, log: Path, ready: str, timeout: float = 240.0):
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "realtime.cli", *args], cwd=cwd, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(log, "w"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while ready not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"server did not start: {log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    env = os.environ.get("MOCAP_TEST_ARTEFACTS")
    folder = Path(env) if env else tmp_path_factory.mktemp("web_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def web_ckpt(tmp_path_factory):
    """Random S32 weights whose camera head centres the body in its box (overlays show a mesh)."""
    import torch

    from engines.checkpoints import write_random_checkpoint

    extra = {"body_regressor.cam_out.0.weight": torch.zeros(3, 384),
             "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    return write_random_checkpoint(tmp_path_factory.mktemp("web_ckpt") / "centred.pth.tar", "s32", seed=2, extra=extra)


@pytest.fixture(scope="module")
def web(tmp_path_factory, web_ckpt, smplx_dir, media_dir):
    """``mocap web`` with a cache and a working folder of its own; after the tests, stopped, and
    nothing of it is left anywhere."""
    pytest.importorskip("gradio", reason="the [web] extra is not installed")
    root = tmp_path_factory.mktemp("web")
    cache, cwd = root / "cache", root / "cwd"
    cwd.mkdir()
    env = {**os.environ, "MOCAP_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    port = _free_port()
    server = Server(["web", "--port", str(port), "--checkpoint", str(web_ckpt), "--body-models", str(smplx_dir),
                     "--max-frames", "3", "--max-people", "2", "--max-upload-mb", "5", "--max-waiting", "1",
                     "--examples", str(media_dir)], env, cwd, root / "web.log", "serving on")
    info = {"url": f"http://127.0.0.1:{port}/", "cache": cache, "cwd": cwd, "log": root / "web.log"}
    yield info
    assert server.stop() == 0, (root / "web.log").read_text()[-3000:]
    assert "Traceback" not in (root / "web.log").read_text(), (root / "web.log").read_text()[-3000:]
    # nothing left behind: the server's folder in the cache is gone, and nothing was written elsewhere
    assert list((cache / "web").iterdir()) == []
    assert list(cwd.iterdir()) == []


@pytest.fixture(scope="module")
def client(web):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(web["url"], verbose=False, download_files=str(web["cwd"].parent / "client"))


def _validate_glb(path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "gltf-validator").is_dir():
        _missing("the Khronos glTF validator is not installed (npm install --no-save gltf-validator)")
    res = subprocess.run([node, str(REPO / "tests" / "validate_gltf.mjs"), str(path)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    issues = json.loads(res.stdout)["issues"]
    assert issues["numErrors"] == 0, issues["messages"][:5]


def _check_results_zip(path: Path, stems) -> None:
    names = set(zipfile.ZipFile(path).namelist())
    assert "results/run.json" in names
    for stem in stems:
        assert f"results/smplx/{stem}.npz" in names and f"results/meta/{stem}.json" in names, sorted(names)[:20]
    with zipfile.ZipFile(path) as zf:
        npz = np.load(io.BytesIO(zf.read(f"results/smplx/{stems[0]}.npz")))
        assert npz["body_pose"].shape == (21, 3) and npz["betas"].shape == (1, 10)
        assert json.loads(zf.read("results/run.json"))["complete"] is True


# ------------------------------------------------------------------------------------- gradio_client
def test_api_predict_image_returns_the_page_files(client, media_dir):
    from gradio_client import handle_file

    overlay, scene, people, results_zip, glb, status = client.predict(
        handle_file(str(media_dir / "coco_000785_skier.jpg")), api_name="/predict_image")
    photo = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    shown = cv2.imread(overlay)
    assert shown.shape == photo.shape and np.abs(shown.astype(int) - photo).max() > 50  # something drawn on it
    assert people["headers"][:2] == ["id", "x"] and len(people["data"]) >= 1
    assert "person(s) found" in status
    _check_results_zip(Path(results_zip), ["photo_0"])
    assert Path(glb).read_bytes() == Path(scene).read_bytes()
    _validate_glb(Path(glb))


def test_api_predict_video_returns_the_page_files(client, media_dir):
    from gradio_client import handle_file

    overlay, scene, people, results_zip, files, status = client.predict(
        handle_file(str(media_dir / "street_walk_960x540.mp4")), api_name="/predict_video")
    cap = cv2.VideoCapture(overlay)
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    assert ok and first.shape == (540, 960, 3) and frames == 3  # --max-frames 3
    ids = [row[0] for row in people["data"]]
    assert ids and "3 frame(s)" in status
    _check_results_zip(Path(results_zip), [f"00001_{ids[0]}"])
    names = sorted(Path(f).name for f in files)
    expected = ["npz", "bvh", "glb"] + (["fbx"] if _has_bpy() else [])
    assert names == sorted(f"person_{pid}.{ext}" for pid in ids for ext in expected)
    for f in files:
        assert Path(f).stat().st_size > 1000
        if f.endswith(".glb"):
            _validate_glb(Path(f))
    assert Path(scene).name == f"person_{ids[0]}.glb"


def _has_bpy() -> bool:
    import importlib.util

    return importlib.util.find_spec("bpy") is not None


def test_api_bad_inputs_get_one_clear_line_and_the_server_keeps_serving(client, media_dir, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"%PDF-1.4 this is not a photo" * 50)
    with pytest.raises(AppError, match="not a photo this tool can read"):
        client.predict(handle_file(str(fake)), api_name="/predict_image")
    broken = tmp_path / "clip.mp4"
    broken.write_bytes((media_dir / "street_walk_960x540.mp4").read_bytes()[:3000])
    with pytest.raises(AppError, match="not a video this tool can read|no frame of the uploaded video"):
        client.predict(handle_file(str(broken)), api_name="/predict_video")
    nobody = tmp_path / "wall.png"
    cv2.imwrite(str(nobody), np.full((360, 480, 3), 128, np.uint8))
    overlay, scene, people, results_zip, glb, status = client.predict(handle_file(str(nobody)),
                                                                      api_name="/predict_image")
    assert "No person found" in status and people["data"] in ([], [[]]) and glb is None
    assert "results/run.json" in zipfile.ZipFile(results_zip).namelist()
    big = tmp_path / "big.jpg"  # over --max-upload-mb 5
    big.write_bytes(b"\xff\xd8\xff" + os.urandom(6_000_000))
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(big)), api_name="/predict_image")
    assert "size" in str(err.value).lower() or "large" in str(err.value).lower() or "413" in str(err.value)
    # still serving
    out = client.predict(handle_file(str(media_dir / "mpii_004645041.jpg")), api_name="/predict_image")
    assert "person(s) found" in out[-1]


def test_api_two_users_at_once_one_waits_with_a_clear_line_and_a_third_is_told_busy(web, media_dir):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    first, second, third = (Client(web["url"], verbose=False, download_files=str(web["cwd"].parent / f"c{k}"))
                            for k in range(3))
    long_job = first.submit(handle_file(str(media_dir / "posetrack_1280x720.mp4")), api_name="/predict_video")
    time.sleep(3)
    waiting = second.submit(handle_file(str(media_dir / "astronaut.png")), api_name="/predict_image")
    seen = []
    deadline = time.monotonic() + 60
    while not any("Busy: 1 job(s) ahead" in str(o[-1]) for o in seen) and time.monotonic() < deadline:
        seen = waiting.outputs()
        time.sleep(0.5)
    assert any("Busy: 1 job(s) ahead of yours" in str(o[-1]) for o in seen), seen
    with pytest.raises(AppError, match=r"busy: 2 job\(s\) ahead and the line is full"):
        third.predict(handle_file(str(media_dir / "astronaut.png")), api_name="/predict_image")
    assert "frame(s)" in long_job.result(timeout=600)[-1]
    assert "person(s) found" in waiting.result(timeout=600)[-1]


# ---------------------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        _missing("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # never Selenium Manager's download
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1900",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--disable-gpu-sandbox"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _element_pixels(element, save: Path) -> np.ndarray:
    png = element.screenshot_as_png
    save.write_bytes(png)
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def _download(url: str, dest: Path) -> Path:
    with urllib.request.urlopen(url, timeout=60) as r:
        dest.write_bytes(r.read())
    return dest


def _links(driver, selector: str):
    from selenium.webdriver.common.by import By

    return [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, f"{selector} a[href]")
            if "/file=" in (a.get_attribute("href") or "")]


def _canvas_drawn(driver, element_id: str, artefacts: Path, name: str) -> np.ndarray:
    from selenium.webdriver.common.by import By

    canvas = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, f"#{element_id} canvas"), 120, f"{element_id} canvas")[0]
    time.sleep(3)  # the model loads and the first frames render
    pixels = _element_pixels(canvas, artefacts / name)
    return pixels


def test_page_photo_overlay_3d_view_and_downloads(web, browser, media_dir, artefacts, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(web["url"])
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#photo-input input[type=file]"), 60, "the photo input")
    browser.find_element(By.CSS_SELECTOR, "#photo-input input[type=file]").send_keys(
        str(media_dir / "coco_000785_skier.jpg"))
    time.sleep(1)
    browser.find_element(By.ID, "photo-run").click()
    img = _wait(lambda: [i for i in browser.find_elements(By.CSS_SELECTOR, "#photo-overlay img")
                         if "/file=" in (i.get_attribute("src") or "")], 300, "the overlay")[0]
    _wait(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img), 30,
          "the overlay image to load")
    assert "person(s) found" in browser.find_element(By.ID, "photo-status").text
    shot = _element_pixels(img, artefacts / "web_photo_overlay.png")
    assert shot.std() > 20  # a photo, not a blank box
    canvas = _canvas_drawn(browser, "photo-3d", artefacts, "web_photo_3d.png")
    background = np.array([0.17, 0.15, 0.15]) * 255  # the clear colour (BGR)
    drawn = np.abs(canvas.astype(float) - background).sum(axis=2) > 60
    assert drawn.mean() > 0.005, "the 3-D view shows no mesh"
    browser.save_screenshot(str(artefacts / "web_photo_page.png"))
    links = _links(browser, "#photo-zip") + _links(browser, "#photo-glb")
    zips = [u for u in links if u.endswith(".zip")]
    glbs = [u for u in links if u.endswith(".glb")]
    assert zips and glbs, links
    results = _download(zips[0], tmp_path / "results.zip")
    _check_results_zip(results, ["photo_0"])
    _validate_glb(_download(glbs[0], tmp_path / "people.glb"))
    # the people table shows the box written in the results
    x = json.loads(zipfile.ZipFile(results).read("results/meta/photo_0.json"))["bbox_detector"][0]
    table = browser.find_element(By.ID, "photo-people").text
    assert "score" in table and f"{round(x, 1):g}" in table, table


def test_page_video_overlay_3d_view_and_animation_downloads(web, browser, media_dir, artefacts, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(web["url"])
    tab = _wait(lambda: [b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Video"],
                60, "the Video tab")[0]
    tab.click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#video-input input[type=file]"), 30, "the clip input")
    browser.find_element(By.CSS_SELECTOR, "#video-input input[type=file]").send_keys(
        str(media_dir / "street_walk_960x540.mp4"))
    time.sleep(2)
    browser.find_element(By.ID, "video-run").click()
    video = _wait(lambda: [v for v in browser.find_elements(By.CSS_SELECTOR, "#video-overlay video")
                           if "/file=" in (v.get_attribute("src") or "")], 600, "the overlay video")[0]
    assert "overlay.mp4" in video.get_attribute("src")
    assert "frame(s)" in browser.find_element(By.ID, "video-status").text
    canvas = _canvas_drawn(browser, "video-3d", artefacts, "web_video_3d.png")
    background = np.array([0.17, 0.15, 0.15]) * 255
    assert (np.abs(canvas.astype(float) - background).sum(axis=2) > 60).mean() > 0.005, "the 3-D view is empty"
    browser.save_screenshot(str(artefacts / "web_video_page.png"))
    files = _links(browser, "#video-files")
    kinds = {Path(u).suffix for u in files}
    assert {".npz", ".bvh", ".glb"} <= kinds, files
    if _has_bpy():
        assert ".fbx" in kinds
    else:
        assert "blender extra" in browser.find_element(By.ID, "video-fbx").text
    _validate_glb(_download(next(u for u in files if u.endswith(".glb")), tmp_path / "person.glb"))
    _check_results_zip(_download(_links(browser, "#video-zip")[0], tmp_path / "results.zip"),
                       ["00001_" + Path(next(u for u in files if u.endswith(".glb"))).stem.split("_")[-1]])


def test_live_page_in_chromium_shows_frames_that_change_and_numbers_that_update(
        tmp_path, browser, web_ckpt, smplx_dir, media_dir, artefacts):
    from selenium.webdriver.common.by import By

    port = _free_port()
    env = {**os.environ, "MOCAP_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    live = Server(["live", "--source", str(media_dir / "street_walk_960x540.mp4"), "--loop", "--viewer", "web",
                   "--web-port", str(port), "--osc", "none", "--zmq", "none", "--engine", "torch",
                   "--checkpoint", str(web_ckpt), "--body-models", str(smplx_dir), "--duration", "240"],
                  env, tmp_path, tmp_path / "live.log", "live page on")
    try:
        assert f"live page on http://127.0.0.1:{port}/" in (tmp_path / "live.log").read_text()
        browser.get(f"http://127.0.0.1:{port}/")
        img = browser.find_element(By.ID, "frame")
        _wait(lambda: browser.execute_script("return arguments[0].naturalWidth", img), 180, "the first frame")
        first_id = _wait(lambda: browser.find_element(By.ID, "frame_id").text.strip("-"), 30, "the numbers")
        a = _element_pixels(img, artefacts / "web_live_1.png")
        _wait(lambda: browser.find_element(By.ID, "frame_id").text not in ("-", first_id), 120, "a newer frame")
        time.sleep(1)
        b = _element_pixels(img, artefacts / "web_live_2.png")
        assert a.shape == b.shape and a.std() > 20 and np.abs(a.astype(int) - b).mean() > 1, "the frame did not change"
        assert float(browser.find_element(By.ID, "fps_in").text) > 0
        assert browser.find_element(By.ID, "state").text == "live"
        browser.save_screenshot(str(artefacts / "web_live_page.png"))
        # a second browser (a plain HTTP client) sees the same session without disturbing the first
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=10).read())
        assert stats["frame_id"] >= int(first_id) and stats["size"] == [960, 540]
    finally:
        assert live.stop() == 0, (tmp_path / "live.log").read_text()[-3000:]


def test_page_closed_mid_job_stops_it_and_leaves_nothing(web, browser, media_dir):
    from selenium.webdriver.common.by import By

    sessions = next((web["cache"] / "web").iterdir()) / "sessions"
    before = set(sessions.iterdir())
    browser.get(web["url"])
    tab = _wait(lambda: [b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text == "Video"],
                60, "the Video tab")[0]
    tab.click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#video-input input[type=file]"), 30, "the clip input")
    browser.find_element(By.CSS_SELECTOR, "#video-input input[type=file]").send_keys(
        str(media_dir / "posetrack_1280x720.mp4"))
    time.sleep(2)
    browser.find_element(By.ID, "video-run").click()
    mine = _wait(lambda: set(sessions.iterdir()) - before, 60, "the job's session folder")
    browser.get("about:blank")  # the tab goes away mid-job
    _wait(lambda: not any(p.exists() for p in mine), 180, "the session's files to be removed")
    with urllib.request.urlopen(web["url"], timeout=30) as r:  # and the server keeps serving
        assert r.status == 200
