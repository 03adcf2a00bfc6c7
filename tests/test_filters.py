"""One-Euro filters on vectors and SO(3), the SMPL-X filter and its settings."""
import json

import numpy as np
import pytest

from realtime.filters import (
    BetasSmoother,
    FilterSettings,
    MultiPersonFilter,
    OneEuroFilter,
    OneEuroParams,
    OneEuroQuatFilter,
    SMPLXFilter,
)
from realtime.rotations import axis_angle_to_quat, quat_angle, quat_conj, quat_mul
from engines.types import PARAM_SHAPES, PREDICTED_KEYS, Person, SMPLXParams

RATE = 30.0


def _angle_between(a, b):
    """Rotation angle (rad) between quaternion arrays, sign-independent."""
    return quat_angle(quat_mul(a, quat_conj(b)))


def _noisy(q0, sigma, rng, n):
    """``n`` samples of rotation ``q0`` perturbed by random rotations of std ``sigma`` rad."""
    return [quat_mul(axis_angle_to_quat(rng.normal(0.0, sigma, q0.shape[:-1] + (3,))), q0) for _ in range(n)]


# ------------------------------------------------------------------ vector filter
def test_vector_step_converges_monotonically_without_overshoot():
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    target = np.array([1.0, -2.0, 0.5])
    outs = [filt(np.zeros(3), i / RATE) for i in range(10)]
    outs += [filt(target, i / RATE) for i in range(10, 200)]
    outs = np.array(outs)
    after = outs[10:]
    np.testing.assert_allclose(after[-1], target, atol=1e-4)
    progress = after / target  # 0 -> 1 in every component
    assert np.all(np.diff(progress, axis=0) >= -1e-12)
    assert np.all(progress <= 1.0 + 1e-12)
    assert 0.0 < progress[0, 0] < 1.0  # it is smoothed, not a jump


def test_vector_first_sample_passes_and_dtype_kept():
    filt = OneEuroFilter(1.0, 0.0)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = filt(x, 0.0)
    np.testing.assert_array_equal(out, x)
    assert out.dtype == np.float32 and out is not x
    out2 = filt(x + 1, 1 / RATE)
    assert out2.shape == (2, 3) and out2.dtype == np.float32


def test_vector_noise_reduction():
    rng = np.random.default_rng(0)
    filt = OneEuroFilter(min_cutoff=0.5, beta=0.1)
    raw = 3.0 + rng.normal(0.0, 0.05, size=(300, 2))
    out = np.array([filt(x, i / RATE) for i, x in enumerate(raw)])
    assert out[60:].std(axis=0).max() < 0.35 * raw[60:].std(axis=0).min()
    np.testing.assert_allclose(out[60:].mean(axis=0), 3.0, atol=0.02)


def test_non_increasing_timestamps_are_safe():
    filt = OneEuroFilter(1.0, 1.0)
    filt(np.array([0.0]), 1.0)
    a = filt(np.array([1.0]), 1.1)
    same_t = filt(np.array([5.0]), 1.1)  # dt = 0
    backwards = filt(np.array([5.0]), 1.0)  # dt < 0
    assert np.all(np.isfinite(same_t)) and np.all(np.isfinite(backwards))
    np.testing.assert_array_equal(same_t, a)
    np.testing.assert_array_equal(backwards, a)
    later = filt(np.array([1.0]), 1.1)  # clock re-synchronised: dt = 0.1 again
    assert np.all(np.isfinite(later))

    qf = OneEuroQuatFilter(1.0, 1.0)
    q = axis_angle_to_quat(np.array([0.0, 0.0, 0.3]))
    qf(q, 2.0)
    out = qf(axis_angle_to_quat(np.array([0.0, 0.0, 1.0])), 2.0)
    assert np.all(np.isfinite(out))
    assert _angle_between(out, q) < 1e-9


def test_vector_speed_is_norm_or_per_element():
    # norm speed: fast motion of one component opens the cutoff of the whole vector
    t = np.arange(60) / RATE
    fast = np.stack([np.sin(2 * np.pi * 2 * t) * 0.5, np.zeros_like(t)], -1)
    steps = np.stack([np.zeros_like(t), np.where(t > 1.0, 1.0, 0.0)], -1)
    signal = fast + steps
    joint = OneEuroFilter(1.0, 5.0)
    separate = OneEuroFilter(1.0, 5.0, per_element=True)
    out_joint = np.array([joint(x, ti) for x, ti in zip(signal, t)])
    out_sep = np.array([separate(x, ti) for x, ti in zip(signal, t)])
    k = int(np.argmax(t > 1.0)) + 2  # shortly after the step in component 1
    assert out_joint[k, 1] > out_sep[k, 1]


