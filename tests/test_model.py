"""The network and the full forward (network + SMPL-X) on random official-layout weights."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.smplerx import JOINT_IDX_137, SMPLerXFull


def _img(b, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 512, 384, generator=g)


def test_output_shapes(s32_net):
    with torch.no_grad():
        out = s32_net(_img(2))
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "smplx_root_pose": (2, 3), "smplx_body_pose": (2, 63), "smplx_lhand_pose": (2, 45),
        "smplx_rhand_pose": (2, 45), "smplx_jaw_pose": (2, 3), "smplx_shape": (2, 10), "smplx_expr": (2, 10),
        "cam_trans": (2, 3), "joint_img": (2, 65, 3), "lhand_bbox": (2, 4), "rhand_bbox": (2, 4), "face_bbox": (2, 4),
    }
    assert all(torch.isfinite(v).all() for v in out.values())
    # translation depth is k * sigmoid(.) in (0, 56.4)
    assert (out["cam_trans"][:, 2] > 0).all() and (out["cam_trans"][:, 2] < 56.39).all()


@pytest.mark.slow
def test_batch_of_three_equals_single_runs(s32_net):
    """Samples never interact; in particular root/jaw poses at batch 3 (official torch.cross bug)."""
    img = _img(3, seed=4)
    with torch.no_grad():
        batched = s32_net(img)
        single = [s32_net(img[i:i + 1]) for i in range(3)]
    for key, value in batched.items():
        torch.testing.assert_close(value, torch.cat([s[key] for s in single]), atol=2e-4, rtol=1e-4, msg=key)


def test_body_image_is_stride_two_subsample():
    img = _img(1, seed=2)
    torch.testing.assert_close(F.interpolate(img, (256, 192)), img[:, :, ::2, ::2], rtol=0, atol=0)


def test_left_hand_crop_is_the_flipped_right_hand_path(s32_net):
    """With the same box for both hands, the left hand's RoI features are the right hand's,
    flipped left-right, before the 1x1 conv (the network sees every hand as a right hand)."""
    torch.manual_seed(0)
    feat = torch.randn(1, 384, 16, 12)
    box = torch.tensor([[40.0, 60.0, 104.0, 124.0]])
    roi = s32_net.hand_roi_net
    with torch.no_grad():
        both = roi(feat, box, box)
        from engines.roi_align import roi_align

        r = roi_align(roi.deconv(feat), torch.cat([torch.zeros(1, 1), box * 0.25], 1), 16)
        torch.testing.assert_close(both[1:], roi.conv(r))
        torch.testing.assert_close(both[:1], roi.conv(torch.flip(r, [3])))


@pytest.mark.slow
def test_left_hand_pose_is_the_mirror_image_of_the_predicted_right_hand_rotation(s32_net):
    """The hand regressor predicts the (flipped) left hand as a right hand; mirroring an image
    left-right (x -> -x) turns a rotation R into M R M with M = diag(-1, 1, 1). Derived here from
    rotation matrices, not from the network's axis-angle shortcut (x, -y, -z)."""
    from scipy.spatial.transform import Rotation

    from engines import geometry as G

    captured = {}
    handle = s32_net.hand_regressor.register_forward_hook(lambda m, i, o: captured.__setitem__("hand6", o))
    try:
        with torch.no_grad():
            out = s32_net(torch.rand(2, 3, 512, 384, generator=torch.Generator().manual_seed(4)))
    finally:
        handle.remove()
    b = 2
    hand6 = captured["hand6"].reshape(2 * b, -1, 6)
    mirror = np.diag([-1.0, 1.0, 1.0])
    for k in range(b):
        predicted = G.rot6d_to_rotmat(hand6[k]).double().numpy()          # left hand, seen as a right hand
        want = mirror @ predicted @ mirror
        got = Rotation.from_rotvec(out["smplx_lhand_pose"][k].reshape(-1, 3).double().numpy()).as_matrix()
        np.testing.assert_allclose(got, want, atol=2e-5)
        right = G.rot6d_to_rotmat(hand6[b + k]).double().numpy()            # the right hand: as predicted
        got_r = Rotation.from_rotvec(out["smplx_rhand_pose"][k].reshape(-1, 3).double().numpy()).as_matrix()
        np.testing.assert_allclose(got_r, right, atol=2e-5)


@pytest.mark.slow
def test_full_forward_mesh_and_projection(s32_net, body_model):
    full = SMPLerXFull(s32_net, body_model).eval()
    with torch.no_grad():
        out = full(_img(1, seed=3))
    mesh = out["smplx_mesh_cam"][0]
    assert mesh.shape == (10475, 3)
    verts, joints = body_model(out["smplx_root_pose"], out["smplx_body_pose"], out["smplx_lhand_pose"],
                               out["smplx_rhand_pose"], out["smplx_jaw_pose"], out["smplx_shape"], out["smplx_expr"])
    torch.testing.assert_close(mesh, verts[0] + out["cam_trans"][0])
    j = joints[0, JOINT_IDX_137] + out["cam_trans"][0]
    x = j[:, 0] / (j[:, 2] + 1e-4) * 5000 + 96
    torch.testing.assert_close(out["smplx_joint_proj"][0, :, 0], x / 192 * 12, rtol=1e-5, atol=1e-4)
    assert out["smplx_joint_proj"].shape == (1, 137, 2)
    assert len(JOINT_IDX_137) == 137 and max(JOINT_IDX_137) == 143


