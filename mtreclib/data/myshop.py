"""``myshop``: the README's running example, a small shop's logs, generated from a seed.

``write_myshop(folder)`` writes what the README's tour reads: ``dataset.yaml`` (the spec of the
README and docs/dataset-spec.md, verbatim), ``train/day1.parquet`` and ``train/day2.parquet``,
``test.parquet`` (the next day) and ``new_rows.parquet`` (rows to score, without labels).

Rows come in sessions of one user. The columns are those of the spec: string user ids, integer
item ids, a shop and city with missing values, a list of tags per item, a price and an age with
missing values, and three labels, click, cart and buy (cart and buy only on clicked rows). The
labels depend on the features through a fixed function, so a model has something to learn:

- each user clicks more or less, each item is more or less attractive, a dear item less so;
- user and item each have a latent taste vector; their dot product is the affinity, and an item
  whose tags hold the user's favourite tag is more attractive; city and age shift the click rate;
- cart and buy, given a click, read the item and the affinity, buy the price too (cheap items
  are bought).

The default size (4,560 training rows, 456 of them held out for validation) trains in seconds and
leaves 4,104 training rows, a whole number of batches of 256, 512, 1024 or 2048 plus 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtreclib.core.atomic import atomic_output
from mtreclib.core.errors import UserError

# The README's spec (README.md, "Your own data"; docs/dataset-spec.md), written as it is there.
SPEC = """\
# data/myshop/dataset.yaml
format: parquet
train: train/*.parquet
test: test.parquet
categorical: [user_id, item_id, shop_id, city]        # strings or integers
multi_valued:
  - {name: tags, pooling: mean, max_len: 20}           # a list column
numerical:
  - {name: price, transform: log1p, fill: 0}
  - {name: age, fill: -1}
labels: [click, cart, buy]
implies: {cart: click, buy: click}                     # a positive buy is also a click
group: session_id
"""

CITIES = ("Paris", "Lyon", "Nice", "Lille", "Nantes")
CITY_EFFECT = (0.2, 0.0, -0.2, 0.1, -0.1)
TAGS = 30


@dataclass(frozen=True)
class MyShopConfig:
    """How many rows, from which seed.

    Attributes:
        train_rows: rows of the two training files together (the first 60% in day1).
        test_rows: rows of test.parquet.
        new_rows: rows of new_rows.parquet (no labels).
        users, items: how many of each; items have ids 100, 101, ...
        seed: the data's seed.
    """

    train_rows: int = 4_560
    test_rows: int = 1_000
    new_rows: int = 200
    users: int = 300
    items: int = 300
    seed: int = 0


class _Shop:
    """The fixed world the rows are drawn from: users, items and their tastes."""

    def __init__(self, config: MyShopConfig, rng: np.random.Generator):
        self.config = config
        self.user_bias = rng.normal(0.0, 0.6, config.users)  # how much each user clicks
        self.item_bias = rng.normal(0.0, 1.0, config.items)  # how attractive each item is
        self.user_taste = rng.normal(0.0, 1.0, (config.users, 4))
        self.item_taste = rng.normal(0.0, 1.0, (config.items, 4))
        self.user_city = rng.integers(0, len(CITIES), config.users)
        self.user_age = rng.integers(18, 70, config.users)
        self.user_tag = rng.integers(0, TAGS, config.users)  # each user's favourite tag
        self.item_shop = rng.integers(0, 20, config.items)
        self.item_price = rng.gamma(2.0, 15.0, config.items)
        self.item_tags = [rng.choice(TAGS, size=rng.integers(1, 6), replace=False) for _ in range(config.items)]

    def rows(self, n: int, rng: np.random.Generator, first_session: int, labels: bool = True) -> dict[str, list]:
        """``n`` impressions in sessions of 3 to 8 rows, each session one user's, in log order."""
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(rng.integers(3, 9)))
        session = np.repeat(np.arange(len(sizes)), sizes)[:n]
        user = rng.integers(0, self.config.users, len(sizes))[session]  # (n,)
        item = rng.integers(0, self.config.items, n)  # (n,)
        affinity = (self.user_taste[user] * self.item_taste[item]).sum(axis=1) / 4.0  # (n,)
        likes_tag = np.array([self.user_tag[u] in self.item_tags[i] for u, i in zip(user, item)])
        dear = np.log1p(self.item_price[item]) - 3.0  # (n,) about 0 at the median price
        age = self.user_age[user]
        click_logit = (
            -1.3 + self.user_bias[user] + self.item_bias[item] + affinity + 0.8 * likes_tag - 0.8 * dear
            + np.asarray(CITY_EFFECT)[self.user_city[user]] + 0.02 * (40 - age)
        )  # fmt: skip
        click = rng.random(n) < 1.0 / (1.0 + np.exp(-click_logit))
        cart = click & (rng.random(n) < 1.0 / (1.0 + np.exp(-(-0.8 + self.item_bias[item] + affinity))))
        buy = click & (rng.random(n) < 1.0 / (1.0 + np.exp(-(-1.2 + self.item_bias[item] + affinity - 1.2 * dear))))
        missing = rng.random((3, n)) < 0.08  # shop, price and age unknown on some rows
        columns: dict[str, list] = {
            "session_id": [f"sess{first_session + s}" for s in session],
            "user_id": [f"u{u}" for u in user],
            "item_id": [100 + int(i) for i in item],
            "shop_id": [None if gone else f"s{self.item_shop[i]}" for i, gone in zip(item, missing[0])],
            "city": [CITIES[self.user_city[u]] for u in user],
            "tags": [[f"t{t}" for t in self.item_tags[i]] for i in item],
            "price": [None if gone else round(float(p), 2) for p, gone in zip(self.item_price[item], missing[1])],
            "age": [None if gone else int(a) for a, gone in zip(age, missing[2])],
        }
        if labels:
            columns.update(click=click.astype(int).tolist(), cart=cart.astype(int).tolist(), buy=buy.astype(int).tolist())
        return columns


SCHEMA = {
    "session_id": pa.string(), "user_id": pa.string(), "item_id": pa.int64(), "shop_id": pa.string(), "city": pa.string(),
    "tags": pa.list_(pa.string()), "price": pa.float64(), "age": pa.int64(), "click": pa.int8(), "cart": pa.int8(), "buy": pa.int8(),
}  # fmt: skip


def _write(path: Path, columns: dict[str, list]) -> None:
    table = pa.table({name: pa.array(values, type=SCHEMA[name]) for name, values in columns.items()})
    with atomic_output(path) as temporary:
        pq.write_table(table, temporary, row_group_size=1024)


def write_myshop(folder: str | Path, config: MyShopConfig | None = None) -> Path:
    """Write the myshop dataset into ``folder`` (created); the same files for the same ``config``.

    A folder holding another dataset's spec is refused: its files would be replaced.
    """
    folder, config = Path(folder), config or MyShopConfig()
    spec = folder / "dataset.yaml"
    if spec.is_file() and spec.read_text() != SPEC:
        raise UserError(f"{spec}: another dataset's spec is there; write myshop to another folder (mtrec generate --name)")
    rng = np.random.default_rng(config.seed)
    shop = _Shop(config, rng)
    day1 = int(config.train_rows * 0.6)
    parts = {
        "train/day1.parquet": (day1, True),
        "train/day2.parquet": (config.train_rows - day1, True),
        "test.parquet": (config.test_rows, True),
        "new_rows.parquet": (config.new_rows, False),
    }
    sessions = 0
    for name, (n, labels) in parts.items():
        rows = shop.rows(n, rng, sessions, labels)
        sessions = int(rows["session_id"][-1][4:]) + 1 if n else sessions
        _write(folder / name, rows)
    with atomic_output(folder / "dataset.yaml") as temporary:
        temporary.write_text(SPEC)
    return folder
