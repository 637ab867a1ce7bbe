"""Shared fixtures: small models, a small synthetic dataset, the real AliExpress sample."""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.schema import Bag, BagField, Batch, FeatureSchema
from mtreclib.data import synthetic
from mtreclib.data.datasets import Dataset, generated_dataset, load_dataset
from mtreclib.data.table import MultiTaskTable
from mtreclib.models import create_model, model_kwargs

# Real AliExpress rows (see tests/data/README.md), kept in the repository.
ALIEXPRESS_SAMPLE = Path(__file__).resolve().parent / "data" / "aliexpress"

SMALL_CONFIG = {"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8, 4), "dropout": 0.0, "expert_num": 4}
# Conversion implies click, as random_batch draws it (ESMM-style models need the relation); roles as a
# dataset spec's `role:` keys give them (PEPNet's gates read the user and item fields).
SMALL_SCHEMA = FeatureSchema(
    field_dims=(5, 3, 11, 2), numerical_num=6, task_implies=("", "click"), field_roles=("user", None, "item", "user")
)


def small_model(name: str, schema: FeatureSchema = SMALL_SCHEMA, **overrides) -> torch.nn.Module:
    """Model ``name`` at a size that trains in milliseconds."""
    return create_model(name, schema, **model_kwargs(name, {**SMALL_CONFIG, **overrides}))


def small_experiment(model: str = "mmoe", **settings) -> ExperimentConfig:
    """A quiet run of a small model on the CPU that keeps no files; ``settings`` by flat key."""
    base = {**SMALL_CONFIG, "batch_size": 256, "save": False, "device": "cpu", "progress": False}
    return with_changes(ExperimentConfig(), model=model, **{**base, **settings})


# Two multi-valued fields (one weighted), no numerical features: the general schema's other side.
BAG_SCHEMA = FeatureSchema(
    field_dims=(5, 60, 3),
    numerical_num=0,
    task_names=("click", "cart", "buy"),
    field_roles=("user", "item", None),
    bags=(BagField("tags", 30, "mean", weighted=True, role="item"), BagField("history", 200, "sum", role="user")),
    task_implies=("", "click", "click"),
)


# Per-field embeddings: fields of their own widths (4, 12, the default 8 of SMALL_CONFIG, 16) and a
# history bag that shares the item table (one vocabulary, width 12).
WIDTHS_SCHEMA = FeatureSchema(
    field_dims=(5, 60, 3),
    numerical_num=4,
    task_names=("click", "cart", "buy"),
    field_names=("user", "item", "city"),
    field_roles=("user", "item", None),
    bags=(BagField("tags", 30, "mean", weighted=True, role="item", embedding_dim=16), BagField("history", 60, "sum", role="user", shared_with="item")),
    task_implies=("", "click", "click"),
    field_embedding_dims=(4, 12, None),
)


def random_batch(schema: FeatureSchema = SMALL_SCHEMA, size: int = 64, seed: int = 0) -> Batch:
    """A batch with ids inside the schema's vocabularies, 0 to 4 values per multi-valued field and
    row, and labels with both classes where later tasks are positive only where the first is."""
    generator = torch.Generator().manual_seed(seed)
    categorical = torch.zeros(size, schema.field_num, dtype=torch.long)
    for f, dim in enumerate(schema.field_dims):
        categorical[:, f] = torch.randint(0, dim, (size,), generator=generator)
    numerical = torch.rand(size, schema.numerical_num, generator=generator)
    bags = []
    for bag in schema.bags:
        lengths = torch.randint(0, 5, (size,), generator=generator)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = torch.randint(0, bag.vocab_size, (int(offsets[-1]),), generator=generator)
        weights = torch.rand(len(values), generator=generator) + 0.5 if bag.weighted else None
        bags.append(Bag(values, offsets, weights))
    click = (torch.rand(size, generator=generator) < 0.5).float()
    others = [click * (torch.rand(size, generator=generator) < 0.5).float() for _ in range(max(schema.task_num - 1, 0))]
    labels = torch.stack([click, *others], dim=1)[:, : schema.task_num]
    return Batch(categorical, numerical, labels, tuple(bags))


def random_table(rows: int, seed: int) -> MultiTaskTable:
    """``random_batch``'s rows as a table, as the trainer reads them."""
    batch = random_batch(size=rows, seed=seed)
    return MultiTaskTable(batch.categorical.int().numpy(), batch.numerical.numpy(), batch.labels.to(torch.uint8).numpy())


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Every BatchNorm of ``model`` away from its identity initialisation (scale, shift and running
    statistics), so that a computation by hand checks it too."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)


@pytest.fixture()
def one_thread():
    """Tiny models: a second thread only adds synchronisation (and contention on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A TCP port free on this machine now, for a process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> Dataset:
    """The built-in generator at 3,000 training rows, through its spec and cache as ``mtrec train`` reads it."""
    config = replace(synthetic.PRESETS["synthetic"], train_rows=3000, test_rows=1000)
    return generated_dataset("synthetic", config, tmp_path_factory.mktemp("data"), progress=False)


@pytest.fixture()
def aliexpress_dir(tmp_path: Path) -> Path:
    """A data dir holding the real AliExpress sample as dataset ``AliExpress_NL``."""
    assert ALIEXPRESS_SAMPLE.is_dir(), f"real sample missing: {ALIEXPRESS_SAMPLE}"
    shutil.copytree(ALIEXPRESS_SAMPLE, tmp_path / "AliExpress_NL")
    return tmp_path


@pytest.fixture()
def aliexpress_sample(aliexpress_dir: Path) -> Dataset:
    return load_dataset("AliExpress_NL", aliexpress_dir)


@dataclass(frozen=True)
class ShopRun:
    """A trained run on the documented ``myshop`` dataset (docs/dataset-spec.md): ``root`` holds
    ``data/myshop`` and ``chkpt``; ``run`` is the run folder; ``results`` the run's --results."""

    root: Path
    run: Path
    results: Path


@pytest.fixture(scope="session")
def shop_run(tmp_path_factory) -> ShopRun:
    """MMoE trained by ``mtrec train`` on the Parquet dataset with string ids, missing values and
    a multi-valued field, once per session: what predict, evaluate and export are tested on."""
    from test_spec import write_shop

    from mtreclib.cli import main

    root = tmp_path_factory.mktemp("shop")
    write_shop(root / "data" / "myshop")
    results = root / "train.json"
    status = main(
        ["train", "--model", "mmoe", "--dataset", "myshop", "--data-dir", str(root / "data"), "--save-dir", str(root / "chkpt"),
         "--epochs", "2", "--embed-dim", "4", "--expert-num", "2", "--bottom-dims", "32,16", "--tower-dims", "8", "--batch-size", "64",
         "--results", str(results), "--no-progress"]
    )  # fmt: skip
    assert status == 0
    return ShopRun(root, root / "chkpt" / "myshop_mmoe" / "run-1", results)
