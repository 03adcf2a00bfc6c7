"""The official per-dataset evaluation rules (each official dataset class's ``evaluate``) for one
sample, and the official summary (the mean of each metric over the samples that have it).

All meshes in metres, camera frame; results in millimetres under the official metric names.

* :func:`smplx_mesh_metrics` -- EHF, AGORA and the HumanData sets: PA-MPVPE (all vertices,
  each hand, hands, face: Procrustes on that vertex set), MPVPE (all: pelvis-aligned; hands:
  wrist-aligned; face: neck-aligned; anchors regressed with the SMPL-X ``J_regressor``),
  PA-MPJPE of the 14 LSP body joints (``SMPLX_to_J14``) and of the 21 joints of each hand.
  EHF's ground truth is first rotated into the camera frame (:data:`engines.datasets.ehf.CAMERA_R`);
  AGORA reports no joint errors.
* :func:`ubody_metrics` -- UBody: as above, but only points whose ground truth projects inside
  the image count (projected with the predicted camera through the crop), hands and face only
  when they have such points, hands averaged over the sides that do; no per-side keys.
* :func:`pw3d_metrics` -- 3DPW: 14 body joints (SMPL-X ``J_regressor`` on the prediction, SMPL's on
  the SMPL ground truth), MPJPE after pelvis alignment and PA-MPJPE.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from ..geometry import FOCAL, INPUT_BODY_SHAPE, INPUT_IMG_SHAPE, PRINCPT
from .metrics import mean_error_mm, pa_error_mm, translated_onto
from .model_files import LWRIST, NECK, PELVIS, RWRIST, SMPLXEvalFiles

#: Official keys in the official print order.
SMPLX_KEYS = ("pa_mpvpe_all", "pa_mpvpe_l_hand", "pa_mpvpe_r_hand", "pa_mpvpe_hand", "pa_mpvpe_face",
              "mpvpe_all", "mpvpe_l_hand", "mpvpe_r_hand", "mpvpe_hand", "mpvpe_face",
              "pa_mpjpe_body", "pa_mpjpe_l_hand", "pa_mpjpe_r_hand", "pa_mpjpe_hand")
AGORA_KEYS = SMPLX_KEYS[:10]
UBODY_KEYS = ("pa_mpvpe_all", "pa_mpvpe_hand", "pa_mpvpe_face", "mpvpe_all", "mpvpe_hand", "mpvpe_face",
              "pa_mpjpe_body", "pa_mpjpe_hand")
PW3D_KEYS = ("mpjpe_body", "pa_mpjpe_body")

#: Metric names of the official printouts (``print_eval_result``).
LABELS = {
    "pa_mpvpe_all": "PA MPVPE (All)", "pa_mpvpe_l_hand": "PA MPVPE (L-Hands)", "pa_mpvpe_r_hand": "PA MPVPE (R-Hands)",
    "pa_mpvpe_hand": "PA MPVPE (Hands)", "pa_mpvpe_face": "PA MPVPE (Face)", "mpvpe_all": "MPVPE (All)",
    "mpvpe_l_hand": "MPVPE (L-Hands)", "mpvpe_r_hand": "MPVPE (R-Hands)", "mpvpe_hand": "MPVPE (Hands)",
    "mpvpe_face": "MPVPE (Face)", "pa_mpjpe_body": "PA MPJPE (Body)", "pa_mpjpe_l_hand": "PA MPJPE (L-Hands)",
    "pa_mpjpe_r_hand": "PA MPJPE (R-Hands)", "pa_mpjpe_hand": "PA MPJPE (Hands)", "mpjpe_body": "MPJPE (Body)",
}

#: 3DPW: the 14 body joints (SMPL / SMPL-X kinematic ids) of the official ``joint_mapper``.
PW3D_JOINTS = (1, 2, 4, 5, 7, 8, 12, 15, 16, 17, 18, 19, 20, 21)


def _anchor(files: SMPLXEvalFiles, mesh: np.ndarray, joint: int) -> np.ndarray:
    return np.dot(files.j_regressor, mesh)[joint]


def smplx_mesh_metrics(mesh_out: np.ndarray, mesh_gt: np.ndarray, files: SMPLXEvalFiles,
                       keys: Sequence[str] = SMPLX_KEYS) -> Dict[str, float]:
    """One sample's official SMPL-X metrics (EHF / AGORA / HumanData), restricted to ``keys``."""
    r: Dict[str, float] = {}
    r["pa_mpvpe_all"] = pa_error_mm(mesh_out, mesh_gt)
    r["mpvpe_all"] = mean_error_mm(translated_onto(mesh_out, _anchor(files, mesh_out, PELVIS),
                                                   _anchor(files, mesh_gt, PELVIS)), mesh_gt)
    for side, wrist, short in (("left_hand", LWRIST, "l"), ("right_hand", RWRIST, "r")):
        ids = files.hand_vertex_idx[side]
        r[f"pa_mpvpe_{short}_hand"] = pa_error_mm(mesh_out[ids], mesh_gt[ids])
        r[f"mpvpe_{short}_hand"] = mean_error_mm(translated_onto(mesh_out[ids], _anchor(files, mesh_out, wrist),
                                                                 _anchor(files, mesh_gt, wrist)), mesh_gt[ids])
    for kind in ("pa_mpvpe", "mpvpe"):
        r[f"{kind}_hand"] = (r[f"{kind}_l_hand"] + r[f"{kind}_r_hand"]) / 2.0
    face = files.face_vertex_idx
    r["pa_mpvpe_face"] = pa_error_mm(mesh_out[face], mesh_gt[face])
    r["mpvpe_face"] = mean_error_mm(translated_onto(mesh_out[face], _anchor(files, mesh_out, NECK),
                                                    _anchor(files, mesh_gt, NECK)), mesh_gt[face])
    if any(k.startswith("pa_mpjpe") for k in keys):
        r["pa_mpjpe_body"] = pa_error_mm(np.dot(files.j14_regressor, mesh_out), np.dot(files.j14_regressor, mesh_gt))
        for side, short in (("left", "l"), ("right", "r")):
            reg = files.hand_regressor[side]
            r[f"pa_mpjpe_{short}_hand"] = pa_error_mm(np.dot(reg, mesh_out), np.dot(reg, mesh_gt))
        r["pa_mpjpe_hand"] = (r["pa_mpjpe_l_hand"] + r["pa_mpjpe_r_hand"]) / 2.0
    return {k: r[k] for k in keys}


