"""The SMPL-X body model with the settings SMPLer-X uses, through the ``smplx`` package.

Official settings: neutral gender, ``use_pca=False``, ``flat_hand_mean=False`` (the
predicted hand poses are relative to the SMPL-X hand mean), 10 shape and 10
expression coefficients, face contour landmarks on (144 output joints).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

from .errors import UserError
from .paths import ENV_BODY_MODELS, default_body_models_dir
from .stop import raise_if_stopped

MODEL_FILE = "SMPLX_NEUTRAL.npz"
NUM_BETAS = 10
NUM_EXPRESSION = 10
NUM_VERTICES = 10475
NUM_JOINTS = 55  # kinematic joints (0 pelvis ... 54 right thumb3)

#: SMPL-X kinematic joint names, index = joint id (0..54).
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw", "left_eye_smplhf",
    "right_eye_smplhf",
    "left_index1", "left_index2", "left_index3", "left_middle1", "left_middle2", "left_middle3",
    "left_pinky1", "left_pinky2", "left_pinky3", "left_ring1", "left_ring2", "left_ring3",
    "left_thumb1", "left_thumb2", "left_thumb3",
    "right_index1", "right_index2", "right_index3", "right_middle1", "right_middle2", "right_middle3",
    "right_pinky1", "right_pinky2", "right_pinky3", "right_ring1", "right_ring2", "right_ring3",
    "right_thumb1", "right_thumb2", "right_thumb3",
)

#: SMPL-X kinematic tree (parent of each of the 55 joints; -1 for the pelvis).
PARENTS = np.array(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
     20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
     21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53],
    dtype=np.int64,
)

REGISTRATION_HELP = (
    "SMPL-X model files need a free registration: sign up at https://smpl-x.is.tue.mpg.de, "
    "download 'SMPL-X v1.1 (NPZ+PKL)', and put SMPLX_NEUTRAL.npz at {where} "
    "(or pass --body-models DIR, or set ${env}=DIR, where DIR/smplx/SMPLX_NEUTRAL.npz exists)."
)


_PARENT_LISTS: Dict[tuple, list] = {}


def _parent_list(parents: torch.Tensor) -> list:
    """The kinematic tree as Python ints, read from the device once per tree (outside any capture)."""
    key = (parents.data_ptr(), str(parents.device), parents.numel())
    tree = _PARENT_LISTS.get(key)
    if tree is None:
        tree = _PARENT_LISTS[key] = [int(p) for p in parents.tolist()]
    return tree


def rigid_transform_chain(rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor,
                          dtype=torch.float32):
    """Posed joints (B, J, 3) and joint transforms relative to the rest pose (B, J, 4, 4).

    The same maths, operation for operation, as ``smplx.lbs.batch_rigid_transform``, which
    walks the tree by indexing a Python list with 0-dim tensors (one device-to-host sync per
    joint on a GPU, which a CUDA graph cannot capture); here the tree is walked over Python
    ints. :class:`BodyModel` passes it to smplx's skinning (:func:`smplx_forward_with_chain`);
    results are bit-equal (see tests).
    """
    import torch.nn.functional as F
    from smplx.lbs import transform_mat

    tree = _parent_list(parents)
    rest = joints.unsqueeze(-1)
    offsets = rest.clone()
    offsets[:, 1:] -= rest[:, parents[1:]]
    local = transform_mat(rot_mats.reshape(-1, 3, 3), offsets.reshape(-1, 3, 1)).reshape(-1, rest.shape[1], 4, 4)
    chain = [local[:, 0]]
    for i in range(1, len(tree)):
        chain.append(torch.matmul(chain[tree[i]], local[:, i]))
    world = torch.stack(chain, dim=1)
    posed = world[:, :, :3, 3]
    rest_homogeneous = F.pad(rest, [0, 0, 0, 1])
    relative = world - F.pad(torch.matmul(world, rest_homogeneous), [3, 0, 0, 0, 0, 0, 0, 0])
    return posed, relative


def _with_globals(fn, namespace: dict):
    """A copy of the function ``fn`` (same code, defaults and closure) that resolves its global
    names in ``namespace`` instead of its module."""
    import types

    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


_FORWARD_WITH_CHAIN = None


def smplx_forward_with_chain():
    """``smplx.SMPLX.forward`` with :func:`rigid_transform_chain` as its joint chain, nothing else
    changed and nothing patched: smplx's own ``forward`` and ``lbs`` code, run with global names
    where ``lbs`` is a copy of smplx's ``lbs`` whose ``batch_rigid_transform`` is ours. Other users
    of ``smplx`` in the process keep smplx's chain. Call it as ``forward(layer, **inputs)``."""
    global _FORWARD_WITH_CHAIN
    if _FORWARD_WITH_CHAIN is None:
        import smplx
        import smplx.body_models
        import smplx.lbs

        lbs = _with_globals(smplx.lbs.lbs, dict(vars(smplx.lbs), batch_rigid_transform=rigid_transform_chain))
        _FORWARD_WITH_CHAIN = _with_globals(smplx.SMPLX.forward, dict(vars(smplx.body_models), lbs=lbs))
    return _FORWARD_WITH_CHAIN


