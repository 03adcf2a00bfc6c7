"""A small HumanData file for tests and benchmarks: real photos with *synthetic* SMPL-X ground
truth (random poses of the body model given, placed in front of a pinhole camera and projected).
The labels do not describe the people in the photos; the file only exercises the format.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch


def _box_xywh(points: np.ndarray, pad: float = 1.1) -> np.ndarray:
    lo, hi = points.min(0), points.max(0)
    c, size = (lo + hi) / 2, (hi - lo) * pad
    return np.array([c[0] - size[0] / 2, c[1] - size[1] / 2, size[0], size[1], 1.0], np.float32)


def write_synthetic_humandata(path: Union[str, Path], images: Sequence[Union[str, Path]], body_model,
                              seed: int = 0, with_kps3d: bool = True, with_meta: bool = True) -> Path:
    """Write ``path`` (.npz) with one sample per image; ``image_path`` entries are file names (the
    image root is the images' folder). ``body_model``: an :class:`engines.body_model.BodyModel`."""
    rng = np.random.default_rng(seed)
    n = len(images)
    params = {
        "global_orient": np.stack([[np.pi + rng.normal(0, 0.2), rng.normal(0, 0.3), rng.normal(0, 0.1)]
                                   for _ in range(n)]).astype(np.float32),
        "body_pose": rng.normal(0, 0.15, (n, 21, 3)).astype(np.float32),
        "betas": rng.normal(0, 0.8, (n, 10)).astype(np.float32),
        "left_hand_pose": rng.normal(0, 0.2, (n, 15, 3)).astype(np.float32),
        "right_hand_pose": rng.normal(0, 0.2, (n, 15, 3)).astype(np.float32),
        "jaw_pose": rng.normal(0, 0.1, (n, 3)).astype(np.float32),
        "expression": rng.normal(0, 0.5, (n, 10)).astype(np.float32),
        "transl": np.zeros((n, 3), np.float32),
    }
    kp2d, kp3d, boxes, lboxes, rboxes, fboxes, heights, widths = [], [], [], [], [], [], [], []
    import cv2

    for i, img_path in enumerate(images):
        h, w = cv2.imread(str(img_path)).shape[:2]
        t = {k: torch.as_tensor(v[i:i + 1]).reshape(1, -1) for k, v in params.items()}
        with torch.no_grad():
            _, joints = body_model(t["global_orient"], t["body_pose"], t["left_hand_pose"], t["right_hand_pose"],
                                   t["jaw_pose"], t["betas"], t["expression"])
        joints = joints[0].numpy().astype(np.float64)
        focal = 1.2 * max(h, w)
        extent = joints[:, 1].max() - joints[:, 1].min()
        z = focal * extent / (0.6 * h)  # the body spans about 60 % of the image height
        trans = np.array([rng.normal(0, 0.05), rng.normal(0, 0.05), z]) - joints.mean(0) * [1, 1, 0]
        cam = joints + trans
        params["transl"][i] = trans
        xy = cam[:, :2] / cam[:, 2:] * focal + np.array([w / 2, h / 2])
        kp2d.append(np.concatenate([xy, np.ones((len(xy), 1))], 1))
        kp3d.append(np.concatenate([cam, np.ones((len(cam), 1))], 1))
        boxes.append(_box_xywh(xy, 1.2))
        lboxes.append(_box_xywh(xy[list(range(25, 40)) + [20]]))
        rboxes.append(_box_xywh(xy[list(range(40, 55)) + [21]]))
        fboxes.append(_box_xywh(xy[[15, 22, 23, 24, 55, 56, 57, 58, 59]], 1.5))
        heights.append(h)
        widths.append(w)
    if n > 1:
        lboxes[-1][4] = 0.0  # one sample without a left-hand box
    data = {
        "image_path": np.array([Path(p).name for p in images]),
        "bbox_xywh": np.stack(boxes), "lhand_bbox_xywh": np.stack(lboxes), "rhand_bbox_xywh": np.stack(rboxes),
        "face_bbox_xywh": np.stack(fboxes),
        "keypoints2d_smplx": np.stack(kp2d).astype(np.float32), "keypoints2d_smplx_mask": np.ones(144, np.float32),
        "smplx": np.array(params, dtype=object), "__keypoints_compressed__": np.array(False),
    }
    if with_kps3d:
        data["keypoints3d_smplx"] = np.stack(kp3d).astype(np.float32)
        data["keypoints3d_smplx_mask"] = np.ones(144, np.float32)
    if with_meta:
        data["meta"] = np.array({"height": heights, "width": widths}, dtype=object)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(str(path), **data)
    return path
