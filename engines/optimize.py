"""Exact CPU rewrites of the SMPLer-X network (same maths, fp32 rounding differences only).

Each rewrite returns modules that compute what the original computes, so the
rewritten network's outputs equal eager PyTorch's up to float rounding; every
rewrite is checked against the original module on random weights in the tests.

* :func:`fold_batchnorm` -- eval-mode ``BatchNorm2d`` folded into the preceding
  ``Conv2d`` / ``ConvTranspose2d`` (scale into the weights, shift into a bias).
* :func:`deconv_to_subpixel` -- every ``ConvTranspose2d(k=4, s=2, p=1)`` becomes a
  stride-1 convolution producing the four output phases as channels, then a
  pixel shuffle (sub-pixel decomposition). Output pixel ``(2i+a, 2j+b)`` of the
  transposed conv only reads input rows ``i-1+a, i+a`` and columns ``j-1+b, j+b``
  through kernel tap ``k = a + 1 - 2*offset`` (see :func:`_phase_tap`), so each phase is a
  2x2 convolution. Two layouts:

  - ``"3x3"``: one 3x3 conv (padding 1) with ``4*Cout`` outputs (the unused taps
    are zero, 2.25x the multiply-adds) + ``pixel_shuffle(2)``: one big GEMM;
  - ``"2x2"``: one 2x2 conv on the input padded by 1 with ``4*Cout`` outputs on an
    (H+1)x(W+1) grid, each phase sliced at its offset and interleaved: the same
    multiply-adds as the deconv.

* :func:`set_fused_attention` -- ``F.scaled_dot_product_attention`` in the ViT.

:func:`optimize_for_cpu` applies the set that measured fastest on the 2-core
AVX2 machine (see docs/engines.md for the numbers).
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------- BatchNorm folding


def _bn_scale_shift(bn: nn.BatchNorm2d):
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    shift = bn.bias.detach() - bn.running_mean.detach() * scale
    return scale, shift


def fold_conv_bn(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """A copy of ``conv`` (Conv2d or ConvTranspose2d) with the eval-mode ``bn`` folded in."""
    scale, shift = _bn_scale_shift(bn)
    fused = copy.deepcopy(conv)
    w = conv.weight.detach().double()
    if isinstance(conv, nn.ConvTranspose2d):  # weight (Cin, Cout / groups, kh, kw)
        if conv.groups != 1:
            raise ValueError("grouped transposed convolutions are not supported")
        w = w * scale.double()[None, :, None, None]
    else:  # weight (Cout, Cin, kh, kw)
        w = w * scale.double()[:, None, None, None]
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale, dtype=torch.float64)
    b = bias * scale.double() + shift.double()
    fused.weight = nn.Parameter(w.to(conv.weight.dtype), requires_grad=False)
    fused.bias = nn.Parameter(b.to(conv.weight.dtype), requires_grad=False)
    return fused


def fold_batchnorm(module: nn.Module) -> int:
    """Fold every ``(Conv2d|ConvTranspose2d, BatchNorm2d)`` pair inside ``nn.Sequential``s, in place.

    The BN is replaced by ``nn.Identity`` (indices, hence state-dict names of the
    other layers, are kept). Returns the number of folds. Only valid in eval mode.
    """
    count = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = fold_conv_bn(conv, bn)
                seq[i + 1] = nn.Identity()
                count += 1
    return count


# --------------------------------------------------------------------------- deconv -> sub-pixel conv


def _phase_tap(phase: int, offset: int) -> Optional[int]:
    """Kernel index of ConvTranspose2d(k4, s2, p1) used by output phase ``phase`` (0/1) for the
    input at relative offset ``offset`` (-1, 0, +1) from ``i``; None if unused.

    Output ``o = 2i + a`` receives input ``n`` through tap ``k = o + 1 - 2n``.
    """
    k = phase + 1 - 2 * offset  # o + p - s*n with o = 2i+a, n = i+offset: i cancels
    return k if 0 <= k <= 3 else None


def is_k4s2p1(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and m.kernel_size == (4, 4) and m.stride == (2, 2)
            and m.padding == (1, 1) and m.output_padding == (0, 0) and m.dilation == (1, 1) and m.groups == 1)


class SubPixelConv3x3(nn.Module):
    """ConvTranspose2d(k4, s2, p1) as Conv2d(3x3, pad 1, 4*Cout) + pixel_shuffle(2)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        cin, cout = deconv.in_channels, deconv.out_channels
        wt = deconv.weight.detach()  # (Cin, Cout, 4, 4)
        w = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=wt.dtype)
        for a in range(2):
            for b in range(2):
                for dy in range(3):
                    ky = _phase_tap(a, dy - 1)
                    for dx in range(3):
                        kx = _phase_tap(b, dx - 1)
                        if ky is not None and kx is not None:
                            w[:, a, b, :, dy, dx] = wt[:, :, ky, kx].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=deconv.bias is not None)
        self.conv.weight = nn.Parameter(w.reshape(4 * cout, cin, 3, 3), requires_grad=False)
        if deconv.bias is not None:
            self.conv.bias = nn.Parameter(deconv.bias.detach().repeat_interleave(4), requires_grad=False)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2)


