"""A built-in dataset shaped like AliExpress, generated deterministically from a seed.

The generator writes the processed layout's columns. Rows come in search pages: the first nine
categorical fields and the first 23 numerical features describe the user and page (shared by
the rows of a page, as ``user_*`` columns are in the real data), the rest describe the item.

Labels depend only on the observed features, through a known function, so each row's true
click and click-and-convert probabilities are kept and the best metrics any model can reach
(the oracle) are reported next to the model's:

- every categorical id has a latent effect vector; the numerical features enter through a
  fixed projection; their sum is a latent state ``z`` of ``latent_dim`` dimensions;
- each task's logit is a linear read-out of ``z`` plus one of pairwise interactions
  ``tanh(z_i z_j)`` (``nonlinear_share`` of the variance, so that an MLP has something to
  learn); the click and the conversion-given-click read-outs have cosine ``task_correlation``
  (related but different tasks);
- scale and biases are fixed on a calibration sample so that the logits' spread is ``signal``
  and the click and click-and-convert rates hit their targets.

The default preset was tuned so that the default ``mtrec train`` (MMoE, embed 128, batch 2048,
early stopping) gets within a few hundredths of the oracle's AUC on both tasks within a few
epochs: a short run on a laptop-class CPU shows what a model learns, not only that it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtreclib.data.table import MultiTaskTable

# Mostly small vocabularies, a few in the hundreds or thousands, as in AliExpress.
FIELD_DIMS = (4, 3, 7, 3, 21, 10, 54, 8, 8, 3, 12, 40, 6, 150, 900, 3000)
USER_FIELDS = 9
NUMERICAL_NUM = 63
USER_NUMERICAL = 23


@dataclass(frozen=True)
class SyntheticConfig:
    """How to generate a synthetic dataset.

    Attributes:
        train_rows, test_rows: rows of each split (whole pages, so within a page's size).
        ctr: target click rate over all rows.
        ctcvr: target click-and-convert rate over all rows.
        seed: the data's own seed (not the training seed: every run sees the same data).
        latent_dim: size of the latent state the labels depend on.
        signal: scale of the label logits' variation; higher means easier tasks.
        task_correlation: cosine between the click and conversion directions.
        nonlinear_share: share of the logits' variance that comes from pairwise interactions.
        big_field_scale: spread of the id effects of fields with more than 60 ids.
        page_size: mean number of items per search page.
    """

    train_rows: int = 100_000
    test_rows: int = 40_000
    ctr: float = 0.2
    ctcvr: float = 0.05
    seed: int = 0
    latent_dim: int = 4
    signal: float = 1.6
    task_correlation: float = 0.7
    nonlinear_share: float = 0.25
    big_field_scale: float = 0.35
    page_size: float = 12.0


PRESETS: dict[str, SyntheticConfig] = {
    # Dense labels: a short run gives stable AUCs for both tasks.
    "synthetic": SyntheticConfig(),
    # AliExpress-like rates (CTR about 2%, CTCVR about 0.07%): a realistic, much harder setting.
    "synthetic_realistic": SyntheticConfig(train_rows=400_000, test_rows=100_000, ctr=0.02, ctcvr=0.0007),
}


@dataclass(frozen=True)
class SyntheticData:
    """Generated splits, with the search ids of their rows."""

    train: MultiTaskTable
    test: MultiTaskTable
    train_search_id: np.ndarray
    test_search_id: np.ndarray


class _World:
    """The generating process: fixed parameters drawn from the seed.

    ``probabilities`` is a pure function of a row's observed features; its normalisation and
    biases are fixed on a calibration sample, so the function does not depend on how many rows
    are drawn.
    """

    CALIBRATION_ROWS = 100_000

    def __init__(self, config: SyntheticConfig, rng: np.random.Generator):
        k = config.latent_dim
        self.config = config
        # Popularity of ids: Zipf-like, rank 0 most frequent.
        self.id_probabilities = [1.0 / np.arange(1, d + 1) ** 1.1 for d in FIELD_DIMS]
        self.id_probabilities = [p / p.sum() for p in self.id_probabilities]
        # Small fields carry more signal per id than huge ones, whose tails are rarely seen.
        scales = [0.7 if d <= 60 else config.big_field_scale for d in FIELD_DIMS]
        self.effects = [rng.normal(0.0, s, size=(d, k)) for d, s in zip(FIELD_DIMS, scales)]
        # Numerical features: zero-inflated views of page and item latents.
        self.zero_rate = rng.uniform(0.05, 0.9, size=NUMERICAL_NUM)
        self.loadings = rng.normal(0.0, 1.0, size=(NUMERICAL_NUM, k)) / np.sqrt(k)
        self.projection = rng.normal(0.0, 1.0, size=(NUMERICAL_NUM, k)) * 0.6
        self.pairs = rng.permutation(k)
        # Per part (linear, interactions), a click and a conversion direction with cosine
        # task_correlation: related but different tasks.
        self.linear_directions = _correlated_directions(k, config.task_correlation, rng)  # (k, 2)
        self.interaction_directions = _correlated_directions(k, config.task_correlation, rng)  # (k, 2)
        # Calibration: centre and scale the parts, then solve the biases for the target rates.
        _, categorical, numerical = self.draw(self.CALIBRATION_ROWS, np.random.default_rng([config.seed, 1]), 0)
        z = self._latent(categorical, numerical)
        self.z_mean, self.z_std = z.mean(axis=0), z.std(axis=0)
        interactions = self._interactions(z)
        self.i_mean, self.i_std = interactions.mean(axis=0), interactions.std(axis=0)
        self.bias = np.zeros(2)
        self.scale = np.ones(2)
        raw = self._logits(categorical, numerical)
        self.scale = config.signal / raw.std(axis=0)
        logits = raw * self.scale
        click_bias = _solve_bias(logits[:, 0], config.ctr)
        cvr_bias = _solve_bias(logits[:, 1], config.ctcvr, other=_sigmoid(logits[:, 0] + click_bias))
        self.bias = np.array([click_bias, cvr_bias])

    def draw(self, n: int, rng: np.random.Generator, first_page: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` rows of (search ids (N,), categorical ids (N, 16) int32, numerical (N, 63) float32)."""
        k = self.config.latent_dim
        page_sizes = 1 + rng.poisson(self.config.page_size - 1, size=int(1.5 * n / self.config.page_size) + 16)
        while page_sizes.sum() < n:  # almost never: 1.5 times the expected number of pages
            page_sizes = np.concatenate([page_sizes, 1 + rng.poisson(self.config.page_size - 1, size=len(page_sizes))])
        page_of_row = np.repeat(np.arange(len(page_sizes)), page_sizes)[:n]
        pages = page_of_row[-1] + 1
        categorical = np.empty((n, len(FIELD_DIMS)), dtype=np.int32)
        for j, (dim, p) in enumerate(zip(FIELD_DIMS, self.id_probabilities)):
            if j < USER_FIELDS:
                categorical[:, j] = rng.choice(dim, size=pages, p=p)[page_of_row]
            else:
                categorical[:, j] = rng.choice(dim, size=n, p=p)
        page_latent = rng.normal(size=(pages, k))[page_of_row]
        item_latent = page_latent + rng.normal(size=(n, k))
        latent = np.concatenate(
            [page_latent @ self.loadings[:USER_NUMERICAL].T, item_latent @ self.loadings[USER_NUMERICAL:].T], axis=1
        )
        numerical = _sigmoid(latent + 0.3 * rng.normal(size=latent.shape))
        numerical[rng.random(size=numerical.shape) < self.zero_rate] = 0.0
        return first_page + page_of_row, categorical, numerical.astype(np.float32)

    def _latent(self, categorical: np.ndarray, numerical: np.ndarray) -> np.ndarray:
        z = numerical.astype(np.float64) @ self.projection  # (N, k)
        for j, effects in enumerate(self.effects):
            z += effects[categorical[:, j]]
        return z

    def _interactions(self, z: np.ndarray) -> np.ndarray:
        centred = (z - self.z_mean) / self.z_std
        return np.tanh(centred * centred[:, self.pairs])

    def _logits(self, categorical: np.ndarray, numerical: np.ndarray) -> np.ndarray:
        """(N, 2) logits of click and of conversion given click."""
        z = self._latent(categorical, numerical)
        share = self.config.nonlinear_share
        linear_part = (z - self.z_mean) / self.z_std
        nonlinear_part = (self._interactions(z) - self.i_mean) / self.i_std
        raw = np.sqrt(1 - share) * linear_part @ self.linear_directions + np.sqrt(share) * nonlinear_part @ self.interaction_directions
        return raw * self.scale + self.bias  # (N, 2)

    def probabilities(self, categorical: np.ndarray, numerical: np.ndarray) -> np.ndarray:
        """(N, 2) true probabilities of click and of click-and-convert."""
        p = _sigmoid(self._logits(categorical, numerical))
        return np.stack([p[:, 0], p[:, 0] * p[:, 1]], axis=1)


def _correlated_directions(k: int, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Two unit vectors of size k with the given cosine, as the columns of a (k, 2) array."""
    first, other = rng.normal(size=k), rng.normal(size=k)
    first /= np.linalg.norm(first)
    other -= other @ first * first
    other /= np.linalg.norm(other)
    return np.stack([first, correlation * first + np.sqrt(1 - correlation**2) * other], axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_bias(logits: np.ndarray, target: float, other: np.ndarray | None = None) -> float:
    """The bias b with mean(sigmoid(logits + b) * other) = target, by bisection."""
    other = np.ones_like(logits) if other is None else other
    low, high = -30.0, 30.0
    for _ in range(80):
        mid = (low + high) / 2
        if (_sigmoid(logits + mid) * other).mean() < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticData:
    """Generate train and test splits; the same config always gives the same rows."""
    if not 0 < config.ctcvr < config.ctr < 1:
        raise ValueError(f"expected 0 < ctcvr < ctr < 1, got ctr={config.ctr}, ctcvr={config.ctcvr}")
    world = _World(config, np.random.default_rng([config.seed, 0]))
    rng = np.random.default_rng([config.seed, 2])

    def split(n: int, first_page: int) -> tuple[MultiTaskTable, np.ndarray]:
        search_id, categorical, numerical = world.draw(n, rng, first_page)
        probabilities = world.probabilities(categorical, numerical)
        click = rng.random(n) < probabilities[:, 0]
        # P(convert | click) = p_ctcvr / p_click: conversion only on clicked rows.
        conversion = click & (rng.random(n) * probabilities[:, 0] < probabilities[:, 1])
        labels = np.stack([click, conversion], axis=1).astype(np.uint8)
        return MultiTaskTable(categorical, numerical, labels, probabilities), search_id

    train, train_search_id = split(config.train_rows, 0)
    test, test_search_id = split(config.test_rows, int(train_search_id[-1]) + 1)
    return SyntheticData(train, test, train_search_id, test_search_id)
