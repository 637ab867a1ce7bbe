"""Every registered strategy with every registered model, through the trainer; settings, state, layout."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import random_batch, small_model

from mtreclib.cli import main
from mtreclib.config.experiment import TrainConfig
from mtreclib.config.files import read_config_file
from mtreclib.config.resolve import SECTIONS, model_keys, resolve, strategy_keys
from mtreclib.core.settings import ConfigError, fields_of
from mtreclib.data.table import MultiTaskTable
from mtreclib.models import list_models
from mtreclib.mto import GradientStrategy, StepContext, create_strategy, list_strategies, solvers, strategy_class
from mtreclib.mto.gradients import GradientLayout
from mtreclib.nn.layers import FieldEmbedding
from mtreclib.training.trainer import Trainer

CPU = torch.device("cpu")
GRADIENT_METHODS = [name for name in list_strategies() if issubclass(strategy_class(name), GradientStrategy)]
# Every strategy at its defaults, and the settings that take another code path.
VARIANTS = [(name, {"task_weights": (1.0, 0.5)} if name == "fixed" else {}) for name in list_strategies()] + [
    ("mgda", {"mgda_upper_bound": True}),
    ("mgda", {"mgda_normalization": "loss+"}),
    ("pcgrad", {"mto_batched_grads": True}),
    ("nashmtl", {"nashmtl_update_every": 2}),
    ("imtl", {"imtl_loss_scale": False}),
]


# Tiny models: one thread each (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def table(rows: int, seed: int) -> MultiTaskTable:
    batch = random_batch(size=rows, seed=seed)
    return MultiTaskTable(batch.categorical.int().numpy(), batch.numerical.numpy(), batch.labels.to(torch.uint8).numpy())


def train(model, strategy, epochs: int = 6, lr: float = 1e-2, checkpoints=None, resume=None) -> Trainer:
    """``epochs`` steps (one batch an epoch, the same rows each time) of the real trainer."""
    config = TrainConfig(batch_size=64, epochs=epochs, patience=0, lr=lr, seed=0)
    trainer = Trainer(model, config, CPU, strategy=strategy, progress=False, checkpoints=checkpoints)
    trainer.fit(table(64 * model.batches_per_step, seed=1), table(0, seed=2), resume=resume)
    return trainer


def mean_loss(model) -> float:
    batches = [random_batch(size=64, seed=1)]  # not the loader's order, the same rows: a fixed yardstick
    model.train()
    with torch.no_grad() if model.batches_per_step == 1 else torch.enable_grad():
        return float(model.task_losses(batches * model.batches_per_step).tasks.mean().detach())


@pytest.mark.parametrize("model_name", list_models())
@pytest.mark.parametrize("name, settings", VARIANTS, ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in s.items())}" for n, s in VARIANTS])
def test_every_strategy_trains_every_model(name, settings, model_name):
    torch.manual_seed(0)
    model = small_model(model_name)
    before = mean_loss(model)
    initial = copy.deepcopy(model.state_dict())
    strategy = create_strategy(name, model.task_num, **settings)
    train(model, strategy)
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
    for parameter_name, parameter in strategy.named_parameters():  # none where nothing is shared (gradnorm, singletask)
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), parameter_name
    for key, value in model.state_dict().items():
        assert torch.isfinite(value.float()).all(), key
    assert any(not torch.equal(value, initial[key]) for key, value in model.named_parameters())
    assert mean_loss(model) < before
    weights = strategy.task_weights()
    assert len(weights) == model.task_num and all(np.isfinite(weights))


# ----- what each gradient method sees of a real model -----


def test_tower_and_gate_banks_are_task_specific_and_get_only_their_own_gradient():
    torch.manual_seed(0)
    model = small_model("mmoe")
    layout = GradientLayout(model)
    shared = {id(p) for p in layout.parameters[: layout.shared_count]}
    names = {name for name, p in model.named_parameters() if id(p) in shared}
    assert names and all(name.startswith(("embedding.", "experts.")) for name in names)
    assert layout.owned is None  # every shared parameter is shared element by element
    # PCGrad, whose projections would mix the tasks if it saw the towers: each tower's slice of the
    # bank gets its own task's gradient, at 1/T.
    batch = random_batch(size=64, seed=3)
    losses = model.task_losses([batch]).tasks
    own = [torch.autograd.grad(losses[t], model.towers.weights[0], retain_graph=True)[0] for t in range(2)]
    model.zero_grad(set_to_none=True)
    create_strategy("pcgrad", 2).backward(model.task_losses([batch]), StepContext(model))
    for t in range(2):
        assert torch.allclose(model.towers.weights[0].grad[t], own[t][t] / 2, atol=1e-7)


def test_a_bank_whose_members_feed_several_tasks_keeps_its_owned_columns():
    # AITM: task 1's bottom also feeds task 2 (shared), task 2's bottom only task 2 (owned).
    torch.manual_seed(0)
    model = small_model("aitm")
    layout = GradientLayout(model)
    assert layout.owned is not None
    index = next(i for i, p in enumerate(layout.parameters) if p is model.bottoms.weights[0])
    start = sum(layout.sizes[:index])
    size = model.bottoms.weights[0].numel()
    owned = layout.owned[(layout.owned >= start) & (layout.owned < start + size)] - start
    assert torch.equal(owned, torch.arange(size // 2, size))  # exactly the second member's slice


def test_the_probe_leaves_no_trace():
    torch.manual_seed(0)
    model = small_model("ple")
    buffers = copy.deepcopy(dict(model.named_buffers()))
    state = torch.get_rng_state()
    GradientLayout(model)
    assert torch.equal(torch.get_rng_state(), state) and model.training
    assert all(torch.equal(value, buffers[name]) for name, value in model.named_buffers())


def test_a_small_ple_shares_its_experts_whatever_its_initialisation():
    # In evaluation mode the second tower of this PLE is dead on every probe row; in training mode not.
    torch.manual_seed(0)
    layout = GradientLayout(small_model("ple"))
    assert layout.shared_count > 3


# ----- MGDA-UB -----


def test_mgda_upper_bound_weighs_by_the_representation_gradients():
    torch.manual_seed(0)
    model = small_model("sharedbottom")
    strategy = create_strategy("mgda", 2, mgda_upper_bound=True)
    strategy.attach(model)
    embedding = model.representation()
    assert isinstance(embedding, FieldEmbedding) and not embedding.split_products and not strategy.syncs_gradients
    batch = random_batch(size=64, seed=4)
    captured = []
    handle = embedding.register_forward_hook(lambda module, inputs, output: captured.append(output))
    losses = model.task_losses([batch])
    handle.remove()
    z = torch.stack([torch.autograd.grad(losses.tasks[t], captured[0], retain_graph=True)[0].flatten() for t in range(2)])
    expected = solvers.min_norm_weights((z @ z.T).double().numpy())
    strategy.backward(losses, StepContext(model))
    assert np.allclose(np.array(strategy.task_weights()) / 2, expected, atol=1e-6)
    # One backward of the weighted loss set the gradients.
    weighted = copy.deepcopy(model)
    weighted.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    (torch.tensor(expected, dtype=torch.float32) * weighted.task_losses([batch]).tasks).sum().backward()
    for (name, p), q in zip(model.named_parameters(), weighted.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_mgda_upper_bound_without_a_representation_works_at_the_parameter_level():
    model = small_model("singletask")
    strategy = create_strategy("mgda", 2, mgda_upper_bound=True)
    strategy.attach(model)
    assert model.representation() is None and strategy.syncs_gradients
    strategy.backward(model.task_losses([random_batch()]), StepContext(model))
    assert all(p.grad is not None for p in model.parameters())


# ----- state: checkpoints and resume -----


class Collect:
    """Checkpoints that keep the last state of every epoch."""

    def __init__(self):
        self.states: list[dict] = []

    def save_best(self, state_dict, epoch, valid) -> None:
        pass

    def save_last(self, state) -> None:
        self.states.append(copy.deepcopy(state))


@pytest.mark.parametrize("name", ["uw", "dwa", "rlw", "famo", "gradnorm", "pcgrad", "nashmtl", "imtl", "metabalance"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(name):
    torch.manual_seed(0)
    model = small_model("mmoe", dropout=0.2)
    checkpoints = Collect()
    train(model, create_strategy(name, 2), epochs=4, checkpoints=checkpoints)
    resume = {**checkpoints.states[1], "best_state": checkpoints.states[1]["model"]}
    torch.manual_seed(1)  # another initialisation and random state: the checkpoint must restore them
    again = small_model("mmoe", dropout=0.2)
    strategy = create_strategy(name, 2)
    train(again, strategy, epochs=4, resume=resume)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    for key, value in checkpoints.states[-1]["strategy"].items():
        assert torch.equal(value, strategy.state_dict()[key]), key


# ----- settings -----


def test_strategy_settings_are_typed_paper_defaults_and_collide_with_no_other_key():
    by_strategy = strategy_keys()
    others = set(model_keys()) | {key for section in SECTIONS for key in section.keys()}
    assert not set(by_strategy) & others
    seen = {}
    for name in list_strategies():
        for field, tp in fields_of(strategy_class(name).Config):
            # a key two strategies take means the same there: same type and default
            assert seen.setdefault(field.name, (tp, field.default)) == (tp, field.default), field.name
    defaults = {name: strategy_class(name).Config() for name in list_strategies()}
    assert defaults["cagrad"].cagrad_c == 0.4 and defaults["dwa"].dwa_temperature == 2.0
    assert defaults["gradnorm"].gradnorm_alpha == 1.5 and defaults["famo"].famo_lr == 0.025
    assert defaults["metabalance"].metabalance_relax == 0.7 and defaults["rlw"].rlw_distribution == "normal"


def test_settings_resolve_from_flags_and_config_keys():
    config = resolve({"mto": "cagrad", "cagrad-c": "0.5", "model": "mmoe"})
    assert config.train.mto == "cagrad" and config.mto_config.cagrad_c == 0.5
    with pytest.raises(ConfigError, match="strategy pcgrad has no setting 'cagrad_c'"):
        resolve({"mto": "pcgrad", "cagrad_c": 0.5})
    with pytest.raises(ConfigError, match="metabalance_target"):
        create_strategy("metabalance", 2, metabalance_target=2)
    with pytest.raises(ConfigError, match="mgda_normalization"):
        create_strategy("mgda", 2, mgda_normalization="l1")


def test_a_config_file_section_names_the_strategy_and_its_settings(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("mto:\n  name: nashmtl\n  nashmtl_update_every: 5\n")
    config = resolve(read_config_file(path))
    assert config.train.mto == "nashmtl" and config.mto_config.nashmtl_update_every == 5


def test_strategies_command_lists_every_strategy_with_its_settings(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in list_strategies():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "--cagrad-c" in out and "--mto-batched-grads" in out


def test_train_with_a_gradient_method_records_its_weights(aliexpress_dir, tmp_path):
    results = tmp_path / "results.json"
    status = main(
        ["train", "--model", "ple", "--dataset", "AliExpress_NL", "--data-dir", str(aliexpress_dir), "--epochs", "2",
         "--batch-size", "32", "--embed-dim", "8", "--expert-num", "2", "--valid-fraction", "0.2", "--mto", "cagrad",
         "--cagrad-c", "0.6", "--no-save", "--results", str(results), "--no-progress"]
    )  # fmt: skip
    assert status == 0
    payload = json.loads(results.read_text())
    assert payload["config"]["mto_config"]["cagrad_c"] == 0.6 and payload["config"]["train"]["mto"] == "cagrad"
    weights = [record["task_weights"] for record in payload["history"]]
    assert len(weights) == 2 and all(set(w) == {"click", "conversion"} for w in weights)
    assert any(value != 1.0 for w in weights for value in w.values())
