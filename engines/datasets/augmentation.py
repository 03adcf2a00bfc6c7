"""Training augmentation of the official SMPLer-X (``common/utils/preprocessing.py``): a random
scale, rotation, horizontal flip and colour gain, applied while cropping the body box.

The random draws use Python's ``random`` and numpy's global generator in the official order,
so a seeded run draws the same augmentation as the official code. ``Augment.identity()`` is the
official ``cfg.no_aug`` / test crop: scale 1, rotation 0, no flip, colour 1.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from engines.errors import UserError
from engines.geometry import INPUT_IMG_SHAPE

SCALE_FACTOR = 0.25
ROT_FACTOR = 30.0
COLOR_FACTOR = 0.2
ROT_PROBABILITY = 0.6
FLIP_PROBABILITY = 0.5


@dataclass(frozen=True)
class Augment:
    scale: float
    rot: float  # degrees
    color: Tuple[float, float, float]
    flip: bool

    @staticmethod
    def identity() -> "Augment":
        return Augment(1.0, 0.0, (1.0, 1.0, 1.0), False)

    @staticmethod
    def draw() -> "Augment":
        """One random augmentation, drawn like the official ``get_aug_config``."""
        scale = float(np.clip(np.random.randn(), -1.0, 1.0) * SCALE_FACTOR + 1.0)
        rot = float(np.clip(np.random.randn(), -2.0, 2.0) * ROT_FACTOR) if random.random() <= ROT_PROBABILITY else 0.0
        lo, hi = 1.0 - COLOR_FACTOR, 1.0 + COLOR_FACTOR
        color = (random.uniform(lo, hi), random.uniform(lo, hi), random.uniform(lo, hi))
        flip = random.random() <= FLIP_PROBABILITY
        return Augment(scale, rot, color, flip)


def load_image_rgb(path) -> np.ndarray:
    """An image as float32 RGB (H, W, 3) in [0, 255], EXIF orientation ignored (official ``load_img``)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if not isinstance(img, np.ndarray):
        what = "missing" if not Path(path).exists() else "unreadable"
        raise UserError(f"image {what}: {path}")
    return img[:, :, ::-1].astype(np.float32)


def _rotate_2d(pt, rad: float) -> np.ndarray:
    sn, cs = np.sin(rad), np.cos(rad)
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs], dtype=np.float32)


def patch_transform(c_x: float, c_y: float, width: float, height: float, out_w: int, out_h: int,
                    scale: float, rot: float, inverse: bool = False) -> np.ndarray:
    """2x3 float32 affine from the box (centre, size, scaled, rotated by ``rot`` degrees) to an
    ``out_w`` x ``out_h`` patch, or back (official ``gen_trans_from_patch_cv``)."""
    src_w, src_h = width * scale, height * scale
    center = np.array([c_x, c_y], dtype=np.float32)
    rad = np.pi * rot / 180
    down = _rotate_2d(np.array([0, src_h * 0.5], dtype=np.float32), rad)
    right = _rotate_2d(np.array([src_w * 0.5, 0], dtype=np.float32), rad)
    dst_c = np.array([out_w * 0.5, out_h * 0.5], dtype=np.float32)
    src = np.stack([center, center + down, center + right]).astype(np.float32)
    dst = np.stack([dst_c, dst_c + np.array([0, out_h * 0.5], np.float32),
                    dst_c + np.array([out_w * 0.5, 0], np.float32)]).astype(np.float32)
    trans = cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)
    return trans.astype(np.float32)


def crop_augmented(img: np.ndarray, bbox, aug: Augment, out_shape=INPUT_IMG_SHAPE):
    """Crop the xywh ``bbox`` of a float RGB image with ``aug`` (official ``augmentation``).

    Returns (patch float32 (H, W, 3) in [0, 255], img2bb 2x3, bb2img 2x3).
    """
    h_img, w_img = img.shape[:2]
    c_x = float(bbox[0] + 0.5 * bbox[2])
    c_y = float(bbox[1] + 0.5 * bbox[3])
    if aug.flip:
        img = img[:, ::-1, :]
        c_x = w_img - c_x - 1
    args = (c_x, c_y, float(bbox[2]), float(bbox[3]), out_shape[1], out_shape[0], aug.scale, aug.rot)
    trans = patch_transform(*args)
    patch = cv2.warpAffine(np.ascontiguousarray(img), trans, (int(out_shape[1]), int(out_shape[0])),
                           flags=cv2.INTER_LINEAR).astype(np.float32)
    inv = patch_transform(*args, inverse=True)
    patch = np.clip(patch * np.asarray(aug.color, dtype=np.float64)[None, None, :], 0, 255)
    return patch, trans, inv
