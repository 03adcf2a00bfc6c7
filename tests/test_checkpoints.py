"""Official checkpoint layout: both namings, prefixes, ignored entries, strict errors, download."""
import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import torch

from engines import checkpoints as C
from engines.smplerx import SMPLerX


def _small_state(variant="s32"):
    return SMPLerX(variant).state_dict()


def _save(path, network, **extra):
    torch.save({"network": network, **extra}, str(path))
    return path


@pytest.mark.slow
def test_both_namings_load_identically(tmp_path, s32_net):
    new = C.write_random_checkpoint(tmp_path / "new.pth.tar", "s32", "new", seed=5)
    old = C.write_random_checkpoint(tmp_path / "old.pth.tar", "s32", "old", module_prefix=False, seed=5)
    a, b = C.load_network(new), C.load_network(old)
    assert a.variant.name == b.variant.name == "s32"
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        assert torch.equal(va, vb), ka
    raw = torch.load(str(old), weights_only=True)["network"]
    assert any(k.startswith("backbone.") for k in raw) and any(k.startswith("body_rotation_net.") for k in raw)


def test_smplx_layer_optimizer_epoch_ignored(tmp_path):
    extra = {"smplx_layer.shapedirs": torch.zeros(3, 3), "smplx_layer.faces_tensor": torch.zeros(2, 3)}
    p = C.write_random_checkpoint(tmp_path / "x.pth.tar", "s32", extra=extra)
    raw = torch.load(str(p), weights_only=True)
    assert "optimizer" in raw and "epoch" in raw and "module.smplx_layer.shapedirs" in raw["network"]
    assert C.load_network(p).variant.name == "s32"


def test_missing_unexpected_and_shape_errors_name_keys(tmp_path):
    state = {"module." + k: v for k, v in _small_state().items()}
    missing = dict(state)
    del missing["module.face_regressor.expr_out.0.weight"]
    with pytest.raises(C.CheckpointError, match=r"missing keys: face_regressor\.expr_out\.0\.weight"):
        C.load_network(_save(tmp_path / "m.pth.tar", missing))
    unexpected = dict(state, **{"module.extra_head.weight": torch.zeros(2)})
    with pytest.raises(C.CheckpointError, match=r"unexpected keys: extra_head\.weight"):
        C.load_network(_save(tmp_path / "u.pth.tar", unexpected))
    bad = dict(state)
    bad["module.body_regressor.shape_out.0.weight"] = torch.zeros(11, 384)
    with pytest.raises(C.CheckpointError, match=r"body_regressor\.shape_out\.0\.weight \(11, 384\) != \(10, 384\)"):
        C.load_network(_save(tmp_path / "s.pth.tar", bad))


def test_unreadable_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(C.CheckpointError, match="cannot read checkpoint"):
        C.load_network(junk)
    with pytest.raises(C.CheckpointError, match="not found"):
        C.load_network(tmp_path / "absent.pth.tar")
    other = tmp_path / "other.pth.tar"
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, str(other))
    with pytest.raises(C.CheckpointError, match="no network weights"):
        C.load_network(other)
    vit_only = tmp_path / "resnet.pth.tar"
    torch.save({"network": {"conv1.weight": torch.zeros(2)}}, str(vit_only))
    with pytest.raises(C.CheckpointError, match="pos_embed"):
        C.load_network(vit_only)


@pytest.mark.parametrize("variant", ["s32", "b32", "l32", "h32"])
def test_variant_detected_from_shapes(variant):
    with torch.device("meta"):
        state = SMPLerX(variant).state_dict()
    assert C.detect_variant(state).name == variant


def test_param_counts_match_official(variant_counts={"s32": 32008024, "b32": 102939928,
                                                     "l32": 326654872, "h32": 661827096}):
    for name, count in variant_counts.items():
        with torch.device("meta"):
            m = SMPLerX(name)
        assert sum(p.numel() for p in m.parameters()) == count
        assert len(m.state_dict()) == (223 if name in ("s32", "b32") else 367 if name == "l32" else 463)


