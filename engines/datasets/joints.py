"""The SMPL-X joint sets SMPLer-X supervises (official ``common/utils/human_models.py``), as data.

* the 53 *rotation* joints of the pose vector (root, 21 body, 2 x 15 hand, jaw) with the pairs
  that swap under a horizontal flip;
* the 137 *coordinate* joints of the losses (25 body, 2 x 20 hand, 72 face) with their parts,
  flip pairs and the 65 joints PositionNet predicts (body + hands, no face).
"""
from __future__ import annotations

from engines.smplerx import JOINT_IDX_137

#: Rotation joints: 0 root, 1-21 body, 22-36 left hand, 37-51 right hand, 52 jaw.
ORIG_JOINT_NUM = 53
ORIG_ROOT = 0
ORIG_PART = {"body": range(0, 22), "lhand": range(22, 37), "rhand": range(37, 52), "face": range(52, 53)}
ORIG_FLIP_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21)) + tuple(
    (22 + k, 37 + k) for k in range(15))

_FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")
BODY_NAMES = ("Pelvis", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Neck", "L_Shoulder",
              "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Big_toe", "L_Small_toe", "L_Heel",
              "R_Big_toe", "R_Small_toe", "R_Heel", "L_Ear", "R_Ear", "L_Eye", "R_Eye", "Nose")
JOINT_NAMES = (BODY_NAMES
               + tuple(f"L_{f}_{i}" for f in _FINGERS for i in range(1, 5))
               + tuple(f"R_{f}_{i}" for f in _FINGERS for i in range(1, 5))
               + tuple(f"Face_{i}" for i in range(1, 73)))
JOINT_NUM = 137
assert len(JOINT_NAMES) == JOINT_NUM == len(JOINT_IDX_137)
ROOT = JOINT_NAMES.index("Pelvis")
LWRIST = JOINT_NAMES.index("L_Wrist")
RWRIST = JOINT_NAMES.index("R_Wrist")
NECK = JOINT_NAMES.index("Neck")
PART = {"body": range(0, 25), "lhand": range(25, 45), "rhand": range(45, 65), "hand": range(25, 65),
        "face": range(65, 137)}
FLIP_PAIRS = (
    ((1, 2), (3, 4), (5, 6), (8, 9), (10, 11), (12, 13), (14, 17), (15, 18), (16, 19), (20, 21), (22, 23))
    + tuple((25 + k, 45 + k) for k in range(20))
    + ((67, 68),
       (69, 78), (70, 77), (71, 76), (72, 75), (73, 74),
       (83, 87), (84, 86),
       (88, 97), (89, 96), (90, 95), (91, 94), (92, 99), (93, 98),
       (100, 106), (101, 105), (102, 104), (107, 111), (108, 110),
       (112, 116), (113, 115), (117, 119),
       (120, 136), (121, 135), (122, 134), (123, 133), (124, 132), (125, 131), (126, 130), (127, 129)))
#: The 65 joints PositionNet predicts (body + both hands) are the first 65 of the 137.
POS_JOINT_NUM = 65

#: HumanData keypoints (SMPL-X 144 or 190 layout) -> the 137 joints (official ``SMPLX_137_MAPPING`` of
#: ``data/humandata.py``). It is the network's SMPL-X joint selection with the two eyeballs the other
#: way round (56, 57 where the network takes 57, 56), as the official code has it.
HUMANDATA_TO_137 = tuple(JOINT_IDX_137[:67]) + (56, 57) + tuple(JOINT_IDX_137[69:])
assert HUMANDATA_TO_137[67:69] == (56, 57) and JOINT_IDX_137[67:69] == [57, 56]
