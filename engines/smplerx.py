"""The SMPLer-X network (ViT encoder + body, box, hand and face heads), in plain torch.

Written from the model description in the project's spec; module and parameter
names follow the official state-dict layout so official checkpoints load strictly.
The SMPL-X layer is not part of this module (see :mod:`engines.body_model`); the
full official forward (network + SMPL-X + projection) is :class:`SMPLerXFull`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import geometry as G
from .body_model import body_in_camera
from .roi_align import roi_align

NUM_TASK_TOKENS = 31  # shape, cam, expr, jaw, 2 hand (unused), 25 body-pose tokens
NUM_BODY_POS_JOINTS = 25
NUM_HAND_POS_JOINTS = 20
NUM_BODY_ROT = 21  # body joints without the root
NUM_HAND_ROT = 15
HAND_ROI_UPSCALE = 4


@dataclass(frozen=True)
class Variant:
    name: str
    embed_dim: int
    depth: int
    num_heads: int
    filename: str

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


VARIANTS: Dict[str, Variant] = {
    "s32": Variant("s32", 384, 12, 12, "smpler_x_s32.pth.tar"),
    "b32": Variant("b32", 768, 12, 12, "smpler_x_b32.pth.tar"),
    "l32": Variant("l32", 1024, 24, 16, "smpler_x_l32.pth.tar"),
    "h32": Variant("h32", 1280, 32, 16, "smpler_x_h32.pth.tar"),
}


# --------------------------------------------------------------------------- layer builders
def linear_stack(dims, relu_final: bool = False) -> nn.Sequential:
    """Linear layers with ReLU in between (indices 0, 2, 4 ... are Linear)."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or relu_final:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def conv1x1_stack(dims, bnrelu_final: bool = True) -> nn.Sequential:
    """1x1 Conv2d (+ BN + ReLU) layers (indices 0, 3, 6 ... are Conv2d)."""
    layers = []
    for i in range(len(dims) - 1):
        layers.append(nn.Conv2d(dims[i], dims[i + 1], kernel_size=1, stride=1, padding=0))
        if i < len(dims) - 2 or bnrelu_final:
            layers += [nn.BatchNorm2d(dims[i + 1]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def deconv_stack(dims) -> nn.Sequential:
    """ConvTranspose2d(k4, s2, p1, no bias) + BN + ReLU per layer; each doubles H and W."""
    layers = []
    for i in range(len(dims) - 1):
        layers += [
            nn.ConvTranspose2d(dims[i], dims[i + 1], kernel_size=4, stride=2, padding=1, output_padding=0, bias=False),
            nn.BatchNorm2d(dims[i + 1]),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- ViT encoder
class PatchEmbed(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        # padding 2 (= 4 + 2 * (ratio // 2 - 1) with ratio 1): 256x192 -> 16x12 patches
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16, padding=2)

    def forward(self, x):
        x = self.proj(x)
        hp, wp = x.shape[2], x.shape[3]
        return x.flatten(2).transpose(1, 2), (hp, wp)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        #: Use torch's fused scaled_dot_product_attention (same maths, different rounding).
        self.fused = False

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        #: Stochastic depth (training only; see :meth:`SMPLerX.set_drop_path`). 0 = off.
        self.drop_path = 0.0

    def forward(self, x):
        if self.training and self.drop_path > 0.0:
            x = x + drop_path(self.attn(self.norm1(x)), self.drop_path)
            return x + drop_path(self.mlp(self.norm2(x)), self.drop_path)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Drop the residual branch of whole samples with probability ``p``, scaling the kept ones by
    1 / (1 - p) (timm's ``drop_path``, as the official ViT encoder uses it in training)."""
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class ViTEncoder(nn.Module):
    """ViTPose-style backbone with 31 learned task tokens prepended to the 192 patch tokens."""

    def __init__(self, dim: int, depth: int, num_heads: int, num_patches: int = 192):
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.task_tokens = nn.Parameter(torch.zeros(1, NUM_TASK_TOKENS, dim))
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])
        self.last_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        """(B, 3, 256, 192) -> image features (B, C, 16, 12) and task tokens (B, 31, C)."""
        b = x.shape[0]
        x, (hp, wp) = self.patch_embed(x)
        # slot 0 of pos_embed is a legacy class-token slot, added to every patch token
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        x = torch.cat((self.task_tokens.expand(b, -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.last_norm(x)
        tokens = x[:, :NUM_TASK_TOKENS]
        feat = x[:, NUM_TASK_TOKENS:].permute(0, 2, 1).reshape(b, -1, hp, wp)
        return feat, tokens


# --------------------------------------------------------------------------- heads
class PositionNet(nn.Module):
    """Per-joint 3-D heat maps from a feature map; soft-argmax gives joint coordinates."""

    def __init__(self, dim: int, joint_num: int, hm_shape):
        super().__init__()
        self.joint_num = joint_num
        self.hm_shape = tuple(hm_shape)
        self.conv = conv1x1_stack([dim, joint_num * hm_shape[0]], bnrelu_final=False)

    def forward(self, feat, need_heatmap: bool = True):
        d, h, w = self.hm_shape
        logits = self.conv(feat).reshape(-1, self.joint_num, d, h, w)
        coord = G.soft_argmax_3d(logits)
        if not need_heatmap:
            return None, coord
        hm = F.softmax(logits.reshape(-1, self.joint_num, d * h * w), 2).reshape(-1, self.joint_num, d, h, w)
        return hm, coord


class BodyRotationNet(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        j = NUM_BODY_POS_JOINTS
        self.body_conv = linear_stack([dim, 512])
        self.root_pose_out = linear_stack([j * 515, 6])
        self.body_pose_out = linear_stack([j * 515, NUM_BODY_ROT * 6])
        self.shape_out = linear_stack([dim, 10])
        self.cam_out = linear_stack([dim, 3])

    def forward(self, body_pose_token, shape_token, cam_token, body_joint_img):
        b = body_pose_token.shape[0]
        shape = self.shape_out(shape_token)
        cam = self.cam_out(cam_token)
        feat = torch.cat((self.body_conv(body_pose_token), body_joint_img), 2).reshape(b, -1)
        return self.root_pose_out(feat), self.body_pose_out(feat), shape, cam


class BoxNet(nn.Module):
    """Hand and face box centres (soft-argmax on a 128x96 map) and sizes."""

    def __init__(self, dim: int):
        super().__init__()
        self.deconv = deconv_stack([dim + NUM_BODY_POS_JOINTS * G.OUTPUT_HM_SHAPE[0], 256, 256, 256])
        self.bbox_center = conv1x1_stack([256, 3], bnrelu_final=False)
        self.lhand_size = linear_stack([256, 256, 2])
        self.rhand_size = linear_stack([256, 256, 2])
        self.face_size = linear_stack([256, 256, 2])

    def forward(self, feat, joint_hm):
        d, h, w = G.OUTPUT_HM_SHAPE
        hm = joint_hm.reshape(joint_hm.shape[0], joint_hm.shape[1] * d, h, w)
        x = self.deconv(torch.cat((feat, hm), 1))
        centers = G.soft_argmax_2d(self.bbox_center(x))
        out = []
        for k, head in enumerate((self.lhand_size, self.rhand_size, self.face_size)):
            c = centers[:, k, :]
            # the official detach of the centres before sampling (training: no gradient through it)
            size = head(G.sample_joint_features(x, c[:, None, :].detach())[:, 0, :])
            out += [c / 8, size]
        return tuple(out)  # lhand_c, lhand_s, rhand_c, rhand_s, face_c, face_s


class HandRoI(nn.Module):
    """Upsampled feature map, RoIAlign of both hands (left flipped to look right), 1x1 conv."""

    def __init__(self, dim: int):
        super().__init__()
        self.deconv = deconv_stack([dim, dim // 2, dim // 4])
        self.conv = conv1x1_stack([dim // 4, dim], bnrelu_final=False)

    def forward(self, feat, lhand_bbox, rhand_bbox):
        feat = self.deconv(feat)
        b = lhand_bbox.shape[0]
        idx = torch.arange(b, dtype=lhand_bbox.dtype, device=lhand_bbox.device)[:, None]
        scale_x = G.OUTPUT_HM_SHAPE[2] * HAND_ROI_UPSCALE
        scale_y = G.OUTPUT_HM_SHAPE[1] * HAND_ROI_UPSCALE
        crops = []
        for box in (lhand_bbox, rhand_bbox):
            roi = torch.cat((
                idx,
                box[:, 0:1] / G.INPUT_BODY_SHAPE[1] * scale_x,
                box[:, 1:2] / G.INPUT_BODY_SHAPE[0] * scale_y,
                box[:, 2:3] / G.INPUT_BODY_SHAPE[1] * scale_x,
                box[:, 3:4] / G.INPUT_BODY_SHAPE[0] * scale_y,
            ), 1)
            crops.append(roi_align(feat, roi, G.OUTPUT_HAND_HM_SHAPE[1], 1.0))
        hand = torch.cat((torch.flip(crops[0], [3]), crops[1]))
        return self.conv(hand)


class HandRotationNet(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.hand_conv = conv1x1_stack([dim, 512])
        self.hand_pose_out = linear_stack([NUM_HAND_POS_JOINTS * 515, NUM_HAND_ROT * 6])

    def forward(self, hand_feat, hand_joint_img):
        b = hand_feat.shape[0]
        x = self.hand_conv(hand_feat)
        joints = G.sample_joint_features(x, hand_joint_img[:, :, :2])
        return self.hand_pose_out(torch.cat((joints, hand_joint_img), 2).reshape(b, -1))


class FaceRegressor(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.expr_out = linear_stack([dim, 10])
        self.jaw_pose_out = linear_stack([dim, 6])

    def forward(self, expr_token, jaw_pose_token):
        return self.expr_out(expr_token), self.jaw_pose_out(jaw_pose_token)


# --------------------------------------------------------------------------- the network
class SMPLerX(nn.Module):
    """SMPLer-X network. ``forward(img)`` takes (B, 3, 512, 384) RGB in [0, 1]
    and returns the SMPL-X parameters and auxiliary outputs (no mesh)."""

    def __init__(self, variant: str | Variant = "s32"):
        super().__init__()
        v = VARIANTS[variant] if isinstance(variant, str) else variant
        self.variant = v
        c = v.embed_dim
        self.encoder = ViTEncoder(c, v.depth, v.num_heads)
        self.body_position_net = PositionNet(c, NUM_BODY_POS_JOINTS, G.OUTPUT_HM_SHAPE)
        self.body_regressor = BodyRotationNet(c)
        self.box_net = BoxNet(c)
        self.hand_roi_net = HandRoI(c)
        self.hand_position_net = PositionNet(c, NUM_HAND_POS_JOINTS, G.OUTPUT_HAND_HM_SHAPE)
        self.hand_regressor = HandRotationNet(c)
        self.face_regressor = FaceRegressor(c)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth for training: block i drops with ``rate * i / (depth - 1)`` (the official
        encoder's rule; ``drop_path_rate`` 0.1/0.3/0.5/0.55 for S/B/L/H). Eval mode never drops."""
        depth = len(self.encoder.blocks)
        for i, blk in enumerate(self.encoder.blocks):
            blk.drop_path = float(rate) * i / max(depth - 1, 1)

    def set_fused_attention(self, enabled: bool = True) -> None:
        for blk in self.encoder.blocks:
            blk.attn.fused = enabled

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        # nearest 2x downsampling == every second pixel starting at 0
        body_img = F.interpolate(img, G.INPUT_BODY_SHAPE)
        feat, tokens = self.encoder(body_img)
        shape_token, cam_token = tokens[:, 0], tokens[:, 1]
        expr_token, jaw_token = tokens[:, 2], tokens[:, 3]
        body_pose_token = tokens[:, 6:]

        body_hm, body_joint_img = self.body_position_net(feat)
        root6, body6, shape, cam_param = self.body_regressor(body_pose_token, shape_token, cam_token, body_joint_img)
        b = img.shape[0]
        root_pose = G.rot6d_to_axis_angle(root6)
        body_pose = G.rot6d_to_axis_angle(body6.reshape(-1, 6)).reshape(b, -1)
        cam_trans = G.camera_translation(cam_param)

        lc, ls, rc, rs, fc, fs = self.box_net(feat, body_hm)
        lhand_bbox = G.restore_bbox(lc, ls, 1.0, 2.0)
        rhand_bbox = G.restore_bbox(rc, rs, 1.0, 2.0)
        face_bbox = G.restore_bbox(fc, fs, 1.0, 1.5)

        hand_feat = self.hand_roi_net(feat, lhand_bbox, rhand_bbox)
        _, hand_joint_img = self.hand_position_net(hand_feat, need_heatmap=False)
        hand6 = self.hand_regressor(hand_feat, hand_joint_img)
        hand_pose = G.rot6d_to_axis_angle(hand6.reshape(-1, 6)).reshape(2 * b, -1)
        # the left hand was mirrored: mirror its rotations back (negate y and z)
        lhand_pose = hand_pose[:b].reshape(b, NUM_HAND_ROT, 3)
        lhand_pose = torch.cat((lhand_pose[:, :, 0:1], -lhand_pose[:, :, 1:3]), 2).reshape(b, -1)
        rhand_pose = hand_pose[b:]
        lhand_joint_img = hand_joint_img[:b]
        lhand_joint_img = torch.cat((G.OUTPUT_HAND_HM_SHAPE[2] - 1 - lhand_joint_img[:, :, 0:1],
                                     lhand_joint_img[:, :, 1:]), 2)
        rhand_joint_img = hand_joint_img[b:]

        expr, jaw6 = self.face_regressor(expr_token, jaw_token)
        jaw_pose = G.rot6d_to_axis_angle(jaw6)

        joint_img = torch.cat((body_joint_img,
                               _hand_to_body_grid(lhand_joint_img, lhand_bbox),
                               _hand_to_body_grid(rhand_joint_img, rhand_bbox)), 1)
        crop_scale = G.constant([G.INPUT_IMG_SHAPE[1] / G.INPUT_BODY_SHAPE[1],
                                 G.INPUT_IMG_SHAPE[0] / G.INPUT_BODY_SHAPE[0]] * 2, img)
        return {
            "smplx_root_pose": root_pose,
            "smplx_body_pose": body_pose,
            "smplx_lhand_pose": lhand_pose,
            "smplx_rhand_pose": rhand_pose,
            "smplx_jaw_pose": jaw_pose,
            "smplx_shape": shape,
            "smplx_expr": expr,
            "cam_trans": cam_trans,
            "joint_img": joint_img,
            "lhand_bbox": lhand_bbox * crop_scale,
            "rhand_bbox": rhand_bbox * crop_scale,
            "face_bbox": face_bbox * crop_scale,
        }


def _hand_to_body_grid(hand_joint_img: torch.Tensor, bbox: torch.Tensor) -> torch.Tensor:
    """Hand joints from the 16x16 hand grid to the 12x16 body grid (z unchanged)."""
    hw = G.OUTPUT_HAND_HM_SHAPE
    x = hand_joint_img[:, :, 0] * (((bbox[:, None, 2] - bbox[:, None, 0]) / G.INPUT_BODY_SHAPE[1] * G.OUTPUT_HM_SHAPE[2]) / hw[2])
    x = x + bbox[:, None, 0] / G.INPUT_BODY_SHAPE[1] * G.OUTPUT_HM_SHAPE[2]
    y = hand_joint_img[:, :, 1] * (((bbox[:, None, 3] - bbox[:, None, 1]) / G.INPUT_BODY_SHAPE[0] * G.OUTPUT_HM_SHAPE[1]) / hw[1])
    y = y + bbox[:, None, 1] / G.INPUT_BODY_SHAPE[0] * G.OUTPUT_HM_SHAPE[1]
    return torch.stack((x, y, hand_joint_img[:, :, 2]), 2)


#: SMPL-X output joints (of 144) in the official 137-joint order.
JOINT_IDX_137 = (
    [0, 1, 2, 4, 5, 7, 8, 12, 16, 17, 18, 19, 20, 21, 60, 61, 62, 63, 64, 65, 59, 58, 57, 56, 55]
    + [37, 38, 39, 66, 25, 26, 27, 67, 28, 29, 30, 68, 34, 35, 36, 69, 31, 32, 33, 70]
    + [52, 53, 54, 71, 40, 41, 42, 72, 43, 44, 45, 73, 49, 50, 51, 74, 46, 47, 48, 75]
    + [22, 15, 57, 56] + list(range(76, 144))
)


class SMPLerXFull(nn.Module):
    """Network + SMPL-X layer: the official test-mode forward (mesh in camera space, projections)."""

    def __init__(self, net: SMPLerX, body_model):
        super().__init__()
        self.net = net
        self.body_model = body_model
        self.register_buffer("joint_idx", torch.tensor(JOINT_IDX_137, dtype=torch.long), persistent=False)

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.net(img)
        out["smplx_mesh_cam"], joints = body_in_camera(self.body_model, out)
        out["smplx_joint_cam"] = joints  # all 144 joints, camera space
        j = joints[:, self.joint_idx]
        x = j[:, :, 0] / (j[:, :, 2] + 1e-4) * G.FOCAL[0] + G.PRINCPT[0]
        y = j[:, :, 1] / (j[:, :, 2] + 1e-4) * G.FOCAL[1] + G.PRINCPT[1]
        out["smplx_joint_proj"] = torch.stack((x / G.INPUT_BODY_SHAPE[1] * G.OUTPUT_HM_SHAPE[2],
                                               y / G.INPUT_BODY_SHAPE[0] * G.OUTPUT_HM_SHAPE[1]), 2)
        return out