# --------------------------------------------------------------- quaternion filter
def test_quat_step_converges():
    filt = OneEuroQuatFilter(min_cutoff=1.0, beta=0.3)
    q0 = axis_angle_to_quat(np.array([0.2, 0.0, 0.0]))
    q1 = axis_angle_to_quat(np.array([0.0, 1.2, 0.4]))
    for i in range(10):
        filt(q0, i / RATE)
    errors = [_angle_between(filt(q1, i / RATE), q1) for i in range(10, 200)]
    assert errors[-1] < 1e-4
    assert errors[0] > 0.05  # smoothed, not a jump
    assert np.all(np.diff(errors) <= 1e-9)  # no overshoot


def test_quat_noise_reduction():
    rng = np.random.default_rng(1)
    q0 = axis_angle_to_quat(np.array([[0.3, -0.5, 1.0], [2.5, 0.1, 0.0]]))  # two joints
    samples = _noisy(q0, 0.05, rng, 300)
    filt = OneEuroQuatFilter(min_cutoff=0.5, beta=0.1)
    outs = [filt(q, i / RATE) for i, q in enumerate(samples)]
    err_in = np.array([_angle_between(q, q0) for q in samples[60:]])
    err_out = np.array([_angle_between(q, q0) for q in outs[60:]])
    assert err_out.mean() < 0.35 * err_in.mean()
    assert err_out.std() < 0.35 * err_in.std()


def test_quat_sign_flips_do_not_flip_output():
    rng = np.random.default_rng(2)
    q = axis_angle_to_quat(np.array([[0.1, 2.0, -0.3]]))
    filt = OneEuroQuatFilter(min_cutoff=1.0, beta=0.5)
    outs = []
    for i, noisy in enumerate(_noisy(q, 0.01, rng, 60)):
        outs.append(filt(noisy if i % 2 == 0 else -noisy, i / RATE))
    outs = np.array(outs)
    step_angles = _angle_between(outs[1:], outs[:-1])
    assert step_angles.max() < 0.02
    # output quaternions stay on one hemisphere: no sign jumps in the components
    assert np.all(np.sum(outs[1:] * outs[:-1], axis=-1) > 0.99)
    assert _angle_between(outs[-1], q).max() < 0.03


def test_larger_beta_means_less_lag_on_fast_ramp():
    def final_lag(beta, rotation):
        speed = 3.0  # rad/s
        axis = np.array([0.0, 0.0, 1.0])
        if rotation:
            filt = OneEuroQuatFilter(min_cutoff=1.0, beta=beta)
            for i in range(30):
                out = filt(axis_angle_to_quat(axis * speed * i / RATE), i / RATE)
            return float(_angle_between(out, axis_angle_to_quat(axis * speed * 29 / RATE)))
        filt = OneEuroFilter(min_cutoff=1.0, beta=beta)
        for i in range(30):
            out = filt(np.array([speed * i / RATE]), i / RATE)
        return float(speed * 29 / RATE - out[0])

    for rotation in (False, True):
        lags = [final_lag(beta, rotation) for beta in (0.0, 0.5, 2.0)]
        assert lags[0] > lags[1] > lags[2] > 0.0


def test_predict_takes_the_lag_out_of_a_ramp_and_keeps_noise_down():
    """With predict the output catches up with a steady ramp (vectors and rotations) that the plain
    filter trails, and a still, noisy signal stays about as quiet."""
    speed, n = 1.5, 90
    axis = np.array([0.0, 0.0, 1.0])
    for predict in (False, True):
        vec = OneEuroFilter(min_cutoff=1.0, beta=0.0, predict=predict)
        rot = OneEuroQuatFilter(min_cutoff=1.0, beta=0.0, predict=predict)
        for i in range(n):
            v = vec(np.array([speed * i / RATE]), i / RATE)
            q = rot(axis_angle_to_quat(axis * speed * i / RATE), i / RATE)
        lag_v = speed * (n - 1) / RATE - v[0]
        lag_q = float(_angle_between(q, axis_angle_to_quat(axis * speed * (n - 1) / RATE)))
        if predict:
            assert abs(lag_v) < 0.01 and lag_q < 0.01
        else:
            assert lag_v > 0.2 and lag_q > 0.2  # 1.5 rad/s x 0.16 s
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.05, (300, 1))
    spread = {}
    for predict in (False, True):
        f = OneEuroFilter(min_cutoff=1.0, beta=0.0, predict=predict)
        spread[predict] = np.std([f(x, i / RATE)[0] for i, x in enumerate(noise)][30:])
    assert spread[True] < 2.0 * spread[False] < 0.05
    s = FilterSettings().with_overrides(["predict=true"])
    assert s.predict and not FilterSettings().predict


