"""Optimisation settings: the dense optimizer, the learning-rate schedules and gradient clipping.

Each schedule's rates equal its formula computed here; clipping caps the model's global gradient
norm after the strategy (and, under two processes, the all-reduce); AdamW and Adagrad are
PyTorch's; bad values are one-line errors naming the setting; every combination trains.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import free_port, random_table, small_experiment, small_model

from mtreclib.cli import main
from mtreclib.config.experiment import LR_SCHEDULES, OPTIMIZERS, TrainConfig
from mtreclib.core import distributed
from mtreclib.core.distributed import place_from_environment
from mtreclib.core.errors import UserError
from mtreclib.core.settings import ConfigError
from mtreclib.data.table import split_validation
from mtreclib.mto import create_strategy
from mtreclib.training.experiment import run_experiment
from mtreclib.training.optim import build_optimizer, build_schedule
from mtreclib.training.trainer import Trainer

CPU = torch.device("cpu")


def _rates(config: TrainConfig, steps_per_epoch: int, steps: int) -> list[float]:
    """The learning rate each of the first ``steps`` optimizer steps runs at, as the trainer steps them."""
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer([parameter], config, CPU)
    schedule = build_schedule(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        parameter.grad = torch.ones(2)
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return rates


def test_constant_is_no_scheduler_at_all():
    config = TrainConfig(lr=0.1, epochs=3)
    assert build_schedule(build_optimizer([torch.nn.Parameter(torch.zeros(1))], config, CPU), config, 4) is None
    assert _rates(config, 4, 12) == [0.1] * 12


def test_warmup_cosine_rises_linearly_then_follows_half_a_cosine():
    # W = 2 warm-up steps, N = 2 epochs x 4 steps = 8 planned: the cosine spans the other 6.
    config = TrainConfig(lr=0.1, lr_schedule="warmup-cosine", warmup_steps=2, lr_min=0.01, epochs=2)
    rates = _rates(config, steps_per_epoch=4, steps=8)
    expected = [0.1 * 1 / 3, 0.1 * 2 / 3] + [0.01 + 0.09 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert rates == pytest.approx(expected, rel=1e-12)
    # By hand: the peak at step W, the midpoint of the cosine (k = 3) halfway between lr and lr_min.
    assert rates[2] == pytest.approx(0.1, rel=1e-12) and rates[5] == pytest.approx(0.055, rel=1e-12)


def test_cosine_without_warmup_spans_the_run_capped_by_max_steps():
    # 10 epochs of 4 steps, but --max-steps 5: the cosine is planned over 5 steps.
    config = TrainConfig(lr=0.2, lr_schedule="warmup-cosine", epochs=10, max_steps=5)
    rates = _rates(config, steps_per_epoch=4, steps=5)
    assert rates == pytest.approx([0.2 * (1 + math.cos(math.pi * s / 5)) / 2 for s in range(5)], rel=1e-12)


def test_step_multiplies_by_gamma_every_n_epochs():
    config = TrainConfig(lr=0.1, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5, epochs=6)
    rates = _rates(config, steps_per_epoch=3, steps=18)
    assert rates == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 6, rel=1e-12)


def test_a_warmup_as_long_as_the_run_is_refused_in_one_line():
    config = TrainConfig(lr_schedule="warmup-cosine", warmup_steps=8, epochs=2)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config, CPU)
    with pytest.raises(UserError, match=r"^warmup_steps \(--warmup-steps\) must be below the run's 8 optimizer steps \(2 epochs of 4\), got 8$"):
        build_schedule(optimizer, config, 4)


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adagrad", torch.optim.Adagrad), ("adam", torch.optim.Adam)])
def test_each_optimizer_makes_the_updates_of_pytorchs_own(name, cls):
    generator = torch.Generator().manual_seed(0)
    shapes = [(10, 5), (7,)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    plain = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    start = [p.detach().clone() for p in ours]
    optimizers = [build_optimizer(ours, TrainConfig(optimizer=name, lr=1e-2, weight_decay=1e-2), CPU), cls(plain, lr=1e-2, weight_decay=1e-2)]
    assert type(optimizers[0]) is cls
    for _ in range(5):
        grads = [torch.randn(s, generator=generator) for s in shapes]
        for parameters, optimizer in zip((ours, plain), optimizers):
            for p, g in zip(parameters, grads):
                p.grad = g.clone()
            optimizer.step()
    for p, q, s in zip(ours, plain, start):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        assert not torch.equal(p, s)  # they moved


@pytest.mark.parametrize("device, fused", [("cpu", {"adam", "adamw", "adagrad"}), ("cuda", {"adam", "adamw"})])
def test_fused_only_where_pytorch_has_the_kernel(device, fused):
    """PyTorch's fused Adagrad runs on the CPU only and says so only at the first step, on the GPU:
    the choice is made when the optimizer is built (no GPU needed: the parameters are not moved)."""
    for name in OPTIMIZERS:
        optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainConfig(optimizer=name), torch.device(device))
        assert bool(optimizer.defaults["fused"]) == (name in fused), name
        assert bool(optimizer.defaults["foreach"]) == (device == "cuda" and name not in fused), name


@pytest.mark.parametrize("name, expected", [("adamw", 0.95), ("adam", 0.9), ("adagrad", 0.9)])
def test_weight_decay_is_decoupled_for_adamw_and_an_l2_gradient_for_the_others(name, expected):
    """A weight of 1 with no gradient, lr 0.1, weight decay 0.5, one step. AdamW shrinks it by
    lr * wd = 0.05 and its Adam part sees a zero gradient; Adam and Adagrad see the gradient
    wd * w = 0.5, and their first step is lr times its sign: 1 - 0.1."""
    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = build_optimizer([weight], TrainConfig(optimizer=name, lr=0.1, weight_decay=0.5), CPU)
    weight.grad = torch.zeros(1)
    optimizer.step()
    assert float(weight.detach()) == pytest.approx(expected, abs=1e-6)


def _first_step_gradients(dataset, *, clip: float | None, mto: str = "uw") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The model's and the strategy's gradients as the first optimizer step receives them."""
    torch.manual_seed(0)
    model = small_model("mmoe", dataset.schema)
    config = TrainConfig(batch_size=256, epochs=1, max_steps=1, patience=0, clip_grad_norm=clip)
    strategy = create_strategy(mto, model.task_num)
    trainer = Trainer(model, config, CPU, strategy=strategy, progress=False)
    seen = []
    step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(([p.grad.clone() for p in model.parameters()], [p.grad.clone() for p in strategy.parameters()]))
        return step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    train, valid = split_validation(dataset.train, 0.2)
    trainer.fit(train, valid)
    return seen[0]


