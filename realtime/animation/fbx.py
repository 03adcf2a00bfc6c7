"""FBX, written by Blender itself through its Python module ``bpy`` (the ``[blender]`` extra).

The scene is built in an empty Blender (this resets the ``bpy`` session's data):

* armature ``SMPLX`` with the 55 SMPL-X bones at the rest joints, every bone's rest frame
  aligned with the armature's axes; the mesh ``SMPLX-mesh`` (the user's SMPL-X mesh with the
  take's betas, one vertex group per joint with the SMPL-X skinning weights, the 10
  expression shape keys ``Exp000`` ... ``Exp009``) parented to it with an Armature modifier;
* data in y-up metres with the objects turned +90 degrees about x (upright in Blender), the
  way the SMPL-X Blender add-on prepares its FBX for Unity: with the exporter's default axes
  (forward -Z, up Y) the armature arrives in Unity and Unreal with no rotation and scale 1;
* the animation: every bone's rotation, the pelvis location (root motion) and the
  expression shape-key values, one key per frame from frame 0 at the take's frame rate.

Export: ``FBX_SCALE_ALL`` (file unit = 1 m, so nothing is scaled by 100), no leaf bones,
primary bone axis Y, all bones baked every frame with no key reduction.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from engines.body_model import NUM_EXPRESSION, NUM_JOINTS
from engines.errors import UserError
from engines.quiet import muted_stdout

from .motion import Motion
from .skeleton import EXPRESSION_NAMES, RestMesh

EXTRA_HINT = ("FBX export needs Blender's Python module: pip install 'smplerx-mocap[blender]' "
              "(bpy 4.5, Python 3.11 only)")
ARMATURE_NAME = "SMPLX"
MESH_NAME = "SMPLX-mesh"


def require_bpy():
    """The ``bpy`` module, or a :class:`UserError` that names the extra to install."""
    try:
        import bpy
    except ImportError:
        raise UserError(EXTRA_HINT) from None
    return bpy


def scene_rate(fps: float):
    """Blender's (fps: int, fps_base: float) for a frame rate (fps / fps_base == rate)."""
    whole = max(1, int(round(fps)))
    if abs(whole - fps) < 1e-9:
        return whole, 1.0
    ratio = Fraction(fps).limit_denominator(1001)
    whole = max(1, int(round(float(ratio))))
    return whole, whole / fps


def _keys(fcurve, frames: np.ndarray, values: np.ndarray) -> None:
    n = len(frames)
    fcurve.keyframe_points.add(n)
    fcurve.keyframe_points.foreach_set("co", np.column_stack([frames, values]).astype(np.float32).ravel())
    fcurve.keyframe_points.foreach_set("interpolation", np.ones(n, np.int32))  # LINEAR
    fcurve.update()


