"""GLB (binary glTF 2.0): skinned SMPL-X mesh, skeleton and animation, built with pygltflib.

* Axes and units: glTF's own: y up, metres, the person faces +z. Importers that are z-up
  (Blender) convert on import.
* Nodes: the 55 joints (named as in :mod:`engines.body_model`), each translated by its rest
  offset from its parent with the identity rest rotation, and the mesh node; both the
  ``pelvis`` and the mesh node are scene roots (a skinned mesh node under a joint is not).
* Mesh: the user's SMPL-X mesh with the take's betas (10475 vertices), normals, up to 8
  joint influences per vertex (``JOINTS_0/WEIGHTS_0`` and, when needed, ``_1``), and the 10
  expression blend shapes as morph targets (``Exp000`` ... ``Exp009``, names in
  ``mesh.extras.targetNames``). SMPL-X's pose-corrective blend shapes are not carried.
* Skin: all 55 joints, inverse bind matrices from the rest joints.
* Animation ``take``: rotation of every joint, translation of the pelvis (root motion) and
  the mesh's morph ``weights`` (expression), one key per frame at ``k / fps`` seconds,
  linear interpolation (slerp for rotations).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from engines.body_model import NUM_EXPRESSION, NUM_JOINTS

from .motion import Motion
from .skeleton import EXPRESSION_NAMES, RestMesh

MAX_INFLUENCES = 8
GENERATOR = "smplerx-mocap (mocap convert)"


class _Blob:
    """Binary chunk builder: every bufferView starts 4-byte aligned."""

    def __init__(self):
        import pygltflib

        self.g = pygltflib
        self.parts: List[bytes] = []
        self.size = 0
        self.views: list = []
        self.accessors: list = []

    def add(self, array: np.ndarray, component: int, kind: str, target: Optional[int] = None,
            minmax: bool = False, normalized: bool = False) -> int:
        g = self.g
        data = np.ascontiguousarray(array).tobytes()
        pad = (-self.size) % 4
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        self.views.append(g.BufferView(buffer=0, byteOffset=self.size, byteLength=len(data), target=target))
        self.parts.append(data)
        self.size += len(data)
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[kind]
        flat = np.asarray(array).reshape(-1, width)
        acc = g.Accessor(bufferView=len(self.views) - 1, componentType=component, count=len(flat), type=kind,
                         normalized=True if normalized else None)
        if minmax:
            acc.min = [float(v) for v in flat.min(axis=0)]
            acc.max = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def bytes(self) -> bytes:
        out = b"".join(self.parts)
        return out + b"\0" * ((-len(out)) % 4)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals; (0, 1, 0) for vertices on no face."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-12, n / np.maximum(length, 1e-12), np.array([0.0, 1.0, 0.0]))


def skin_influences(weights: np.ndarray, max_influences: int = MAX_INFLUENCES):
    """Joint indices (V, k) uint8 and weights (V, k) float32 with k a multiple of 4.

    The strongest ``max_influences`` weights per vertex, renormalised so that each row sums
    to 1 in float32; unused slots have joint 0 and weight 0.
    """
    nonzero = int((weights > 0).sum(axis=1).max())
    k = min(max_influences, max(4, int(np.ceil(nonzero / 4.0)) * 4))
    idx = np.argsort(-weights, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(weights, idx, axis=1)
    w = np.where(w > 0, w, 0.0)
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    w32 = w.astype(np.float32)
    rest = w32[:, 1:].sum(axis=1, dtype=np.float32)
    w32[:, 0] = np.float32(1.0) - rest  # largest weight absorbs the float32 rounding
    idx = np.where(w32 > 0, idx, 0).astype(np.uint8)
    return idx, w32


def build_glb(motion: Motion, mesh: RestMesh) -> bytes:
    """The GLB file of ``motion`` skinned onto ``mesh``."""
    import pygltflib as g

    blob = _Blob()
    sk = motion.skeleton
    verts = mesh.vertices.astype(np.float32)
    pos = blob.add(verts, g.FLOAT, "VEC3", g.ARRAY_BUFFER, minmax=True)
    nrm = blob.add(vertex_normals(mesh.vertices, mesh.faces).astype(np.float32), g.FLOAT, "VEC3", g.ARRAY_BUFFER)
    joints_idx, joint_w = skin_influences(mesh.weights)
    attributes = {"POSITION": pos, "NORMAL": nrm}
    for s in range(joints_idx.shape[1] // 4):
        attributes[f"JOINTS_{s}"] = blob.add(joints_idx[:, 4 * s:4 * s + 4], g.UNSIGNED_BYTE, "VEC4", g.ARRAY_BUFFER)
        attributes[f"WEIGHTS_{s}"] = blob.add(joint_w[:, 4 * s:4 * s + 4], g.FLOAT, "VEC4", g.ARRAY_BUFFER)
    index_type = (np.uint16, g.UNSIGNED_SHORT) if len(verts) < 65535 else (np.uint32, g.UNSIGNED_INT)
    indices = blob.add(mesh.faces.astype(index_type[0]).reshape(-1), index_type[1], "SCALAR",
                       g.ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": blob.add(mesh.expression_dirs[:, :, e].astype(np.float32), g.FLOAT, "VEC3",
                                     g.ARRAY_BUFFER, minmax=True)} for e in range(NUM_EXPRESSION)]
    primitive = g.Primitive(attributes=g.Attributes(**attributes), indices=indices, mode=g.TRIANGLES,
                            targets=targets)
    gmesh = g.Mesh(name="SMPLX", primitives=[primitive], weights=[0.0] * NUM_EXPRESSION,
                   extras={"targetNames": list(EXPRESSION_NAMES)})

    nodes = []
    offsets = sk.offsets
    for j in range(NUM_JOINTS):
        children = list(sk.children(j))
        nodes.append(g.Node(name=sk.names[j], translation=[float(v) for v in offsets[j]],
                            children=children or None))
    mesh_node = len(nodes)
    nodes.append(g.Node(name="SMPLX-mesh", mesh=0, skin=0))
    ibm = np.tile(np.eye(4, dtype=np.float32), (NUM_JOINTS, 1, 1))
    ibm[:, :3, 3] = -sk.rest
    ibm_acc = blob.add(np.transpose(ibm, (0, 2, 1)).reshape(NUM_JOINTS, 16), g.FLOAT, "MAT4")  # column-major
    skin = g.Skin(name="SMPLX", joints=list(range(NUM_JOINTS)), inverseBindMatrices=ibm_acc, skeleton=0)

    times = (np.arange(motion.n_frames, dtype=np.float64) / motion.fps).astype(np.float32)
    t_acc = blob.add(times, g.FLOAT, "SCALAR", minmax=True)
    samplers, channels = [], []

    def channel(node: int, path: str, values: np.ndarray, kind: str) -> None:
        samplers.append(g.AnimationSampler(input=t_acc, output=blob.add(values, g.FLOAT, kind),
                                           interpolation=g.ANIM_LINEAR))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1,
                                           target=g.AnimationChannelTarget(node=node, path=path)))

    rot = motion.rotations / np.linalg.norm(motion.rotations, axis=-1, keepdims=True)
    rot = rot.astype(np.float32)
    for j in range(NUM_JOINTS):
        channel(j, "rotation", rot[:, j], "VEC4")
    channel(0, "translation", motion.root_position.astype(np.float32), "VEC3")
    channel(mesh_node, "weights", motion.expression.astype(np.float32).reshape(-1), "SCALAR")
    animation = g.Animation(name="take", samplers=samplers, channels=channels,
                            extras={"fps": float(motion.fps), "frames": motion.n_frames,
                                    "person": int(motion.person_id)})

    binary = blob.bytes()
    doc = g.GLTF2(
        asset=g.Asset(version="2.0", generator=GENERATOR),
        scene=0, scenes=[g.Scene(name="take", nodes=[0, mesh_node])],
        nodes=nodes, meshes=[gmesh], skins=[skin], animations=[animation],
        accessors=blob.accessors, bufferViews=blob.views, buffers=[g.Buffer(byteLength=len(binary))],
    )
    doc.set_binary_blob(binary)
    return b"".join(doc.save_to_bytes())


def write_glb(motion: Motion, path: Path, mesh: Optional[RestMesh] = None) -> None:
    """Write ``motion`` as GLB to ``path``; ``mesh`` (the rest mesh) is required."""
    if mesh is None:
        raise ValueError("GLB export needs the rest mesh")
    data = build_glb(motion, mesh)
    with open(path, "wb") as f:
        f.write(data)


def build_posed_glb(meshes, faces: np.ndarray, colors=None, names=None) -> bytes:
    """A still GLB of posed meshes given in camera space (x right, y down, z forward, metres, as
    :class:`engines.types.Person` carries them), turned into glTF's frame (y up, the viewer on +z:
    ``(x, -y, -z)``, a rotation, so the triangles keep their winding). One node, mesh and
    material per person; ``colors``: RGB 0..1 per person (default light grey)."""
    import pygltflib as g

    blob = _Blob()
    flip = np.array([1.0, -1.0, -1.0])
    index_type = (np.uint16, g.UNSIGNED_SHORT) if int(faces.max()) < 65535 else (np.uint32, g.UNSIGNED_INT)
    indices = blob.add(np.asarray(faces).astype(index_type[0]).reshape(-1), index_type[1], "SCALAR",
                       g.ELEMENT_ARRAY_BUFFER)
    nodes, gmeshes, materials = [], [], []
    for k, vertices in enumerate(meshes):
        v = np.asarray(vertices, np.float64).reshape(-1, 3) * flip
        pos = blob.add(v.astype(np.float32), g.FLOAT, "VEC3", g.ARRAY_BUFFER, minmax=True)
        nrm = blob.add(vertex_normals(v, np.asarray(faces)).astype(np.float32), g.FLOAT, "VEC3", g.ARRAY_BUFFER)
        rgb = [float(c) for c in (colors[k] if colors is not None else (0.8, 0.8, 0.8))]
        materials.append(g.Material(name=f"person-{k}", doubleSided=True,
                                    pbrMetallicRoughness=g.PbrMetallicRoughness(
                                        baseColorFactor=rgb + [1.0], metallicFactor=0.0, roughnessFactor=0.8)))
        primitive = g.Primitive(attributes=g.Attributes(POSITION=pos, NORMAL=nrm), indices=indices,
                                mode=g.TRIANGLES, material=k)
        name = names[k] if names is not None else f"person-{k}"
        gmeshes.append(g.Mesh(name=name, primitives=[primitive]))
        nodes.append(g.Node(name=name, mesh=k))
    binary = blob.bytes()
    doc = g.GLTF2(asset=g.Asset(version="2.0", generator="smplerx-mocap (mocap web)"),
                  scene=0, scenes=[g.Scene(name="people", nodes=list(range(len(nodes))))],
                  nodes=nodes, meshes=gmeshes, materials=materials,
                  accessors=blob.accessors, bufferViews=blob.views, buffers=[g.Buffer(byteLength=len(binary))])
    doc.set_binary_blob(binary)
    return b"".join(doc.save_to_bytes())