class SubPixelConv2x2(nn.Module):
    """ConvTranspose2d(k4, s2, p1) as one 2x2 conv with 4*Cout outputs on the padded input,
    phases sliced at their offsets and interleaved (no wasted multiply-adds)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        cin, cout = deconv.in_channels, deconv.out_channels
        self.cout = cout
        wt = deconv.weight.detach()
        # phase (a, b) at output (i, j) reads padded rows i+a, i+a+1 (original i-1+a, i+a)
        w = torch.zeros(2, 2, cout, cin, 2, 2, dtype=wt.dtype)
        for a in range(2):
            for b in range(2):
                for ty in range(2):
                    ky = _phase_tap(a, ty - 1 + a)
                    for tx in range(2):
                        kx = _phase_tap(b, tx - 1 + b)
                        w[a, b, :, :, ty, tx] = wt[:, :, ky, kx].t()
        self.conv = nn.Conv2d(cin, 4 * cout, 2, padding=1, bias=deconv.bias is not None)
        self.conv.weight = nn.Parameter(w.reshape(4 * cout, cin, 2, 2), requires_grad=False)
        if deconv.bias is not None:
            self.conv.bias = nn.Parameter(deconv.bias.detach().repeat(4), requires_grad=False)

    def forward(self, x):
        n, _, h, w = x.shape
        z = self.conv(x)  # (N, 4*Cout, H+1, W+1), channel = (a*2 + b)*Cout + co
        c = self.cout
        p00 = z[:, 0 * c:1 * c, 0:h, 0:w]
        p01 = z[:, 1 * c:2 * c, 0:h, 1:w + 1]
        p10 = z[:, 2 * c:3 * c, 1:h + 1, 0:w]
        p11 = z[:, 3 * c:4 * c, 1:h + 1, 1:w + 1]
        row0 = torch.stack((p00, p01), -1)  # (N, C, H, W, 2)  b innermost
        row1 = torch.stack((p10, p11), -1)
        out = torch.stack((row0, row1), 3)  # (N, C, H, 2, W, 2)
        return out.reshape(n, c, 2 * h, 2 * w)


_SUBPIXEL = {"3x3": SubPixelConv3x3, "2x2": SubPixelConv2x2}


def deconv_to_subpixel(module: nn.Module, layout: str = "2x2") -> int:
    """Replace every ConvTranspose2d(k4, s2, p1) inside ``module`` (in place). Returns the count."""
    cls = _SUBPIXEL[layout]
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if is_k4s2p1(child):
                setattr(parent, name, cls(child))
                count += 1
    return count


# --------------------------------------------------------------------------- whole network


def set_fused_attention(net: nn.Module, enabled: bool = True) -> None:
    for m in net.modules():
        if hasattr(m, "fused") and hasattr(m, "qkv"):
            m.fused = enabled


#: The rewrites :func:`optimize_for_cpu` applies by default (the fastest measured set), as data:
#: BatchNorm folded into convolutions, 4x4/stride-2 deconvolutions as 2x2 sub-pixel convolutions,
#: fused attention. Exported graphs carry :func:`rewrites_label` of the set in their metadata.
DEFAULT_CPU_REWRITES = {"fold_bn": True, "subpixel": "2x2", "fused_attention": True}


def rewrites_label(rewrites=None) -> str:
    """A short label of a rewrite set ("fold_bn,subpixel2x2,sdpa"; "none" for no rewrite)."""
    r = DEFAULT_CPU_REWRITES if rewrites is None else rewrites
    parts = (["fold_bn"] if r.get("fold_bn") else []) + ([f"subpixel{r['subpixel']}"] if r.get("subpixel") else []) \
        + (["sdpa"] if r.get("fused_attention") else [])
    return ",".join(parts) or "none"


def optimize_for_cpu(net: nn.Module, fold_bn: bool = DEFAULT_CPU_REWRITES["fold_bn"],
                     subpixel: Optional[str] = DEFAULT_CPU_REWRITES["subpixel"],
                     fused_attention: bool = DEFAULT_CPU_REWRITES["fused_attention"], inplace: bool = False) -> nn.Module:
    """The network with the exact CPU rewrites applied (a copy unless ``inplace``), in eval mode."""
    if not inplace:
        net = copy.deepcopy(net)
    net.eval()
    with torch.no_grad():
        if fold_bn:
            fold_batchnorm(net)
        if subpixel:
            deconv_to_subpixel(net, subpixel)
    set_fused_attention(net, fused_attention)
    for p in net.parameters():
        p.requires_grad_(False)
    return net
