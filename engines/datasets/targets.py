"""Training targets of one sample, as the official SMPLer-X builds them
(``common/utils/preprocessing.py``: ``process_db_coord``, ``process_human_model_output``;
``data/humandata.py``: ``process_hand_face_bbox``).

Coordinates follow the official conventions: 2-D joints in the 12x16 (x, y) output heat-map grid
with a discretised depth in [0, 16); 3-D joints in metres, root-relative, hands relative to the
wrists and the face relative to the neck ("ra"); boxes in the output grid.
All functions are pure numpy (the SMPL-X forward of :func:`smplx_joint_targets` is passed in).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from engines.geometry import INPUT_IMG_SHAPE, OUTPUT_HM_SHAPE

from . import joints as J

BODY_3D_SIZE = 2.0
HAND_3D_SIZE = 0.3
FACE_3D_SIZE = 0.3
EXPR_DIM = 10


def _rot_aug_mat(rot: float) -> np.ndarray:
    a = np.deg2rad(-rot)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], dtype=np.float32)


def _to_grid(joint_img: np.ndarray, img2bb: np.ndarray) -> None:
    """In place: image x, y -> the output grid through the crop affine."""
    xy1 = np.concatenate((joint_img[:, :2], np.ones_like(joint_img[:, :1])), 1)
    joint_img[:, :2] = np.dot(img2bb, xy1.transpose(1, 0)).transpose(1, 0)[:, :2]
    joint_img[:, 0] = joint_img[:, 0] / INPUT_IMG_SHAPE[1] * OUTPUT_HM_SHAPE[2]
    joint_img[:, 1] = joint_img[:, 1] / INPUT_IMG_SHAPE[0] * OUTPUT_HM_SHAPE[1]


def _inside(original: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Official truncation test: positive original coordinates and inside the output grid."""
    ok = ((original[:, 0] > 0) * (grid[:, 0] >= 0) * (grid[:, 0] < OUTPUT_HM_SHAPE[2])
          * (original[:, 1] > 0) * (grid[:, 1] >= 0) * (grid[:, 1] < OUTPUT_HM_SHAPE[1])
          * (original[:, 2] > 0) * (grid[:, 2] >= 0) * (grid[:, 2] < OUTPUT_HM_SHAPE[0]))
    return ok.reshape(-1, 1).astype(np.float32)


def relative_to_parts(joint_cam: np.ndarray) -> np.ndarray:
    """Root-relative joints with hands relative to the wrists and the face to the neck (a copy)."""
    out = joint_cam - joint_cam[J.ROOT, None, :]
    out[J.PART["lhand"], :] = out[J.PART["lhand"], :] - out[J.LWRIST, None, :]
    out[J.PART["rhand"], :] = out[J.PART["rhand"], :] - out[J.RWRIST, None, :]
    out[J.PART["face"], :] = out[J.PART["face"], :] - out[J.NECK, None, :]
    return out


def _swap(arr: np.ndarray, pairs) -> None:
    for a, b in pairs:
        arr[a], arr[b] = arr[b].copy(), arr[a].copy()


def keypoint_targets(joint_img, joint_cam, joint_valid, flip: bool, img_shape, img2bb, rot: float):
    """Dataset keypoints -> (joint_img, joint_cam_wo_ra, joint_cam_ra, joint_valid, joint_trunc)
    (official ``process_db_coord`` with the 137-joint set as both source and target)."""
    original = joint_img.copy()
    joint_img, joint_cam, joint_valid = joint_img.copy(), joint_cam.copy(), joint_valid.copy()
    if flip:
        joint_cam[:, 0] = -joint_cam[:, 0]
        joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
        for arr in (joint_img, joint_cam, joint_valid):
            _swap(arr, J.FLIP_PAIRS)
    joint_cam = np.dot(_rot_aug_mat(rot), joint_cam.transpose(1, 0)).transpose(1, 0)
    _to_grid(joint_img, img2bb)
    trunc = joint_valid * _inside(original, joint_img)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731  (official transform_joint_to_other_db casts)
    joint_img, joint_cam, joint_valid, trunc = f32(joint_img), f32(joint_cam), f32(joint_valid), f32(trunc)
    return joint_img, joint_cam, relative_to_parts(joint_cam), joint_valid, trunc


