"""EHF (Pavlakos et al., SMPLify-X): ``ROOT/EHF/data/EHF.json`` (COCO style, ``body_bbox`` per
annotation), ``XX_img.jpg`` images and ``XX_align.ply`` ground-truth SMPL-X meshes, as the
official ``data/EHF/EHF.py`` reads them. The meshes are in EHF's world frame; the official
evaluation rotates them into the camera frame with :data:`CAMERA_R`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Union

import cv2
import numpy as np

from ..body_model import NUM_VERTICES
from ..errors import UserError
from ..geometry import process_bbox
from .coco_json import read_coco
from .sample import EvalSample, need_file

#: EHF's camera rotation (Rodrigues vector), as in the official loader.
CAMERA_RODRIGUES = (-2.98747896, 0.01172457, -0.05704687)
CAMERA_R = cv2.Rodrigues(np.array(CAMERA_RODRIGUES))[0]

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_vertices(path: Union[str, Path]) -> np.ndarray:
    """(N, 3) vertex positions of a PLY file (ascii or binary), in the file's own float type."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise UserError(f"{path} is not a PLY file")
    header = raw[:end].decode("ascii", "replace").splitlines()
    body = raw[raw.index(b"\n", end) + 1:]
    fmt, elements = "ascii", []
    for line in header:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append([words[1], int(words[2]), []])
        elif words[0] == "property" and elements:
            elements[-1][2].append(words[1:])
    if not elements or elements[0][0] != "vertex":
        raise UserError(f"{path}: the PLY file does not start with a vertex element")
    _, count, props = elements[0]
    names = [p[-1] for p in props]
    if any(p[0] == "list" for p in props) or not {"x", "y", "z"} <= set(names):
        raise UserError(f"{path}: vertex element without plain x, y, z properties")
    if fmt == "ascii":
        rows = body.decode("ascii", "replace").split("\n")[:count]
        table = np.array([[float(v) for v in r.split()[:len(names)]] for r in rows])
        dtype = np.dtype(_PLY_TYPES[props[names.index("x")][0]])
        vert = np.stack([table[:, names.index(a)] for a in "xyz"], 1).astype(dtype)
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + _PLY_TYPES[p[0]]) for n, p in zip(names, props)])
        if len(body) < dtype.itemsize * count:
            raise UserError(f"{path} is truncated ({count} vertices declared)")
        table = np.frombuffer(body, dtype, count)
        vert = np.stack([table[a] for a in "xyz"], 1).astype(table["x"].dtype.newbyteorder("="))
    return vert


class EHF:
    """The EHF test set in its official layout."""

    name = "EHF"
    sequences = False

    def __init__(self, root: Union[str, Path], bbox_ratio: float = 1.2):
        self.data_path = Path(root) / "EHF" / "data"
        imgs, anns = read_coco(self.data_path / "EHF.json")
        self.samples: List[EvalSample] = []
        for ann in anns:
            img = imgs[ann["image_id"]]
            bbox = process_bbox(ann["body_bbox"], img["width"], img["height"], ratio=bbox_ratio)
            if bbox is None:
                continue
            name = img["file_name"]
            self.samples.append(EvalSample(
                index=len(self.samples), key=name.split("_")[0], img_path=self.data_path / name,
                img_shape=(img["height"], img["width"]), bbox=bbox,
                gt={"mesh_path": self.data_path / (name.split("_")[0] + "_align.ply")}))

    def ground_truth(self, sample: EvalSample, models=None) -> np.ndarray:
        """The ground-truth mesh as the file has it (EHF's frame; the protocol rotates it)."""
        path = need_file(sample.gt["mesh_path"], "EHF ground-truth mesh")
        mesh = read_ply_vertices(path)
        if mesh.shape != (NUM_VERTICES, 3):
            raise UserError(f"{path} has {len(mesh)} vertices; an SMPL-X mesh has {NUM_VERTICES}")
        return mesh