def project_through_crop(points: np.ndarray, cam_trans: np.ndarray, bb2img_trans: np.ndarray) -> np.ndarray:
    """UBody's ``perspective_transform``: camera-frame points (minus ``cam_trans``) through the virtual
    body-crop camera, to the 512x384 crop, to the image (N, 2)."""
    x = (points[:, 0] + cam_trans[None, 0]) / (points[:, 2] + cam_trans[None, 2] + 1e-4) * FOCAL[0] + PRINCPT[0]
    y = (points[:, 1] + cam_trans[None, 1]) / (points[:, 2] + cam_trans[None, 2] + 1e-4) * FOCAL[1] + PRINCPT[1]
    x = x / INPUT_BODY_SHAPE[1] * INPUT_IMG_SHAPE[1]
    y = y / INPUT_BODY_SHAPE[0] * INPUT_IMG_SHAPE[0]
    out = np.stack((x, y, np.ones_like(x)), 1)
    return np.dot(bb2img_trans, out.transpose(1, 0)).transpose(1, 0)


def inside_image(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """Strictly inside the image (official ``validate_within_img``)."""
    return (0 < points[:, 0]) & (points[:, 0] < width) & (0 < points[:, 1]) & (points[:, 1] < height)


def ubody_metrics(mesh_out: np.ndarray, mesh_gt: np.ndarray, cam_trans: np.ndarray, bb2img_trans: np.ndarray,
                  image_hw, files: SMPLXEvalFiles) -> Dict[str, float]:
    """One UBody sample's official metrics; a hand/face key is absent when none of its ground-truth
    points project inside the image (the official lists then have no entry for the sample)."""
    h, w = image_hw
    moved = mesh_gt - cam_trans  # the official subtracts the predicted translation, then projects with it
    inside = lambda pts: inside_image(project_through_crop(pts, cam_trans, bb2img_trans), h, w)  # noqa: E731
    body_valid = inside(np.dot(files.j14_regressor, moved))
    hand_joint_valid = {s: inside(np.dot(files.hand_regressor[s], moved)) for s in ("left", "right")}
    mesh_valid = inside(moved)
    r: Dict[str, float] = {}
    r["pa_mpvpe_all"] = pa_error_mm(mesh_out, mesh_gt, mesh_valid)
    r["mpvpe_all"] = mean_error_mm(translated_onto(mesh_out, _anchor(files, mesh_out, PELVIS),
                                                   _anchor(files, mesh_gt, PELVIS)), mesh_gt, mesh_valid)
    pa_hand, hand = [], []
    for side, wrist in (("left_hand", LWRIST), ("right_hand", RWRIST)):
        ids = files.hand_vertex_idx[side]
        valid = mesh_valid[ids]
        if valid.sum() != 0:
            pa_hand.append(pa_error_mm(mesh_out[ids], mesh_gt[ids], valid))
            hand.append(mean_error_mm(translated_onto(mesh_out[ids], _anchor(files, mesh_out, wrist),
                                                      _anchor(files, mesh_gt, wrist)), mesh_gt[ids], valid))
    if pa_hand:
        r["pa_mpvpe_hand"] = float(np.mean(pa_hand))
        r["mpvpe_hand"] = float(np.mean(hand))
    face = files.face_vertex_idx
    if mesh_valid[face].sum() != 0:
        r["pa_mpvpe_face"] = pa_error_mm(mesh_out[face], mesh_gt[face], mesh_valid[face])
        r["mpvpe_face"] = mean_error_mm(translated_onto(mesh_out[face], _anchor(files, mesh_out, NECK),
                                                        _anchor(files, mesh_gt, NECK)), mesh_gt[face],
                                        mesh_valid[face])
    r["pa_mpjpe_body"] = pa_error_mm(np.dot(files.j14_regressor, mesh_out), np.dot(files.j14_regressor, mesh_gt),
                                     body_valid)
    joints = []
    for side in ("left", "right"):
        if hand_joint_valid[side].sum() != 0:
            reg = files.hand_regressor[side]
            joints.append(pa_error_mm(np.dot(reg, mesh_out), np.dot(reg, mesh_gt), hand_joint_valid[side]))
    if joints:
        r["pa_mpjpe_hand"] = float(np.mean(joints))
    return r


def pw3d_metrics(mesh_out: np.ndarray, smpl_mesh_gt: np.ndarray, files: SMPLXEvalFiles,
                 smpl_joint_regressor: np.ndarray) -> Dict[str, float]:
    """One 3DPW sample's official metrics (SMPL-X prediction against the SMPL ground truth)."""
    gt_joints = np.dot(smpl_joint_regressor, smpl_mesh_gt)
    aligned = translated_onto(mesh_out, _anchor(files, mesh_out, PELVIS), gt_joints[0])
    joints_gt = gt_joints[list(PW3D_JOINTS)]
    return {"mpjpe_body": mean_error_mm(np.dot(files.j_regressor, aligned)[list(PW3D_JOINTS)], joints_gt),
            "pa_mpjpe_body": pa_error_mm(np.dot(files.j_regressor, mesh_out)[list(PW3D_JOINTS)], joints_gt)}


def summarise(per_sample: Iterable[Mapping[str, float]], keys: Sequence[str]) -> Dict[str, Optional[float]]:
    """The official summary: each key's mean over the samples that have it (None if none has)."""
    lists: Dict[str, List[float]] = {k: [] for k in keys}
    for metrics in per_sample:
        for k in keys:
            if k in metrics and metrics[k] is not None:
                lists[k].append(float(metrics[k]))
    return {k: (float(np.mean(v)) if v else None) for k, v in lists.items()}


def temporal_joints(dataset: str, mesh_out: np.ndarray, mesh_gt: np.ndarray, files: SMPLXEvalFiles,
                    smpl_joint_regressor: Optional[np.ndarray] = None):
    """(prediction, ground truth) body joints of one frame for the temporal figures, the prediction
    pelvis-aligned to the ground truth as for the MPJPE: 3DPW's 14 joints of :func:`pw3d_metrics`,
    otherwise the 14 LSP joints (``SMPLX_to_J14``)."""
    if dataset == "PW3D":
        gt_joints = np.dot(smpl_joint_regressor, mesh_gt)
        aligned = translated_onto(mesh_out, _anchor(files, mesh_out, PELVIS), gt_joints[0])
        return np.dot(files.j_regressor, aligned)[list(PW3D_JOINTS)], gt_joints[list(PW3D_JOINTS)]
    aligned = translated_onto(mesh_out, _anchor(files, mesh_out, PELVIS), _anchor(files, mesh_gt, PELVIS))
    return np.dot(files.j14_regressor, aligned), np.dot(files.j14_regressor, mesh_gt)