#: The network's outputs in the order the SMPL-X layer takes them (:meth:`BodyModel.forward`).
NETWORK_INPUTS = ("smplx_root_pose", "smplx_body_pose", "smplx_lhand_pose", "smplx_rhand_pose", "smplx_jaw_pose",
                  "smplx_shape", "smplx_expr")


def network_inputs(out: Dict[str, torch.Tensor]) -> list:
    """The network's outputs (a dict by output name) as the SMPL-X layer's positional inputs."""
    return [out[k] for k in NETWORK_INPUTS]


def body_in_camera(body, out: Dict[str, torch.Tensor], with_mesh: bool = True):
    """The SMPL-X layer ``body`` (a :class:`BodyModel`, or a graphed one) on the network's outputs,
    the camera translation added: (vertices (B, V, 3) or None without ``with_mesh``, joints (B, 144, 3)),
    camera space, on the outputs' device. The one place the network's output meets the body model."""
    verts, joints = body(*network_inputs(out))
    trans = out["cam_trans"][:, None]
    return (verts + trans if with_mesh else None), joints + trans


#: Arrays ``smplx.SMPLX`` reads from the model file (face contour on, no PCA hands).
REQUIRED_ARRAYS = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
    "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
)

_REDOWNLOAD = "download 'SMPL-X v1.1 (NPZ+PKL)' again from https://smpl-x.is.tue.mpg.de and replace it"


class BodyModelNotFound(UserError, FileNotFoundError):
    """No SMPL-X model file where it was looked for (the message says where and how to get it)."""


class BodyModelInvalid(UserError, ValueError):
    """The SMPL-X model file exists but is not a usable SMPL-X npz (truncated, not a zip, arrays missing)."""