def test_dropped_frames_do_not_look_like_faster_motion():
    # a joint turning at 1 rad/s, sampled at 60 Hz, once with every frame and
    # once with irregular drops (gaps of 1-3 frames)
    rng = np.random.default_rng(3)
    axis = np.array([1.0, 0.0, 0.0])
    times = np.arange(240) / 60.0
    keep = [0]
    while keep[-1] < len(times) - 4:
        keep.append(keep[-1] + int(rng.integers(1, 4)))

    def run(indices, stamps):
        filt = OneEuroQuatFilter(min_cutoff=1.0, beta=0.5)
        out = {}
        for i, t in zip(indices, stamps):
            out[i] = filt(axis_angle_to_quat(axis * times[i]), t)
        return filt, out

    full, out_full = run(range(len(times)), times)
    dropped, out_drop = run(keep, times[keep])
    assert full.angular_speed[()] == pytest.approx(1.0, rel=0.05)
    assert dropped.angular_speed[()] == pytest.approx(1.0, rel=0.05)
    late = [i for i in keep if times[i] > 2.0]
    gap = max(_angle_between(out_full[i], out_drop[i]) for i in late)
    assert gap < 0.01
    # counter-check: counting frames instead of using timestamps would see ~2x the speed
    naive, _ = run(keep, np.arange(len(keep)) / 60.0)
    assert naive.angular_speed[()] > 1.5


# ------------------------------------------------------------------ betas
def test_betas_settle_and_freeze():
    rng = np.random.default_rng(4)
    true = rng.normal(0, 1, size=(1, 10))
    smoother = BetasSmoother(window=20)
    outs = np.array([smoother(true + rng.normal(0, 0.3, size=(1, 10))) for _ in range(60)])
    early_var = outs[:10].var(axis=0).mean()
    mid_var = outs[10:20].var(axis=0).mean()
    assert mid_var < early_var
    assert np.ptp(outs[20:], axis=0).max() == 0.0 and smoother.frozen
    assert np.abs(outs[-1] - true).max() < 0.3
    smoother.reset()
    fresh = np.full((1, 10), 5.0)
    np.testing.assert_array_equal(smoother(fresh), fresh)


# ------------------------------------------------------------------ SMPL-X filter
def _params(rng, scale=0.3, dtype=np.float32):
    return SMPLXParams(**{k: (rng.normal(0, scale, PARAM_SHAPES[k])).astype(dtype) for k in PREDICTED_KEYS})


def test_smplx_filter_shapes_dtypes_first_call_and_input_untouched():
    rng = np.random.default_rng(5)
    filt = SMPLXFilter()
    first = _params(rng)
    out = filt(first, 0.0)
    for k in PREDICTED_KEYS:
        np.testing.assert_array_equal(getattr(out, k), getattr(first, k))
        assert getattr(out, k) is not getattr(first, k)
    second = _params(rng)
    backup = second.copy()
    out2 = filt(second, 1 / RATE)
    for k in PREDICTED_KEYS:
        assert getattr(out2, k).shape == PARAM_SHAPES[k]
        assert getattr(out2, k).dtype == np.float32
        np.testing.assert_array_equal(getattr(second, k), getattr(backup, k))
    # smoothed: between the first and second sample, not equal to the new one
    assert not np.allclose(out2.body_pose, second.body_pose, atol=1e-3)
    assert np.abs(out2.transl - first.transl).max() < np.abs(second.transl - first.transl).max()


def test_smplx_filter_reset_forgets_state():
    rng = np.random.default_rng(6)
    filt = SMPLXFilter()
    for i in range(10):
        filt(_params(rng), i / RATE)
    fresh = _params(rng, scale=0.8)
    out = filt(fresh, 11 / RATE)
    assert not np.allclose(out.global_orient, fresh.global_orient, atol=1e-3)
    filt.reset()
    out = filt(fresh, 12 / RATE)
    for k in PREDICTED_KEYS:
        np.testing.assert_array_equal(getattr(out, k), getattr(fresh, k))


def test_smplx_filter_handles_rotations_near_pi():
    # angle near pi: the axis-angle components flip sign from frame to frame, the rotation does not
    rng = np.random.default_rng(7)
    base = np.array([0.0, 0.0, 3.1])
    filt = SMPLXFilter()
    errors = []
    for i in range(90):
        params = _params(np.random.default_rng(0), scale=0.0)
        noisy = base + rng.normal(0, 0.05, 3)
        params.global_orient = noisy.reshape(1, 3).astype(np.float32)
        out = filt(params, i / RATE)
        errors.append(_angle_between(axis_angle_to_quat(out.global_orient[0]), axis_angle_to_quat(base)))
    assert max(errors[30:]) < 0.06


