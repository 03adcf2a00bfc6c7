"""Run the official ``evaluate`` methods (read from an official SMPLer-X checkout) beside ours on the same
predictions and ground truth, and report the largest difference per metric.

    python scripts/check_eval_against_official.py --official /path/to/SMPLer-X --out /tmp/check

The official dataset modules are executed unchanged; only their imports are stood in for (``config.cfg``,
``utils.human_models`` built from the same body-model files, ``pycocotools``, ``utils.preprocessing``'s
``load_img``, and ``utils.transforms.rigid_align`` taken from the official file). The inputs are a test set
generated in each official layout (real photos from the shared media, synthetic SMPL-X/SMPL ground truth,
random network weights) run through ``mocap eval``'s own prediction phase: this checks the metric code
paths, not the network (see docs/engines.md for the forward). ``--official`` may be a checkout or a bare
git directory (files are read with ``git show HEAD:path``).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def official_source(official: Path, path: str) -> str:
    if (official / path).is_file():
        return (official / path).read_text()
    return subprocess.run(["git", "-C", str(official), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def stub_modules(official: Path, files, smpl_reg, out_dir: Path, testset: str, image_shapes):
    from engines import geometry as G

    cfg = types.SimpleNamespace(vis=False, testset=testset, focal=G.FOCAL, princpt=G.PRINCPT,
                                input_body_shape=G.INPUT_BODY_SHAPE, input_img_shape=G.INPUT_IMG_SHAPE,
                                output_hm_shape=G.OUTPUT_HM_SHAPE, data_dir=str(out_dir), vis_dir=str(out_dir),
                                result_dir=str(out_dir), root_dir=str(out_dir), eval_on_train=False, bbox_ratio=1.2)
    sys.modules["config"] = types.SimpleNamespace(cfg=cfg)
    smpl_x = types.SimpleNamespace(J_regressor=files.j_regressor, j14_regressor=files.j14_regressor,
                                   hand_vertex_idx=files.hand_vertex_idx, face_vertex_idx=files.face_vertex_idx,
                                   orig_hand_regressor=files.hand_regressor,
                                   J_regressor_idx={"pelvis": 0, "lwrist": 20, "rwrist": 21, "neck": 12},
                                   vertex_num=10475)
    smpl = types.SimpleNamespace(joint_regressor=smpl_reg, root_joint_idx=0)
    utils = types.ModuleType("utils")
    hm = types.ModuleType("utils.human_models")
    hm.smpl_x, hm.smpl = smpl_x, smpl
    tr = types.ModuleType("utils.transforms")
    src = official_source(official, "common/utils/transforms.py")
    # the camera and alignment functions, verbatim
    start = src.index("def cam2pixel")
    end = src.index("def transform_joint_to_other_db")
    exec(compile("import numpy as np\n" + src[start:end], "official_transforms", "exec"), tr.__dict__)
    tr.transform_joint_to_other_db = None
    pre = types.ModuleType("utils.preprocessing")
    pre.load_img = lambda path, order="RGB": np.zeros(image_shapes[str(path)] + (3,), np.float32)
    for name in ("process_bbox", "augmentation", "load_ply", "process_db_coord", "process_human_model_output",
                 "get_fitting_error_3D", "sanitize_bbox", "load_obj", "resize_bbox"):
        setattr(pre, name, None)
    coco = types.ModuleType("pycocotools.coco")
    coco.COCO = None
    sys.modules.update({"utils": utils, "utils.human_models": hm, "utils.transforms": tr,
                        "utils.preprocessing": pre, "pycocotools": types.ModuleType("pycocotools"),
                        "pycocotools.coco": coco})
    humandata = types.ModuleType("humandata")
    humandata.Cache = None
    sys.modules.setdefault("humandata", humandata)


def official_class(official: Path, path: str, name: str):
    namespace: dict = {"__name__": f"official_{name}"}
    exec(compile(official_source(official, path), path, "exec"), namespace)
    return namespace[name]


class _COCO:
    """pycocotools.coco.COCO's index (anns by id in file order, imgs by id, loadImgs)."""

    def __init__(self, path):
        import json

        data = json.loads(Path(path).read_text())
        self.anns = {a["id"]: a for a in data["annotations"]}
        self.imgs = {i["id"]: i for i in data["images"]}

    def loadImgs(self, ids):
        return [self.imgs[i] for i in (ids if isinstance(ids, list) else [ids])]


def official_preprocessing(official: Path):
    """The official ``common/utils/preprocessing.py``, executed with stand-ins for its imports."""
    mod = types.ModuleType("official_preprocessing")
    sys.modules.setdefault("plyfile", types.SimpleNamespace(PlyData=None, PlyElement=None))
    exec(compile(official_source(official, "common/utils/preprocessing.py"), "preprocessing", "exec"), mod.__dict__)
    return mod


