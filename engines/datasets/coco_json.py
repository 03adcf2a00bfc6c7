"""COCO-style annotation files (``EHF.json``, ``3DPW_test.json``, ``AGORA_validation*.json``, UBody's
``keypoint_annotation.json``) read in the order ``pycocotools.COCO`` gives: ``anns`` by id in file
order (a repeated id keeps its first place and its last content), images by id."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import UserError


def read_coco(path: Path) -> Tuple[Dict[int, dict], List[dict]]:
    """(images by id, annotations in the official iteration order)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} not found (the dataset's annotation file)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} as JSON ({exc})") from None
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise UserError(f"{path} is not a COCO-style annotation file (no 'images'/'annotations')")
    imgs = {img["id"]: img for img in data["images"]}
    anns: Dict[int, dict] = {}
    for ann in data["annotations"]:
        anns[ann["id"]] = ann
    for ann in anns.values():
        if ann.get("image_id") not in imgs:
            raise UserError(f"{path}: annotation {ann.get('id')} refers to image {ann.get('image_id')}, "
                            f"which the file does not list")
    return imgs, list(anns.values())