def test_clipping_caps_the_models_global_norm_and_leaves_the_strategys_parameters(tiny_synthetic):
    raw, raw_strategy = _first_step_gradients(tiny_synthetic, clip=None)
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in raw))  # the global L2 norm, by hand
    cap = norm / 4
    clipped, clipped_strategy = _first_step_gradients(tiny_synthetic, clip=cap)
    scale = cap / (norm + 1e-6)  # clip_grad_norm_'s factor
    for g, c in zip(raw, clipped):
        torch.testing.assert_close(c, g * scale, rtol=1e-5, atol=1e-9)
    assert math.sqrt(sum(float((g.double() ** 2).sum()) for g in clipped)) == pytest.approx(cap, rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(raw_strategy, clipped_strategy))  # UW's log-variances: untouched
    # A cap above the norm changes nothing.
    loose, _ = _first_step_gradients(tiny_synthetic, clip=norm * 2)
    assert all(torch.equal(a, b) for a, b in zip(raw, loose))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(optimizer="sgd"), "optimizer (--optimizer) must be one of adam, adamw, adagrad, got 'sgd'"),
        (dict(lr_schedule="linear"), "lr_schedule (--lr-schedule) must be one of constant, warmup-cosine, step, got 'linear'"),
        (dict(lr_schedule="warmup-cosine", warmup_steps=-1), "warmup_steps (--warmup-steps) must be at least 0, got -1"),
        (dict(clip_grad_norm=0), "clip_grad_norm (--clip-grad-norm) must be above 0, got 0.0"),
        (dict(clip_grad_norm=-1.5), "clip_grad_norm (--clip-grad-norm) must be above 0, got -1.5"),
        (dict(weight_decay=-0.1), "weight_decay (--weight-decay) must be at least 0, got -0.1"),
        (dict(warmup_steps=10), "warmup_steps (--warmup-steps) is a setting of --lr-schedule warmup-cosine, not of --lr-schedule constant"),
        (dict(lr_schedule="step", lr_step_epochs=2, lr_min=1e-5), "lr_min (--lr-min) is a setting of --lr-schedule warmup-cosine, not of --lr-schedule step"),
        (dict(lr_schedule="warmup-cosine", lr_gamma=0.5), "lr_gamma (--lr-gamma) is a setting of --lr-schedule step, not of --lr-schedule warmup-cosine"),
        (dict(lr_schedule="step"), "lr_step_epochs (--lr-step-epochs) must be set for --lr-schedule step"),
        (dict(lr_schedule="step", lr_step_epochs=0), "lr_step_epochs (--lr-step-epochs) must be at least 1, got 0"),
        (dict(lr_schedule="step", lr_step_epochs=1, lr_gamma=1.5), "lr_gamma (--lr-gamma) must be at most 1, got 1.5"),
        (dict(lr_schedule="warmup-cosine", lr=1e-3, lr_min=1e-3), "lr_min (--lr-min) must be below lr (--lr) 0.001, got 0.001"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_setting(settings, message):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**settings)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_bad_flag_exits_2_with_one_line_before_any_data(capsys, tmp_path):
    assert main(["train", "--no-progress", "--no-save", "--data-dir", str(tmp_path / "none"), "--clip-grad-norm", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clip_grad_norm (--clip-grad-norm) must be above 0" in err and "Traceback" not in err


# Every optimizer with every schedule; clipping on in every other run (at a cap the gradients pass).
COMBINATIONS = [(optimizer, schedule) for optimizer in OPTIMIZERS for schedule in LR_SCHEDULES]


@pytest.mark.parametrize("index", range(len(COMBINATIONS)), ids=["-".join(c) for c in COMBINATIONS])
def test_every_combination_trains(tiny_synthetic, index):
    optimizer, schedule = COMBINATIONS[index]
    extra = {"warmup-cosine": dict(warmup_steps=3, lr_min=1e-4), "step": dict(lr_step_epochs=1, lr_gamma=0.5)}.get(schedule, {})
    clip = 0.5 if index % 2 else None
    config = small_experiment(epochs=2, patience=0, batch_size=512, lr=1e-2, optimizer=optimizer, lr_schedule=schedule, clip_grad_norm=clip, **extra)
    record = run_experiment(config, dataset=tiny_synthetic, announce=False)
    assert record.epochs_run == 2 and record.config["train"]["optimizer"] == optimizer
    assert all(math.isfinite(epoch.train_loss) for epoch in record.history)
    assert record.history[1].train_loss < record.history[0].train_loss  # it learns


def test_defaults_are_adam_at_a_constant_rate_without_clipping():
    config = TrainConfig()
    assert (config.optimizer, config.lr_schedule, config.clip_grad_norm) == ("adam", "constant", None)
    trainer = Trainer(small_model("mmoe"), replace(config, epochs=1, max_steps=1, patience=0, batch_size=64), CPU, progress=False)
    trainer.fit(random_table(128, seed=1), random_table(0, seed=2))
    assert type(trainer.optimizer) is torch.optim.Adam and trainer.scheduler is None


def test_on_the_torchrec_backend_the_optimizer_and_schedule_are_the_dense_parts(one_thread):
    """The tables are no parameters: the dense optimizer, its schedule and clipping never see them,
    and their fused optimizer trains them still."""
    from mtreclib.embeddings import use_torchrec

    torch.manual_seed(0)
    model = use_torchrec(small_model("mmoe"), optimizer="sgd", lr=0.1, device=CPU)
    config = TrainConfig(batch_size=64, epochs=2, patience=0, optimizer="adagrad", lr_schedule="warmup-cosine", warmup_steps=2, clip_grad_norm=0.5)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    tables = [key for key in before if ".ebc.embedding_bags." in key]
    trainer = Trainer(model, config, CPU, progress=False)
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert tables and optimized == {id(p) for p in model.parameters()} and type(trainer.optimizer) is torch.optim.Adagrad
    trainer.fit(random_table(640, seed=1), random_table(0, seed=2))
    after = model.state_dict()
    assert all(not torch.equal(before[key], after[key]) for key in tables)  # the fused optimizer's updates
    assert any(not torch.equal(before[key], after[key]) for key in before if key not in tables)


# ----- two processes: clipping sees the all-reduced gradient -----

WORLD_SIZE = 2


def _rank(rank: int, out: Path, port: int) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    saved = {}
    with distributed.process_group(place_from_environment(), CPU, timeout=timedelta(seconds=60)):
        for mto in ("ew", "pcgrad"):  # DDP's own all-reduce, and a gradient method's manual one
            torch.manual_seed(rank)  # different initialisations: DDP starts from rank 0's
            model = small_model("mmoe")
            config = TrainConfig(batch_size=64, epochs=1, patience=0, max_steps=3, clip_grad_norm=0.05, lr_schedule="warmup-cosine", warmup_steps=1)
            trainer = Trainer(model, config, CPU, strategy=create_strategy(mto, model.task_num), rank=rank, world_size=WORLD_SIZE, progress=False)
            seen = []
            clip = torch.nn.utils.clip_grad_norm_

            def recording_clip(parameters, max_norm, *args, seen=seen, clip=clip, **kwargs):
                parameters = list(parameters)
                before = [p.grad.clone() for p in parameters]
                norm = clip(parameters, max_norm, *args, **kwargs)
                seen.append((before, [p.grad.clone() for p in parameters], float(norm)))
                return norm

            torch.nn.utils.clip_grad_norm_ = recording_clip
            try:
                trainer.fit(random_table(640, seed=1), random_table(0, seed=2))
            finally:
                torch.nn.utils.clip_grad_norm_ = clip
            saved[mto] = {"seen": seen, "trained": {k: v.detach().clone() for k, v in model.named_parameters()}}
    torch.save(saved, out / f"rank{rank}.pt")


def test_under_two_processes_clipping_acts_on_the_all_reduced_gradient(tmp_path):
    mp.spawn(_rank, args=(tmp_path, free_port()), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    for mto in ("ew", "pcgrad"):
        first, second = ranks[0][mto], ranks[1][mto]
        assert len(first["seen"]) == len(second["seen"]) == 3
        for (before_a, after_a, norm_a), (before_b, after_b, norm_b) in zip(first["seen"], second["seen"]):
            # The ranks saw different rows; equal gradients mean the clip came after the all-reduce.
            assert all(torch.equal(a, b) for a, b in zip(before_a, before_b)), mto
            assert norm_a == norm_b > 0.05, mto  # the cap was in effect
            clipped = math.sqrt(sum(float((g.double() ** 2).sum()) for g in after_a))
            assert clipped == pytest.approx(0.05, rel=1e-4), mto
        # The same weights on both ranks (their BatchNorm statistics are each rank's own).
        assert all(torch.equal(first["trained"][k], second["trained"][k]) for k in first["trained"]), mto
