"""``mocap eval``: a checkpoint on an official benchmark, with the official test protocol."""
from __future__ import annotations

import sys
from pathlib import Path

from engines.errors import UserError

from engines.atomic import check_output_file

from .common import add_examples, add_model_args, finite_float


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def register(sub) -> None:
    from engines.datasets import OFFICIAL_TEST_SETS as DATASETS

    p = sub.add_parser("eval", help="evaluate a checkpoint on an official benchmark (the official test protocol)",
                       description="Runs the official SMPLer-X test protocol (main/test.py with each dataset's "
                                   "evaluate) and prints the official metrics in millimetres; sequence datasets "
                                   "also get acceleration error and jitter, raw and after the live One-Euro filter.")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help=f"official test set class name: {', '.join(DATASETS)}; any other name is a HumanData "
                        "file given with --annotation and --image-dir")
    p.add_argument("--data-dir", default=None, type=Path, metavar="ROOT",
                   help="folder laid out like the official data folder (ROOT/EHF/data/EHF.json, ROOT/UBody/..., "
                        "ROOT/PW3D/data/..., ROOT/AGORA/data/..., ROOT/preprocessed_datasets/*.npz)")
    add_model_args(p)
    p.add_argument("--engine", default="torch", choices=["torch", "onnx", "auto"],
                   help="backend; torch (default) is the fp32 forward equal to the official one")
    p.add_argument("--fp16", action="store_true", help="run the network in half precision (GPU engines)")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                   help="crops per forward pass (default 8); the numbers do not depend on it")
    p.add_argument("--max-samples", type=_positive_int, default=None, metavar="N",
                   help="evaluate only the first N samples of the official list")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the summary (metrics, counts, checkpoint, engine, versions) as JSON")
    p.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                   help="keep each sample's prediction in DIR; a run started again with the same options "
                        "reuses them (resume)")
    p.add_argument("--bbox-ratio", type=finite_float, default=1.2, metavar="R",
                   help="the official config's bbox_ratio (1.2 in every released config): EHF and 3DPW pad "
                        "the box by R, HumanData sets by R*0.833; UBody and AGORA do not use it")
    p.add_argument("--sample-interval", type=_positive_int, default=None, metavar="K",
                   help="every K-th annotation (official defaults: UBody 100, ARCTIC 10, others 1)")
    p.add_argument("--annotation", default=None, metavar="FILE",
                   help="AGORA: the annotation JSON under ROOT/AGORA/data (default AGORA_validation_fix_betas.json); "
                        "HumanData: the .npz under ROOT/preprocessed_datasets (or a path)")
    p.add_argument("--image-dir", default=None, metavar="DIR",
                   help="HumanData: the image folder under ROOT (default: the official one of the test set)")
    p.add_argument("--official-batch", type=_positive_int, default=32, metavar="N",
                   help="test_batch_size of the official config (32), to reproduce the official torch.cross quirk "
                        "for samples the official run batches in threes")
    p.add_argument("--official-gpus", type=_positive_int, default=1, metavar="G",
                   help="GPUs of the official run being matched (its batch is N*G, split in G chunks)")
    p.add_argument("--fps", type=finite_float, default=None, metavar="F",
                   help="frame rate for the One-Euro filter: a sequence dataset's (default: 3DPW/EgoBody 30) or, with "
                        "--results, the folder's (default: its video.json, else 30)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="predict in N local worker processes (default 1; each loads the engine once; the cores "
                        "are shared out); with --ray: N engine actors (default: one per GPU, or the cluster's "
                        "CPUs shared out); the metrics are those of one process")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="predict on Ray (pip install '.[batch]'): the cluster whose head is at ADDRESS (HOST:PORT; "
                        "--data-dir, the checkpoint and the body models at the same paths on every node), or a "
                        "local instance without ADDRESS; this process saves the predictions (--save-predictions "
                        "resumes) and computes the metrics")
    p.add_argument("--results", type=Path, default=None, metavar="OUT",
                   help="instead of a dataset: the temporal figures of a mocap video result folder against "
                        "--ground-truth (raw and after the One-Euro filter at the folder's frame rate or --fps)")
    p.add_argument("--ground-truth", type=Path, default=None, metavar="GT.npz",
                   help="with --results: SMPL-X parameters per frame, the result files' keys stacked over "
                        "frames, plus 'frame' (the frame numbers of OUT/smplx/<frame>_<person>.npz)")
    p.add_argument("--person", type=int, default=0, metavar="K",
                   help="with --results: the person whose files are compared (<frame>_K.npz; default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_examples(p, "mocap eval --dataset EHF --data-dir data --checkpoint s32 --body-models human_model_files",
                 "mocap eval --dataset PW3D --data-dir data --checkpoint h32_correct --json pw3d.json",
                 "mocap eval --dataset EgoBody_Egocentric --data-dir data --engine onnx --save-predictions runs/ego",
                 "mocap eval --dataset EHF --data-dir data --device cuda --fp16 --batch-size 32",
                 "mocap eval --dataset AGORA --data-dir /shared/data --device cuda --ray=10.0.0.5:6379 "
                 "--save-predictions runs/agora",
                 "mocap eval --results out/clip --ground-truth clip_gt.npz --body-models human_model_files")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from realtime.research.evaluate import EvalOptions, format_summary, run_evaluation

    check_output_file(args.json, "--json")
    if args.results is not None:
        if args.ground_truth is None or args.dataset is not None or args.data_dir is not None:
            raise UserError("--results OUT needs --ground-truth GT.npz and takes no --dataset/--data-dir")
        from realtime.research.folder_temporal import evaluate_result_folder, format_folder_summary

        summary = evaluate_result_folder(str(args.results), str(args.ground_truth), args.body_models, args.person,
                                         args.fps)
        return _report(summary, format_folder_summary(summary), args.json)
    if args.dataset is None or args.data_dir is None:
        raise UserError("give --dataset NAME and --data-dir ROOT (or --results OUT --ground-truth GT.npz)")
    options = EvalOptions(
        dataset=args.dataset, data_dir=str(args.data_dir), checkpoint=args.checkpoint, body_models=args.body_models,
        engine=args.engine, device=args.device, fp16=args.fp16, batch_size=args.batch_size,
        max_samples=args.max_samples, save_predictions=str(args.save_predictions) if args.save_predictions else None,
        bbox_ratio=args.bbox_ratio, sample_interval=args.sample_interval, annotation=args.annotation,
        image_dir=args.image_dir, official_batch=args.official_batch, official_gpus=args.official_gpus,
        fps=args.fps, workers=args.workers, ray=args.ray, progress=not args.no_progress and sys.stderr.isatty())
    # a wrong checkpoint or a missing device are typed UserErrors (CheckpointError, DeviceUnavailable)
    summary = run_evaluation(options)
    return _report(summary, format_summary(summary), args.json)


def _report(summary, text: str, json_path) -> int:
    from engines.atomic import write_json_atomic

    print(text)
    if json_path is not None:
        try:
            write_json_atomic(json_path, summary)
        except OSError as exc:
            raise UserError(f"cannot write {json_path}: {exc.strerror or exc}") from None
        print(f"mocap eval: summary written to {json_path}")
    return 0
