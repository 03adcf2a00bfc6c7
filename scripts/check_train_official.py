"""Step-0 losses of `mocap train` against the official SMPLer-X code on the same first batch.

Runs the official training-mode forward (``main/SMPLer_X.py`` Model, ``common/nets/*``,
``data/humandata.py`` with ``cfg.no_aug``, ``data_strategy`` unset) from a checkout of the official
repository on the CPU, and ``mocap train --no-augment --no-shuffle --steps 1`` on the same HumanData
file, and prints the relative difference of every loss term.

What stands in for parts of the official environment that cannot be installed here (mmcv, mmpose,
torchgeometry, CUDA): the ViT encoder is this project's (bit-exact with the official one, see
tests/test_model.py) and is called by the official Model; mmcv's RoIAlign is engines/roi_align.py
(checked against mmcv's kernel); torchgeometry's rotation_matrix_to_angle_axis is the same maths in
engines/geometry.py; ``.cuda()`` is a no-op; the male/female SMPL-X layers are the neutral one (the
official humandata path uses the neutral model). Everything else (heads, loss terms, target
transforms, data loading, augmentation, boxes) is the official code, imported from OFFICIAL.

    python scripts/check_train_official.py --official /path/to/SMPLer-X --data annot.npz:images/ \
        --init smpler_x_s32.pth.tar --body-models ~/body_models --batch-size 4

Avoid --batch-size 3: the official rot6d conversion's ``torch.cross`` without ``dim`` crosses over
the batch axis when the batch has 3 samples.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _official_cfg(variant: str, human_model_path: str):
    cfg = types.SimpleNamespace()
    ns: dict = {}
    exec(Path(OFFICIAL / "main" / "config" / f"config_smpler_x_{variant}.py").read_text(), {"os": __import__("os"),
         "osp": __import__("os.path")}, ns)
    cfg.__dict__.update({k: v for k, v in ns.items() if not k.startswith("_") and not isinstance(v, types.ModuleType)})
    cfg.no_aug = True
    cfg.data_strategy = None
    cfg.human_model_path = human_model_path
    cfg.testset = "EHF"
    return cfg


def _stub_environment(cfg, smplx_npz: Path, tmp: Path):
    import smplx as pip_smplx

    from engines import geometry as G
    from engines.roi_align import roi_align as our_roi_align

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    _module("config", cfg=cfg)
    _module("mmcv", Config=object)
    _module("mmcv.ops")
    _module("mmcv.ops.roi_align", roi_align=lambda feat, rois, out, scale, sampling_ratio=0, pool_mode="avg",
            aligned=False: our_roi_align(feat, rois, out[0] if isinstance(out, tuple) else out, scale))
    _module("mmcv.runner", get_dist_info=lambda: (0, 1))
    _module("mmpose")
    _module("mmpose.models", build_posenet=None)
    _module("plyfile", PlyData=None, PlyElement=None)
    _module("pycocotools")
    _module("pycocotools.coco", COCO=None)
    _module("torchgeometry", rotation_matrix_to_angle_axis=lambda m: G._quat_wxyz_to_axis_angle(
        G._rotmat_to_quat_wxyz(m[:, :, :3])))

    # the official SMPLX class, run against a model folder with the files it opens
    root = Path(cfg.human_model_path) / "smplx"
    root.mkdir(parents=True, exist_ok=True)
    for g in ("NEUTRAL", "MALE", "FEMALE"):
        dst = root / f"SMPLX_{g}.npz"
        if not dst.exists():
            dst.symlink_to(smplx_npz.resolve())
    with open(root / "SMPLX_to_J14.pkl", "wb") as fh:
        pickle.dump(np.zeros((14, 10475), np.float32), fh)
    with open(root / "MANO_SMPLX_vertex_ids.pkl", "wb") as fh:
        pickle.dump({"left_hand": np.arange(778), "right_hand": np.arange(778, 1556)}, fh)
    np.save(root / "SMPL-X__FLAME_vertex_ids.npy", np.arange(5023))

    src = (OFFICIAL / "common" / "utils" / "human_models.py").read_text()
    src = src.split("class SMPL(object)")[0]  # the SMPLX class only (SMPL/MANO model files are not needed)
    src = src.replace("from utils.smplx import smplx", "")
    hm = _module("utils.human_models")
    hm.__dict__.update({"smplx": pip_smplx, "cfg": cfg})
    exec(compile(src, str(OFFICIAL / "common/utils/human_models.py"), "exec"), hm.__dict__)
    hm.smpl_x = hm.SMPLX()
    hm.smpl = None
    sys.path[:0] = [str(OFFICIAL / "common"), str(OFFICIAL / "data"), str(OFFICIAL / "main")]
    import utils  # noqa: F401  (the official package, so that utils.human_models resolves to the module above)

    sys.modules["utils"].human_models = hm


def official_losses(args, cfg):
    from humandata import HumanDataset
    from SMPLer_X import Model
    from nets.smpler_x import BodyRotationNet, BoxNet, FaceRegressor, HandRoI, HandRotationNet, PositionNet
    from utils.human_models import smpl_x

    from engines.checkpoints import load_network

    annot, root = args.data.split(".npz:")

    class UserData(HumanDataset):
        def __init__(self):
            super().__init__(lambda img: torch.from_numpy(img.transpose(2, 0, 1).copy()), "train")
            self.img_dir, self.annot_path, self.cam_param, self.img_shape = root, annot + ".npz", {}, None
            self.datalist = self.load_data()

    ds = UserData()
    batch = torch.utils.data.default_collate([ds[i] for i in range(args.batch_size)])
    ours = load_network(args.init)
    d = cfg.feat_dim
    class Encoder(torch.nn.Module):  # the official ViT returns a contiguous feature map
        def __init__(self, enc):
            super().__init__()
            self.enc = enc

        def forward(self, x):
            feat, tokens = self.enc(x)
            return feat.contiguous(), tokens

    model = Model(Encoder(ours.encoder), PositionNet("body", feat_dim=d), BodyRotationNet(feat_dim=d), BoxNet(feat_dim=d),
                  PositionNet("hand", feat_dim=d), HandRoI(feat_dim=d, upscale=cfg.upscale),
                  HandRotationNet("hand", feat_dim=d), FaceRegressor(feat_dim=d))
    state = {("encoder.enc." + k[len("encoder."):]) if k.startswith("encoder.") else k: v
             for k, v in ours.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("smplx_layer.") for k in missing), (missing, unexpected)
    model.train()
    inputs, targets, meta = batch
    with torch.no_grad():
        loss = model(inputs, targets, meta, "train")
    return {k: float(v.mean()) for k, v in loss.items()}, len(ds)


def our_losses(args, tmp: Path):
    from realtime.cli import main

    log = tmp / "log.jsonl"
    code = main(["train", "--config", args.config, "--init", args.init, "--data", args.data, "--out", str(tmp / "run"),
                 "--steps", "1", "--batch-size", str(args.batch_size), "--no-augment", "--no-shuffle", "--seed", "0",
                 "--workers", "0", "--log-json", str(log)] + (["--body-models", args.body_models] if args.body_models else []))
    assert code == 0, code
    return json.loads(log.read_text().splitlines()[0])["loss"]


def main() -> int:
    global OFFICIAL
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", type=Path, required=True, help="a checkout of caizhongang/SMPLer-X")
    p.add_argument("--data", required=True, help="ANNOT.npz:IMAGE_ROOT")
    p.add_argument("--init", required=True, help="official-layout checkpoint")
    p.add_argument("--config", default="s32", choices=["s32", "b32", "l32", "h32"])
    p.add_argument("--body-models", default=None, help="folder with smplx/SMPLX_NEUTRAL.npz")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = p.parse_args()
    OFFICIAL = args.official
    from engines.body_model import find_smplx_file

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = _official_cfg(args.config, str(tmp / "human_models"))
        ours = our_losses(args, tmp)
        _stub_environment(cfg, find_smplx_file(args.body_models), tmp)
        official, n = official_losses(args, cfg)
    worst = 0.0
    rows = {}
    for k in official:
        rel = abs(ours.get(k, float("nan")) - official[k]) / max(abs(official[k]), 1e-12)
        worst = max(worst, rel)
        rows[k] = {"official": official[k], "ours": ours.get(k), "rel": rel}
        print(f"{k:16s} official {official[k]:.6g}  ours {ours.get(k, float('nan')):.6g}  rel {rel:.2e}")
    extra = sorted(set(ours) - set(official))
    print(f"terms only here: {extra or 'none'}; worst relative difference {worst:.2e} on {n} samples' first batch")
    if args.json:
        args.json.write_text(json.dumps({"terms": rows, "worst_rel": worst, "extra_terms": extra}, indent=2))
    return 0 if worst <= 1e-4 and not extra else 1


OFFICIAL = Path(".")

if __name__ == "__main__":
    sys.exit(main())
