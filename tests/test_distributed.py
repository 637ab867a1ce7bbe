"""Data-parallel training: two CPU processes (gloo) against one.

One ``torch.multiprocessing`` spawn of two ranks does all the two-process work (starting
processes is the slow part); each rank writes what it saw to files, and the tests below compare
those files with each other and with the same work done here in one process.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import ALIEXPRESS_SAMPLE, free_port, random_batch, random_table, small_experiment, small_model

from mtreclib.cli import main
from mtreclib.config.experiment import TrainConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core import distributed
from mtreclib.core.distributed import ProcessPlace, place_from_environment
from mtreclib.core.errors import UserError
from mtreclib.models import list_models
from mtreclib.training.experiment import run_experiment
from mtreclib.training.trainer import Trainer, TrainingObjective

MODELS = list_models()
WORLD_SIZE = 2
CPU = torch.device("cpu")
TRAIN = TrainConfig(batch_size=64, epochs=1, patience=0, max_steps=3)
EVAL_ROWS = 900  # 15 batches of 64 (the last short): the ranks' shards differ in size
# A learning rate this high makes validation AUC wander, so that patience stops the run early.
EARLY_STOPPING = small_experiment("mmoe", epochs=20, patience=1, lr=0.3)


# ----- one process: the environment and the helpers' single-process behaviour -----


def test_no_launch_variables_is_one_process():
    assert place_from_environment({}) == ProcessPlace(rank=0, world_size=1, local_rank=0)


def test_torchrun_variables_give_the_place():
    place = place_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert place == ProcessPlace(rank=3, world_size=4, local_rank=1) and place.distributed and not place.is_main


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK not"),
        ({"RANK": "0", "WORLD_SIZE": "two", "LOCAL_RANK": "0"}, "not integers"),
        ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "inconsistent"),
    ],
)
def test_bad_launch_environment_is_a_user_error(environ, message):
    with pytest.raises(UserError, match=message):
        place_from_environment(environ)


def test_each_local_rank_takes_its_own_gpu_and_cpu_stays_cpu():
    place = ProcessPlace(rank=1, world_size=2, local_rank=1)
    assert place.device(CPU) == CPU
    with pytest.raises(UserError, match="cuda:LOCAL_RANK"):
        place.device(torch.device("cuda", 0))
    assert ProcessPlace().device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert distributed.backend_for(CPU) == "gloo" and distributed.backend_for(torch.device("cuda", 0)) == "nccl"


@pytest.mark.parametrize("batch_num, world_size", [(15, 2), (3, 4), (0, 2), (16, 3)])
def test_evaluation_shards_cover_every_batch_once_in_order(batch_num, world_size):
    ranges = [distributed.shard_range(batch_num, rank, world_size) for rank in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == batch_num
    assert all(ranges[r][1] == ranges[r + 1][0] for r in range(world_size - 1))
    sizes = [last - first for first, last in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_helpers_pass_values_through_in_one_process():
    rows = torch.arange(6.0).view(3, 2)
    assert distributed.gather_rows(rows) is rows
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.sum_over_ranks(rows) is rows
    with pytest.raises(RuntimeError, match="process group"):
        distributed.wrap(TrainingObjective(small_model("mmoe")), CPU)


def test_global_batch_too_small_for_the_processes_is_a_user_error(tiny_synthetic):
    config = with_changes(EARLY_STOPPING, batch_size=3)
    with pytest.raises(UserError, match="global batch"):
        run_experiment(config, dataset=tiny_synthetic, place=ProcessPlace(rank=0, world_size=2))


# ----- two processes -----


def _shard(batch, rank: int):
    """This rank's half of a global batch, as the BatchLoader cuts it."""
    half = batch.size // WORLD_SIZE
    return batch.slice(rank * half, (rank + 1) * half)


