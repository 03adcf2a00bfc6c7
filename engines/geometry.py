"""Pure pre- and post-processing functions of the SMPLer-X pipeline.

Numpy parts follow the official demo (``common/utils/preprocessing.py``); torch
parts are the differentiable helpers the network uses (``common/utils/transforms.py``).
Everything here is stateless and unit-tested against literal re-derivations.

Person boxes (xywh, full-frame pixels) live here too: IoU and containment, padding and
clipping, the head square, following a skeleton to the image border, and
:func:`box_from_joints`, the detector-like box around projected SMPL-X joints that the
tracker follows a person with (:mod:`engines.detector` builds its boxes from Pose
landmarks with the same rules).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .body_model import NUM_JOINTS, PARENTS

log = logging.getLogger(__name__)

#: Model input crop (height, width) and the ViT input it is subsampled to.
INPUT_IMG_SHAPE = (512, 384)
INPUT_BODY_SHAPE = (256, 192)
#: Heat-map volumes (depth, height, width).
OUTPUT_HM_SHAPE = (16, 16, 12)
OUTPUT_HAND_HM_SHAPE = (16, 16, 16)
#: Virtual camera of the 256x192 body crop.
FOCAL = (5000.0, 5000.0)
PRINCPT = (INPUT_BODY_SHAPE[1] / 2, INPUT_BODY_SHAPE[0] / 2)
CAMERA_3D_SIZE = 2.5
BBOX_RATIO = 1.25


# --------------------------------------------------------------------------- boxes & crop
def sanitize_bbox(bbox, img_width: int, img_height: int) -> Optional[np.ndarray]:
    """Clamp an xywh box to the image (official ``sanitize_bbox``); None if degenerate."""
    x, y, w, h = (float(v) for v in bbox)
    x1 = max(0.0, x)
    y1 = max(0.0, y)
    x2 = min(img_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(img_height - 1.0, y1 + max(0.0, h - 1.0))
    if w * h > 0 and x2 > x1 and y2 > y1:
        return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)
    return None


def process_bbox(bbox, img_width: int, img_height: int, ratio: float = BBOX_RATIO) -> Optional[np.ndarray]:
    """Sanitise, fix the aspect ratio to 384/512 and pad by ``ratio`` (official ``process_bbox``).

    Returns a float32 xywh box, or None when the box is degenerate.
    """
    box = sanitize_bbox(bbox, img_width, img_height)
    if box is None:
        return None
    w, h = box[2], box[3]
    c_x = box[0] + w / 2.0
    c_y = box[1] + h / 2.0
    aspect_ratio = INPUT_IMG_SHAPE[1] / INPUT_IMG_SHAPE[0]
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    box[2] = w * ratio
    box[3] = h * ratio
    box[0] = c_x - box[2] / 2.0
    box[1] = c_y - box[3] / 2.0
    return box.astype(np.float32)


def process_bboxes(bboxes: Sequence[Sequence[float]], img_width: int, img_height: int
                   ) -> Tuple[List[int], List[np.ndarray], List[np.ndarray]]:
    """The boxes the model sees for a frame's raw boxes (xywh): :func:`process_bbox` for each, with
    its crop-to-frame affine. Returns (index of each kept box in ``bboxes``, processed boxes,
    affines); a box degenerate after clipping is skipped with a warning."""
    kept, boxes, invs = [], [], []
    for i, raw in enumerate(bboxes):
        box = process_bbox(raw, img_width, img_height)
        if box is None:
            log.warning("box %s is degenerate after clipping to the %dx%d frame; skipped", list(raw),
                        img_width, img_height)
            continue
        kept.append(i)
        boxes.append(box)
        invs.append(crop_transform(box, inverse=True))
    return kept, boxes, invs


def crop_transform(bbox, out_shape=INPUT_IMG_SHAPE, inverse: bool = False) -> np.ndarray:
    """2x3 affine from the frame to the ``out_shape`` crop of ``bbox`` (or back, if ``inverse``).

    Built like the official ``gen_trans_from_patch_cv`` (scale 1, no rotation): three
    float32 point pairs (centre, centre + half height down, centre + half width right).
    """
    c_x = float(bbox[0] + 0.5 * bbox[2])
    c_y = float(bbox[1] + 0.5 * bbox[3])
    src_w, src_h = float(bbox[2]), float(bbox[3])
    dst_h, dst_w = out_shape
    src_center = np.array([c_x, c_y], dtype=np.float32)
    src = np.stack([
        src_center,
        src_center + np.array([0, src_h * 0.5], dtype=np.float32),
        src_center + np.array([src_w * 0.5, 0], dtype=np.float32),
    ]).astype(np.float32)
    dst_center = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32)
    dst = np.stack([
        dst_center,
        dst_center + np.array([0, dst_h * 0.5], dtype=np.float32),
        dst_center + np.array([dst_w * 0.5, 0], dtype=np.float32),
    ]).astype(np.float32)
    trans = cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)
    return trans.astype(np.float32)


def crop_image(image_rgb: np.ndarray, bbox, out_shape=INPUT_IMG_SHAPE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine crop of a float32 RGB frame to the model input (official ``generate_patch_image``).

    Returns (patch float32 HxWx3, frame->patch 2x3, patch->frame 2x3).
    """
    img = np.asarray(image_rgb, dtype=np.float32)
    trans = crop_transform(bbox, out_shape)
    patch = cv2.warpAffine(img, trans, (int(out_shape[1]), int(out_shape[0])), flags=cv2.INTER_LINEAR)
    return patch.astype(np.float32), trans, crop_transform(bbox, out_shape, inverse=True)


