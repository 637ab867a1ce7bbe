"""The search space: ranges declared on the typed settings, checked against the settings' own bounds,
and changed by a space file whose mistakes are one-line errors."""

from __future__ import annotations

import pickle

import optuna
import pytest

from mtreclib.config.experiment import DataConfig, ExperimentConfig, RunConfig, TrainConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.settings import ConfigError, Search, fields_of, meta_of, search_choices, search_range
from mtreclib.models import list_models, model_class
from mtreclib.mto import list_strategies, strategy_class
from mtreclib.tuning.space import SearchSpace, check_search


def _settings_classes() -> dict[str, type]:
    classes = {"train": TrainConfig, "data": DataConfig, "run": RunConfig}
    classes.update({f"model {name}": model_class(name).Config for name in list_models()})
    classes.update({f"strategy {name}": strategy_class(name).Config for name in list_strategies()})
    return classes


DECLARED = [
    pytest.param(cls, field, tp, id=f"{owner}.{field.name}")
    for owner, cls in _settings_classes().items()
    for field, tp in fields_of(cls)
    if meta_of(field).search is not None
]


def test_the_settings_worth_tuning_declare_a_range():
    declared = {param.id.rsplit(".", 1)[1] for param in DECLARED}
    assert {"lr", "weight_decay", "embed_dim", "bottom_dims", "tower_dims", "dropout", "expert_num", "cagrad_c", "famo_lr"} <= declared
    # Data and run settings (where files go, which split) are not the model's: nothing to tune there.
    assert not any(param.id.startswith(("data.", "run.")) for param in DECLARED)


@pytest.mark.parametrize("cls, field, tp", DECLARED)
def test_every_declared_range_is_inside_its_settings_own_bounds(cls, field, tp):
    search = meta_of(field).search
    check_search(search, field, tp, field.name)  # raises ConfigError when a value is outside the setting's checks
    for value in search.values:  # and each extreme builds the settings class on its own
        cls(**{field.name: value})


def test_a_range_outside_a_settings_bounds_is_refused():
    fields = {field.name: (field, tp) for field, tp in fields_of(TrainConfig)}
    with pytest.raises(ConfigError, match=r"lr must be above 0, got 0"):
        check_search(Search(low=0.0, high=0.1), *fields["lr"], "lr")
    with pytest.raises(ConfigError, match="log-scale range must start above 0"):
        check_search(Search(low=0.0, high=0.1, log=True), *fields["weight_decay"], "weight_decay")
    with pytest.raises(ConfigError, match="takes integers"):
        check_search(Search(low=1.5, high=4), *fields["epochs"], "epochs")
    with pytest.raises(ConfigError, match="whole number of steps"):
        check_search(Search(low=2, high=7, step=2), *fields["epochs"], "epochs")
    with pytest.raises(ConfigError, match="a range needs a number setting"):
        check_search(Search(low=0, high=1), *fields["precision"], "precision")
    with pytest.raises(ConfigError, match="must be one of fp32, bf16"):
        check_search(Search(choices=("fp32", "fp16")), *fields["precision"], "precision")
    with pytest.raises(ValueError):
        search_range(1.0, 1.0)
    with pytest.raises(ValueError):
        search_choices()


@pytest.mark.parametrize("model", list_models())
def test_every_models_declared_space_builds_and_its_extremes_go_together(model):
    config = ExperimentConfig(model=model)
    space = SearchSpace.build(config)
    assert {"lr", "embed_dim", "dropout"} <= set(space.dimensions)
    assert set(space.dimensions) <= set(model_class(model).Config.keys()) | set(TrainConfig.keys())


@pytest.mark.parametrize("mto", list_strategies())
def test_every_strategys_declared_settings_join_the_space(mto):
    config = ExperimentConfig(train=TrainConfig(mto=mto))
    space = SearchSpace.build(config)
    own = {field.name for field, _ in fields_of(strategy_class(mto).Config) if meta_of(field).search is not None}
    assert own <= set(space.dimensions)


