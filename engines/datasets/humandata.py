"""HumanData (mmhuman3d ``.npz``) read the way the official SMPLer-X ``data/humandata.py`` reads it,
for training and for the HumanData test sets.

Usage::

    from engines.datasets.humandata import HumanDataset

    # training samples: official augmentation (or none with augment=False), all loss targets
    train = HumanDataset("annot.npz", "images/", split="train", augment=True)
    inputs, targets, meta = train[0]        # dicts of numpy arrays / floats (collate with torch)

    # test samples: no augmentation, the ground-truth box cropped with the dataset's bbox ratio
    test = HumanDataset("annot.npz", "images/", split="test", sample_interval=1)
    inputs, targets, meta = test[0]
    # inputs["img"] (3, 512, 384) float32 in [0, 1]; targets: smplx_pose (159,) [root, body, lhand,
    # rhand, jaw axis-angles], smplx_shape (10,), smplx_expr (10,), smplx_cam_trans (3,);
    # meta: img_path, bb2img_trans (2x3 crop -> image), gt_smplx_transl (3,)

    records = read_humandata("annot.npz", "images/")   # the filtered sample list only

Keys read (N samples; a missing required key or a length other than N is a one-line
:class:`HumanDataError` naming the key and the file):

* ``image_path`` (N,) paths relative to the image root; ``bbox_xywh`` (N, 5) body box + confidence.
* ``keypoints2d_smplx`` / ``keypoints2d`` / ``keypoints2d_smpl`` / ``keypoints2d_original`` (first
  present wins) (N, K, 3) in the SMPL-X 144- or 190-joint layout, with ``<key>_mask`` (K,) or
  ``keypoints2d_mask``; ``keypoints3d_cam`` / ``keypoints3d`` / ``keypoints3d_smplx`` / ... likewise
  (optional: without 3-D keypoints the sample is "2-D only" and its 3-D targets come from the
  SMPL-X fit). ``__keypoints_compressed__``: keypoints stored only where the mask is 1.
* ``smplx`` (or ``smpl`` / ``smplh``): a dict of (N, ...) arrays ``global_orient``, ``body_pose``,
  ``betas``, ``transl``, ``left_hand_pose``, ``right_hand_pose``, ``jaw_pose``, ``expression``
  (a missing hand or face entry makes that part unsupervised).
* optional ``lhand_bbox_xywh``, ``rhand_bbox_xywh``, ``face_bbox_xywh`` (N, 5): a confidence of 0
  means "no box"; ``meta`` dict with ``height``/``width`` lists (otherwise image headers are read).

Body boxes are padded by ``bbox_ratio * 0.833`` (the official configs' 1.2 -> 1.0), hand and face
boxes by ``bbox_ratio``; samples whose body box is degenerate or whose 3-D keypoints hold NaN are
dropped, as officially. Camera-less (``cam_param = {}``) as every official HumanData set.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from engines.errors import UserError
from engines.geometry import OUTPUT_HM_SHAPE, process_bbox

from . import joints as J
from .augmentation import Augment, crop_augmented, load_image_rgb
from .targets import (BODY_3D_SIZE, keypoint_targets, part_box_target, smplx_joint_targets,
                      smplx_param_targets)

KPS2D_KEYS = ("keypoints2d", "keypoints2d_smplx", "keypoints2d_smpl", "keypoints2d_original")
KPS3D_KEYS = ("keypoints3d_cam", "keypoints3d", "keypoints3d_smplx", "keypoints3d_smpl", "keypoints3d_original")
#: The official configs' ``bbox_ratio``; body boxes get ``* 0.833`` of it.
BBOX_RATIO = 1.2
BODY_RATIO_FACTOR = 0.833
#: Official SMPL-X parameter names -> the names the targets use.
_PARAM_RENAMES = (("global_orient", "root_pose"), ("betas", "shape"), ("left_hand_pose", "lhand_pose"),
                  ("right_hand_pose", "rhand_pose"), ("expression", "expr"))


class HumanDataError(UserError):
    """A HumanData file that cannot be used (missing key, wrong lengths, unreadable)."""


@dataclass
class Record:
    """One sample of a HumanData file after the official filtering (boxes in image pixels)."""
    img_path: str
    img_shape: Tuple[int, int]  # (h, w)
    bbox: np.ndarray  # xywh, padded and at the crop's aspect ratio
    lhand_bbox: Optional[np.ndarray]  # xyxy or None
    rhand_bbox: Optional[np.ndarray]
    face_bbox: Optional[np.ndarray]
    joint_img: np.ndarray  # (137, 2) image pixels
    joint_cam: Optional[np.ndarray]  # (137, 3) metres, or None (2-D only)
    joint_valid: np.ndarray  # (137, 1)
    smplx_param: Dict[str, object]


def _need(content, key: str, path: Path):
    if key not in content.files:
        raise HumanDataError(f"{path}: HumanData key '{key}' is missing (keys: {', '.join(sorted(content.files))})")
    return content[key]


def _check_len(name: str, arr, n: int, path: Path) -> None:
    got = len(arr)
    if got != n:
        raise HumanDataError(f"{path}: HumanData key '{name}' has {got} entries, 'image_path' has {n}")


def _keypoints(content, keys, dims: int, n: int, compressed: bool, path: Path, required: bool):
    """(N, 137, dims) keypoints and (137,) mask from the first present key, or (None, None)."""
    for key in keys:
        if key not in content.files:
            continue
        arr = np.asarray(content[key])
        _check_len(key, arr, n, path)
        mask_key = f"{key}_mask" if f"{key}_mask" in content.files else (
            "keypoints3d_mask" if dims == 3 else "keypoints2d_mask")
        mask = np.asarray(content[mask_key]) if mask_key in content.files else None
        if compressed and f"{key}_mask" in content.files:
            full = np.zeros((arr.shape[0], mask.shape[0], arr.shape[2]), dtype=arr.dtype)
            if int(mask.sum()) != arr.shape[1]:
                raise HumanDataError(f"{path}: compressed '{key}' has {arr.shape[1]} keypoints but "
                                     f"'{key}_mask' marks {int(mask.sum())}")
            full[:, np.where(mask == 1)[0], :] = arr
            arr = full
        if arr.ndim != 3 or arr.shape[1] <= max(J.HUMANDATA_TO_137) or arr.shape[2] < dims:
            raise HumanDataError(f"{path}: '{key}' has shape {arr.shape}; expected (N, 144 or 190, {dims}+) "
                                 "in the SMPL-X keypoint layout")
        kps = arr[:, list(J.HUMANDATA_TO_137), :dims]
        m = None if mask is None else mask[list(J.HUMANDATA_TO_137)]
        return kps, m
    if required:
        raise HumanDataError(f"{path}: no 2-D keypoints (expected one of {', '.join(KPS2D_KEYS)})")
    return None, None


def _image_shape(path: Path) -> Optional[Tuple[int, int]]:
    """(h, w) from the image header (Pillow) or the decoded image; None if missing or unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        return int(h), int(w)
    except ImportError:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        return None if img is None else (int(img.shape[0]), int(img.shape[1]))
    except Exception:  # a missing or unreadable image: the sample is skipped and counted
        return None


