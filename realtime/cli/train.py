"""``mocap train``: fine-tune SMPLer-X on HumanData with the official losses (one GPU, or many with torchrun)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Tuple

from engines.errors import UserError

from .common import add_examples, finite_float


def data_spec(text: str) -> Tuple[Path, Path]:
    """``ANNOT.npz:IMAGE_ROOT`` -> (annotation file, image folder)."""
    annot, sep, root = text.partition(".npz:")
    if not sep or not annot or not root:
        raise argparse.ArgumentTypeError(f"expected ANNOT.npz:IMAGE_ROOT, got '{text}'")
    return Path(annot + ".npz"), Path(root)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune SMPLer-X on HumanData (official losses; torchrun for several GPUs)")
    p.add_argument("--config", choices=["s32", "b32", "l32", "h32"], required=True,
                   help="model size and its official config (lr, batch, schedule, loss weights, stochastic depth)")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="starting weights: an official checkpoint or a snapshot (a size name looks in the weights cache)")
    p.add_argument("--data", type=data_spec, action="append", required=True, metavar="ANNOT.npz:IMAGE_ROOT",
                   help="a HumanData file and the folder its image_path entries are relative to (repeat to mix files "
                        "as the official MultipleDatasets does)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="where snapshot_<step>.pth.tar (official layout) and its .resume.pth are written")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, default=None, metavar="N", help="optimiser updates to run")
    length.add_argument("--epochs", type=positive_int, default=None, metavar="E",
                        help="passes over the data (default: the config's 10)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                   help="samples per process and step (default: the config's, 32; 16 for h32)")
    p.add_argument("--lr", type=finite_float, default=None, help="peak learning rate (default: the config's, 1e-5); "
                   "cosine-annealed to 1e-6 over the run")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA (bf16 where supported, else fp16 "
                   "with loss scaling); ignored on the CPU")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no augmentation (scale 1, rotation 0, no flip, colour 1) and no stochastic depth: deterministic")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="samples in file order, files one after another (default: the official balance mix, "
                        "shuffled every epoch)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample order, augmentation and stochastic depth")
    p.add_argument("--log-json", type=Path, default=None, metavar="FILE",
                   help="one JSON line per step: step, loss terms, total, lr, samples_per_s")
    p.add_argument("--resume", action="store_true", help="continue from the newest snapshot in --out (weights, "
                   "optimiser, schedule, step, random state)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu, or cuda (under torchrun: the GPU of LOCAL_RANK)")
    p.add_argument("--body-models", default=None, metavar="DIR", help="folder with smplx/SMPLX_NEUTRAL.npz "
                   "(default: $MOCAP_BODY_MODELS, then the cache)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="data-loading processes per training process (default 2; 0 loads in the main process)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="write a snapshot every N steps (default 0: at the end of every epoch and of the run)")
    p.add_argument("--keep", type=int, default=3, metavar="N",
                   help="keep the newest N snapshots this run wrote, removing its older ones (default 3; 0 keeps all)")
    add_examples(p, "mocap train --config s32 --init s32 --data studio.npz:studio/images --out runs/s32 --epochs 5",
                 "mocap train --config s32 --init s32 --data a.npz:a/ --data b.npz:b/ --out runs/ab --device cuda --amp",
                 "torchrun --nproc_per_node 4 --no-python mocap train --config b32 --init b32 --data a.npz:a/ "
                 "--out runs/b32 --device cuda --amp",
                 "mocap train --config s32 --init s32 --data a.npz:a/ --out runs/s32 --resume")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from engines.checkpoints import CheckpointError, resolve_checkpoint
    from realtime.research.train import TrainingStopped, TrainOptions, run_training

    from .. import signals

    if args.workers < 0 or args.save_every < 0 or args.keep < 0:
        raise UserError("--workers, --save-every and --keep must be >= 0")
    for annot, root in args.data:
        if not annot.is_file():
            raise UserError(f"HumanData file not found: {annot}")
        if not root.is_dir():
            raise UserError(f"image folder not found: {root}")
    init = None
    if args.init is not None:
        try:
            init = str(resolve_checkpoint(args.init))
        except CheckpointError as exc:
            raise UserError(str(exc)) from exc
    elif not args.resume:
        raise UserError("--init CKPT is required (unless --resume continues a run in --out)")
    opts = TrainOptions(config=args.config, init=init, data=args.data, out=args.out, steps=args.steps,
                        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, amp=args.amp, augment=args.augment,
                        shuffle=args.shuffle, seed=args.seed, log_json=args.log_json, resume=args.resume,
                        device=args.device, body_models=args.body_models, workers=args.workers,
                        save_every=args.save_every, keep=args.keep)
    import threading

    stop = threading.Event()
    try:
        with signals.deliver_to(stop):
            summary = run_training(opts)
    except TrainingStopped as exc:
        print(f"mocap train: {exc}", file=sys.stderr)
        return exc.code
    if summary["rank"] == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "rank"}))
    return 0