def check_smplx_file(path: Union[str, Path]) -> None:
    """Cheap check (the archive's directory only) that ``path`` is an npz with every array
    SMPL-X needs; raises :class:`BodyModelInvalid` naming the file and the fix."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n[:-4] if n.endswith(".npy") else n for n in archive.namelist()}
    except zipfile.BadZipFile:
        raise BodyModelInvalid(f"{path} is not a valid SMPL-X model file: not a complete .npz (zip) archive, "
                               f"perhaps truncated; {_REDOWNLOAD}") from None
    except OSError as exc:
        raise BodyModelInvalid(f"cannot read the SMPL-X model file {path}: {exc.strerror or exc}") from None
    missing = [a for a in REQUIRED_ARRAYS if a not in names]
    if missing:
        raise BodyModelInvalid(f"{path} is not a valid SMPL-X model file: array(s) {', '.join(missing)} missing "
                               f"(is it an SMPL or SMPL-H file?); {_REDOWNLOAD}")


def find_smplx_file(body_models: Optional[Union[str, Path]] = None) -> Path:
    """Resolve ``SMPLX_NEUTRAL.npz`` from a flag, ``$MOCAP_BODY_MODELS`` or the cache.

    ``body_models`` may be the directory that holds ``smplx/SMPLX_NEUTRAL.npz``,
    the ``smplx`` directory itself, or the ``.npz`` file.
    """
    source = body_models or os.environ.get(ENV_BODY_MODELS) or default_body_models_dir()
    root = Path(source).expanduser()
    candidates = [root] if root.suffix == ".npz" else [root / "smplx" / MODEL_FILE, root / MODEL_FILE]
    for cand in candidates:
        if cand.is_file():
            return cand
    where = candidates[0]
    raise BodyModelNotFound(
        f"SMPL-X body model not found (looked for {', '.join(str(c) for c in candidates)}). "
        + REGISTRATION_HELP.format(where=where, env=ENV_BODY_MODELS)
    )


class BodyModel(torch.nn.Module):
    """SMPL-X neutral layer with the official SMPLer-X settings."""

    def __init__(self, body_models: Optional[Union[str, Path]] = None):
        super().__init__()
        import smplx  # imported lazily: it is slow to import

        self._forward = smplx_forward_with_chain()
        self.path = find_smplx_file(body_models)
        check_smplx_file(self.path)
        try:
            self.layer = smplx.SMPLX(
                model_path=str(self.path), gender="neutral", ext="npz",
                num_betas=NUM_BETAS, num_expression_coeffs=NUM_EXPRESSION,
                use_pca=False, flat_hand_mean=False, use_face_contour=True,
                create_global_orient=False, create_body_pose=False, create_betas=False,
                create_left_hand_pose=False, create_right_hand_pose=False,
                create_expression=False, create_jaw_pose=False, create_leye_pose=False,
                create_reye_pose=False, create_transl=False,
            )
        except Exception as exc:  # a damaged array: zlib, pickle, zip and shape errors all end here
            raise_if_stopped()  # ... unless it was a Ctrl-C that the loader turned into one of them
            raise BodyModelInvalid(f"{self.path} is not a valid SMPL-X model file ({type(exc).__name__}: {exc}); "
                                   f"{_REDOWNLOAD}") from exc
        self.layer.eval()
        for p in self.layer.parameters():
            p.requires_grad_(False)
        self.faces = np.asarray(self.layer.faces, dtype=np.int32)
        self.parents = self.layer.parents.detach().cpu().numpy().astype(np.int64)
        self.hand_mean_left = self.layer.left_hand_mean.detach().cpu().numpy().reshape(15, 3).astype(np.float32)
        self.hand_mean_right = self.layer.right_hand_mean.detach().cpu().numpy().reshape(15, 3).astype(np.float32)

    def forward(self, global_orient, body_pose, left_hand_pose, right_hand_pose, jaw_pose,
                betas, expression, leye_pose=None, reye_pose=None, transl=None):
        """All poses axis-angle, flattened per sample (B, 3*J). Returns (vertices, joints)."""
        b = global_orient.shape[0]
        zeros = global_orient.new_zeros((b, 3))
        out = self._forward(
            self.layer, betas=betas, body_pose=body_pose, global_orient=global_orient,
            right_hand_pose=right_hand_pose, left_hand_pose=left_hand_pose, jaw_pose=jaw_pose,
            leye_pose=zeros if leye_pose is None else leye_pose,
            reye_pose=zeros if reye_pose is None else reye_pose,
            expression=expression, transl=transl,
        )
        return out.vertices, out.joints

    @torch.no_grad()
    def from_params(self, params: Dict[str, np.ndarray]):
        """Mesh and joints (numpy, camera space incl. ``transl``) from official npz-style params."""
        t = {k: torch.as_tensor(np.asarray(v, np.float32)).reshape(1, -1) for k, v in params.items()
             if k in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "jaw_pose",
                      "betas", "expression", "transl", "leye_pose", "reye_pose")}
        verts, joints = self.forward(
            t["global_orient"], t["body_pose"], t["left_hand_pose"], t["right_hand_pose"],
            t["jaw_pose"], t["betas"], t["expression"], t.get("leye_pose"), t.get("reye_pose"),
            t.get("transl"),
        )
        return verts[0].numpy(), joints[0].numpy()

    @torch.no_grad()
    def rest_joints(self, betas: Optional[np.ndarray] = None) -> np.ndarray:
        """Positions (55, 3) of the kinematic joints in the rest pose for ``betas``."""
        b = torch.zeros((1, NUM_BETAS)) if betas is None else torch.as_tensor(np.asarray(betas, np.float32)).reshape(1, -1)
        layer = self.layer
        v_shaped = layer.v_template[None] + torch.einsum("bl,mkl->bmk", b, layer.shapedirs[:, :, :NUM_BETAS])
        joints = torch.einsum("bik,ji->bjk", v_shaped, layer.J_regressor)
        return joints[0].numpy()