def test_resolve_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path))
    with pytest.raises(C.CheckpointError, match="mocap weights download b32"):
        C.resolve_checkpoint("b32")
    with pytest.raises(C.CheckpointError, match="not found"):
        C.resolve_checkpoint(str(tmp_path / "nope.pth.tar"))
    with pytest.raises(C.CheckpointError, match="unknown checkpoint"):
        C.resolve_checkpoint("x99")
    target = tmp_path / "weights" / "smpler_x_s32.pth.tar"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert C.resolve_checkpoint("S32") == target


class _Hub(http.server.BaseHTTPRequestHandler):
    """A tiny stand-in for the HuggingFace resolve endpoint, with LFS headers and ranges."""

    files: dict = {}
    sha_override = None
    head_405 = False  # a mirror that does not answer HEAD: no size / SHA known up front

    def log_message(self, *a):
        pass

    def _lookup(self):
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        return self.files.get(name)

    def do_HEAD(self):
        data = self._lookup()
        if self.head_405:
            self.send_response(405)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Linked-Size", str(len(data)))
        self.send_header("X-Linked-Etag", '"%s"' % (self.sha_override or hashlib.sha256(data).hexdigest()))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        data = self._lookup()
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):  # like real servers / CDNs: an unsatisfiable range is a 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def hub(tmp_path, s32_ckpt, monkeypatch):
    _Hub.files = {"smpler_x_s32.pth.tar": Path(s32_ckpt).read_bytes()}
    _Hub.sha_override = None
    _Hub.head_405 = False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MOCAP_HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("MOCAP_CACHE_DIR", str(tmp_path / "cache"))
    yield _Hub
    server.shutdown()
    thread.join()


def test_download_resume_and_checks(hub, tmp_path):
    data = hub.files["smpler_x_s32.pth.tar"]
    wdir = tmp_path / "cache" / "weights"
    wdir.mkdir(parents=True)
    (wdir / "smpler_x_s32.pth.tar.part").write_bytes(data[: len(data) // 3])  # an interrupted earlier try
    path = C.download("s32", progress=False)
    assert path == wdir / "smpler_x_s32.pth.tar" and path.read_bytes() == data
    assert not (wdir / "smpler_x_s32.pth.tar.part").exists()
    assert C.resolve_checkpoint("s32") == path
    assert C.load_network(path).variant.name == "s32"


def test_download_rejects_corruption_and_missing_files(hub, tmp_path):
    hub.sha_override = "0" * 64
    with pytest.raises(C.CheckpointError, match="SHA-256 mismatch"):
        C.download("s32", progress=False)
    assert not (tmp_path / "cache" / "weights" / "smpler_x_s32.pth.tar").exists()
    with pytest.raises(Exception, match="404|cannot reach|failed"):
        C.download("b32", progress=False)
    with pytest.raises(C.CheckpointError, match="unknown model"):
        C.download("x1", progress=False)


@pytest.mark.parametrize("head_405", [False, True])
def test_download_finishes_a_complete_part_file(hub, tmp_path, head_405):
    """A run killed after the last byte (e.g. during the load check) leaves a complete .part;
    the next run must finish it, not fail on the server's 416 for an empty range."""
    hub.head_405 = head_405
    data = hub.files["smpler_x_s32.pth.tar"]
    wdir = tmp_path / "cache" / "weights"
    wdir.mkdir(parents=True)
    (wdir / "smpler_x_s32.pth.tar.part").write_bytes(data)
    path = C.download("s32", progress=False)
    assert path.read_bytes() == data and not (wdir / "smpler_x_s32.pth.tar.part").exists()


def test_download_drops_a_complete_but_corrupt_part_file(hub, tmp_path):
    """No SHA published: a full-size but corrupt .part fails the load check and is removed,
    so that the next run downloads afresh instead of failing the same way forever."""
    hub.sha_override = "not-a-sha256"
    data = hub.files["smpler_x_s32.pth.tar"]
    wdir = tmp_path / "cache" / "weights"
    wdir.mkdir(parents=True)
    part = wdir / "smpler_x_s32.pth.tar.part"
    part.write_bytes(b"\0" * len(data))
    with pytest.raises(C.CheckpointError):
        C.download("s32", progress=False)
    assert not part.exists()
    assert C.download("s32", progress=False).read_bytes() == data
