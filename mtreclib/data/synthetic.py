"""A built-in dataset shaped like AliExpress, generated deterministically from a seed.

The generator writes the processed layout's columns. Rows come in search pages: the first nine
categorical fields and the first 23 numerical features describe the user and page (shared by
the rows of a page, as ``user_*`` columns are in the real data), the rest describe the item.

Labels depend only on the observed features, through a known function, so each row's true
click and click-and-convert probabilities are kept and the best metrics any model can reach
(the oracle) are reported next to the model's:

- every categorical id has a latent effect vector; the numerical features enter through a
  fixed projection; their sum is a latent state ``z`` of ``latent_dim`` dimensions;
- click logit = ``w_click . h(z)``, conversion-given-click logit = ``w_cvr . h(z)``, where ``h``
  adds pairwise interactions to ``z`` (so that an MLP has something to learn) and ``w_cvr``
  shares ``task_correlation`` of its direction with ``w_click`` (related but different tasks);
- biases are solved for so that the click rate and the click-and-convert rate hit their targets.
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
        page_size: mean number of items per search page.
    """

    train_rows: int = 120_000
    test_rows: int = 40_000
    ctr: float = 0.15
    ctcvr: float = 0.03
    seed: int = 0
    latent_dim: int = 8
    signal: float = 1.6
    task_correlation: float = 0.5
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
    """The fixed parameters of the generating process, drawn from the seed."""

    def __init__(self, config: SyntheticConfig, rng: np.random.Generator):
        k = config.latent_dim
        # Popularity of ids: Zipf-like, rank 0 most frequent.
        self.id_probabilities = [1.0 / np.arange(1, d + 1) ** 1.1 for d in FIELD_DIMS]
        self.id_probabilities = [p / p.sum() for p in self.id_probabilities]
        # Small fields carry more signal per id than huge ones, whose tails are rarely seen.
        scales = [0.7 if d <= 60 else 0.35 for d in FIELD_DIMS]
        self.effects = [rng.normal(0.0, s, size=(d, k)) for d, s in zip(FIELD_DIMS, scales)]
        # Numerical features: zero-inflated views of page and item latents.
        self.zero_rate = rng.uniform(0.05, 0.9, size=NUMERICAL_NUM)
        self.loadings = rng.normal(0.0, 1.0, size=(NUMERICAL_NUM, k)) / np.sqrt(k)
        self.projection = rng.normal(0.0, 1.0, size=(NUMERICAL_NUM, k)) * 0.6
        self.pairs = rng.permutation(k)
        w_click = rng.normal(size=2 * k)
        w_other = rng.normal(size=2 * k)
        w_click /= np.linalg.norm(w_click)
        w_other -= w_other @ w_click * w_click
        w_other /= np.linalg.norm(w_other)
        rho = config.task_correlation
        self.w_click = w_click
        self.w_cvr = rho * w_click + np.sqrt(1 - rho**2) * w_other
        self.signal = config.signal

    def rows(self, n: int, config: SyntheticConfig, rng: np.random.Generator, first_page: int):
        """Draw ``n`` rows: search ids, ids, features and the two logits before biases."""
        k = config.latent_dim
        page_sizes = 1 + rng.poisson(config.page_size - 1, size=n)  # more pages than needed
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
            [page_latent @ self.loadings[:USER_NUMERICAL].T, item_latent @ self.loadings[USER_NUMERICAL:].T],
            axis=1,
        )
        numerical = 1.0 / (1.0 + np.exp(-(latent + 0.3 * rng.normal(size=latent.shape))))
        numerical[rng.random(size=numerical.shape) < self.zero_rate] = 0.0
        numerical = numerical.astype(np.float32)
        z = numerical.astype(np.float64) @ self.projection
        for j, effects in enumerate(self.effects):
            z += effects[categorical[:, j]]
        z -= z.mean(axis=0)
        h = np.concatenate([z, np.tanh(z * z[:, self.pairs])], axis=1)  # (N, 2k)
        search_id = first_page + page_of_row
        return search_id, categorical, numerical, h @ self.w_click, h @ self.w_cvr


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
    rng = np.random.default_rng(config.seed)
    world = _World(config, rng)
    train = world.rows(config.train_rows, config, rng, first_page=0)
    test = world.rows(config.test_rows, config, rng, first_page=int(train[0][-1]) + 1)
    # Normalise the logits' spread and solve the biases on the training rows; the test split
    # comes from the same process with the same parameters.
    click_std, cvr_std = train[3].std(), train[4].std()
    click_train = world.signal * train[3] / click_std
    cvr_train = world.signal * train[4] / cvr_std
    click_bias = _solve_bias(click_train, config.ctr)
    cvr_bias = _solve_bias(cvr_train, config.ctcvr, other=_sigmoid(click_train + click_bias))

    def finish(rows) -> tuple[MultiTaskTable, np.ndarray]:
        search_id, categorical, numerical, click_logit, cvr_logit = rows
        p_click = _sigmoid(world.signal * click_logit / click_std + click_bias)
        p_cvr = _sigmoid(world.signal * cvr_logit / cvr_std + cvr_bias)
        click = rng.random(len(p_click)) < p_click
        conversion = click & (rng.random(len(p_click)) < p_cvr)
        table = MultiTaskTable(
            categorical=categorical,
            numerical=numerical,
            labels=np.stack([click, conversion], axis=1).astype(np.uint8),
            probabilities=np.stack([p_click, p_click * p_cvr], axis=1),
        )
        return table, search_id

    train_table, train_search_id = finish(train)
    test_table, test_search_id = finish(test)
    return SyntheticData(train_table, test_table, train_search_id, test_search_id)
