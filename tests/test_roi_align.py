"""RoIAlign (mmcv aligned=False) against a literal per-sample loop."""
import torch

from engines.roi_align import roi_align, roi_align_reference


def test_matches_literal_loop_on_varied_boxes():
    torch.manual_seed(0)
    feat = torch.randn(2, 5, 64, 48)
    rois = torch.tensor([
        [0, 3.2, 5.1, 30.7, 40.2],      # ordinary
        [1, -10.0, -5.0, 20.0, 10.0],   # partly outside (negative)
        [0, 40.0, 50.0, 70.0, 90.0],    # partly past the right/bottom border
        [1, 10.0, 10.0, 9.0, 8.0],      # inverted -> clamped to 1x1
        [0, -300.0, -200.0, 500.0, 800.0],  # huge: many samples per bin
        [1, 47.5, 63.6, 47.9, 63.9],    # tiny at the last pixel
        [0, 16.0, 16.0, 32.0, 32.0],    # exactly one sample per bin
        [1, 0.0, 0.0, 33.0, 65.0],      # 3 x 5 samples per bin
    ])
    ours = roi_align(feat, rois, 16, 1.0)
    ref = roi_align_reference(feat, rois, 16, 1.0)
    assert ours.shape == (8, 5, 16, 16)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-5)


def test_spatial_scale_and_batch_index():
    torch.manual_seed(1)
    feat = torch.randn(3, 2, 20, 20)
    rois = torch.tensor([[2, 4.0, 4.0, 30.0, 36.0], [0, 0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(roi_align(feat, rois, 4, 0.5), roi_align_reference(feat, rois, 4, 0.5),
                               atol=1e-5, rtol=1e-5)
    # the first RoI must only see image 2
    feat2 = feat.clone()
    feat2[0] += 100
    torch.testing.assert_close(roi_align(feat2, rois[:1], 4, 0.5), roi_align(feat, rois[:1], 4, 0.5))


def test_constant_feature_gives_constant_output_inside():
    feat = torch.full((1, 1, 64, 48), 3.0)
    out = roi_align(feat, torch.tensor([[0, 5.0, 5.0, 40.0, 60.0]]), 16)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))
