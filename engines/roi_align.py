"""RoIAlign with mmcv's ``aligned=False`` semantics, in plain torch.

Per RoI (batch_index, x1, y1, x2, y2) and output bin (ph, pw) of an ``out x out`` grid:

* start = coordinate * spatial_scale (no half-pixel offset); roi size = max(end - start, 1);
* bin size = roi size / out; samples per bin ``g = ceil(roi size / out)`` along each axis
  (``sampling_ratio=0``), at start + p * bin + (i + 0.5) * bin / g;
* a sample outside [-1, size] contributes 0; otherwise coordinates <= 0 clamp to 0 and
  a sample at or beyond the last row/column snaps to it; bilinear interpolation;
* a bin is the mean of its g_h * g_w samples.

Bilinear sampling is separable, so each RoI's result is ``A_y @ F @ A_x^T`` with
``A_y`` (out x H) and ``A_x`` (out x W) holding the summed interpolation weights of
the samples of each bin row / column, divided by g. That form is exact (up to float
rounding), vectorised over RoIs and cheap.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import List, Optional

import torch

#: Set by :func:`static_grid`: a fixed sample-grid bound (no host sync), and the overflow flags.
_STATIC_GRID: Optional[int] = None
_OVERFLOW: List[torch.Tensor] = []


@contextmanager
def static_grid(cap: int = 16):
    """Inside this context :func:`roi_align` uses ``cap`` samples per bin axis as its grid bound
    instead of reading the largest grid from the device (``.item()``), so the call can be
    captured in a CUDA graph. The result is identical whenever no RoI needs more than ``cap``
    samples per bin (RoIs up to ``16 * cap`` feature pixels); every call appends a 0-dim bool
    device tensor to the yielded list that is True when that bound was exceeded (the caller
    must then recompute without the context)."""
    global _STATIC_GRID
    prev, flags = _STATIC_GRID, []
    _OVERFLOW.clear()
    _STATIC_GRID = int(cap)
    try:
        yield flags
    finally:
        flags.extend(_OVERFLOW)
        _OVERFLOW.clear()
        _STATIC_GRID = prev


def _axis_weights(start: torch.Tensor, end: torch.Tensor, size: int, out: int, grid_max: int) -> torch.Tensor:
    """Interpolation weights (R, out, size) along one axis for R RoIs."""
    dtype, device = start.dtype, start.device
    length = torch.clamp(end - start, min=1.0)
    bin_size = length / out                                            # (R,)
    grid = torch.ceil(length / out)                                    # (R,) samples per bin, >= 1
    p = torch.arange(out, dtype=dtype, device=device)
    i = torch.arange(grid_max, dtype=dtype, device=device)
    # sample coordinates (R, out, grid_max)
    coord = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
             + (i[None, None, :] + 0.5) * bin_size[:, None, None] / grid[:, None, None])
    used = i[None, None, :] < grid[:, None, None]
    valid = used & (coord >= -1.0) & (coord <= size)
    c = torch.clamp(coord, min=0.0)
    low = torch.floor(c)
    at_end = low >= size - 1
    low = torch.where(at_end, torch.full_like(low, size - 1), low)
    c = torch.where(at_end, low, c)
    high = torch.where(at_end, low, low + 1)
    frac = c - low
    w_low = (1.0 - frac) * valid
    w_high = frac * valid
    weights = torch.zeros(start.shape[0], out, size, dtype=dtype, device=device)
    weights.scatter_add_(2, low.long(), w_low)
    weights.scatter_add_(2, high.long().clamp(max=size - 1), w_high)
    return weights / grid[:, None, None]


def roi_align(feat: torch.Tensor, rois: torch.Tensor, output_size: int = 16, spatial_scale: float = 1.0) -> torch.Tensor:
    """mmcv ``roi_align(feat, rois, (out, out), spatial_scale, sampling_ratio=0, 'avg', aligned=False)``.

    ``feat`` (N, C, H, W); ``rois`` (R, 5) as (batch_index, x1, y1, x2, y2). Returns (R, C, out, out).

    Under tracing (``torch.export`` / ONNX export / ``torch.compile``) the call goes through the
    opaque custom op ``mocap::roi_align`` (same kernel), because the sample-grid size depends on
    the box sizes; the ONNX exporter maps that op to the standard ``RoiAlign`` (see
    :func:`onnx_translation`).
    """
    if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return roi_align_op(feat, rois.to(feat.dtype), int(output_size), float(spatial_scale))
    return _roi_align_eager(feat, rois, output_size, spatial_scale)


def _roi_align_eager(feat: torch.Tensor, rois: torch.Tensor, output_size: int = 16,
                     spatial_scale: float = 1.0) -> torch.Tensor:
    _, _, height, width = feat.shape
    rois = rois.to(feat.dtype)
    x1, y1 = rois[:, 1] * spatial_scale, rois[:, 2] * spatial_scale
    x2, y2 = rois[:, 3] * spatial_scale, rois[:, 4] * spatial_scale
    gh = torch.ceil(torch.clamp(y2 - y1, min=1.0) / output_size)
    gw = torch.ceil(torch.clamp(x2 - x1, min=1.0) / output_size)
    if _STATIC_GRID is not None:
        grid_max = _STATIC_GRID
        if rois.shape[0]:
            _OVERFLOW.append(torch.max(torch.cat([gh, gw])) > _STATIC_GRID)
    else:
        grid_max = int(torch.max(torch.cat([gh, gw])).item()) if rois.shape[0] else 1
    ay = _axis_weights(y1, y2, height, output_size, grid_max)         # (R, out, H)
    ax = _axis_weights(x1, x2, width, output_size, grid_max)          # (R, out, W)
    sel = feat[rois[:, 0].long()]                                      # (R, C, H, W)
    return torch.matmul(torch.matmul(ay[:, None], sel), ax[:, None].transpose(-1, -2))


def roi_align_reference(feat: torch.Tensor, rois: torch.Tensor, output_size: int = 16,
                        spatial_scale: float = 1.0) -> torch.Tensor:
    """Literal per-sample loop of the mmcv CPU kernel (slow; for tests)."""
    import math

    n_rois = rois.shape[0]
    _, channels, height, width = feat.shape
    out = torch.zeros(n_rois, channels, output_size, output_size, dtype=torch.float64)
    f = feat.double()
    for r in range(n_rois):
        b = int(rois[r, 0])
        sw, sh = float(rois[r, 1]) * spatial_scale, float(rois[r, 2]) * spatial_scale
        ew, eh = float(rois[r, 3]) * spatial_scale, float(rois[r, 4]) * spatial_scale
        rw, rh = max(ew - sw, 1.0), max(eh - sh, 1.0)
        bw, bh = rw / output_size, rh / output_size
        gh, gw = int(math.ceil(rh / output_size)), int(math.ceil(rw / output_size))
        count = max(gh * gw, 1)
        for ph in range(output_size):
            for pw in range(output_size):
                acc = torch.zeros(channels, dtype=torch.float64)
                for iy in range(gh):
                    y = sh + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sw + pw * bw + (ix + 0.5) * bw / gw
                        if y < -1.0 or y > height or x < -1.0 or x > width:
                            continue
                        yy, xx = max(y, 0.0), max(x, 0.0)
                        y_low, x_low = int(yy), int(xx)
                        if y_low >= height - 1:
                            y_high = y_low = height - 1
                            yy = float(y_low)
                        else:
                            y_high = y_low + 1
                        if x_low >= width - 1:
                            x_high = x_low = width - 1
                            xx = float(x_low)
                        else:
                            x_high = x_low + 1
                        ly, lx = yy - y_low, xx - x_low
                        hy, hx = 1.0 - ly, 1.0 - lx
                        acc += (hy * hx * f[b, :, y_low, x_low] + hy * lx * f[b, :, y_low, x_high]
                                + ly * hx * f[b, :, y_high, x_low] + ly * lx * f[b, :, y_high, x_high])
                out[r, :, ph, pw] = acc / count
    return out.to(feat.dtype)


# --------------------------------------------------------------------------- export path
@torch.library.custom_op("mocap::roi_align", mutates_args=())
def roi_align_op(feat: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float) -> torch.Tensor:
    """:func:`roi_align` as an opaque torch op, so that tracers never see its data-dependent grid."""
    return _roi_align_eager(feat, rois, output_size, spatial_scale)


@roi_align_op.register_fake
def _(feat, rois, output_size, spatial_scale):
    return feat.new_empty((rois.shape[0], feat.shape[1], output_size, output_size))


def onnx_translation():
    """``{op: onnxscript function}`` for ``torch.onnx.export(custom_translation_table=...)``.

    ``mocap::roi_align`` becomes ONNX ``RoiAlign`` (opset >= 16) with
    ``coordinate_transformation_mode="output_half_pixel"`` (= mmcv ``aligned=False``: no
    half-pixel shift, RoI sizes clamped to >= 1), ``mode="avg"``, ``sampling_ratio=0``
    (adaptive ``ceil(roi / out)`` samples per bin); the (R, 5) RoIs are split into boxes
    (R, 4) and int64 batch indices (R,).
    """
    import onnxscript
    from onnxscript import opset18 as op

    def roi_align_onnx(feat, rois, output_size: int, spatial_scale: float):
        batch = op.Cast(op.Reshape(op.Slice(rois, [0], [1], [1]), [-1]), to=onnxscript.INT64.dtype)
        boxes = op.Slice(rois, [1], [5], [1])
        return op.RoiAlign(feat, boxes, batch, coordinate_transformation_mode="output_half_pixel",
                           mode="avg", output_height=output_size, output_width=output_size,
                           sampling_ratio=0, spatial_scale=spatial_scale)

    return {torch.ops.mocap.roi_align.default: roi_align_onnx}