def _gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _rank(rank: int, out: Path, ports: tuple[int, int], data_dir: str, dataset) -> None:
    """One of the two ranks: everything two processes are tested on, written to ``out``."""
    torch.set_num_threads(1)  # two processes on two cores
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(ports[0])
    )
    place = place_from_environment()
    saved: dict = {}
    # A rank out of step fails within a minute instead of hanging the suite.
    with distributed.process_group(place, CPU, timeout=timedelta(seconds=60)):
        for name in MODELS:
            # One DDP step's gradient next to this rank's own, undistributed, gradient.
            torch.manual_seed(0)
            model = small_model(name)
            alone = copy.deepcopy(model)
            batches = [_shard(random_batch(size=64, seed=10 + k), rank) for k in range(model.batches_per_step)]
            alone.training_loss(batches).backward()
            ddp = distributed.wrap(TrainingObjective(model), CPU)
            losses = ddp(batches)  # the same loss as training_loss, auxiliary term included
            (losses.tasks.mean() + (0 if losses.auxiliary is None else losses.auxiliary)).backward()
            saved[f"{name}/local_grad"], saved[f"{name}/ddp_grad"] = _gradients(alone), _gradients(model)

            # A few steps of the trainer, each rank from a different initialisation: DDP must
            # start them from rank 0's weights and keep them together.
            torch.manual_seed(rank)
            model = small_model(name)
            fit = Trainer(model, TRAIN, CPU, rank=rank, world_size=WORLD_SIZE, progress=False).fit(random_table(640, seed=1), random_table(0, seed=2))
            saved[f"{name}/trained"] = copy.deepcopy(model.state_dict())
            saved[f"{name}/samples"] = fit.train_samples

            # Evaluation of a fixed model over the whole split. Rank 1's BatchNorm statistics are
            # spoilt on purpose (after DDP's start-up broadcast), as a last training step leaves
            # them: rank 0's model is the one to evaluate.
            torch.manual_seed(0)
            model = small_model(name)
            trainer = Trainer(model, TRAIN, CPU, rank=rank, world_size=WORLD_SIZE, progress=False)
            if rank == 1:
                for buffer in model.buffers():
                    if buffer.is_floating_point():
                        buffer.add_(1.0)
            saved[f"{name}/metrics"] = trainer.evaluate(random_table(EVAL_ROWS, seed=3))

        saved["early_stopping"] = run_experiment(EARLY_STOPPING, dataset=dataset, place=place).to_dict()
    torch.save(saved, out / f"rank{rank}.pt")

    # The command line as torchrun starts it: the process group comes from the environment.
    os.environ["MASTER_PORT"] = str(ports[1])
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(
            ["train", "--model", "metaheac", "--dataset", "AliExpress_NL", "--data-dir", data_dir, "--epochs", "3",
             "--batch-size", "16", "--embed-dim", "8", "--expert-num", "2", "--valid-fraction", "0.2",
             "--save-dir", str(out / "ck"), "--results", str(out / "results.json"), "--no-progress"]
        )  # fmt: skip
    (out / f"cli{rank}.json").write_text(json.dumps({"status": status, "stdout": stdout.getvalue()}))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_synthetic) -> Path:
    """The folder the two ranks wrote into."""
    out = tmp_path_factory.mktemp("ddp")
    data_dir = tmp_path_factory.mktemp("data")
    shutil.copytree(ALIEXPRESS_SAMPLE, data_dir / "AliExpress_NL")
    mp.spawn(_rank, args=(out, (free_port(), free_port()), str(data_dir), tiny_synthetic), nprocs=WORLD_SIZE)
    return out