def test_smplx_filter_with_hand_mean_keeps_steady_pose():
    rng = np.random.default_rng(8)
    means = (rng.normal(0, 0.5, (15, 3)), rng.normal(0, 0.5, (15, 3)))
    params = _params(rng)
    filt = SMPLXFilter(hand_mean=means)
    for i in range(20):
        out = filt(params, i / RATE)
    np.testing.assert_allclose(out.left_hand_pose, params.left_hand_pose, atol=1e-5)
    np.testing.assert_allclose(out.right_hand_pose, params.right_hand_pose, atol=1e-5)


def test_disabled_filter_passes_through():
    rng = np.random.default_rng(9)
    filt = SMPLXFilter(FilterSettings().with_overrides(["enabled=false"]))
    filt(_params(rng), 0.0)
    p = _params(rng)
    out = filt(p, 1 / RATE)
    np.testing.assert_array_equal(out.body_pose, p.body_pose)


def test_multi_person_filter_drops_unseen_tracks():
    rng = np.random.default_rng(10)

    def person(track_id, params):
        box = np.zeros(4, np.float32)
        return Person(track_id=track_id, params=params, bbox=box, bbox_detector=box,
                      focal=np.ones(2, np.float32), princpt=np.zeros(2, np.float32))

    mpf = MultiPersonFilter()
    mpf([person(1, _params(rng)), person(2, _params(rng))], 0.0)
    assert mpf.track_ids == [1, 2]
    p1 = _params(rng)
    out = mpf([person(1, p1)], 1 / RATE)
    assert mpf.track_ids == [1]
    assert out[0].track_id == 1 and not np.allclose(out[0].params.body_pose, p1.body_pose, atol=1e-3)
    p2 = _params(rng)
    out = mpf([person(1, p1), person(2, p2)], 2 / RATE)
    np.testing.assert_array_equal(out[1].params.body_pose, p2.body_pose)  # fresh state for id 2


# ------------------------------------------------------------------ settings
def test_default_settings_follow_the_spec():
    s = FilterSettings()
    assert s.enabled
    assert (s.body.min_cutoff, s.body.beta) == (1.5, 0.5)
    assert (s.root.min_cutoff, s.root.beta) == (1.0, 0.3)
    assert (s.hands.min_cutoff, s.hands.beta) == (2.0, 0.7)
    assert s.depth.min_cutoff < s.translation.min_cutoff
    assert s.betas.window > 0


def test_settings_from_toml_and_json(tmp_path):
    toml_path = tmp_path / "filter.toml"
    toml_path.write_text("enabled = true\n[body]\nmin_cutoff = 2.5\nbeta = 0.9\n[betas]\nwindow = 12\n")
    s = FilterSettings.from_file(toml_path)
    assert s.body == OneEuroParams(2.5, 0.9, 1.0)
    assert s.betas.window == 12
    assert s.hands == FilterSettings().hands  # untouched groups keep defaults

    json_path = tmp_path / "filter.json"
    json_path.write_text(json.dumps({"filter": {"depth": {"min_cutoff": 0.2}, "enabled": False}}))
    s = FilterSettings.from_file(json_path)
    assert s.depth.min_cutoff == 0.2 and s.enabled is False

    bad = tmp_path / "bad.toml"
    bad.write_text("[body]\nmin_cutof = 2.0\n")
    with pytest.raises(ValueError, match="body.min_cutof"):
        FilterSettings.from_file(bad)
    bad.write_text("[elbow]\nbeta = 2.0\n")
    with pytest.raises(ValueError, match="elbow"):
        FilterSettings.from_file(bad)


def test_settings_overrides():
    base = FilterSettings()
    s = base.with_overrides(["body.min_cutoff=2.0", "betas.window=30", "jaw.beta=4", "enabled=off"])
    assert s.body.min_cutoff == 2.0 and s.body.beta == base.body.beta
    assert s.betas.window == 30 and isinstance(s.betas.window, int)
    assert s.jaw.beta == 4.0 and s.enabled is False
    assert base.body.min_cutoff == 1.5  # the original is untouched
    assert s.with_overrides("root.d_cutoff=0.5").root.d_cutoff == 0.5
    for bad, pattern in [
        ("body.cutoff=2", "unknown filter setting 'body.cutoff'"),
        ("knee.beta=1", "unknown filter setting 'knee.beta'"),
        ("body=1", "unknown filter setting 'body'"),
        ("body.min_cutoff", "KEY=VALUE"),
        ("body.min_cutoff=fast", "expects a number"),
        ("betas.window=2.5", "expects an integer"),
        ("enabled=maybe", "true/false"),
        ("body.min_cutoff=-1", "min_cutoff > 0"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            base.with_overrides([bad])
    assert "body.min_cutoff" in FilterSettings.keys() and "betas.window" in FilterSettings.keys()