def _write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_a_space_file_narrows_removes_and_adds_settings(tmp_path):
    config = ExperimentConfig(model="mmoe")
    path = _write(tmp_path, "lr: {low: 1e-4, high: 3.0e-3, log: true}\ntower_dims: null\nbottom_dims: [[32, 16], [64, 32]]\nbatch_size: [256, 512]\n")
    space = SearchSpace.build(config, path)
    assert space.dimensions["lr"].search == Search(low=1e-4, high=3e-3, log=True)  # 1e-4: YAML text, read as a number
    assert "tower_dims" not in space.dimensions
    assert space.dimensions["bottom_dims"].search.choices == ((32, 16), (64, 32))
    assert "batch_size" in space.dimensions and "dropout" in space.dimensions  # added; the declared ones stay
    replaced = SearchSpace.build(config, _write(tmp_path, "replace: true\ndropout: {low: 0.1, high: 0.2}\n"))
    assert list(replaced.dimensions) == ["dropout"]


def test_settings_given_on_the_command_line_stay_fixed_unless_the_file_names_them(tmp_path):
    config = with_changes(ExperimentConfig(model="mmoe"), embed_dim=8, lr=0.01)
    space = SearchSpace.build(config, fixed={"embed_dim", "lr"})
    assert "embed_dim" not in space.dimensions and "lr" not in space.dimensions and "dropout" in space.dimensions
    again = SearchSpace.build(config, _write(tmp_path, "lr: {low: 0.001, high: 0.1, log: true}\n"), fixed={"embed_dim", "lr"})
    assert "lr" in again.dimensions and "embed_dim" not in again.dimensions


def test_a_trial_samples_typed_values():
    config = ExperimentConfig(model="mmoe")
    space = SearchSpace.build(config)
    fixed = {"lr": 0.002, "weight_decay": 1e-6, "embed_dim": 32, "bottom_dims": "256,128", "tower_dims": "64,32", "dropout": 0.25, "expert_num": 6}
    values = space.sample(optuna.trial.FixedTrial(fixed))
    assert values["bottom_dims"] == (256, 128) and values["tower_dims"] == (64, 32) and values["expert_num"] == 6
    built = with_changes(config, **values)
    assert built.model_config.bottom_dims == (256, 128) and built.train.lr == 0.002


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate: {low: 0.001, high: 0.01}\n", r"space.yaml: unknown setting 'learning_rate' for model mmoe with strategy ew; known: replace, .*\blr\b"),
        ("calibrator_weight: {low: 0, high: 1}\n", r"unknown setting 'calibrator_weight' for model mmoe"),  # AITM's, not MMoE's
        ("dropout: {low: 0.0, high: 1.5}\n", r"space.yaml: dropout \(--dropout\) must be below 1, got 1.5"),
        ("expert_num: [0, 4]\n", r"space.yaml: expert_num \(--expert-num\) must be at least 1, got 0"),
        ("lr: {low: 0.01, high: 0.001}\n", r"space.yaml: lr \(--lr\): the range's low must be below its high"),
        ("lr: {low: 0.001, hi: 0.01}\n", r"unknown key 'hi' in a range; a range takes low, high, log, step"),
        ("lr: 0.01\n", r"space.yaml: lr: expected a range \{low: .., high: ..\}, a list of choices, or null"),
        ("- lr\n", r"space.yaml: expected 'setting: range' lines, got list"),
        ("replace: maybe\n", r"replace must be true or false"),
    ],
)
def test_space_file_mistakes_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        SearchSpace.build(ExperimentConfig(model="mmoe"), _write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_extremes_that_cannot_go_together_are_refused_before_any_trial(tmp_path):
    config = ExperimentConfig(model="dselectk")
    # k up to 4 while the expert number may be 2: DSelect-k's own check refuses k > expert_num.
    path = _write(tmp_path, "selected_experts: {low: 1, high: 4}\n")
    with pytest.raises(ConfigError, match=r"cannot go together \(.*expert_num=2.*selected_experts=4.*\): selected_experts .* at most expert_num \(2\)"):
        SearchSpace.build(config, path)
    # The same with the expert number fixed high enough is fine.
    SearchSpace.build(with_changes(config, expert_num=8), path, fixed={"expert_num"})


def test_the_space_survives_the_trip_to_a_worker_process():
    config = ExperimentConfig(model="ple")
    space = SearchSpace.build(config)
    rebuilt = SearchSpace.of(ExperimentConfig.from_dict(config.to_dict()), pickle.loads(pickle.dumps(space.searches)))
    assert rebuilt.searches == space.searches
