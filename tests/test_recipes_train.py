"""Every public dataset's recipe, from generator-made raw downloads, preprocessed and trained by every
model through the same spec path; a model that cannot use a dataset refuses it in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import small_experiment
from generators.aliccp import AliCCPConfig, raw_texts
from generators.aliccp import write_download as aliccp_download
from generators.aliexpress import RawConfig
from generators.aliexpress import generate_download as aliexpress_download
from generators.census import CensusConfig
from generators.census import generate_download as census_download
from generators.kuairand import KuaiRandConfig
from generators.kuairand import generate_download as kuairand_download
from generators.tenrec import TenrecConfig, csv_text
from generators.tenrec import write_download as tenrec_download

from mtreclib.cli import main
from mtreclib.core.errors import UserError
from mtreclib.data.datasets import load_dataset
from mtreclib.models import list_models
from mtreclib.training.experiment import run_experiment

DOWNLOADS = {
    "AliExpress_NL": lambda folder: aliexpress_download(folder, RawConfig(country="NL", train_items=900, test_items=300)),
    "CensusIncome": lambda folder: census_download(folder, CensusConfig(train_rows=900, test_rows=400)),
    "KuaiRandPure": lambda folder: kuairand_download(folder, KuaiRandConfig()),
    "AliCCP": lambda folder: aliccp_download(folder, raw_texts(AliCCPConfig(train_samples=600, test_samples=200, common_rows=40, seed=1))),
    # ctr_data_1M.csv: the file with the history bag, on top of what QK-video.csv has
    "Tenrec": lambda folder: tenrec_download(folder, {"ctr_data_1M.csv": csv_text(TenrecConfig(users=60, seed=2), "ctr_data_1M.csv")}),
}
FLAGS = {"Tenrec": ["--file", "ctr_data_1M.csv"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("downloads")
    for name, download in DOWNLOADS.items():
        download(folder)
        assert main(["preprocess", "--dataset", name, "--data-dir", str(folder), "--no-progress", *FLAGS.get(name, [])]) == 0
    return folder


@pytest.mark.parametrize("name", list(DOWNLOADS))
def test_every_model_trains_on_each_recipe_or_refuses_in_one_line(data_dir, name):
    dataset = load_dataset(name, data_dir, progress=False)
    if name == "KuaiRandPure":
        assert len(dataset.schema.task_names) >= 6 and dataset.schema.bag_num == 1  # many feedback signals, the tag list
    if name == "AliCCP":
        assert dataset.schema.task_implies == ("", "click") and dataset.schema.bag_num == 9 and dataset.train.bags[0].rows is not None
    if name == "Tenrec":
        assert list(dataset.schema.task_names) == ["click", "follow", "like", "share", "watching_times"] and dataset.schema.bag_num == 1
    trained, refused = [], {}
    for model in list_models():
        config = small_experiment(model, dataset=name, data_dir=str(data_dir), epochs=1, max_steps=2, batch_size=64, patience=0)
        try:
            record = run_experiment(config, dataset=dataset, announce=False)
        except UserError as error:
            refused[model] = str(error)
            continue
        assert record.steps == 2 and all(0 <= m.auc <= 1 or m.auc != m.auc for m in record.tasks.values())
        trained.append(model)
    for model, message in refused.items():
        # Only a model that needs what the data lacks may refuse, and it says what that is.
        assert "\n" not in message and ("implies" in message or "role" in message or "at least" in message), (model, message)
    assert {"singletask", "sharedbottom", "omoe", "mmoe", "ple", "aitm", "metaheac"} <= set(trained)


def test_the_cli_trains_a_recipe_dataset_by_name(data_dir, capsys):
    assert main(["train", "--dataset", "CensusIncome", "--data-dir", str(data_dir), "--model", "mmoe", "--embed-dim", "4",
                 "--batch-size", "64", "--max-steps", "3", "--no-save", "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "income" in out and "never_married" in out and "education" not in out  # the paper's first group by default
    assert main(["train", "--dataset", "CensusIncome", "--data-dir", str(data_dir), "--tasks", "education,never_married",
                 "--embed-dim", "4", "--batch-size", "64", "--max-steps", "3", "--no-save", "--no-progress"]) == 0  # fmt: skip
    assert "education" in capsys.readouterr().out