def read_humandata(annot_path, image_root, split: str = "train", bbox_ratio: float = BBOX_RATIO,
                   sample_interval: int = 1, shuffle_seed: Optional[int] = None,
                   stats: Optional[Dict[str, int]] = None) -> List[Record]:
    """The official sample list of a HumanData file (``HumanDataset.load_data``).

    ``shuffle_seed``: shuffle the list as the official "balance" strategy does (seed 2023 there).
    ``stats`` (optional dict) receives ``{"read": N, "kept": k, "no_image": m}``.
    """
    path = Path(annot_path)
    root = Path(image_root)
    if not path.is_file():
        raise HumanDataError(f"HumanData file not found: {path}")
    try:
        content = np.load(str(path), allow_pickle=True)
    except Exception as exc:
        raise HumanDataError(f"{path}: not a readable HumanData .npz ({type(exc).__name__}: {exc})") from exc
    with content:
        image_path = np.asarray(_need(content, "image_path", path))
        n = len(image_path)
        bbox_xywh = np.asarray(_need(content, "bbox_xywh", path))
        _check_len("bbox_xywh", bbox_xywh, n, path)
        if bbox_xywh.ndim != 2 or bbox_xywh.shape[1] < 4:
            raise HumanDataError(f"{path}: 'bbox_xywh' has shape {bbox_xywh.shape}; expected (N, 5)")
        meta = content["meta"].item() if "meta" in content.files else None
        shapes = None
        if isinstance(meta, dict) and "height" in meta and "width" in meta:
            shapes = np.stack([np.asarray(meta["height"]), np.asarray(meta["width"])], -1)
            _check_len("meta.height", shapes, n, path)
        for model in ("smplx", "smpl", "smplh"):
            if model in content.files:
                params = content[model].item()
                break
        else:
            raise HumanDataError(f"{path}: no SMPL-X parameters (expected key 'smplx', 'smpl' or 'smplh')")
        if not isinstance(params, dict):
            raise HumanDataError(f"{path}: '{model}' must hold a dict of arrays")
        params = {k: np.asarray(v) for k, v in params.items()}
        for k, v in params.items():
            _check_len(f"{model}.{k}", v, n, path)
        for k in ("global_orient", "body_pose"):
            if k not in params:
                raise HumanDataError(f"{path}: '{model}' has no '{k}' (has: {', '.join(sorted(params))})")
        if "betas" not in params and "betas_neutral" not in params:
            raise HumanDataError(f"{path}: '{model}' has no 'betas'")
        part_boxes = {}
        for key in ("lhand_bbox_xywh", "rhand_bbox_xywh", "face_bbox_xywh"):
            arr = np.asarray(content[key]) if key in content.files else np.zeros_like(bbox_xywh)
            _check_len(key, arr, n, path)
            part_boxes[key] = arr
        if "lhand_bbox_xywh" not in content.files or "rhand_bbox_xywh" not in content.files:  # official: both or none
            part_boxes["lhand_bbox_xywh"] = part_boxes["rhand_bbox_xywh"] = np.zeros_like(bbox_xywh)
        compressed = bool(content["__keypoints_compressed__"]) if "__keypoints_compressed__" in content.files else False
        kps3d, mask3d = _keypoints(content, KPS3D_KEYS, 3, n, compressed, path, required=False)
        kps2d, mask2d = _keypoints(content, KPS2D_KEYS, 2, n, compressed, path, required=True)
    mask = mask3d if mask3d is not None else mask2d
    if mask is None:
        mask = np.ones(J.JOINT_NUM, dtype=np.float32)

    records: List[Record] = []
    no_image = 0
    for i in range(n):
        if i % sample_interval != 0:
            continue
        img_path = str(root / str(image_path[i]))
        img_shape = tuple(int(v) for v in shapes[i]) if shapes is not None else _image_shape(Path(img_path))
        if img_shape is None:
            no_image += 1
            continue
        h, w = img_shape
        bbox = process_bbox(bbox_xywh[i][:4], w, h, ratio=bbox_ratio * BODY_RATIO_FACTOR)
        if bbox is None:
            continue
        boxes = []
        for key in ("lhand_bbox_xywh", "rhand_bbox_xywh", "face_bbox_xywh"):
            b = part_boxes[key][i]
            box = process_bbox(b[:4], w, h, ratio=bbox_ratio) if b[-1] > 0 else None
            if box is not None:
                box = box.copy()
                box[2:] += box[:2]  # xywh -> xyxy
            boxes.append(box)
        joint_cam = None if kps3d is None else np.asarray(kps3d[i], np.float32)
        if joint_cam is not None and np.any(np.isnan(joint_cam)):
            continue
        param = {k: v[i] for k, v in params.items()}
        for old, new in _PARAM_RENAMES:
            param[new] = param.pop(old, None)
        param["trans"] = param.pop("transl", np.zeros(3, np.float32))
        if "betas_neutral" in param:
            param["shape"] = param.pop("betas_neutral")
        if model == "smpl":
            param["shape"] = np.zeros(10, dtype=np.float32)
            param["body_pose"] = np.asarray(param["body_pose"]).reshape(-1, 3)[:21, :]
        elif model == "smplh":
            param["shape"] = np.zeros(10, dtype=np.float32)
        param["lhand_valid"] = param["lhand_pose"] is not None
        param["rhand_valid"] = param["rhand_pose"] is not None
        param["face_valid"] = param["expr"] is not None
        records.append(Record(img_path, (h, w), bbox, boxes[0], boxes[1], boxes[2],
                              np.asarray(kps2d[i], np.float32), joint_cam,
                              np.asarray(mask, np.float32).reshape(-1, 1), param))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(records)
    if stats is not None:
        stats.update(read=n, kept=len(records), no_image=no_image)
    return records


