"""``mocap export``: the network to ONNX or a TensorRT engine, checked against PyTorch, or to an
AOTInductor package."""
from __future__ import annotations

from pathlib import Path

from engines.errors import UserError

from .common import add_examples


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the network to ONNX or a TensorRT engine (checked against "
                              "PyTorch), or compile it into an AOTInductor package")
    p.add_argument("--checkpoint", default="s32", help="checkpoint path or size name (s32, b32, ...)")
    p.add_argument("--to", choices=["onnx", "engine", "aoti"], default="onnx",
                   help="target format (default onnx; aoti: a torch.export + AOTInductor .pt2 package for --device)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: next to the checkpoint's name in ./; aoti: the engine cache, where "
                        "--engine aoti and auto find it)")
    p.add_argument("--fp16", action="store_true", help="half precision (engine: TensorRT fp16; onnx: fp16 graph for "
                   "GPU runtimes; aoti: the network under fp16 autocast)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="aoti: the device the package is compiled for (default cuda when PyTorch sees one, else cpu)")
    p.add_argument("--batch", type=int, default=1, help="batch the engine is optimised for (ONNX batch axis stays "
                   "dynamic; aoti: the largest batch of its dynamic batch axis, at least 64)")
    p.add_argument("--static-batch", action="store_true", help="fix the ONNX batch axis to --batch")
    p.add_argument("--no-optimize", action="store_true", help="export the network as written (no BN folding / sub-pixel deconvs)")
    add_examples(p, "mocap export --checkpoint s32 --to onnx",
                 "mocap export --checkpoint b32 --to engine --fp16 --batch 4",
                 "mocap export --checkpoint s32 --to aoti --fp16 --device cuda")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from engines.checkpoints import load_network, resolve_checkpoint
    from engines.export import check_onnx, onnx_to_engine, summarize, tensorrt_unsupported_ops, torch_to_onnx
    from engines.optimize import optimize_for_cpu, rewrites_label
    from engines.progress import ticking
    from engines.quiet import muted_stdout

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    ckpt = resolve_checkpoint(args.checkpoint)  # a CheckpointError (a UserError) says what is wrong
    net = load_network(ckpt)
    if args.to == "aoti":
        return _export_aoti(args, ckpt, net)
    stem = ckpt.name.split(".")[0]
    if args.to == "engine":
        from engines.backends.tensorrt_backend import import_tensorrt

        import_tensorrt()  # TensorRTUnavailable (a UserError) names the package when it is missing
    onnx_path = args.out if (args.out and args.to == "onnx") else Path(f"{stem}{'-fp16' if args.fp16 and args.to == 'onnx' else ''}.onnx")
    if args.to == "engine" and args.out:
        onnx_path = args.out.with_suffix(".onnx")
    exported = net if args.no_optimize else optimize_for_cpu(net)
    fp16_graph = args.fp16 and args.to == "onnx"
    with ticking(f"exporting {ckpt.name} to {onnx_path}"), muted_stdout():  # [torch.onnx] lines: -v only
        torch_to_onnx(exported, onnx_path, batch=args.batch, dynamic_batch=not args.static_batch, fp16=fp16_graph,
                      metadata={"checkpoint": ckpt.name,
                                "rewrites": "none" if args.no_optimize else rewrites_label()})
    if fp16_graph:
        print(f"wrote {onnx_path} (fp16; not checked on CPU: ONNX Runtime's CPU provider lacks fp16 kernels)")
    else:
        try:
            with ticking("checking the export against PyTorch"):
                diffs = check_onnx(onnx_path, net)
        except AssertionError as exc:
            raise UserError(f"exported graph failed its check: {exc}") from exc
        print(f"wrote {onnx_path}; checked with ONNX Runtime: {summarize(diffs)}")
    if args.to == "engine":
        bad = tensorrt_unsupported_ops(onnx_path)
        if bad:
            raise UserError(f"{onnx_path} uses ops TensorRT cannot import: {', '.join(bad)}")
        engine_path = args.out or Path(f"{stem}{'-fp16' if args.fp16 else ''}.engine")
        onnx_to_engine(onnx_path, engine_path, fp16=args.fp16, batch=args.batch)
        print(f"wrote {engine_path}")
    return 0


def _export_aoti(args, ckpt, net) -> int:
    import torch

    from engines.backends import cached_aoti_path
    from engines.export import torch_to_aoti

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA device; use --device cpu")
    precision = "fp16" if args.fp16 else "fp32"
    out = args.out or cached_aoti_path(ckpt, device, precision)
    if out.suffix != ".pt2":
        raise UserError(f"--out {out}: an AOTInductor package is named *.pt2")
    path = torch_to_aoti(net, out, device, precision, max_batch=max(64, args.batch), metadata={"checkpoint": ckpt.name})
    print(f"wrote {path} and {path.with_suffix('.json').name} ({device}, {precision}, batch 1-{max(64, args.batch)})")
    return 0
