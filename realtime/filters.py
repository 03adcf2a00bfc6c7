"""One-Euro smoothing of SMPL-X parameters, driven by capture timestamps.

The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a first-order
low-pass filter whose cutoff rises with the signal's speed: steady poses are
smoothed hard, fast motion passes with little lag. For a sample ``x`` at time
``t`` (seconds) with ``dt`` = time since the previous sample::

    alpha(fc) = r / (1 + r),  r = 2*pi*fc*dt
    dx   = (x - x_prev) / dt
    dx^  = lerp(dx^_prev, dx, alpha(d_cutoff))
    fc   = min_cutoff + beta * |dx^|
    x^   = lerp(x^_prev, x, alpha(fc))

The derivative is taken between consecutive *raw* samples, as in the
authors' reference code (``lastRawValue`` in Casiez's 1euro C++), not from
the previous filtered value (the formula of the One-Euro paper, Casiez et al. 2012, as in VRPN).
The difference matters here: measured from the filtered value, the speed of a
steady motion comes out as ``v / alpha``, which includes the filter's own lag
and depends on the frame rate, so frames dropped upstream would open the
cutoff wider. From raw samples it is the signal's true speed at any rate, and
``beta`` has plain units (Hz per unit/s).

Rotations are filtered on SO(3), never as axis-angle components: the sample
is a unit quaternion aligned to the previous output's hemisphere, the low-pass
is a slerp, and the speed is the angular speed (rad/s) of ``q * q_prev^-1``.

``dt`` comes from the frames' capture timestamps, so frames dropped upstream
make a larger ``dt`` rather than looking like faster motion. A sample whose
timestamp is not later than the previous one is not filtered in (the previous
output is returned) and the clock re-synchronises to it.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from realtime.rotations import (
    axis_angle_to_quat,
    quat_align,
    quat_conj,
    quat_mul,
    quat_normalize,
    quat_slerp,
    quat_to_axis_angle,
)
from engines.types import Person, SMPLXParams

logger = logging.getLogger(__name__)


def smoothing_alpha(cutoff: Union[float, np.ndarray], dt: float) -> Union[float, np.ndarray]:
    """Exponential-smoothing factor of a first-order low-pass at ``cutoff`` Hz for step ``dt`` s."""
    r = 2.0 * math.pi * np.asarray(cutoff, dtype=np.float64) * dt
    return r / (1.0 + r)


def _check_params(min_cutoff, beta, d_cutoff) -> None:
    if not (np.all(np.asarray(min_cutoff) > 0) and np.all(np.asarray(d_cutoff) > 0) and np.all(np.asarray(beta) >= 0)):
        raise ValueError(
            f"One-Euro parameters need min_cutoff > 0, d_cutoff > 0, beta >= 0; "
            f"got {min_cutoff}, {beta}, {d_cutoff}"
        )


class OneEuroFilter:
    """One-Euro filter for real-valued arrays of any (fixed) shape.

    Speed: by default the Euclidean norm of the filtered derivative over the
    **last axis** (the VRPN convention for vectors), so every row along the
    leading axes is one independent vector signal with its own cutoff; a 0-d
    or 1-d array is a single vector. ``per_element=True`` gives every element
    its own speed and cutoff instead (for independent scalars such as
    expression coefficients).

    State is kept in float64; the output has the input's floating dtype.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
                 per_element: bool = False, predict: bool = False) -> None:
        _check_params(min_cutoff, beta, d_cutoff)
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.per_element = bool(per_element)
        #: Add the low-pass's own lag back along the output's (low-passed) velocity.
        self.predict = bool(predict)
        self.reset()

    def reset(self) -> None:
        """Forget the state; the next sample passes through unchanged."""
        self._x: Optional[np.ndarray] = None  # last output
        self._raw: Optional[np.ndarray] = None  # last accepted sample
        self._dx: Optional[np.ndarray] = None
        self._v: Optional[np.ndarray] = None  # velocity of the output (predict only)
        self._t: Optional[float] = None

    def _speed(self, dx: np.ndarray) -> np.ndarray:
        if self.per_element or dx.ndim == 0:
            return np.abs(dx)
        return np.linalg.norm(dx, axis=-1, keepdims=True)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` captured at ``t`` seconds; returns a new array."""
        x_in = np.asarray(x)
        out_dtype = x_in.dtype if np.issubdtype(x_in.dtype, np.floating) else np.float64
        x64 = x_in.astype(np.float64)
        t = float(t)
        if self._x is None:
            self._x, self._raw, self._dx, self._t = x64.copy(), x64.copy(), np.zeros_like(x64), t
            return x64.astype(out_dtype)
        if x64.shape != self._x.shape:
            raise ValueError(f"sample shape {x64.shape} differs from the filter's {self._x.shape}; reset() first")
        dt = t - self._t
        self._t = t
        if dt <= 0.0:
            return self._x.astype(out_dtype)
        dx = (x64 - self._raw) / dt
        self._raw = x64
        self._dx = self._dx + smoothing_alpha(self.d_cutoff, dt) * (dx - self._dx)
        alpha = smoothing_alpha(self.min_cutoff + self.beta * self._speed(self._dx), dt)
        previous = self._x
        self._x = self._x + alpha * (x64 - self._x)
        if self.predict:  # a first-order low-pass trails a ramp by (1 - alpha) / alpha samples
            velocity = (self._x - previous) / dt  # of the output: far less noisy than the raw samples'
            a_d = smoothing_alpha(self.d_cutoff, dt)
            self._v = velocity if self._v is None else self._v + a_d * (velocity - self._v)
            return (self._x + (1.0 - alpha) / alpha * dt * self._v).astype(out_dtype)
        return self._x.astype(out_dtype)


class OneEuroQuatFilter:
    """One-Euro filter for unit quaternions ``(..., 4)`` in (x, y, z, w) order.

    Each quaternion along the leading axes (e.g. each joint) is one rotation
    signal with its own adaptive cutoff. Per sample: the input is normalised
    and flipped onto the previous output's hemisphere (q and -q are the same
    rotation); the angular velocity (rad/s, rotation vector of
    ``q * q_prev^-1`` over ``dt``, ``q_prev`` the previous sample) is
    low-passed at ``d_cutoff``; its
    magnitude drives ``fc = min_cutoff + beta * speed``; the output is
    ``slerp(q_prev_hat, q, alpha(fc))``. Outputs stay on a continuous
    hemisphere path (their sign is not canonicalised).

    The parameters are numbers, or arrays of shape (N, 1) that give each of N rotations its own
    settings (one filter for all joints of a body: one set of numpy calls per frame).
    """

    def __init__(self, min_cutoff=1.0, beta=0.0, d_cutoff=1.0, predict: bool = False) -> None:
        _check_params(min_cutoff, beta, d_cutoff)
        self.predict = bool(predict)
        self.min_cutoff = np.asarray(min_cutoff, np.float64) if np.ndim(min_cutoff) else float(min_cutoff)
        self.beta = np.asarray(beta, np.float64) if np.ndim(beta) else float(beta)
        self.d_cutoff = np.asarray(d_cutoff, np.float64) if np.ndim(d_cutoff) else float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the state; the next sample passes through (normalised)."""
        self._q: Optional[np.ndarray] = None  # last output
        self._raw: Optional[np.ndarray] = None  # last accepted sample (hemisphere-aligned)
        self._omega: Optional[np.ndarray] = None
        self._spin: Optional[np.ndarray] = None  # angular velocity of the output (predict only)
        self._t: Optional[float] = None

    @property
    def angular_speed(self) -> Optional[np.ndarray]:
        """Filtered angular speed (rad/s) per rotation, shape (...,); None before the first sample."""
        if self._omega is None:
            return None
        return np.linalg.norm(self._omega, axis=-1)

    def __call__(self, q: np.ndarray, t: float) -> np.ndarray:
        """Filter quaternions ``q`` (..., 4) captured at ``t`` seconds; returns float64 (..., 4)."""
        q = quat_normalize(q)
        if q.shape[-1] != 4:
            raise ValueError(f"quaternions must have a last axis of 4, got shape {q.shape}")
        t = float(t)
        if self._q is None:
            self._q, self._raw, self._t = q.copy(), q.copy(), t
            self._omega = np.zeros(q.shape[:-1] + (3,))
            return q.copy()
        if q.shape != self._q.shape:
            raise ValueError(f"sample shape {q.shape} differs from the filter's {self._q.shape}; reset() first")
        dt = t - self._t
        self._t = t
        if dt <= 0.0:
            return self._q.copy()
        q = quat_align(q, self._q)
        delta = quat_mul(q, quat_conj(self._raw))  # rotation since the previous sample
        omega = quat_to_axis_angle(delta) / dt  # rad/s (quat_to_axis_angle takes the short way)
        self._raw = q
        self._omega = self._omega + smoothing_alpha(self.d_cutoff, dt) * (omega - self._omega)
        speed = np.linalg.norm(self._omega, axis=-1, keepdims=True)
        alpha = smoothing_alpha(self.min_cutoff + self.beta * speed, dt)
        previous = self._q
        self._q = quat_slerp(self._q, q, alpha)
        if self.predict:  # the low-pass's lag, (1 - alpha) / alpha samples, turned on at the output's speed
            spin = quat_to_axis_angle(quat_mul(self._q, quat_conj(previous))) / dt
            a_d = smoothing_alpha(self.d_cutoff, dt)
            self._spin = spin if self._spin is None else self._spin + a_d * (spin - self._spin)
            return quat_normalize(quat_mul(axis_angle_to_quat(self._spin * ((1.0 - alpha) / alpha * dt)), self._q))
        return self._q.copy()


class BetasSmoother:
    """Shape settles to one steady value per performer.

    Collects the first ``window`` samples and outputs their element-wise
    **median** so far (robust to a few bad frames); after ``window`` samples the
    output is frozen until :meth:`reset` (the pipeline resets on track loss, so a
    new performer is measured afresh). ``window=0`` passes betas through.
    """

    def __init__(self, window: int = 30) -> None:
        if window < 0:
            raise ValueError(f"betas window must be >= 0, got {window}")
        self.window = int(window)
        self.reset()

    def reset(self) -> None:
        self._samples: List[np.ndarray] = []
        self._frozen: Optional[np.ndarray] = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def __call__(self, betas: np.ndarray) -> np.ndarray:
        betas = np.asarray(betas)
        out_dtype = betas.dtype if np.issubdtype(betas.dtype, np.floating) else np.float64
        if self.window == 0:
            return betas.astype(out_dtype, copy=True)
        if self._frozen is not None:
            return self._frozen.astype(out_dtype)
        self._samples.append(betas.astype(np.float64))
        value = np.median(np.stack(self._samples), axis=0)
        if len(self._samples) >= self.window:
            self._frozen = value
            self._samples = []
        return value.astype(out_dtype)


# --------------------------------------------------------------------- settings
@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of one One-Euro group (cutoffs in Hz; beta in 1/unit of speed)."""

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        _check_params(self.min_cutoff, self.beta, self.d_cutoff)


@dataclass(frozen=True)
class BetasParams:
    """Shape smoothing: median of the first ``window`` frames, then frozen (0: off)."""

    window: int = 30

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ValueError(f"betas window must be >= 0, got {self.window}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(value: Any, kind: type, key: str) -> Any:
    """Convert a file or command-line value to ``kind`` with a clear error."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"filter setting {key!r} expects true/false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ValueError(f"filter setting {key!r} expects an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"filter setting {key!r} expects an integer, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"filter setting {key!r} expects an integer, got {value!r}")
        return int(number)
    if isinstance(value, bool):
        raise ValueError(f"filter setting {key!r} expects a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"filter setting {key!r} expects a number, got {value!r}") from None


@dataclass(frozen=True)
class FilterSettings:
    """Per-group One-Euro parameters for :class:`SMPLXFilter`.

    Groups: ``root`` (global_orient), ``body`` (body_pose local rotations),
    ``hands`` (finger rotations), ``jaw``, ``translation`` (x/y, metres),
    ``depth`` (z, metres; monocular depth is noisier, hence a lower cutoff),
    ``expression`` (per coefficient) and ``betas`` (see :class:`BetasParams`).
    Rotation speeds are in rad/s, translation speeds in m/s. Defaults follow
    the One-Euro paper's tuning advice for 30-60 Hz input.
    """

    enabled: bool = True
    #: Lag compensation: each One-Euro output is moved ahead along its filtered velocity by the
    #: low-pass's own lag, ``(1 - alpha) / alpha`` samples (no lag on steady motion; a little
    #: overshoot where the motion stops). See docs/motion.md for the measured effect.
    predict: bool = False
    root: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 0.3, 1.0))
    body: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.5, 0.5, 1.0))
    hands: OneEuroParams = field(default_factory=lambda: OneEuroParams(2.0, 0.7, 1.0))
    jaw: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.5, 2.0, 1.0))
    translation: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.0, 1.0, 1.0))
    depth: OneEuroParams = field(default_factory=lambda: OneEuroParams(0.3, 0.5, 1.0))
    expression: OneEuroParams = field(default_factory=lambda: OneEuroParams(1.5, 2.0, 1.0))
    betas: BetasParams = field(default_factory=BetasParams)

    # -- introspection
    @classmethod
    def keys(cls) -> List[str]:
        """Every settable key, e.g. ``body.min_cutoff``, ``betas.window``, ``enabled``."""
        out = []
        for f in dataclasses.fields(cls):
            group_type = _GROUP_TYPES.get(f.name)
            if group_type is None:
                out.append(f.name)
            else:
                out.extend(f"{f.name}.{g.name}" for g in dataclasses.fields(group_type))
        return out

    def to_dict(self) -> Dict[str, Any]:
        """Nested plain dict (the same layout ``from_dict`` reads)."""
        return dataclasses.asdict(self)

    # -- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FilterSettings":
        """Defaults updated from a nested mapping ``{"body": {"min_cutoff": 2.0}, ...}``.

        A mapping whose only key is ``filter`` (a ``[filter]`` table of a larger
        config file) is unwrapped. Unknown groups or keys raise ValueError.
        """
        if set(data) == {"filter"} and isinstance(data["filter"], Mapping):
            data = data["filter"]
        pairs: List[Tuple[str, Any]] = []
        for name, value in data.items():
            if name in _GROUP_TYPES:
                if not isinstance(value, Mapping):
                    raise ValueError(f"filter group {name!r} must be a table of keys, got {value!r}")
                pairs.extend((f"{name}.{k}", v) for k, v in value.items())
            else:
                pairs.append((name, value))
        return cls()._apply(pairs)

    @classmethod
    def from_file(cls, path: Union[str, Path]) -> "FilterSettings":
        """Read a ``.toml`` or ``.json`` file with the group names as tables."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"filter settings file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".toml":
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        elif suffix == ".json":
            with path.open("r", encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            raise ValueError(f"filter settings must be .toml or .json, got {path}")
        if not isinstance(data, Mapping):
            raise ValueError(f"filter settings file {path} must hold a table/object at the top level")
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def with_overrides(self, overrides: Union[str, Iterable[str]]) -> "FilterSettings":
        """A copy with ``KEY=VALUE`` overrides applied (``--filter body.beta=0.8``)."""
        if isinstance(overrides, str):
            overrides = [overrides]
        pairs = []
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"filter override must look like KEY=VALUE (e.g. body.min_cutoff=2.0), got {item!r}")
            pairs.append((key.strip(), value.strip()))
        return self._apply(pairs)

    def _apply(self, pairs: Sequence[Tuple[str, Any]]) -> "FilterSettings":
        top: Dict[str, Any] = {}
        groups: Dict[str, Dict[str, Any]] = {}
        valid = ", ".join(self.keys())
        for key, value in pairs:
            group, dot, name = key.partition(".")
            if not dot:
                if group in _GROUP_TYPES or group not in _TOP_TYPES:
                    raise ValueError(f"unknown filter setting {key!r}; valid keys: {valid}")
                top[group] = _coerce(value, _TOP_TYPES[group], key)
                continue
            group_type = _GROUP_TYPES.get(group)
            field_types = {f.name: f.type for f in dataclasses.fields(group_type)} if group_type else {}
            if name not in field_types:
                raise ValueError(f"unknown filter setting {key!r}; valid keys: {valid}")
            kind = int if field_types[name] in (int, "int") else float
            groups.setdefault(group, {})[name] = _coerce(value, kind, key)
        changes: Dict[str, Any] = dict(top)
        for group, values in groups.items():
            changes[group] = dataclasses.replace(getattr(self, group), **values)
        return dataclasses.replace(self, **changes)


_GROUP_TYPES: Dict[str, type] = {
    "root": OneEuroParams, "body": OneEuroParams, "hands": OneEuroParams, "jaw": OneEuroParams,
    "translation": OneEuroParams, "depth": OneEuroParams, "expression": OneEuroParams,
    "betas": BetasParams,
}
_TOP_TYPES: Dict[str, type] = {"enabled": bool, "predict": bool}


# ------------------------------------------------------------------ SMPL-X filter
#: The rotations of a body, in the order the joint filter stacks them: (parameter, rows).
_ROTATION_LAYOUT = (("global_orient", 1), ("body_pose", 21), ("left_hand_pose", 15), ("right_hand_pose", 15),
                    ("jaw_pose", 1))


class SMPLXFilter:
    """Smooths one performer's :class:`SMPLXParams` over time.

    ``hand_mean``: optional ``(left, right)`` SMPL-X hand means, each (15, 3)
    (``engines.body_model`` exposes them). Hand poses are relative to these
    means, so with them the filter smooths the true finger rotations; without
    them it smooths the offsets as rotations (equivalent for offsets below pi,
    which is the normal range).

    Call :meth:`reset` when the track is lost or changes identity.
    """

    def __init__(self, settings: Optional[FilterSettings] = None,
                 hand_mean: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> None:
        self.settings = settings if settings is not None else FilterSettings()
        s = self.settings
        left_mean, right_mean = (None, None) if hand_mean is None else hand_mean
        # all 53 rotations in one quaternion filter, each row with its group's settings;
        # hand poses are predicted relative to the hand mean (flat_hand_mean=False): the joint
        # rotation is aa(pose + mean), so that is what is filtered (and the mean taken off again)
        groups = {"global_orient": (s.root, None), "body_pose": (s.body, None), "left_hand_pose": (s.hands, left_mean),
                  "right_hand_pose": (s.hands, right_mean), "jaw_pose": (s.jaw, None)}
        rows = [(groups[key][0], groups[key][1], n) for key, n in _ROTATION_LAYOUT]
        column = lambda attr: np.concatenate([np.full(n, getattr(prm, attr)) for prm, _, n in rows])[:, None]  # noqa: E731
        self._rotations = OneEuroQuatFilter(column("min_cutoff"), column("beta"), column("d_cutoff"), s.predict)
        self._offset = np.concatenate([np.zeros((n, 3)) if mean is None else np.asarray(mean, np.float64).reshape(n, 3)
                                       for _, mean, n in rows])
        self._xy = OneEuroFilter(s.translation.min_cutoff, s.translation.beta, s.translation.d_cutoff,
                                 predict=s.predict)
        self._z = OneEuroFilter(s.depth.min_cutoff, s.depth.beta, s.depth.d_cutoff, predict=s.predict)
        self._expression = OneEuroFilter(s.expression.min_cutoff, s.expression.beta,
                                         s.expression.d_cutoff, per_element=True, predict=s.predict)
        self._betas = BetasSmoother(s.betas.window)
        self._primed = False

    def reset(self) -> None:
        """Forget all state: the next call returns its input unchanged."""
        self._primed = False
        self._rotations.reset()
        self._xy.reset()
        self._z.reset()
        self._expression.reset()
        self._betas.reset()

    def __call__(self, params: SMPLXParams, t: float) -> SMPLXParams:
        """Filtered copy of ``params`` (captured at ``t`` seconds); the input is not modified."""
        if not self.settings.enabled:
            return params.copy()
        out: Dict[str, np.ndarray] = {}
        values = [np.asarray(getattr(params, key)) for key, _ in _ROTATION_LAYOUT]
        aa = np.concatenate([v.reshape(-1, 3) for v in values]).astype(np.float64) + self._offset
        filtered = quat_to_axis_angle(self._rotations(axis_angle_to_quat(aa), t)) - self._offset
        start = 0
        for (key, n), value in zip(_ROTATION_LAYOUT, values):
            out[key] = _like(filtered[start:start + n], value)
            start += n
        transl = np.asarray(params.transl)
        flat = transl.astype(np.float64).reshape(-1, 3)
        filtered = np.concatenate([self._xy(flat[:, :2], t), self._z(flat[:, 2:], t)], axis=-1)
        out["transl"] = _like(filtered, transl)
        expression = np.asarray(params.expression)
        out["expression"] = _like(self._expression(expression.astype(np.float64), t), expression)
        betas = np.asarray(params.betas)
        out["betas"] = _like(self._betas(betas.astype(np.float64)), betas)
        if not self._primed:
            # the filters now hold their first sample; hand back the input exactly
            # (the axis-angle round trip could otherwise change it in the last bits)
            self._primed = True
            return params.copy()
        return SMPLXParams(**out)


def _like(value: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``value`` in ``reference``'s shape and (floating) dtype."""
    dtype = reference.dtype if np.issubdtype(reference.dtype, np.floating) else np.float32
    return np.asarray(value).reshape(reference.shape).astype(dtype)


class MultiPersonFilter:
    """One :class:`SMPLXFilter` per track id: each person is smoothed on their own.

    A track id missing from a frame keeps its state when it is in ``keep`` (the tracker may
    bring the person back within its grace period: same betas, no restart), and loses it
    otherwise.
    """

    def __init__(self, settings: Optional[FilterSettings] = None,
                 hand_mean: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> None:
        self.settings = settings if settings is not None else FilterSettings()
        self.hand_mean = hand_mean
        self._filters: Dict[int, SMPLXFilter] = {}

    @property
    def track_ids(self) -> List[int]:
        return sorted(self._filters)

    def reset(self) -> None:
        self._filters.clear()

    def __call__(self, persons: Sequence[Person], t: float, keep: Iterable[int] = ()) -> List[Person]:
        """Filtered copies of ``persons`` (one frame, captured at ``t`` seconds)."""
        seen = set()
        out = []
        for person in persons:
            seen.add(person.track_id)
            filt = self._filters.get(person.track_id)
            if filt is None:
                filt = self._filters[person.track_id] = SMPLXFilter(self.settings, self.hand_mean)
            out.append(dataclasses.replace(person, params=filt(person.params, t)))
        kept = seen | set(keep)
        for track_id in [i for i in self._filters if i not in kept]:
            del self._filters[track_id]
        return out
