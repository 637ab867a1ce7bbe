"""The torchrec backend sharded across two CPU processes (gloo) against one process.

One ``torch.multiprocessing`` spawn of two ranks does the two-process work; each rank writes
what it saw, and the tests compare it with the same steps taken here in one process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import BAG_SCHEMA, SMALL_CONFIG, free_port, random_batch

from mtreclib.config.experiment import TrainConfig
from mtreclib.core import distributed
from mtreclib.core.distributed import place_from_environment
from mtreclib.embeddings import use_torchrec
from mtreclib.embeddings.sharding import shard_tables
from mtreclib.models import create_model, model_kwargs
from mtreclib.nn.layers import deferred_tables
from mtreclib.training.trainer import FitResult, Trainer

WORLD_SIZE = 2
CPU = torch.device("cpu")
SHARDINGS = ("table_wise", "row_wise", "column_wise")
STEPS = 3
# Wide enough that column-wise sharding splits the tables' columns (at least 4 each).
CONFIG = {**SMALL_CONFIG, "embed_dim": 8, "dropout": 0.0}


def _initial(name: str = "mmoe") -> dict[str, torch.Tensor]:
    """One initialisation (a dense model's), which every run below starts from."""
    torch.manual_seed(0)
    return create_model(name, BAG_SCHEMA, **model_kwargs(name, CONFIG)).state_dict()


def _one_process(name: str = "mmoe") -> dict[str, torch.Tensor]:
    """``STEPS`` steps in one process: each step the mean loss of two half batches (each its own
    BatchNorm statistics, as each rank normalises its own), SGD on the dense part and the tables
    (Adam would magnify the rounding noise of the biases before BatchNorm, whose gradient is ~0)."""
    model = create_model(name, BAG_SCHEMA, **model_kwargs(name, CONFIG))
    use_torchrec(model, optimizer="sgd", lr=0.5, device=CPU)
    model.load_state_dict(_initial(name))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(STEPS):
        batch = random_batch(BAG_SCHEMA, size=64, seed=20 + step)
        halves = [batch.slice(0, 32), batch.slice(32, 64)]
        optimizer.zero_grad()
        losses = [model.task_losses([half]).tasks.mean() for half in halves]
        (sum(losses) / 2).backward()
        optimizer.step()
    return model.state_dict()


def _rank(rank: int, out: Path, ports: tuple[int, ...]) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0]))
    place = place_from_environment()
    saved: dict = {}
    with distributed.process_group(place, CPU, timeout=timedelta(seconds=120)):
        for sharding in SHARDINGS:
            with deferred_tables():
                model = create_model("mmoe", BAG_SCHEMA, **model_kwargs("mmoe", CONFIG))
            use_torchrec(model, optimizer="sgd", lr=0.5, device=CPU, sharded=True)
            plan = shard_tables(model, TrainConfig(embedding_backend="torchrec", sharding=sharding), CPU)
            model.load_state_dict(_initial())  # whole tables: each process copies in its shards
            saved[f"{sharding}/plan"] = plan
            saved[f"{sharding}/local_elements"] = sum(
                shard.tensor.numel() for value in model.state_dict().values() if distributed.is_sharded(value) for shard in value.local_shards()
            )
            objective = distributed.wrap(_Objective(model), CPU)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            for step in range(STEPS):
                batch = random_batch(BAG_SCHEMA, size=64, seed=20 + step).slice(32 * rank, 32 * (rank + 1))
                optimizer.zero_grad()
                objective(batch).backward()
                optimizer.step()
            saved[f"{sharding}/trained"] = distributed.gather_state(model.state_dict())

        # The trainer end to end: row-wise tables, rowwise Adagrad, a checkpointed state and an
        # evaluation whose ranks hold different numbers of batches (15 of 64 rows, the last short).
        with deferred_tables():
            model = create_model("mmoe", BAG_SCHEMA, **model_kwargs("mmoe", CONFIG))
        use_torchrec(model, optimizer="rowwise_adagrad", lr=0.05, device=CPU, sharded=True)
        config = TrainConfig(batch_size=64, epochs=1, patience=0, max_steps=STEPS, embedding_backend="torchrec", sharding="row_wise")
        shard_tables(model, config, CPU)
        model.load_state_dict(_initial())
        trainer = Trainer(model, config, CPU, rank=rank, world_size=WORLD_SIZE, progress=False)
        trainer.fit(_table(640, seed=1), _table(0, seed=2))
        saved["trainer/metrics"] = trainer.evaluate(_table(900, seed=3))
        saved["trainer/state"] = trainer.state(FitResult())
    torch.save(saved, out / f"rank{rank}.pt")

    # The command line as torchrun starts it.
    from mtreclib.cli import main

    # Two epochs straight, and the same run stopped after one epoch and resumed (same processes).
    common = ["--model", "mmoe", "--dataset", "synthetic", "--embed-dim", "8", "--bottom-dims", "16,8", "--tower-dims", "8",
              "--expert-num", "2", "--batch-size", "4096", "--embedding-backend", "torchrec", "--sharding", "table_wise",
              "--patience", "0", "--no-progress"]  # fmt: skip
    runs = {
        "whole": ["--epochs", "2", "--save-dir", str(out / "ck"), "--results", str(out / "results.json")],
        "first": ["--epochs", "1", "--save-dir", str(out / "resumed")],
        "resumed": ["--epochs", "2", "--save-dir", str(out / "resumed"), "--resume", "--results", str(out / "resumed.json")],
    }
    for (label, extra), port in zip(runs.items(), ports[1:]):
        os.environ["MASTER_PORT"] = str(port)  # a fresh rendezvous for each command
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            status = main(["train", *common, *extra])
        (out / f"cli-{label}{rank}.json").write_text(json.dumps({"status": status, "stdout": stdout.getvalue()}))