def smplx_param_targets(param: Dict, flip: bool, rot: float):
    """SMPL-X parameters of a sample -> (pose (159,), shape (10,), expr (10,), rotation_valid (53,),
    expr_valid) with flip (left/right swap, y and z of axis-angles negated) and the rotation
    applied to the root (official ``process_human_model_output``, parameter part)."""
    valid = np.ones(J.ORIG_JOINT_NUM, dtype=np.float32)

    def part(name, key, ok):
        if param.get(key) is not None and ok:
            return np.asarray(param[key], np.float32).reshape(-1, 3)
        valid[J.ORIG_PART[name]] = 0
        return np.zeros((len(J.ORIG_PART[name]), 3), np.float32)

    lhand = part("lhand", "lhand_pose", param.get("lhand_valid", True))
    rhand = part("rhand", "rhand_pose", param.get("rhand_valid", True))
    if param.get("jaw_pose") is not None and param.get("expr") is not None and param.get("face_valid", True):
        jaw = np.asarray(param["jaw_pose"], np.float32).reshape(-1, 3)
        expr = np.asarray(param["expr"], np.float32).reshape(-1)
        expr_valid = True
    else:
        jaw = np.zeros((1, 3), np.float32)
        expr = np.zeros(EXPR_DIM, np.float32)
        valid[J.ORIG_PART["face"]] = 0
        expr_valid = False
    pose = np.concatenate([np.asarray(param["root_pose"], np.float32).reshape(1, 3),
                           np.asarray(param["body_pose"], np.float32).reshape(-1, 3), lhand, rhand, jaw])
    shape = np.asarray(param["shape"], np.float32).reshape(1, -1).copy()
    if flip:
        _swap(pose, J.ORIG_FLIP_PAIRS)
        _swap(valid, J.ORIG_FLIP_PAIRS)
        pose[:, 1:3] *= -1
    root, _ = cv2.Rodrigues(pose[J.ORIG_ROOT])
    root, _ = cv2.Rodrigues(np.dot(_rot_aug_mat(rot), root))
    pose[J.ORIG_ROOT] = root.reshape(3)
    shape[(np.abs(shape) > 3).any(axis=1)] = 0.0
    return pose.reshape(-1), shape.reshape(-1), expr, valid, expr_valid


SmplxJoints = Callable[[Dict[str, np.ndarray]], np.ndarray]


def smplx_joint_targets(param: Dict, joint_img: np.ndarray, flip: bool, img_shape, img2bb, rot: float,
                        smplx_joints: SmplxJoints):
    """Joints of the SMPL-X fit -> (joint_cam_ra (137, 3), joint_trunc (137, 1), coord_valid (137,))
    (official ``process_human_model_output``, coordinate part, for a camera-less HumanData set:
    2-D positions come from the dataset's ``joint_img``, depths from the fit).

    ``smplx_joints(params)`` returns the 137 joints (camera space, with ``transl``) of the neutral
    SMPL-X for numpy params named like the official layer's arguments."""
    coord_valid = np.ones(J.JOINT_NUM, dtype=np.float32)
    if param.get("lhand_pose") is None or not param.get("lhand_valid", True):
        coord_valid[J.PART["lhand"]] = 0
    if param.get("rhand_pose") is None or not param.get("rhand_valid", True):
        coord_valid[J.PART["rhand"]] = 0
    if param.get("jaw_pose") is None or param.get("expr") is None or not param.get("face_valid", True):
        coord_valid[J.PART["face"]] = 0
    joint_cam = relative_to_parts(np.asarray(smplx_joints(param), np.float32))
    joint_img = np.array(joint_img, dtype=np.float32, copy=True)
    original = joint_img.copy()  # official: copied before the depths are written (so a 0 depth truncates)
    for part, size in (("body", BODY_3D_SIZE), ("lhand", HAND_3D_SIZE), ("rhand", HAND_3D_SIZE),
                       ("face", FACE_3D_SIZE)):
        joint_img[J.PART[part], 2] = (joint_cam[J.PART[part], 2] / (size / 2) + 1) / 2.0 * OUTPUT_HM_SHAPE[0]
    if flip:
        joint_cam[:, 0] = -joint_cam[:, 0]
        joint_img[:, 0] = img_shape[1] - 1 - joint_img[:, 0]
        _swap(joint_cam, J.FLIP_PAIRS)
        _swap(joint_img, J.FLIP_PAIRS)
        _swap(coord_valid, J.FLIP_PAIRS)
    _to_grid(joint_img, img2bb)
    trunc = _inside(original, joint_img)
    joint_cam = np.dot(_rot_aug_mat(rot), joint_cam.transpose(1, 0)).transpose(1, 0)
    return joint_cam.astype(np.float32), trunc, coord_valid


def part_box_target(bbox: Optional[np.ndarray], flip: bool, img_shape, img2bb) -> Tuple[np.ndarray, float]:
    """A hand or face xyxy box (image pixels) -> ((2, 2) corners in the output grid, valid)
    (official ``process_hand_face_bbox``: the four corners are mapped and the axis-aligned hull kept)."""
    if bbox is None:
        return np.array([0, 0, 1, 1], dtype=np.float32).reshape(2, 2), 0.0
    box = np.array(bbox, dtype=np.float32).reshape(2, 2)
    if flip:
        box[:, 0] = img_shape[1] - box[:, 0] - 1
        box[0, 0], box[1, 0] = box[1, 0].copy(), box[0, 0].copy()
    xmin, ymin, xmax, ymax = box.reshape(4).tolist()
    corners = np.array([[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]], dtype=np.float32)
    xy1 = np.concatenate((corners, np.ones_like(corners[:, :1])), 1)
    c = np.dot(img2bb, xy1.transpose(1, 0)).transpose(1, 0)[:, :2]
    c[:, 0] = c[:, 0] / INPUT_IMG_SHAPE[1] * OUTPUT_HM_SHAPE[2]
    c[:, 1] = c[:, 1] / INPUT_IMG_SHAPE[0] * OUTPUT_HM_SHAPE[1]
    out = np.array([c[:, 0].min(), c[:, 1].min(), c[:, 0].max(), c[:, 1].max()], dtype=np.float32)
    return out.reshape(2, 2), 1.0
