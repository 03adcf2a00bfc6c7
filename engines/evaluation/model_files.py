"""The body-model files the official metrics need, read from the official ``human_model_files`` layout.

``BM/smplx/SMPLX_NEUTRAL.npz`` (its ``J_regressor``), the evaluation extras that ship with the
SMPL-X download (``BM/smplx/SMPLX_to_J14.pkl``: a (14, 10475) regressor of the LSP body joints;
``BM/smplx/MANO_SMPLX_vertex_ids.pkl``: ``{'left_hand', 'right_hand'}`` -> 778 vertex ids each;
``BM/smplx/SMPL-X__FLAME_vertex_ids.npy``: the 5023 face vertex ids) and, for 3DPW whose ground
truth is SMPL, ``BM/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl``. Same contents and dtypes as the
official ``utils.human_models.smpl_x`` / ``smpl`` objects use in ``evaluate``.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ..body_model import NUM_VERTICES, find_smplx_file
from ..errors import UserError

SMPLX_SITE = "https://smpl-x.is.tue.mpg.de (Download: 'SMPL-X v1.1' and the evaluation extras)"
SMPL_SITE = "https://smpl.is.tue.mpg.de (Download: SMPL for Python, renamed SMPL_NEUTRAL/MALE/FEMALE.pkl)"

J14_FILE = "SMPLX_to_J14.pkl"
HAND_IDS_FILE = "MANO_SMPLX_vertex_ids.pkl"
FACE_IDS_FILE = "SMPL-X__FLAME_vertex_ids.npy"

#: Official ``smpl_x.J_regressor_idx``: kinematic joints the translation alignments use.
PELVIS, NECK, LWRIST, RWRIST = 0, 12, 20, 21

#: Fingertip vertices the official ``make_hand_regressor`` inserts after each finger's three joints.
LEFT_TIPS = (5361, 4933, 5058, 5169, 5286)
RIGHT_TIPS = (8079, 7669, 7794, 7905, 8022)
#: Finger joints (SMPL-X kinematic ids) in the official hand-regressor order: thumb, index, middle, ring, pinky.
LEFT_FINGERS = ((37, 38, 39), (25, 26, 27), (28, 29, 30), (34, 35, 36), (31, 32, 33))
RIGHT_FINGERS = ((52, 53, 54), (40, 41, 42), (43, 44, 45), (49, 50, 51), (46, 47, 48))


def _missing(path: Path, site: str) -> UserError:
    return UserError(f"{path} not found: the evaluation needs it; it comes with the body models from {site} "
                     f"and goes in the official human_model_files layout (pass that folder as --body-models)")


def _load_pickle(path: Path, site: str):
    if not path.is_file():
        raise _missing(path, site)
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # truncated, not a pickle, needs a module we do not have...
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc}); download it again from {site}") from None


def hand_regressor(j_regressor: np.ndarray, side: str) -> np.ndarray:
    """(21, 10475) regressor of one hand's 21 joints (wrist; per finger three joints then the tip
    vertex), in the official ``make_hand_regressor`` order."""
    fingers, tips, wrist = (LEFT_FINGERS, LEFT_TIPS, LWRIST) if side == "left" else (RIGHT_FINGERS, RIGHT_TIPS, RWRIST)
    eye = lambda v: np.eye(1, j_regressor.shape[1], v)  # noqa: E731 -- one-hot row, like np.eye(N)[v, None]
    rows = [j_regressor[[wrist, *fingers[0]]], eye(tips[0])]
    for joints, tip in zip(fingers[1:], tips[1:]):
        rows += [j_regressor[list(joints)], eye(tip)]
    return np.concatenate(rows)


@dataclass
class SMPLXEvalFiles:
    """Regressors and vertex sets of the official SMPL-X metrics."""

    j_regressor: np.ndarray                      # (55, 10475) float32, the SMPL-X layer's
    j14_regressor: np.ndarray                    # (14, 10475)
    hand_vertex_idx: Dict[str, np.ndarray]       # 'left_hand' / 'right_hand' -> (778,)
    face_vertex_idx: np.ndarray                  # (5023,)
    hand_regressor: Dict[str, np.ndarray] = field(default_factory=dict)  # "left" / "right" -> (21, 10475)

    @classmethod
    def load(cls, body_models: Optional[Union[str, Path]]) -> "SMPLXEvalFiles":
        npz = find_smplx_file(body_models)
        folder = npz.parent
        try:
            with np.load(npz, allow_pickle=True) as data:
                j_reg = np.asarray(data["J_regressor"])
        except Exception as exc:
            raise UserError(f"cannot read J_regressor from {npz} ({type(exc).__name__}: {exc})") from None
        if hasattr(j_reg, "todense"):
            j_reg = np.asarray(j_reg.todense())
        j_reg = j_reg.astype(np.float32)
        j14 = np.asarray(_load_pickle(folder / J14_FILE, SMPLX_SITE))
        hands = _load_pickle(folder / HAND_IDS_FILE, SMPLX_SITE)
        face_path = folder / FACE_IDS_FILE
        if not face_path.is_file():
            raise _missing(face_path, SMPLX_SITE)
        try:
            face = np.load(face_path)
        except Exception as exc:
            raise UserError(f"cannot read {face_path} ({type(exc).__name__}: {exc}); download it again from "
                            f"{SMPLX_SITE}") from None
        if j14.ndim != 2 or j14.shape != (14, NUM_VERTICES):
            raise UserError(f"{folder / J14_FILE} holds a {j14.shape} array, expected (14, {NUM_VERTICES})")
        if not isinstance(hands, dict) or not {"left_hand", "right_hand"} <= set(hands):
            raise UserError(f"{folder / HAND_IDS_FILE} is not the official dict with 'left_hand' and 'right_hand'")
        hand_idx = {k: np.asarray(hands[k], np.int64) for k in ("left_hand", "right_hand")}
        for name, ids in [*hand_idx.items(), ("face", np.asarray(face))]:
            if ids.size == 0 or ids.min() < 0 or ids.max() >= NUM_VERTICES:
                raise UserError(f"the {name} vertex ids in {folder} are not SMPL-X vertex ids (0..{NUM_VERTICES - 1})")
        files = cls(j_reg, j14, hand_idx, np.asarray(face, np.int64))
        files.hand_regressor = {side: hand_regressor(j_reg, side) for side in ("left", "right")}
        return files


class SMPLLayers:
    """The SMPL layers (neutral/male/female) of the official ``smpl`` object, built on first use."""

    def __init__(self, body_models: Optional[Union[str, Path]]):
        npz = find_smplx_file(body_models)
        self.root = npz.parent.parent
        self._layers: Dict[str, object] = {}

    def path(self, gender: str) -> Path:
        return self.root / "smpl" / f"SMPL_{gender.upper()}.pkl"

    def layer(self, gender: str):
        gender = (gender or "neutral").lower()
        if gender not in self._layers:
            import smplx

            path = self.path(gender)
            if not path.is_file():
                raise _missing(path, SMPL_SITE)
            try:
                self._layers[gender] = smplx.create(str(self.root), "smpl", gender=gender, create_body_pose=False,
                                                    create_betas=False, create_global_orient=False,
                                                    create_transl=False).eval()
            except Exception as exc:
                raise UserError(f"cannot load the SMPL model {path} ({type(exc).__name__}: {exc})") from None
        return self._layers[gender]

    @property
    def joint_regressor(self) -> np.ndarray:
        """(24, 6890) float32: the neutral layer's ``J_regressor`` (official ``smpl.joint_regressor``)."""
        return self.layer("neutral").J_regressor.numpy().astype(np.float32)
