"""Recorded takes into animation tools (``mocap convert``): the SMPL-X Blender add-on's npz,
BVH, GLB and FBX, all on the 55-joint SMPL-X skeleton of the user's body model.

take.py (read a recording / result folder) -> resample.py (constant frame rate) ->
motion.py (world frame, placement) on skeleton.py (rest joints, mesh) -> one writer per
format (npz_addon.py, bvh.py, gltf.py, fbx.py); convert.py runs the whole chain.
"""