def check_inputs(official: Path, data: Path, photos_dir: Path) -> float:
    """The official loaders' sample lists, boxes and crops against our readers'. Returns the largest
    crop difference (0 when equal)."""
    from engines import geometry as G
    from engines.datasets.augmentation import load_image_rgb
    from realtime.research import evaluate as E

    cfg = sys.modules["config"].cfg
    cfg.data_dir = str(data)
    cfg.use_cache = False
    cfg.test_sample_interval = 1
    cfg.agora_benchmark = "na"
    cfg.agora_fix_betas = True
    cfg.agora_fix_global_orient_transl = True
    cfg.data_strategy = None
    cfg.body_models = str(data.parent / "human_model_files")
    pre = official_preprocessing(official)
    sys.modules["utils.preprocessing"] = pre
    sys.modules["pycocotools.coco"].COCO = _COCO
    sys.modules["humandata"].Cache = None
    worst = 0.0
    lists = {}
    ehf = object.__new__(official_class(official, "data/EHF/EHF.py", "EHF"))
    ehf.data_path = str(data / "EHF" / "data")
    lists["EHF"] = ehf.load_data()
    pw = object.__new__(official_class(official, "data/PW3D/PW3D.py", "PW3D"))
    pw.data_path, pw.data_split = str(data / "PW3D" / "data"), "test"
    lists["PW3D"] = pw.load_data()
    ub_cls = official_class(official, "data/UBody/UBody.py", "UBody_Part")
    lists["UBody"] = sum((ub_cls(None, "test", scene).datalist
                          for scene in __import__("os").listdir(data / "UBody" / "images")), [])
    agora = official_class(official, "data/AGORA/AGORA.py", "AGORA")(None, "test")
    lists["AGORA"] = agora.datalist
    hd = object.__new__(official_class(official, "data/humandata.py", "HumanDataset"))
    hd.img_dir, hd.annot_path, hd.data_split, hd.img_shape = str(photos_dir), str(data / "preprocessed_datasets" / "hd.npz"), "test", None
    lists["HD"] = hd.load_data(test_sample_interval=1)
    extra = {"UBody": {"sample_interval": 1}, "HD": {"annotation": "hd.npz", "image_dir": str(photos_dir)}}
    for name, official_list in lists.items():
        o = E.EvalOptions(dataset=name, data_dir=str(data), progress=False, **extra.get(name, {}))
        ours = E.open_dataset(o).samples
        assert len(ours) == len(official_list), (name, len(ours), len(official_list))
        for s, d in zip(ours, official_list):
            assert Path(d["img_path"]) == Path(s.img_path), (name, d["img_path"], s.img_path)
            np.testing.assert_array_equal(np.asarray(d["bbox"], np.float32), s.bbox, err_msg=name)
            img, _, bb2img, _, _ = pre.augmentation(pre.load_img(d["img_path"]), d["bbox"], "test")
            patch, _, inv = G.crop_image(load_image_rgb(s.img_path), s.bbox)
            worst = max(worst, float(np.abs(img.astype(np.float32) - patch).max()),
                        float(np.abs(bb2img - inv).max()))
        print(f"{name}: {len(ours)} samples; paths, boxes equal to the official loader's; crop differences "
              f"{worst:.1e}")
        if name in ("UBody", "HD"):
            worst = max(worst, _check_smplx_targets(pre, name, ours, official_list))
        if name == "PW3D":
            worst = max(worst, _check_smpl_meshes(pre, ours, official_list))
    return worst


def _check_smpl_meshes(pre, ours, official_list) -> float:
    """3DPW's SMPL ground-truth meshes: the official ``process_human_model_output(..., 'smpl')`` against ours."""
    from engines.evaluation.model_files import SMPLLayers

    cfg = sys.modules["config"].cfg
    cfg.body_3d_size = 2
    layers = SMPLLayers(cfg.body_models)
    hm = sys.modules["utils.human_models"]
    hm.smpl.__dict__.update(layer={g: layers.layer(g) for g in ("neutral", "male", "female")},
                            orig_root_joint_idx=0, joint_regressor=layers.joint_regressor)
    models = types.SimpleNamespace(smpl=layers)
    pw3d = __import__("engines.datasets.pw3d", fromlist=["PW3D"])
    worst = 0.0
    for s, d in zip(ours, official_list):
        official = pre.process_human_model_output(d["smpl_param"], d["cam_param"], False, s.img_shape, np.eye(3)[:2],
                                                  0.0, "smpl")
        mine = pw3d.PW3D.ground_truth(None, s, models)
        worst = max(worst, float(np.abs(official[5] - mine).max()))
    print(f"PW3D: SMPL ground truth against the official process_human_model_output: largest difference {worst:.1e}")
    return worst