@pytest.fixture(scope="module")
def ranks(two_ranks) -> list[dict]:
    return [torch.load(two_ranks / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("name", MODELS)
def test_ddp_gradient_is_the_mean_of_the_ranks_gradients(ranks, name):
    """All-reduced through each model's own step (MetaHeac's inner, second-order step included)."""
    for parameter, ddp in ranks[0][f"{name}/ddp_grad"].items():
        mean = (ranks[0][f"{name}/local_grad"][parameter] + ranks[1][f"{name}/local_grad"][parameter]) / 2
        assert torch.allclose(ddp, mean, rtol=1e-5, atol=1e-7), f"{name}.{parameter}"
        assert torch.equal(ddp, ranks[1][f"{name}/ddp_grad"][parameter]), f"{name}.{parameter}"
        # The ranks saw different rows, so their own gradients differ: the mean is no accident.
        assert not torch.equal(ranks[0][f"{name}/local_grad"][parameter], ranks[1][f"{name}/local_grad"][parameter])


@pytest.mark.parametrize("name", MODELS)
def test_both_ranks_end_training_with_identical_parameters(ranks, name):
    first, second = ranks[0][f"{name}/trained"], ranks[1][f"{name}/trained"]
    torch.manual_seed(0)
    initial = dict(small_model(name).named_parameters())  # rank 0's initialisation
    for key, value in initial.items():
        assert torch.equal(first[key], second[key]), f"{name}.{key} differs between ranks"
    assert any(not torch.equal(first[key], value) for key, value in initial.items()), f"{name} did not train"
    # Throughput counts the rows of all ranks: 3 steps of full 64-row global batches.
    assert ranks[0][f"{name}/samples"] == ranks[1][f"{name}/samples"] == 3 * small_model(name).batches_per_step * 64


@pytest.mark.parametrize("name", MODELS)
def test_two_process_evaluation_equals_one_process(ranks, name):
    torch.manual_seed(0)
    model = small_model(name)
    alone = Trainer(model, TRAIN, CPU, progress=False).evaluate(random_table(EVAL_ROWS, seed=3))
    assert ranks[0][f"{name}/metrics"] == ranks[1][f"{name}/metrics"]  # broadcast from rank 0
    for task, metrics in alone.items():
        for key, value in metrics.items():
            assert math.isclose(ranks[0][f"{name}/metrics"][task][key], value, rel_tol=1e-6), (task, key)


def _without_times(history: list[dict]) -> list[dict]:
    return [{key: value for key, value in record.items() if key != "train_seconds"} for record in history]


def test_ranks_stop_early_together_with_the_same_results(ranks):
    first, second = ranks[0]["early_stopping"], ranks[1]["early_stopping"]
    assert first["epochs_run"] < EARLY_STOPPING.train.epochs  # patience stopped the run
    for key in ("epochs_run", "best_epoch", "steps", "tasks"):
        assert first[key] == second[key], key
    # Validation scores, training losses (averaged over ranks): the same record on every rank.
    assert _without_times(first["history"]) == _without_times(second["history"])


def test_command_line_under_two_processes_reports_once(two_ranks):
    cli = [json.loads((two_ranks / f"cli{r}.json").read_text()) for r in range(WORLD_SIZE)]
    assert [c["status"] for c in cli] == [0, 0]
    assert "test results" in cli[0]["stdout"] and cli[1]["stdout"] == ""
    results = json.loads((two_ranks / "results.json").read_text())
    assert results["world_size"] == WORLD_SIZE and results["model"] == "metaheac"
    # 80 training rows in global batches of 16 (8 per rank), two batches a MetaHeac step.
    assert results["rows"]["train"] == 80 and results["history"][0]["steps"] == math.ceil(80 // 16 / 2)
    assert results["train_samples_per_sec"] > 0 and results["history"][0]["train_seconds"] > 0
    run = two_ranks / "ck" / "AliExpress_NL_metaheac" / "run-1"
    assert [p.name for p in (two_ranks / "ck" / "AliExpress_NL_metaheac").iterdir()] == ["run-1"]  # one folder, made by rank 0
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.yaml", "last.pt", "results.json"]
    assert results["checkpoint"] == str(run / "best.pt")
    assert not list(two_ranks.rglob("*.tmp*"))
