"""Small test sets in the official layouts, made by the tests: real photos, ground truth from the
synthetic SMPL-X (and SMPL) models with known parameters, and the official evaluation extras
(``SMPLX_to_J14.pkl``, ``MANO_SMPLX_vertex_ids.pkl``, ``SMPL-X__FLAME_vertex_ids.npy``) in the
official formats. The labels do not describe the people in the photos; they exercise the
formats and the arithmetic."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

NUM_VERTICES = 10475
SMPL_VERTICES = 6890
SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])

#: Photos of the shared media used as dataset images (name, body box xywh in that photo).
PHOTOS = (("coco_000785_skier.jpg", None), ("mpii_004645041.jpg", None), ("coco_197388.jpg", None),
          ("humanart_acrobatics.jpg", None))


def write_eval_extras(smplx_dir: Path, seed: int = 0) -> Dict[str, np.ndarray]:
    """The three official extras beside ``smplx/SMPLX_NEUTRAL.npz`` (same types and shapes as the
    released files: a (14, 10475) float array, a dict of two 778-id arrays, 5023 ids)."""
    rng = np.random.default_rng(seed)
    folder = Path(smplx_dir) / "smplx"
    folder.mkdir(parents=True, exist_ok=True)
    j14 = np.zeros((14, NUM_VERTICES))
    for j in range(14):
        ids = rng.choice(NUM_VERTICES, 6, replace=False)
        j14[j, ids] = rng.dirichlet(np.ones(6))
    perm = rng.permutation(NUM_VERTICES)
    hands = {"left_hand": np.sort(perm[:778]), "right_hand": np.sort(perm[778:1556])}
    face = np.sort(perm[1556:1556 + 5023])
    with open(folder / "SMPLX_to_J14.pkl", "wb") as f:
        pickle.dump(j14, f, protocol=2)
    with open(folder / "MANO_SMPLX_vertex_ids.pkl", "wb") as f:
        pickle.dump(hands, f, protocol=2)
    np.save(folder / "SMPL-X__FLAME_vertex_ids.npy", face)
    return {"j14": j14, **hands, "face": face}


def write_synthetic_smpl(root: Path, seed: int = 0) -> None:
    """``smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`` with the real keys and shapes (plain numpy arrays)."""
    rng = np.random.default_rng(seed)
    joints = np.zeros((24, 3))
    for j in range(1, 24):
        joints[j] = joints[SMPL_PARENTS[j]] + rng.normal(0, 0.12, 3)
    owner = np.arange(SMPL_VERTICES) % 24
    v = joints[owner] + rng.normal(0, 0.03, (SMPL_VERTICES, 3))
    j_reg = np.zeros((24, SMPL_VERTICES))
    for j in range(24):
        ids = np.where(owner == j)[0]
        j_reg[j, ids] = 1.0 / len(ids)
    weights = np.zeros((SMPL_VERTICES, 24))
    weights[np.arange(SMPL_VERTICES), owner] = 1.0
    kintree = np.stack([SMPL_PARENTS, np.arange(24)]).astype(np.int64)
    kintree[0, 0] = 4294967295
    folder = Path(root) / "smpl"
    folder.mkdir(parents=True, exist_ok=True)
    for i, gender in enumerate(("NEUTRAL", "MALE", "FEMALE")):
        data = {"v_template": v + i * 0.01, "f": rng.integers(0, SMPL_VERTICES, (13776, 3)).astype(np.uint32),
                "shapedirs": rng.normal(0, 1e-3, (SMPL_VERTICES, 3, 10)),
                "posedirs": rng.normal(0, 1e-4, (SMPL_VERTICES, 3, 207)), "J_regressor": j_reg,
                "weights": weights, "kintree_table": kintree}
        with open(folder / f"SMPL_{gender}.pkl", "wb") as f:
            pickle.dump(data, f, protocol=2)


def random_smplx_params(rng, n: int) -> List[Dict[str, np.ndarray]]:
    """Official-annotation style SMPL-X parameters, a person standing about 4 m in front of the camera."""
    out = []
    for _ in range(n):
        out.append({"root_pose": np.array([np.pi + rng.normal(0, 0.1), rng.normal(0, 0.3), rng.normal(0, 0.1)]),
                    "body_pose": rng.normal(0, 0.15, (21, 3)), "shape": rng.normal(0, 0.8, 10),
                    "lhand_pose": rng.normal(0, 0.2, (15, 3)), "rhand_pose": rng.normal(0, 0.2, (15, 3)),
                    "jaw_pose": rng.normal(0, 0.1, 3), "expr": rng.normal(0, 0.5, 10),
                    "trans": np.array([rng.normal(0, 0.1), rng.normal(0, 0.1), 4.0 + rng.normal(0, 0.3)])})
    return out


@torch.no_grad()
def smplx_mesh(body_model, p: Dict[str, np.ndarray]) -> np.ndarray:
    t = lambda k: torch.as_tensor(np.asarray(p[k], np.float32)).reshape(1, -1)  # noqa: E731
    verts, _ = body_model(t("root_pose"), t("body_pose"), t("lhand_pose"), t("rhand_pose"), t("jaw_pose"),
                          t("shape"), t("expr"))
    return (verts[0] + t("trans")).numpy().astype(np.float32)


def write_ply(path: Path, verts: np.ndarray, binary: bool) -> None:
    head = ("ply\nformat {} 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n"
            "element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    if binary:
        path.write_bytes(head.format("binary_little_endian", len(verts)).encode()
                         + np.asarray(verts, "<f4").tobytes())
    else:
        body = "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in verts)
        path.write_text(head.format("ascii", len(verts)) + body)


def _box(h: int, w: int, rng) -> List[float]:
    bw, bh = w * rng.uniform(0.3, 0.6), h * rng.uniform(0.5, 0.8)
    return [float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh)), float(bw), float(bh)]


def write_ehf(root: Path, photos: Sequence[Path], body_model, seed: int = 0) -> List[np.ndarray]:
    """``root/EHF/data/``: EHF.json, NN_img.jpg, NN_align.ply (in EHF's frame). Returns the camera-frame
    ground-truth meshes in sample order."""
    from engines.datasets.ehf import CAMERA_R

    rng = np.random.default_rng(seed)
    data = Path(root) / "EHF" / "data"
    data.mkdir(parents=True, exist_ok=True)
    images, anns, meshes = [], [], []
    for i, (photo, p) in enumerate(zip(photos, random_smplx_params(rng, len(photos))), start=1):
        name = f"{i:02d}_img.jpg"
        shutil.copy(photo, data / name)
        h, w = cv2.imread(str(photo)).shape[:2]
        images.append({"id": i, "file_name": name, "height": h, "width": w})
        anns.append({"id": i, "image_id": i, "body_bbox": _box(h, w, rng), "lefthand_bbox": [0, 0, 10, 10],
                     "righthand_bbox": [0, 0, 10, 10], "face_bbox": [0, 0, 10, 10]})
        cam_mesh = smplx_mesh(body_model, p)
        meshes.append(cam_mesh)
        world = (CAMERA_R.T @ cam_mesh.T.astype(np.float64)).T  # the official evaluation rotates it back
        write_ply(data / f"{i:02d}_align.ply", world, binary=i % 2 == 0)
    (data / "EHF.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return meshes


def write_agora(root: Path, photos: Sequence[Path], body_model, seed: int = 0) -> List[np.ndarray]:
    """``root/AGORA/data/``: the validation JSON, 3840x2160/<scene>_crop/*.png + .json, GT vertex JSONs.
    One extra annotation is not ``is_valid`` and one has no crop .json (both left out officially)."""
    rng = np.random.default_rng(seed)
    data = Path(root) / "AGORA" / "data"
    crop = data / "3840x2160" / "validation_crop"
    crop.mkdir(parents=True, exist_ok=True)
    (data / "verts").mkdir(parents=True, exist_ok=True)
    images, anns, meshes = [], [], []
    params = random_smplx_params(rng, len(photos) + 2)
    for i in range(len(photos) + 2):
        img_name = f"ag_{i:05d}.png"
        images.append({"id": i + 1, "file_name_3840x2160": f"validation/{img_name}"})
        mesh = smplx_mesh(body_model, params[i])
        (data / "verts" / f"{i}.json").write_text(json.dumps(mesh.tolist()))
        anns.append({"id": 100 + i, "image_id": i + 1, "is_valid": i != len(photos),
                     "smplx_verts_path": f"verts/{i}.json", "smplx_joints_2d_path": "", "smplx_joints_3d_path": "",
                     "smplx_param_path": "", "kid": False, "gender": "neutral", "bbox": [100.0, 100.0, 300.0, 600.0],
                     "lhand_bbox": [120.0, 300.0, 40.0, 40.0], "rhand_bbox": [330.0, 300.0, 40.0, 40.0],
                     "face_bbox": [220.0, 110.0, 60.0, 60.0]})
        if i < len(photos):
            stem = f"ag_{i:05d}_ann_id_{100 + i}"
            img = cv2.imread(str(photos[i]))
            cv2.imwrite(str(crop / f"{stem}.png"), img)
            (crop / f"{stem}.json").write_text(json.dumps({"img2bb_trans": np.eye(3)[:2].tolist(),
                                                           "resized_height": img.shape[0],
                                                           "resized_width": img.shape[1]}))
            meshes.append(mesh)
    (data / "AGORA_validation_fix_betas.json").write_text(json.dumps({"images": images, "annotations": anns}))
    return meshes


def write_pw3d(root: Path, photos: Sequence[Path], frames: int = 6, seed: int = 0) -> None:
    """``root/PW3D/data/3DPW_test.json`` + imageFiles/<seq>/image_XXXXX.jpg: one sequence of ``frames``
    frames (the photos repeated) with a smoothly moving SMPL ground truth."""
    rng = np.random.default_rng(seed)
    data = Path(root) / "PW3D" / "data"
    seq = "downtown_test_00"
    (data / "imageFiles" / seq).mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    pose0, shape = rng.normal(0, 0.1, 72), rng.normal(0, 0.5, 10)
    pose0[:3] = [np.pi, 0, 0]
    for f in range(frames):
        photo = photos[f % len(photos)]
        name = f"image_{f:05d}.jpg"
        shutil.copy(photo, data / "imageFiles" / seq / name)
        h, w = cv2.imread(str(photo)).shape[:2]
        pose = pose0.copy()
        pose[3:] += 0.02 * f
        images.append({"id": f + 1, "file_name": name, "sequence": seq, "height": h, "width": w,
                       "cam_param": {"R": cv2.Rodrigues(np.array([0.1, 0.2, -0.05]))[0].tolist(), "t": [0.1, -0.2, 0.3],
                                     "focal": [1000.0, 1000.0], "princpt": [w / 2, h / 2]}})
        anns.append({"id": f + 1, "image_id": f + 1, "person_id": 0, "bbox": _box(h, w, rng),
                     "smpl_param": {"pose": pose.tolist(), "shape": shape.tolist(),
                                    "trans": [0.0, 0.2, 4.0 + 0.01 * f], "gender": "male" if f % 2 else "female"}})
    (data / "3DPW_test.json").write_text(json.dumps({"images": images, "annotations": anns}))


def write_ubody(root: Path, photos: Sequence[Path], seed: int = 0) -> List[Dict]:
    """``root/UBody``: one scene, one test video and one train video; every annotation kept with
    ``--sample-interval 1``. Returns the test annotations' fits in official order."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "UBody"
    scene = "Magic_show"
    (base / "splits").mkdir(parents=True, exist_ok=True)
    np.save(base / "splits" / "intra_scene_test_list.npy", np.array(["Magic_show_test"]))
    images, anns, fits, kept = [], [], {}, []
    params = random_smplx_params(rng, len(photos) + 1)
    for i in range(len(photos) + 1):
        video = "Magic_show_test_Trim1" if i < len(photos) else "Magic_show_train"
        photo = photos[i % len(photos)]
        rel = f"videos/{video}/{i:06d}.jpg"
        (base / "images" / scene / f"videos/{video}").mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, base / "images" / scene / rel)
        h, w = cv2.imread(str(photo)).shape[:2]
        images.append({"id": i + 1, "file_name": "/" + rel, "height": h, "width": w})
        box = _box(h, w, rng)
        kps = lambda n: np.concatenate([rng.uniform(box[:2], np.add(box[:2], box[2:]), (n, 2)),  # noqa: E731
                                        np.ones((n, 1))], 1).ravel().tolist()
        anns.append({"id": 50 + i, "image_id": i + 1, "bbox": box, "iscrowd": 0, "num_keypoints": 17,
                     "valid_label": 1, "lefthand_valid": i != 1, "righthand_valid": True, "face_valid": i != 2,
                     "keypoints": kps(17), "foot_kpts": kps(6), "lefthand_kpts": kps(21), "righthand_kpts": kps(21),
                     "face_kpts": kps(68), "lefthand_box": [box[0], box[1], 30.0, 30.0],
                     "righthand_box": [box[0] + 10, box[1] + 10, 30.0, 30.0]})
        p = {k: np.asarray(v).tolist() for k, v in params[i].items()}
        fit = {"smplx_param": p, "cam_param": {"focal": [1000.0, 1000.0], "princpt": [w / 2, h / 2]}}
        fits[str(50 + i)] = fit
        if i < len(photos):
            kept.append(fit)
    ann_dir = base / "annotations" / scene
    ann_dir.mkdir(parents=True, exist_ok=True)
    (ann_dir / "keypoint_annotation.json").write_text(json.dumps({"images": images, "annotations": anns}))
    (ann_dir / "smplx_annotation.json").write_text(json.dumps(fits))
    return kept
