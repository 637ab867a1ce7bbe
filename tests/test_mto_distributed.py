"""Every strategy under two processes (gloo): both ranks take the same decisions and end equal.

One ``torch.multiprocessing`` spawn of two ranks trains a small model with every strategy (each
rank from its own initialisation and random state, as a careless launch would give); each rank
writes its weights, its strategy's state and the task weights of every epoch to a file, and the
tests compare the two ranks' files.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import free_port, random_table, small_model

from mtreclib.config.experiment import TrainConfig
from mtreclib.core import distributed
from mtreclib.core.distributed import place_from_environment
from mtreclib.mto import create_strategy, list_strategies
from mtreclib.training.trainer import Trainer

WORLD_SIZE = 2
CPU = torch.device("cpu")
# Three epochs of two global batches (DWA weighs from the third epoch on).
TRAIN = TrainConfig(batch_size=64, epochs=3, patience=0, lr=1e-2)
RUNS = [
    *[(name, "mmoe", {"task_weights": (1.0, 0.5)} if name == "fixed" else {}) for name in list_strategies()],
    ("mgda", "mmoe", {"mgda_upper_bound": True}),
    ("mgda", "metaheac", {"mgda_upper_bound": True}),  # several captured representations a step
    ("pcgrad", "aitm", {"mto_batched_grads": True}),  # owned columns inside a shared bank
    ("nashmtl", "ple", {"nashmtl_update_every": 2}),  # steps that reuse the weights sync by hand
    ("famo", "metaheac", {}),  # the recomputed losses go through the model's own step
]
KEYS = [f"{name}-{model}-{'-'.join(f'{k}={v}' for k, v in settings.items())}" for name, model, settings in RUNS]


def _rank(rank: int, out: Path, port: int) -> None:
    torch.set_num_threads(1)  # two processes on two cores
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    saved = {}
    with distributed.process_group(place_from_environment(), CPU, timeout=timedelta(seconds=60)):
        for key, (name, model_name, settings) in zip(KEYS, RUNS):
            torch.manual_seed(rank)  # each rank its own initialisation and strategy seed
            model = small_model(model_name)
            strategy = create_strategy(name, model.task_num, **settings)
            trainer = Trainer(model, TRAIN, CPU, strategy=strategy, rank=rank, world_size=WORLD_SIZE, progress=False)
            rows = 2 * TRAIN.batch_size * model.batches_per_step
            fit = trainer.fit(random_table(rows, seed=1), random_table(0, seed=2))
            saved[key] = {
                "model": model.state_dict(),
                "strategy": strategy.state_dict(),
                "weights": [record["task_weights"] for record in fit.history],
                "steps": fit.steps,
            }
    torch.save(saved, out / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("mto_ddp")
    mp.spawn(_rank, args=(out, free_port()), nprocs=WORLD_SIZE)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("key", KEYS)
def test_both_ranks_take_the_same_steps_and_end_with_identical_parameters(ranks, key):
    first, second = ranks[0][key], ranks[1][key]
    assert first["steps"] == second["steps"] == 2 * TRAIN.epochs
    for name, value in first["model"].items():
        if "running_" in name or "num_batches" in name:
            continue  # BatchNorm statistics are each rank's own until evaluation broadcasts rank 0's
        assert torch.equal(value, second["model"][name]), name
    for name, value in first["strategy"].items():
        assert torch.equal(value, second["strategy"][name]), name
    assert first["weights"] == second["weights"]


@pytest.mark.parametrize("key", KEYS)
def test_every_run_trains_and_weighs(ranks, key):
    name, model_name, _ = RUNS[KEYS.index(key)]
    torch.manual_seed(0)
    initial = small_model(model_name).state_dict()
    trained = ranks[0][key]["model"]
    changed = [n for n, value in initial.items() if n in trained and not torch.equal(trained[n], value)]
    assert changed, f"{key} did not train"
    if name != "ew":
        assert any(w != 1.0 for epoch in ranks[0][key]["weights"] for w in epoch.values())