def test_predictor_matches_manual_pipeline(s32_net, body_model, media_dir):
    """Predictor = official demo steps: process_bbox, affine crop of RGB float, /255, forward."""
    import cv2

    from engines import geometry as G
    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    raw = [200.0, 50.0, 200.0, 350.0]
    pred = Predictor(TorchEngine(s32_net), body_model).predict(img, [raw])[0]
    rgb = img[:, :, ::-1].astype(np.float32)
    box = G.process_bbox(np.array(raw), img.shape[1], img.shape[0])
    patch = cv2.warpAffine(rgb, G.crop_transform(box), (384, 512), flags=cv2.INTER_LINEAR)
    x = torch.from_numpy(patch.transpose(2, 0, 1).copy())[None] / 255
    with torch.no_grad():
        ref = s32_net(x)
    np.testing.assert_array_equal(pred.person.params.global_orient, ref["smplx_root_pose"].numpy().reshape(1, 3))
    np.testing.assert_array_equal(pred.person.params.right_hand_pose, ref["smplx_rhand_pose"].numpy().reshape(15, 3))
    np.testing.assert_array_equal(pred.person.params.transl, ref["cam_trans"].numpy().reshape(1, 3))
    np.testing.assert_allclose(pred.person.bbox, box)
    npz = pred.npz_dict()
    assert {k: v.shape for k, v in npz.items()} == {
        "global_orient": (1, 3), "body_pose": (21, 3), "left_hand_pose": (15, 3), "right_hand_pose": (15, 3),
        "jaw_pose": (1, 3), "leye_pose": (1, 3), "reye_pose": (1, 3), "betas": (1, 10), "expression": (1, 10),
        "transl": (1, 3)}


@pytest.mark.slow
def test_device_path_on_cpu_matches_the_official_cpu_path(s32_net, body_model, media_dir):
    """The GPU path (frame uploaded once, crops by grid_sample, network and SMPL-X layer on the
    engine's device, one copy back), run here on the CPU, gives the official path's people."""
    import cv2

    from engines.backends.torch_backend import TorchEngine
    from engines.inference import Predictor

    img = cv2.imread(str(media_dir / "coco_000785_skier.jpg"))
    boxes = [(280.0, 44.0, 220.0, 348.0), (10.0, 20.0, 200.0, 300.0)]
    official = Predictor(TorchEngine(s32_net), body_model)
    assert not official.is_async
    device = Predictor(TorchEngine(s32_net), body_model, device_path=True)
    assert device.is_async
    ref = official.predict(img, boxes)
    pending = device.launch(img, boxes)
    got = pending.result()
    assert len(got) == len(ref) == 2
    for g, r in zip(got, ref):
        for k, v in r.person.params.to_dict().items():
            np.testing.assert_allclose(g.person.params.to_dict()[k], v, atol=2e-3, err_msg=k)
        np.testing.assert_allclose(g.person.vertices, r.person.vertices, atol=2e-3)
        np.testing.assert_allclose(g.person.joints_2d, r.person.joints_2d, atol=0.5)
        np.testing.assert_allclose(g.lhand_bbox, r.lhand_bbox, atol=0.5)
        np.testing.assert_array_equal(g.person.bbox, r.person.bbox)


def test_rigid_transform_chain_is_bit_equal_to_smplx_and_patches_nothing(body_model):
    """Our sync-free kinematic chain gives exactly what smplx's own batch_rigid_transform gives,
    and the body model runs smplx's forward with it without replacing anything in smplx: the
    layer called directly (smplx's own chain) gives bit-equal vertices and joints."""
    import smplx.lbs
    from smplx.lbs import batch_rodrigues

    from engines.body_model import rigid_transform_chain

    assert smplx.lbs.batch_rigid_transform is not rigid_transform_chain
    assert "rigid_transform_chain" not in smplx.lbs.batch_rigid_transform.__qualname__
    g = torch.Generator().manual_seed(3)
    rot = batch_rodrigues((torch.rand(4 * 55, 3, generator=g) - 0.5) * 2).reshape(4, 55, 3, 3)
    joints = torch.rand(4, 55, 3, generator=g)
    parents = body_model.layer.parents
    want = smplx.lbs.batch_rigid_transform(rot, joints, parents)
    got = rigid_transform_chain(rot, joints, parents)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])

    args = [torch.rand(3, n, generator=g) * 0.8 - 0.4 for n in (3, 63, 45, 45, 3, 10, 10)]
    with torch.no_grad():
        verts, joints = body_model(*args)
        zeros = torch.zeros(3, 3)
        ref = body_model.layer(global_orient=args[0], body_pose=args[1], left_hand_pose=args[2],
                               right_hand_pose=args[3], jaw_pose=args[4], betas=args[5], expression=args[6],
                               leye_pose=zeros, reye_pose=zeros)
    assert torch.equal(verts, ref.vertices) and torch.equal(joints, ref.joints)
    assert smplx.lbs.batch_rigid_transform is not rigid_transform_chain  # still smplx's own after a forward