def to_input_batch(patches) -> np.ndarray:
    """HxWx3 float32 RGB crops in [0, 255] -> Bx3xHxW float32 in [0, 1] (ToTensor on float input, then /255)."""
    batch = np.stack([np.asarray(p, np.float32).transpose(2, 0, 1) for p in patches])
    return batch / np.float32(255)


_PIXEL_GRIDS: dict = {}


def crop_batch_torch(frame_bgr: torch.Tensor, inv_transforms: torch.Tensor,
                     out_shape=INPUT_IMG_SHAPE) -> torch.Tensor:
    """:func:`crop_image` + :func:`to_input_batch` for all boxes of one frame, on the frame's device.

    ``frame_bgr`` (H, W, 3) uint8 BGR; ``inv_transforms`` (B, 2, 3) crop->frame affines
    (``crop_transform(box, inverse=True)``). Returns (B, 3, h, w) float32 RGB in [0, 1].
    Bilinear sampling with zeros outside the frame, like ``cv2.warpAffine(INTER_LINEAR,
    BORDER_CONSTANT)``, with sample positions rounded to 1/32 pixel as OpenCV does; the
    fixed-point details differ, so values are close but not bit-equal (bounded in the tests).
    The CPU path keeps OpenCV for bit-equality with the official code; this one is for the GPU.
    """
    import torch.nn.functional as F

    h_out, w_out = int(out_shape[0]), int(out_shape[1])
    height, width = int(frame_bgr.shape[0]), int(frame_bgr.shape[1])
    key = (h_out, w_out, frame_bgr.device)
    pix = _PIXEL_GRIDS.get(key)
    if pix is None:
        ys, xs = torch.meshgrid(torch.arange(h_out, dtype=torch.float32, device=frame_bgr.device),
                                torch.arange(w_out, dtype=torch.float32, device=frame_bgr.device), indexing="ij")
        pix = _PIXEL_GRIDS[key] = torch.stack((xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)))
    inv = inv_transforms.to(device=frame_bgr.device, dtype=torch.float32)
    src = inv @ pix                                                        # (B, 2, h*w) frame pixels
    src = torch.floor(src * 32.0 + 0.5) / 32.0  # OpenCV's 1/32-pixel sample positions (INTER_BITS = 5)
    scale = constant((2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)), src)
    grid = (src * scale[None, :, None] - 1.0).transpose(1, 2).reshape(-1, h_out, w_out, 2)
    rgb = frame_bgr.permute(2, 0, 1).flip(0).unsqueeze(0).float()          # (1, 3, H, W) RGB, 0..255
    batch = rgb.expand(grid.shape[0], -1, -1, -1)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out / 255.0


def to_input_tensor(patch: np.ndarray) -> torch.Tensor:
    """One crop as a 1x3xHxW tensor (see :func:`to_input_batch`)."""
    return torch.from_numpy(to_input_batch([patch]))


def bgr_to_rgb_float(image_bgr: np.ndarray) -> np.ndarray:
    """What the official ``load_img`` returns: RGB float32 in [0, 255]. Grey and BGRA frames
    are first brought to BGR like ``cv2.imread(..., IMREAD_COLOR)`` (:func:`engines.media.to_bgr`)."""
    from .media import to_bgr

    return np.ascontiguousarray(to_bgr(image_bgr)[:, :, ::-1]).astype(np.float32)