SmplxJoints = Callable[[Dict[str, np.ndarray]], np.ndarray]


class HumanDataset(torch.utils.data.Dataset):
    """Samples of one HumanData file: ``(inputs, targets, meta_info)`` like the official dataset.

    ``split="train"``: augmentation drawn per sample when ``augment`` (identity otherwise) and the
    full training targets; ``smplx_joints`` (params -> (137, 3) joints, see
    :func:`engines.training.forward.smplx_joint_fn`) is needed only for samples without 3-D
    keypoints. ``split="test"``: identity crop, SMPL-X ground truth for the evaluation.
    """

    def __init__(self, annot_path, image_root, split: str = "train", augment: bool = True,
                 bbox_ratio: float = BBOX_RATIO, sample_interval: int = 1, shuffle_seed: Optional[int] = None,
                 smplx_joints: Optional[SmplxJoints] = None):
        if split not in ("train", "test"):
            raise ValueError("split must be 'train' or 'test'")
        self.split = split
        self.augment = augment and split == "train"
        self.smplx_joints = smplx_joints
        self.name = Path(annot_path).name
        self.stats: Dict[str, int] = {}
        self.records = read_humandata(annot_path, image_root, split, bbox_ratio, sample_interval, shuffle_seed,
                                      self.stats)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, idx: int):
        rec = self.records[idx]
        aug = Augment.draw() if self.augment else Augment.identity()
        img = load_image_rgb(rec.img_path)
        patch, img2bb, bb2img = crop_augmented(img, rec.bbox, aug)
        inputs = {"img": torch.from_numpy(patch.astype(np.float32).transpose(2, 0, 1).copy()) / 255.0}
        pose, shape, expr, pose_valid, expr_valid = smplx_param_targets(rec.smplx_param, aug.flip, aug.rot)
        if self.split == "test":
            trans = np.asarray(rec.smplx_param["trans"], np.float32).reshape(3)
            return inputs, {"smplx_pose": pose, "smplx_shape": shape, "smplx_expr": expr, "smplx_cam_trans": trans}, \
                {"img_path": rec.img_path, "bb2img_trans": bb2img, "gt_smplx_transl": trans}
        return inputs, *self._train_targets(rec, aug, img2bb, pose, shape, expr, pose_valid, expr_valid)

    def _train_targets(self, rec: Record, aug: Augment, img2bb, pose, shape, expr, pose_valid, expr_valid):
        dummy = rec.joint_cam is None
        if dummy:
            joint_cam = np.zeros((J.JOINT_NUM, 3), dtype=np.float32)
        else:
            joint_cam = rec.joint_cam - rec.joint_cam[J.ROOT, None, :]
        joint_img = np.concatenate((rec.joint_img[:, :2], joint_cam[:, 2:]), 1)
        if not dummy:
            joint_img[:, 2] = (joint_img[:, 2] / (BODY_3D_SIZE / 2) + 1) / 2.0 * OUTPUT_HM_SHAPE[0]
        joint_img_aug, cam_wo_ra, cam_ra, joint_valid, joint_trunc = keypoint_targets(
            joint_img, joint_cam, rec.joint_valid, aug.flip, rec.img_shape, img2bb, aug.rot)
        if dummy:
            if self.smplx_joints is None:
                raise UserError(f"{rec.img_path}: a sample without 3-D keypoints needs the SMPL-X body model")
            smplx_cam, smplx_trunc, smplx_valid = smplx_joint_targets(
                rec.smplx_param, joint_img, aug.flip, rec.img_shape, img2bb, aug.rot, self.smplx_joints)
            smplx_valid = smplx_valid[:, None]
            smplx_trunc = smplx_valid * smplx_trunc
        boxes = {}
        for part in ("lhand", "rhand", "face"):
            boxes[part] = part_box_target(getattr(rec, f"{part}_bbox"), aug.flip, rec.img_shape, img2bb)
        if aug.flip:
            boxes["lhand"], boxes["rhand"] = boxes["rhand"], boxes["lhand"]
        targets = {"joint_img": joint_img_aug, "smplx_joint_img": joint_img_aug, "joint_cam": cam_wo_ra,
                   "smplx_joint_cam": smplx_cam if dummy else cam_ra,
                   "smplx_pose": pose, "smplx_shape": shape, "smplx_expr": expr}
        meta = {"joint_valid": joint_valid, "joint_trunc": joint_trunc,
                "smplx_joint_valid": smplx_valid if dummy else joint_valid,
                "smplx_joint_trunc": smplx_trunc if dummy else joint_trunc,
                "smplx_pose_valid": np.tile(pose_valid[:, None], (1, 3)).reshape(-1),
                "smplx_shape_valid": float(not (shape == 0).all()),
                "smplx_expr_valid": float(expr_valid), "is_3D": float(not dummy)}
        for part, (box, valid) in boxes.items():
            targets[f"{part}_bbox_center"] = (box[0] + box[1]) / 2.0
            targets[f"{part}_bbox_size"] = box[1] - box[0]
            meta[f"{part}_bbox_valid"] = valid
        return targets, meta
