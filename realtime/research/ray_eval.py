"""``mocap eval --ray [ADDRESS]``: the predictions of an evaluation on Ray; imported only then
(``pip install .[batch]``).

The batch machinery does the Ray part (:mod:`realtime.batch.ray_runner`: joining a cluster or
starting a local instance, the address checks, the engine plan, one-line errors). Engine actors
(one per GPU, or the cluster's CPUs shared out; ``--workers`` overrides) load the engine once and
predict shards of ``--batch-size`` samples (one forward pass each) -- the shards of a one-process
run, so the forward sees the same batches. Each actor reads the images itself: ``--data-dir`` must
be at the same path on every node (a shared file system), as ``mocap batch --ray`` needs for its
inputs. Predictions come back to this process, which saves each sample's the moment its shard
returns (``--save-predictions``: a killed run loses only the shards in flight and resumes), and
computes the metrics from all of them here (:func:`realtime.research.evaluate.run_evaluation`),
exactly as for a one-process run.
"""
from __future__ import annotations

import dataclasses
import os
from collections import deque
from dataclasses import asdict
from typing import Deque, Dict, List

from engines.errors import UserError
from realtime.batch.runner import import_ray_runner

ray_runner = import_ray_runner()  # a one-line error without Ray

import ray  # noqa: E402  (after the check above)

from realtime.batch.session import error_text  # noqa: E402

from .predictions import EvalOptions, PredictionStore, load_predictor, predict  # noqa: E402

#: Shards waiting at each actor, so that it starts the next forward while this process saves the last.
SHARDS_IN_FLIGHT = 2


def check(o: EvalOptions) -> None:
    """Refuse a malformed or unreachable address before anything is written."""
    if o.ray != "local":
        ray_runner.check_address(o.ray)


@ray.remote
class _EvalActor:
    """The engine of the evaluation, loaded once; predicts the shards it is given."""

    def __init__(self, options: Dict, threads: int):
        import torch

        os.environ.setdefault("GLOG_minloglevel", "2")
        torch.set_num_threads(max(1, threads))
        self.o = EvalOptions(**dict(options, progress=False, workers=None, ray=None, save_predictions=None))
        self.predictor = load_predictor(self.o)

    def predict(self, samples) -> tuple:
        """``({index: prediction}, unreadable images)`` of ``samples``."""
        counts = {"unreadable_image": 0}
        preds = predict(self.o, samples, PredictionStore(None, self.o), counts, predictor=self.predictor)
        return preds, counts["unreadable_image"]


def predict_on_ray(o: EvalOptions, samples, store: PredictionStore, counts: Dict[str, int]) -> Dict[int, Dict]:
    """Phase 1 on Ray: the saved predictions from ``store``, the others from the engine actors (saved
    into ``store`` as they arrive). ``counts`` gets ``resumed`` and ``unreadable_image``."""
    from tqdm import tqdm

    preds, todo = store.resume(samples, counts)
    if not todo:
        return preds
    # the actors need only what the crop needs: not the ground truth
    shards: Deque[List] = deque([dataclasses.replace(s, gt={}) for s in todo[i:i + o.batch_size]]
                                for i in range(0, len(todo), o.batch_size))
    started = ray_runner.connect(None if o.ray == "local" else o.ray)
    actors: List = []
    bar = None
    try:
        plan = ray_runner.cluster_plan(o.device, o.workers)
        options = asdict(o)
        actors = [_EvalActor.options(num_cpus=plan.engine_cpus, num_gpus=plan.engine_gpus, max_restarts=2,
                                     max_task_retries=2).remote(options, plan.engine_cpus)
                  for _ in range(min(plan.engines, len(shards)))]
        try:
            ray.get([a.__ray_ready__.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise UserError(f"the Ray workers could not load the engine: {error_text(exc)}") from exc
        bar = tqdm(total=len(samples), initial=len(preds), unit="sample", desc=f"eval {o.dataset} on Ray",
                   disable=not o.progress, dynamic_ncols=True)
        pending: Dict = {}  # ref -> (actor, shard)

        def submit(actor) -> None:
            shard = shards.popleft()
            pending[actor.predict.remote(shard)] = (actor, shard)

        for _ in range(SHARDS_IN_FLIGHT):
            for actor in actors:
                if shards:
                    submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                actor, shard = pending.pop(ref)
                try:
                    out, unreadable = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    resume = " (the predictions saved so far are kept: run again to resume)" if store.folder else ""
                    raise UserError(f"a Ray worker failed: {error_text(exc)}{resume}") from exc
                for s in shard:
                    if s.index in out:
                        store.save(s, out[s.index])
                        preds[s.index] = out[s.index]
                counts["unreadable_image"] += unreadable
                bar.update(len(shard))
                if shards:
                    submit(actor)
    finally:
        if bar is not None:
            bar.close()
        for actor in actors:
            ray.kill(actor)
        if started:
            ray_runner.disconnect()
    return preds
