"""``mocap export``: the network to ONNX or a TensorRT engine, checked against PyTorch."""
from __future__ import annotations

from pathlib import Path

from engines.errors import UserError

from .common import add_examples


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export the network to ONNX or a TensorRT engine (checked against PyTorch)")
    p.add_argument("--checkpoint", default="s32", help="checkpoint path or size name (s32, b32, ...)")
    p.add_argument("--to", choices=["onnx", "engine"], default="onnx", help="target format (default onnx)")
    p.add_argument("--out", type=Path, default=None, help="output file (default: next to the checkpoint's name in ./)")
    p.add_argument("--fp16", action="store_true", help="half precision (engine: TensorRT fp16; onnx: fp16 graph for GPU runtimes)")
    p.add_argument("--batch", type=int, default=1, help="batch the engine is optimised for (ONNX batch axis stays dynamic)")
    p.add_argument("--static-batch", action="store_true", help="fix the ONNX batch axis to --batch")
    p.add_argument("--no-optimize", action="store_true", help="export the network as written (no BN folding / sub-pixel deconvs)")
    add_examples(p, "mocap export --checkpoint s32 --to onnx",
                 "mocap export --checkpoint b32 --to engine --fp16 --batch 4")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from engines.checkpoints import load_network, resolve_checkpoint
    from engines.export import check_onnx, onnx_to_engine, summarize, tensorrt_unsupported_ops, torch_to_onnx
    from engines.optimize import optimize_for_cpu, rewrites_label

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    ckpt = resolve_checkpoint(args.checkpoint)  # a CheckpointError (a UserError) says what is wrong
    net = load_network(ckpt)
    stem = ckpt.name.split(".")[0]
    if args.to == "engine":
        from engines.backends.tensorrt_backend import import_tensorrt

        import_tensorrt()  # TensorRTUnavailable (a UserError) names the package when it is missing
    onnx_path = args.out if (args.out and args.to == "onnx") else Path(f"{stem}{'-fp16' if args.fp16 and args.to == 'onnx' else ''}.onnx")
    if args.to == "engine" and args.out:
        onnx_path = args.out.with_suffix(".onnx")
    exported = net if args.no_optimize else optimize_for_cpu(net)
    fp16_graph = args.fp16 and args.to == "onnx"
    torch_to_onnx(exported, onnx_path, batch=args.batch, dynamic_batch=not args.static_batch, fp16=fp16_graph,
                  metadata={"checkpoint": ckpt.name,
                            "rewrites": "none" if args.no_optimize else rewrites_label()})
    if fp16_graph:
        print(f"wrote {onnx_path} (fp16; not checked on CPU: ONNX Runtime's CPU provider lacks fp16 kernels)")
    else:
        try:
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