class _Objective(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.task_losses([batch]).tasks.mean()


def _table(rows: int, seed: int):
    """``random_batch``'s rows of BAG_SCHEMA as a table, bags included, as the trainer reads them."""
    from mtreclib.core.schema import Bag
    from mtreclib.data.table import MultiTaskTable

    batch = random_batch(BAG_SCHEMA, size=rows, seed=seed)
    bags = tuple(Bag(bag.values.int().numpy(), bag.offsets.numpy(), None if bag.weights is None else bag.weights.numpy()) for bag in batch.bags)
    return MultiTaskTable(batch.categorical.int().numpy(), batch.numerical.numpy(), batch.labels.to(torch.uint8).numpy(), bags=bags)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded")
    mp.spawn(_rank, args=(out, tuple(free_port() for _ in range(4))), nprocs=WORLD_SIZE)
    return out


@pytest.fixture(scope="module")
def ranks(two_ranks) -> list[dict]:
    return [torch.load(two_ranks / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_two_sharded_processes_train_to_one_process_parameters(ranks, sharding):
    alone = _one_process()
    trained = ranks[0][f"{sharding}/trained"]
    initial = _initial()
    assert trained.keys() == alone.keys()
    # BatchNorm's running statistics follow DistributedDataParallel's rule (rank 0's own batches),
    # not one process's two halves in a row: the weights and tables are what must agree.
    for key, value in [(k, v) for k, v in alone.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]:
        torch.testing.assert_close(trained[key], value, rtol=1e-4, atol=1e-5, msg=lambda m: f"{sharding} {key}: {m}")
    tables = [key for key in alone if ".tables." in key]
    assert tables and all(not torch.equal(alone[key], _dense_split(initial, key)) for key in tables)


def _dense_split(initial: dict, key: str) -> torch.Tensor:
    """The initial value of one per-field table, cut from the dense layout."""
    model = create_model("mmoe", BAG_SCHEMA, **model_kwargs("mmoe", CONFIG))
    use_torchrec(model, optimizer="sgd", lr=0.5, device=CPU)
    model.load_state_dict(initial)
    return model.state_dict()[key]


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_each_process_holds_only_its_shards(ranks, sharding):
    plan = ranks[0][f"{sharding}/plan"]
    assert plan == ranks[1][f"{sharding}/plan"]
    assert {entry["sharding"] for entry in plan} == {sharding}
    total = sum(entry["rows"] * CONFIG["embed_dim"] for entry in plan)
    held = [ranks[r][f"{sharding}/local_elements"] for r in range(WORLD_SIZE)]
    assert sum(held) == total and all(0 < h < total for h in held)
    for rank in range(WORLD_SIZE):  # the plan's bytes are what each process holds
        assert held[rank] * 4 == sum(s["bytes"] for entry in plan for s in entry["shards"] if s["rank"] == rank)
    if sharding == "row_wise":
        assert all(len(entry["shards"]) == WORLD_SIZE for entry in plan)


def test_sharded_evaluation_with_uneven_shards_equals_one_process(ranks):
    state = ranks[0]["trainer/state"]["model"]
    model = create_model("mmoe", BAG_SCHEMA, **model_kwargs("mmoe", CONFIG))
    model.load_state_dict(state)  # whole tables gathered on rank 0, into a dense model
    alone = Trainer(model, TrainConfig(batch_size=64), CPU, progress=False).evaluate(_table(900, seed=3))
    assert ranks[0]["trainer/metrics"] == ranks[1]["trainer/metrics"]
    for task, metrics in alone.items():
        for key, value in metrics.items():
            assert ranks[0]["trainer/metrics"][task][key] == pytest.approx(value, rel=1e-5), (task, key)
    fused = ranks[0]["trainer/state"]["fused_optimizers"]
    assert len(fused) == WORLD_SIZE and all(part for part in fused)  # each process's own accumulators


def test_torchrun_training_writes_a_checkpoint_that_mtrec_evaluate_reads_in_one_process(two_ranks):
    from mtreclib.cli import main

    cli = [json.loads((two_ranks / f"cli-whole{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [c["status"] for c in cli] == [0, 0] and "test results" in cli[0]["stdout"] and cli[1]["stdout"] == ""
    results = json.loads((two_ranks / "results.json").read_text())
    assert results["world_size"] == WORLD_SIZE and {entry["sharding"] for entry in results["sharding"]} == {"table_wise"}
    assert {shard["rank"] for entry in results["sharding"] for shard in entry["shards"]} == {0, 1}
    evaluated = two_ranks / "evaluated.json"
    assert main(["evaluate", results["checkpoint"], "--results", str(evaluated)]) in (0, None)
    again = json.loads(evaluated.read_text())
    for task, metrics in results["tasks"].items():
        assert again["tasks"][task]["auc"] == pytest.approx(metrics["auc"], abs=1e-6)


def test_a_sharded_run_resumed_at_the_same_process_count_ends_as_the_uninterrupted_one(two_ranks):
    for label in ("first", "resumed"):
        assert [json.loads((two_ranks / f"cli-{label}{r}.json").read_text())["status"] for r in range(WORLD_SIZE)] == [0, 0]
    whole = json.loads((two_ranks / "results.json").read_text())
    resumed = json.loads((two_ranks / "resumed.json").read_text())
    assert resumed["epochs_run"] == whole["epochs_run"] == 2 and resumed["steps"] == whole["steps"]
    assert resumed["tasks"] == whole["tasks"]
    a = torch.load(whole["checkpoint"], weights_only=False)["state_dict"]
    b = torch.load(resumed["checkpoint"], weights_only=False)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