def _build_scene(bpy, motion: Motion, mesh: RestMesh) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = scene_rate(motion.fps)
    scene.frame_start, scene.frame_end = 0, motion.n_frames - 1
    sk = motion.skeleton

    arm_data = bpy.data.armatures.new(ARMATURE_NAME)
    arm = bpy.data.objects.new(ARMATURE_NAME, arm_data)
    scene.collection.objects.link(arm)
    arm.rotation_euler = (math.pi / 2, 0.0, 0.0)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bones = []
    for j in range(NUM_JOINTS):
        eb = arm_data.edit_bones.new(sk.names[j])
        children = sk.children(j)
        length = 0.5 * min((np.linalg.norm(sk.rest[c] - sk.rest[j]) for c in children), default=0.04)
        eb.head = tuple(sk.rest[j])
        eb.tail = tuple(sk.rest[j] + np.array([0.0, max(length, 0.005), 0.0]))
        eb.roll = 0.0
        if j:
            eb.parent = bones[int(sk.parents[j])]
        bones.append(eb)
    bpy.ops.object.mode_set(mode="OBJECT")

    me = bpy.data.meshes.new(MESH_NAME)
    me.from_pydata(mesh.vertices.tolist(), [], mesh.faces.tolist())
    me.validate()
    obj = bpy.data.objects.new(MESH_NAME, me)
    scene.collection.objects.link(obj)
    obj.parent = arm
    modifier = obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = arm
    for j in range(NUM_JOINTS):
        group = obj.vertex_groups.new(name=sk.names[j])
        w = mesh.weights[:, j]
        for value in np.unique(w[w > 0]):
            group.add(np.flatnonzero(w == value).tolist(), float(value), "REPLACE")
    obj.shape_key_add(name="Basis", from_mix=False)
    # shape-key sliders clamp animated values: open them to the take's range (Blender allows -10..10)
    lo = max(-10.0, min(-1.0, float(np.floor(motion.expression.min()))))
    hi = min(10.0, max(1.0, float(np.ceil(motion.expression.max()))))
    for e in range(NUM_EXPRESSION):
        kb = obj.shape_key_add(name=EXPRESSION_NAMES[e], from_mix=False)
        kb.data.foreach_set("co", (mesh.vertices + mesh.expression_dirs[:, :, e]).astype(np.float32).ravel())
        kb.slider_min, kb.slider_max = lo, hi

    frames = np.arange(motion.n_frames, dtype=np.float64)
    action = bpy.data.actions.new("take")
    arm.animation_data_create()
    arm.animation_data.action = action
    wxyz = motion.rotations[..., [3, 0, 1, 2]]
    for j in range(NUM_JOINTS):
        pose_bone = arm.pose.bones[sk.names[j]]
        pose_bone.rotation_mode = "QUATERNION"
        path = f'pose.bones["{sk.names[j]}"].rotation_quaternion'
        for c in range(4):
            _keys(action.fcurve_ensure_for_datablock(arm, path, index=c), frames, wxyz[:, j, c])
    location = motion.root_position - sk.rest[0]  # bone space = armature space (rest frames are aligned)
    for c in range(3):
        _keys(action.fcurve_ensure_for_datablock(arm, 'pose.bones["pelvis"].location', index=c),
              frames, location[:, c])
    key = me.shape_keys
    expr_action = bpy.data.actions.new("expression")
    key.animation_data_create()
    key.animation_data.action = expr_action
    for e in range(NUM_EXPRESSION):
        _keys(expr_action.fcurve_ensure_for_datablock(key, f'key_blocks["{EXPRESSION_NAMES[e]}"].value'),
              frames, motion.expression[:, e])
    scene.frame_set(0)


def write_fbx(motion: Motion, path: Path, mesh: Optional[RestMesh] = None) -> None:
    """Write ``motion`` as FBX to ``path`` through Blender; ``mesh`` (the rest mesh) is required."""
    if mesh is None:
        raise ValueError("FBX export needs the rest mesh")
    bpy = require_bpy()
    _build_scene(bpy, motion, mesh)
    try:
        with muted_stdout():  # Blender prints its progress (with the hidden temporary name): -v shows it
            result = bpy.ops.export_scene.fbx(
                filepath=str(path), use_selection=False, object_types={"ARMATURE", "MESH"},
                apply_unit_scale=True, apply_scale_options="FBX_SCALE_ALL", axis_forward="-Z", axis_up="Y",
                use_mesh_modifiers=False, mesh_smooth_type="FACE", add_leaf_bones=False,
                primary_bone_axis="Y", secondary_bone_axis="X", armature_nodetype="NULL",
                use_armature_deform_only=False, bake_anim=True, bake_anim_use_all_bones=True,
                bake_anim_use_nla_strips=False, bake_anim_use_all_actions=False,
                bake_anim_force_startend_keying=True, bake_anim_step=1.0, bake_anim_simplify_factor=0.0,
                use_custom_props=False, embed_textures=False)
    except RuntimeError as exc:
        raise UserError(f"Blender could not write the FBX file: {exc}") from None
    finally:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    if "FINISHED" not in result:
        raise UserError(f"Blender could not write the FBX file {path} ({', '.join(result)})")