def apply_affine(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ trans[:, :2].T.astype(np.float64) + trans[:, 2].astype(np.float64)


# --------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class FullFrameCamera:
    focal: Tuple[float, float]
    princpt: Tuple[float, float]

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        return project_points(points_cam, self.focal, self.princpt)


def project_points(points_cam: np.ndarray, focal, princpt) -> np.ndarray:
    """The one pinhole projection of the project: camera-space points (..., 3) (OpenCV frame:
    x right, y down, z forward) to pixels (..., 2): ``x / z * fx + cx``, ``y / z * fy + cy``."""
    p = np.asarray(points_cam, dtype=np.float64)
    f = np.asarray(focal, dtype=np.float64).reshape(2)
    c = np.asarray(princpt, dtype=np.float64).reshape(2)
    z = p[..., 2]
    return np.stack([p[..., 0] / z * f[0] + c[0], p[..., 1] / z * f[1] + c[1]], axis=-1)


def full_frame_camera(bbox) -> FullFrameCamera:
    """Camera of the full frame for a processed box (official demo's focal/princpt)."""
    bx, by, bw, bh = (float(v) for v in bbox)
    focal = (FOCAL[0] / INPUT_BODY_SHAPE[1] * bw, FOCAL[1] / INPUT_BODY_SHAPE[0] * bh)
    princpt = (PRINCPT[0] / INPUT_BODY_SHAPE[1] * bw + bx, PRINCPT[1] / INPUT_BODY_SHAPE[0] * bh + by)
    return FullFrameCamera(focal, princpt)


#: Depth scale k of ``get_camera_trans`` (computed in float64, used as float32).
CAMERA_K = math.sqrt(FOCAL[0] * FOCAL[1] * CAMERA_3D_SIZE * CAMERA_3D_SIZE / (INPUT_BODY_SHAPE[0] * INPUT_BODY_SHAPE[1]))


_CONSTANTS: dict = {}


def constant(values, like: torch.Tensor, dtype=None) -> torch.Tensor:
    """A small constant tensor on ``like``'s device, made once and then reused: no host-to-device
    copy per call, so the forward can be captured in a CUDA graph (the first, eager warm-up run
    creates it). Under tracing (``torch.export``, the ONNX exporter, ``torch.compile``) the
    tensor made is a fake one: it is returned but never kept, or a later eager call would get it."""
    dtype = like.dtype if dtype is None else dtype
    key = (tuple(values), dtype, like.device)
    t = _CONSTANTS.get(key)
    if t is None:
        t = torch.tensor(list(values), dtype=dtype, device=like.device)
        if not _is_traced(t):
            _CONSTANTS[key] = t
    return t


def _is_traced(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return is_fake(t) or torch.compiler.is_compiling()


def camera_translation(cam_param: torch.Tensor) -> torch.Tensor:
    """(B, 3) network camera output -> translation (t_x, t_y, k * sigmoid(t_z))."""
    t_xy = cam_param[:, :2]
    gamma = torch.sigmoid(cam_param[:, 2])
    k = constant((CAMERA_K,), cam_param, torch.float32)
    return torch.cat((t_xy, (k * gamma)[:, None]), 1)


# --------------------------------------------------------------------------- rotations (torch)
def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """(N, 6) -> (N, 3, 3). The raw 6 numbers are read as a 3x2 matrix (row-major):
    columns a1 = (x0, x2, x4), a2 = (x1, x3, x5); Gram-Schmidt; b3 = b1 x b2.

    Unlike the official code, the cross product is taken over the last axis, so
    the result does not depend on the batch size (the official ``torch.cross``
    without ``dim`` is wrong when N == 3).
    """
    x = x.reshape(-1, 3, 2)
    a1 = x[:, :, 0]
    a2 = x[:, :, 1]
    b1 = F.normalize(a1, dim=1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def _rotmat_to_quat_wxyz(rot: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) -> quaternions (w, x, y, z).

    Same case analysis and arithmetic as torchgeometry 0.1.2's
    ``rotation_matrix_to_quaternion`` (which the official code uses), so that
    outputs match it to float rounding, including near 180 degrees.
    """
    r = rot.transpose(1, 2)
    r00, r01, r02 = r[:, 0, 0], r[:, 0, 1], r[:, 0, 2]
    r10, r11, r12 = r[:, 1, 0], r[:, 1, 1], r[:, 1, 2]
    r20, r21, r22 = r[:, 2, 0], r[:, 2, 1], r[:, 2, 2]

    mask_d2 = r22 < eps
    mask_d0_d1 = r00 > r11
    mask_d0_nd1 = r00 < -r11

    t0 = 1 + r00 - r11 - r22
    q0 = torch.stack([r12 - r21, t0, r01 + r10, r20 + r02], -1)
    t1 = 1 - r00 + r11 - r22
    q1 = torch.stack([r20 - r02, r01 + r10, t1, r12 + r21], -1)
    t2 = 1 - r00 - r11 + r22
    q2 = torch.stack([r01 - r10, r20 + r02, r12 + r21, t2], -1)
    t3 = 1 + r00 + r11 + r22
    q3 = torch.stack([t3, r12 - r21, r20 - r02, r01 - r10], -1)

    c0 = (mask_d2 & mask_d0_d1).to(rot.dtype)
    c1 = (mask_d2 & ~mask_d0_d1).to(rot.dtype)
    c2 = (~mask_d2 & mask_d0_nd1).to(rot.dtype)
    c3 = (~mask_d2 & ~mask_d0_nd1).to(rot.dtype)
    q = q0 * c0[:, None] + q1 * c1[:, None] + q2 * c2[:, None] + q3 * c3[:, None]
    t = t0 * c0 + t1 * c1 + t2 * c2 + t3 * c3
    q = q / torch.sqrt(t)[:, None]
    return q * 0.5


def _quat_wxyz_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) (w, x, y, z) -> axis-angle (..., 3), the atan2 (ceres-style) route."""
    q1, q2, q3 = q[..., 1], q[..., 2], q[..., 3]
    sin_sq = q1 * q1 + q2 * q2 + q3 * q3
    sin_theta = torch.sqrt(sin_sq)
    cos_theta = q[..., 0]
    two_theta = 2.0 * torch.where(cos_theta < 0.0,
                                  torch.atan2(-sin_theta, -cos_theta),
                                  torch.atan2(sin_theta, cos_theta))
    k_pos = two_theta / sin_theta
    k_neg = 2.0 * torch.ones_like(sin_theta)
    k = torch.where(sin_sq > 0.0, k_pos, k_neg)
    return torch.stack([q1 * k, q2 * k, q3 * k], -1)


def rotmat_to_axis_angle(rot: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) matrices -> (N, 3) axis-angle by the official route (torchgeometry 0.1.2's
    quaternion conversion; NaNs replaced by 0). Also defined for the non-rotations the official
    batch-of-3 ``torch.cross`` quirk produces (:mod:`engines.evaluation.official_batching`)."""
    aa = _quat_wxyz_to_axis_angle(_rotmat_to_quat_wxyz(rot))
    return torch.where(torch.isnan(aa), torch.zeros_like(aa), aa)


def rot6d_to_axis_angle(x: torch.Tensor) -> torch.Tensor:
    """(N, 6) network rotations -> (N, 3) axis-angle (NaNs replaced by 0, as officially)."""
    aa = _quat_wxyz_to_axis_angle(_rotmat_to_quat_wxyz(rot6d_to_rotmat(x)))
    return torch.where(torch.isnan(aa), torch.zeros_like(aa), aa)


# --------------------------------------------------------------------------- heat maps
def soft_argmax_3d(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, J, D, H, W) logits -> (B, J, 3) expected (x, y, z) voxel indices."""
    b, j, d, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, d * h * w), 2).reshape(b, j, d, h, w)
    ax = prob.sum(dim=(2, 3)) * torch.arange(w, dtype=prob.dtype, device=prob.device)[None, None]
    ay = prob.sum(dim=(2, 4)) * torch.arange(h, dtype=prob.dtype, device=prob.device)[None, None]
    az = prob.sum(dim=(3, 4)) * torch.arange(d, dtype=prob.dtype, device=prob.device)[None, None]
    return torch.cat((ax.sum(2, keepdim=True), ay.sum(2, keepdim=True), az.sum(2, keepdim=True)), 2)


def soft_argmax_2d(heatmap: torch.Tensor) -> torch.Tensor:
    """(B, J, H, W) logits -> (B, J, 2) expected (x, y) pixel indices."""
    b, j, h, w = heatmap.shape
    prob = F.softmax(heatmap.reshape(b, j, h * w), 2).reshape(b, j, h, w)
    ax = prob.sum(dim=2) * torch.arange(w, dtype=prob.dtype, device=prob.device)[None, None]
    ay = prob.sum(dim=3) * torch.arange(h, dtype=prob.dtype, device=prob.device)[None, None]
    return torch.cat((ax.sum(2, keepdim=True), ay.sum(2, keepdim=True)), 2)


def sample_joint_features(feat: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B, J, C) of ``feat`` (B, C, H, W) at pixel coords ``xy`` (B, J, 2)."""
    h, w = feat.shape[2:]
    gx = xy[:, :, 0] / (w - 1) * 2 - 1
    gy = xy[:, :, 1] / (h - 1) * 2 - 1
    grid = torch.stack((gx, gy), 2)[:, :, None, :]
    out = F.grid_sample(feat, grid, align_corners=True)[:, :, :, 0]
    return out.permute(0, 2, 1).contiguous()


def restore_bbox(center: torch.Tensor, size: torch.Tensor, aspect_ratio: float, extension: float) -> torch.Tensor:
    """Hand/face box from BoxNet centre and size (16x12 grid units) -> xyxy in 256x192 body-crop pixels."""
    c = center.reshape(-1, 1, 2)
    s = size.reshape(-1, 1, 2)
    box = c + torch.cat((-s / 2.0, s / 2.0), 1)
    scale = constant((INPUT_BODY_SHAPE[1] / 1.0, INPUT_BODY_SHAPE[0] / 1.0), box)
    grid = constant((float(OUTPUT_HM_SHAPE[2]), float(OUTPUT_HM_SHAPE[1])), box)
    box = box / grid * scale
    box = box.reshape(-1, 4)
    x1, y1 = box[:, 0], box[:, 1]
    w = box[:, 2] - x1
    h = box[:, 3] - y1
    c_x = x1 + w / 2.0
    c_y = y1 + h / 2.0
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h = torch.where(wider, w / aspect_ratio, h)
    w = torch.where(taller, h * aspect_ratio, w)
    w = w * extension
    h = h * extension
    nx1 = c_x - w / 2.0
    ny1 = c_y - h / 2.0
    return torch.stack((nx1, ny1, w + nx1, h + ny1), 1)


# --------------------------------------------------------------------------- person boxes

#: Default padding of a box built from keypoints, per side, as a fraction of its own size.
DEFAULT_PAD = 0.10
#: Minimum padding per side as a fraction of the box's larger side (thin boxes).
DEFAULT_MIN_PAD = 0.04


def iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xywh boxes (0 when either is empty)."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    if aw <= 0 or ah <= 0 or bw <= 0 or bh <= 0:
        return 0.0
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def pad_and_clip_box(
    x1: float, y1: float, x2: float, y2: float,
    image_size: Tuple[int, int],
    pad: float = DEFAULT_PAD,
    min_pad: float = DEFAULT_MIN_PAD,
) -> Optional[np.ndarray]:
    """Pad the bounds (x1, y1, x2, y2) and clip them to the image; returns xywh or None.

    Each side moves out by ``max(pad * own extent, min_pad * larger extent)``, so a
    thin box (a person seen side-on) still gets some margin. ``image_size`` is
    (width, height). None when the clipped box is empty.
    """
    width, height = image_size
    w, h = x2 - x1, y2 - y1
    if not np.isfinite([x1, y1, x2, y2]).all() or w < 0 or h < 0:
        return None
    big = max(w, h)
    px = max(pad * w, min_pad * big)
    py = max(pad * h, min_pad * big)
    cx1, cy1 = max(0.0, x1 - px), max(0.0, y1 - py)
    cx2, cy2 = min(float(width), x2 + px), min(float(height), y2 + py)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    return np.array([cx1, cy1, cx2 - cx1, cy2 - cy1], dtype=np.float32)


def head_square(center: np.ndarray, radius: float) -> np.ndarray:
    """The four corners of a square of half size ``radius`` around ``center`` (4, 2)."""
    cx, cy = float(center[0]), float(center[1])
    r = float(radius)
    return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.float32)


def head_radius(
    left_ear: np.ndarray, right_ear: np.ndarray,
    left_shoulder: np.ndarray, right_shoulder: np.ndarray,
    left_hip: np.ndarray, right_hip: np.ndarray,
) -> float:
    """Half size of the head in pixels, robust to the view direction.

    The ear distance shrinks in profile and the shoulder width when side-on, the
    torso length when bent forward: take the largest of the three estimates.
    """
    ear = float(np.linalg.norm(np.subtract(left_ear, right_ear)))
    shoulders = float(np.linalg.norm(np.subtract(left_shoulder, right_shoulder)))
    torso = float(np.linalg.norm(
        (np.add(left_shoulder, right_shoulder) - np.add(left_hip, right_hip)) / 2.0))
    return max(0.6 * ear, 0.3 * shoulders, 0.25 * torso)


def points_in_image(points: np.ndarray, image_size: Tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Boolean mask of the (N, 2) points inside the image grown by ``margin`` (fraction of its size)."""
    width, height = image_size
    mx, my = margin * width, margin * height
    pts = np.asarray(points, dtype=np.float64)
    finite = np.isfinite(pts).all(axis=1)
    with np.errstate(invalid="ignore"):
        inside = (pts[:, 0] >= -mx) & (pts[:, 0] <= width + mx) & (pts[:, 1] >= -my) & (pts[:, 1] <= height + my)
    return finite & inside


def segment_exit(inside_point: np.ndarray, outside_point: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
    """Where the segment from a point inside the image to one outside it crosses the border."""
    width, height = image_size
    a = np.asarray(inside_point, dtype=np.float64)
    d = np.asarray(outside_point, dtype=np.float64) - a
    t = 1.0
    for k, limit in ((0, width), (1, height)):
        if d[k] > 0 and a[k] + d[k] > limit:
            t = min(t, (limit - a[k]) / d[k])
        elif d[k] < 0 and a[k] + d[k] < 0:
            t = min(t, -a[k] / d[k])
    return (a + max(t, 0.0) * d).astype(np.float32)


def grow_along_bones(
    points: np.ndarray,
    used: np.ndarray,
    edges: Sequence[Tuple[int, int]],
    image_size: Tuple[int, int],
    can_extend: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Follow the skeleton out from the ``used`` points.

    A neighbour inside the image joins the used set when ``can_extend`` allows it
    (all by default), and the walk goes on from it; a neighbour outside the image
    adds the point where the bone leaves the picture (the limb is visible up to
    the border). Returns (used mask, (K, 2) border points).
    """
    pts = np.asarray(points, dtype=np.float64)
    used = np.array(used, dtype=bool)
    inside = points_in_image(pts, image_size)
    allowed = np.ones(len(pts), bool) if can_extend is None else np.asarray(can_extend, bool)
    neighbours = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    exits = []
    queue = [int(i) for i in np.flatnonzero(used)]
    while queue:
        a = queue.pop()
        for b in neighbours.get(a, ()):
            if used[b] or not np.isfinite(pts[b]).all():
                continue
            if inside[b]:
                if allowed[b]:
                    used[b] = True
                    queue.append(b)
            elif inside[a]:
                exits.append(segment_exit(pts[a], pts[b], image_size))
    border = np.array(exits, dtype=np.float32).reshape(-1, 2)
    return used, border


def containment_xywh(inner: Sequence[float], outer: Sequence[float]) -> float:
    """Share of ``inner``'s area that lies inside ``outer``."""
    ix, iy, iw, ih = (float(v) for v in inner)
    ox, oy, ow, oh = (float(v) for v in outer)
    if iw <= 0 or ih <= 0:
        return 0.0
    w = min(ix + iw, ox + ow) - max(ix, ox)
    h = min(iy + ih, oy + oh) - max(iy, oy)
    return max(w, 0.0) * max(h, 0.0) / (iw * ih)


# SMPL-X joint ids (the 144-joint output of the ``smplx`` layer with face contour).
J_LEFT_HIP, J_RIGHT_HIP = 1, 2
J_LEFT_ANKLE, J_RIGHT_ANKLE = 7, 8
J_HEAD = 15
J_LEFT_SHOULDER, J_RIGHT_SHOULDER = 16, 17
J_NOSE, J_RIGHT_EYE, J_LEFT_EYE, J_RIGHT_EAR, J_LEFT_EAR = 55, 56, 57, 58, 59
#: Joints the box is built from: 55 kinematic + nose/eyes/ears, toes/heels, fingertips.
NUM_BOX_JOINTS = 76
#: Body joints (no fingers) whose share inside the image decides "mostly outside".
BODY_JOINTS = tuple(range(0, 22)) + tuple(range(55, 66))
HEAD_JOINTS = (J_HEAD, J_NOSE, J_RIGHT_EYE, J_LEFT_EYE, J_RIGHT_EAR, J_LEFT_EAR)

#: Parent of each extra keypoint 55..75 (face to head, toes/heels to ankles, tips to last phalanx).
_EXTRA_PARENTS = {
    55: J_HEAD, 56: J_HEAD, 57: J_HEAD, 58: J_HEAD, 59: J_HEAD,
    60: J_LEFT_ANKLE, 61: J_LEFT_ANKLE, 62: J_LEFT_ANKLE,
    63: J_RIGHT_ANKLE, 64: J_RIGHT_ANKLE, 65: J_RIGHT_ANKLE,
    66: 39, 67: 27, 68: 30, 69: 36, 70: 33,  # left thumb, index, middle, ring, pinky tips
    71: 54, 72: 42, 73: 45, 74: 51, 75: 48,  # right thumb, index, middle, ring, pinky tips
}
#: Bones of the box joints (SMPL-X kinematic tree plus the extra keypoints).
SMPLX_BONES: Tuple[Tuple[int, int], ...] = tuple(
    [(int(PARENTS[j]), j) for j in range(1, NUM_JOINTS)] + sorted((p, c) for c, p in _EXTRA_PARENTS.items())
)


def box_from_joints(
    joints_2d: np.ndarray,
    image_size: Tuple[int, int],
    pad: float = DEFAULT_PAD,
    near: float = 0.05,
) -> Optional[np.ndarray]:
    """Detector-like xywh box around projected SMPL-X joints, or None.

    Uses the 55 kinematic joints and the face, feet and fingertip keypoints
    (ids 55-75, when present) that lie inside the image or within ``near`` (a
    fraction of the image size) of it; where a bone leaves the picture the
    border crossing counts too. Headroom above the head joints, padding and
    clipping follow :func:`engines.detector.landmarks_box`. ``image_size`` is
    (width, height). None when no joint is usable or the box is empty.
    """
    pts = np.asarray(joints_2d, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < NUM_JOINTS:
        raise ValueError(f"joints_2d must be (J >= {NUM_JOINTS}, 2), got {pts.shape}")
    n = min(pts.shape[0], NUM_BOX_JOINTS)
    pts = pts[:n]
    used = points_in_image(pts, image_size, margin=near)
    if not used.any():
        return None
    bones = [(a, b) for a, b in SMPLX_BONES if a < n and b < n]
    _, border = grow_along_bones(pts, used, bones, image_size, can_extend=np.zeros(n, bool))
    parts = [pts[used].astype(np.float32), border]
    head = [j for j in HEAD_JOINTS if j < n and used[j]]
    if head:
        ears = (J_LEFT_EAR, J_RIGHT_EAR)
        center = pts[list(ears)].mean(axis=0) if all(j < n and used[j] for j in ears) else pts[head].mean(axis=0)
        radius = head_radius(
            pts[J_LEFT_EAR] if n > J_LEFT_EAR else pts[J_HEAD],
            pts[J_RIGHT_EAR] if n > J_RIGHT_EAR else pts[J_HEAD],
            pts[J_LEFT_SHOULDER], pts[J_RIGHT_SHOULDER], pts[J_LEFT_HIP], pts[J_RIGHT_HIP],
        )
        if np.isfinite(radius):
            parts.append(head_square(center, radius))
    allp = np.concatenate(parts, axis=0)
    allp = allp[np.isfinite(allp).all(axis=1)]
    if len(allp) == 0:
        return None
    x1, y1 = allp.min(axis=0)
    x2, y2 = allp.max(axis=0)
    return pad_and_clip_box(float(x1), float(y1), float(x2), float(y2), image_size, pad=pad)


def fraction_inside(joints_2d: np.ndarray, image_size: Tuple[int, int],
                    ids: Sequence[int] = BODY_JOINTS) -> float:
    """Share of the body joints (``ids`` that exist) that lie inside the image."""
    pts = np.asarray(joints_2d, dtype=np.float64)
    ids = [i for i in ids if i < pts.shape[0]]
    if not ids:
        return 0.0
    return float(points_in_image(pts[ids], image_size).mean())