def _check_smplx_targets(pre, name, ours, official_list) -> float:
    """Test-mode SMPL-X targets of the official ``process_human_model_output`` against ours."""
    from engines.body_model import BodyModel
    from engines.datasets import joints as J
    from engines.datasets.test_targets import smplx_test_params

    hm = sys.modules["utils.human_models"]
    layer = BodyModel(sys.modules["config"].cfg.body_models).layer
    hm.smpl_x.__dict__.update(
        layer={"neutral": layer, "male": layer, "female": layer}, orig_joint_num=J.ORIG_JOINT_NUM,
        joint_num=J.JOINT_NUM, orig_joint_part=J.ORIG_PART, joint_part=J.PART, expr_code_dim=10,
        joint_idx=list(J.JOINT_IDX_137), root_joint_idx=J.ROOT, lwrist_idx=J.LWRIST, rwrist_idx=J.RWRIST,
        neck_idx=J.NECK, orig_root_joint_idx=J.ORIG_ROOT, flip_pairs=J.FLIP_PAIRS, orig_flip_pairs=J.ORIG_FLIP_PAIRS)
    cfg = sys.modules["config"].cfg
    cfg.body_3d_size, cfg.hand_3d_size, cfg.face_3d_size = 2, 0.3, 0.3
    worst = 0.0
    for s, d in zip(ours, official_list):
        if name == "UBody":
            param, cam = dict(d["smplx_param"]["smplx_param"]), d["smplx_param"]["cam_param"]
            joint_img = None
        else:
            param, cam, joint_img = dict(d["smplx_param"]), {}, np.concatenate([d["joint_img"][:, :2],
                                                                                np.zeros((137, 1))], 1)
        official = pre.process_human_model_output(param, cam, False, s.img_shape, np.eye(3)[:2], 0.0, "smplx",
                                                  joint_img=joint_img)
        pose, shape, expr = official[3], official[4], official[5]
        mine = smplx_test_params(s.gt["smplx_param"], s.gt.get("cam_param"))
        flat = np.concatenate([mine[k].reshape(-1) for k in ("global_orient", "body_pose", "left_hand_pose",
                                                            "right_hand_pose", "jaw_pose")])
        worst = max(worst, float(np.abs(flat - pose).max()), float(np.abs(mine["betas"] - shape).max()),
                    float(np.abs(mine["expression"] - expr).max()))
    print(f"{name}: test-mode SMPL-X targets against the official process_human_model_output: largest "
          f"difference {worst:.1e}")
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, type=Path, help="official SMPLer-X checkout or git directory")
    ap.add_argument("--out", required=True, type=Path, help="scratch folder (datasets, predictions)")
    args = ap.parse_args()

    import torch

    from engines.body_model import BodyModel
    from engines.checkpoints import write_random_checkpoint
    from engines.evaluation import protocols as P
    from engines.evaluation.model_files import SMPLLayers, SMPLXEvalFiles
    from engines.synthetic import write_synthetic_smplx
    from realtime.research import evaluate as E
    from tests import eval_layouts as L

    media = REPO.parent / "shared" / "media"
    if not media.is_dir():
        media = Path("/work/shared/media")
    photos = [media / n for n, _ in L.PHOTOS]
    out = args.out
    bm_dir = out / "human_model_files"
    write_synthetic_smplx(bm_dir)
    L.write_eval_extras(bm_dir)
    L.write_synthetic_smpl(bm_dir)
    bm = BodyModel(bm_dir)
    files = SMPLXEvalFiles.load(bm_dir)
    smpl = SMPLLayers(bm_dir)
    data = out / "data"
    L.write_ehf(data, photos, bm)
    L.write_agora(data, photos, bm)
    L.write_pw3d(data, photos, frames=6)
    L.write_ubody(data, photos)
    hd_images = data / "HD"
    hd_images.mkdir(parents=True, exist_ok=True)
    from engines.datasets.synthetic import write_synthetic_humandata

    write_synthetic_humandata(data / "preprocessed_datasets" / "hd.npz", photos, bm, seed=5)
    ckpt = write_random_checkpoint(out / "s32.pth.tar", "s32", seed=3,
                                   extra={"body_regressor.cam_out.0.weight": torch.zeros(3, 384),
                                          "body_regressor.cam_out.0.bias": torch.tensor([0.0, 0.0, -1.5])})
    cases = [("EHF", "data/EHF/EHF.py", "EHF", {}), ("AGORA", "data/AGORA/AGORA.py", "AGORA", {}),
             ("PW3D", "data/PW3D/PW3D.py", "PW3D", {}), ("UBody", "data/UBody/UBody.py", "UBody",
                                                        {"sample_interval": 1}),
             ("HD", "data/humandata.py", "HumanDataset", {"annotation": "hd.npz",
                                                          "image_dir": str(Path(photos[0]).parent)})]
    worst_all = 0.0
    for dataset, path, cls_name, extra in cases:
        o = E.EvalOptions(dataset=dataset, data_dir=str(data), checkpoint=str(ckpt), body_models=str(bm_dir),
                          progress=False, **extra)
        reader = E.open_dataset(o)
        preds = E._predict(o, reader.samples, E.PredictionStore(None, o), {"unreadable_image": 0})
        E._apply_official_quirk(o, len(reader.samples), preds)
        meshes = E._meshes(bm, [preds[s.index] for s in reader.samples])
        models = types.SimpleNamespace(smplx=bm, smpl=smpl)
        outs, ours, shapes = [], [], {}
        for s, mesh_out in zip(reader.samples, meshes):
            gt = reader.ground_truth(s, models)
            pred = preds[s.index]
            shapes[str(s.img_path)] = tuple(int(v) for v in pred["image_hw"])
            o_ = {"smplx_mesh_cam": mesh_out, "cam_trans": pred["cam_trans"], "bb2img_trans": pred["bb2img_trans"],
                  "img_path": str(s.img_path), "smplx_joint_proj": np.zeros((144, 2), np.float32),
                  "smplx_root_pose": pred["smplx_root_pose"], "smplx_body_pose": pred["smplx_body_pose"],
                  "smplx_lhand_pose": pred["smplx_lhand_pose"], "smplx_rhand_pose": pred["smplx_rhand_pose"],
                  "smplx_jaw_pose": pred["smplx_jaw_pose"], "smplx_expr": pred["smplx_expr"],
                  "smplx_shape": pred["smplx_shape"]}
            if dataset == "EHF":
                o_["smplx_mesh_cam_target"] = gt
                from engines.datasets.ehf import CAMERA_R

                gt = np.dot(CAMERA_R, gt.T).T
                ours.append(P.smplx_mesh_metrics(mesh_out, gt, files))
            elif dataset == "AGORA":
                o_["smplx_mesh_cam_target"] = gt
                ours.append(P.smplx_mesh_metrics(mesh_out, gt, files, P.AGORA_KEYS))
            elif dataset == "PW3D":
                o_["smpl_mesh_cam_target"] = gt
                ours.append(P.pw3d_metrics(mesh_out, gt, files, smpl.joint_regressor))
            elif dataset == "UBody":
                o_["smplx_mesh_cam_pseudo_gt"] = gt
                ours.append(P.ubody_metrics(mesh_out, gt, pred["cam_trans"], pred["bb2img_trans"],
                                            tuple(pred["image_hw"]), files))
            else:
                o_["smplx_mesh_cam_pseudo_gt"] = gt
                ours.append(P.smplx_mesh_metrics(mesh_out, gt, files))
            outs.append(o_)
        stub_modules(args.official, files, smpl.joint_regressor, out, dataset, shapes)
        cls = official_class(args.official, path, cls_name)
        ds = object.__new__(cls)
        ds.datalist = [{"img_path": str(s.img_path), "person_idx": 0} for s in reader.samples]
        ds.data_split, ds.test_set, ds.resolution, ds.save_idx = "test", "val", (2160, 3840), 0
        if dataset == "EHF":  # what the official __init__ sets
            import cv2

            ds.cam_param = {"R": cv2.Rodrigues(np.array([-2.98747896, 0.01172457, -0.05704687]))[0]}
        official = ds.evaluate(outs, 0)
        worst = 0.0
        for key, values in official.items():
            mine = [m[key] for m in ours if key in m]
            if len(mine) != len(values):
                print(f"{dataset} {key}: {len(values)} official values, {len(mine)} ours")
                return 1
            d = float(np.nanmax(np.abs(np.array(mine) - np.array(values)))) if values else 0.0
            same_nan = np.array_equal(np.isnan(mine), np.isnan(values))
            worst = max(worst, d)
            if not same_nan:
                print(f"{dataset} {key}: NaN in different places")
                return 1
        print(f"{dataset}: {len(outs)} samples, {len(official)} metrics, largest per-sample difference "
              f"{worst:.2e} mm")
        worst_all = max(worst_all, worst)
    print(f"largest difference over all datasets and metrics: {worst_all:.2e} mm")
    crop = check_inputs(args.official, data, Path(photos[0]).parent)
    return 0 if worst_all < 1e-6 and crop == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
