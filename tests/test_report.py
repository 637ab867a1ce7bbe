"""``mtrec report``: tables and plots from run files; the statistics behind the marks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread
from scipy import stats as scipy_stats

from mtreclib.cli import main
from mtreclib.comparison.plots import changes_weights, curves_figure, per_epoch, row_styles, valid_auc, weights_figure
from mtreclib.comparison.runs import load_runs
from mtreclib.comparison.stats import Spread, indistinguishable, spread, welch_p_value
from mtreclib.comparison.summary import build_tables
from mtreclib.comparison.table import decimals
from mtreclib.models import list_models
from mtreclib.runs.record import EpochRecord, Metrics, RunRecord

# Three made-up models on one dataset, per seed: "good" is best, "noisy" overlaps it, "weak" is far below.
CLICK_AUC = {"good": [0.800, 0.801, 0.802], "noisy": [0.780, 0.800, 0.815], "weak": [0.700, 0.701, 0.702]}
CLICK_LOGLOSS = {"good": [0.300, 0.301, 0.302], "noisy": [0.280, 0.300, 0.305], "weak": [0.350, 0.351, 0.349]}


def fake_run(model: str, seed: int, *, lr: float = 0.001, mto: str = "ew", weights: tuple[float, float] = (1.0, 1.0)) -> dict:
    """A run result in the layout ``RunRecord.write`` writes, with the metrics above."""
    auc, logloss = CLICK_AUC[model][seed], CLICK_LOGLOSS[model][seed]
    return {
        "schema_version": 1,
        "model": model,
        "dataset": "made_up",
        "seed": seed,
        "tasks": {"click": {"auc": auc, "logloss": logloss}, "conversion": {"auc": auc - 0.1, "logloss": logloss / 10}},
        "oracle": {"click": {"auc": 0.85, "logloss": 0.28}, "conversion": {"auc": 0.9, "logloss": 0.02}},
        "train_samples_per_sec": 1000.0 + seed,
        "train_seconds": 10.0,
        "epochs_run": 2,
        "best_epoch": 2,
        "parameters": 1234,
        "history": [
            {
                "epoch": e,
                "steps": 4 * e,
                "train_seconds": 5.0,
                "task_weights": {"click": weights[0] ** e, "conversion": weights[1]},  # equal weighting: 1 each
                "valid": {"click": {"auc": auc - 0.01 / e, "logloss": logloss}, "conversion": {"auc": auc, "logloss": logloss}},
                "complete": True,
            }
            for e in (1, 2)
        ],
        "device": "cpu",
        "config": {"model": model, "data": {"dataset": "made_up"}, "train": {"seed": seed, "lr": lr, "mto": mto, "progress": False}},
    }


@pytest.fixture()
def made_up_runs(tmp_path) -> Path:
    runs = tmp_path / "runs"
    for model in CLICK_AUC:
        for seed in range(3):
            path = runs / "made_up" / model / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fake_run(model, seed)))
    return runs


def markdown_row(text: str, model: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {model} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_welch_p_value_matches_the_textbook_formula():
    a, b = np.array(CLICK_AUC["good"]), np.array(CLICK_AUC["noisy"])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    expected = 2 * scipy_stats.t.sf(abs(t), df)
    assert welch_p_value(spread(a), spread(b)) == pytest.approx(expected, rel=1e-9)


def test_indistinguishable_needs_two_seeds_and_handles_runs_that_never_vary():
    good, noisy, weak = (spread(CLICK_AUC[m]) for m in ("good", "noisy", "weak"))
    assert indistinguishable(noisy, good) and not indistinguishable(weak, good)
    assert not indistinguishable(Spread((0.8,)), good)  # one seed: no test, no claim
    assert math.isnan(welch_p_value(Spread((0.8,)), good))
    assert indistinguishable(Spread((0.7, 0.7)), Spread((0.7, 0.7)))
    assert not indistinguishable(Spread((0.7, 0.7)), Spread((0.8, 0.8)))
    assert math.isnan(Spread((0.7,)).std) and spread([0.5, None, 0.7]).values == (0.5, 0.7)


def test_log_loss_keeps_four_significant_digits_like_the_original():
    assert f"{0.1085:.{decimals('logloss', 0.1085)}f}" == "0.1085"
    assert f"{0.00609:.{decimals('logloss', 0.00609)}f}" == "0.006090"
    assert decimals("auc", 0.00609) == 4


def test_learning_curve_averages_over_the_seeds_that_reached_each_epoch():
    def epoch(number: int, auc: float) -> EpochRecord:
        return EpochRecord(number, valid={"click": Metrics(auc, 0.5)})

    histories = (
        (epoch(1, 0.6), epoch(2, 0.7)),
        (epoch(1, 0.8),),
        (EpochRecord(1),),  # no validation split: nothing to plot
    )
    epochs, means, stds = per_epoch(histories, valid_auc("click"))
    assert list(epochs) == [1, 2] and means == pytest.approx([0.7, 0.7])
    assert stds == pytest.approx([np.std([0.6, 0.8], ddof=1), 0.0])


def test_report_bolds_the_best_marks_the_ties_and_writes_csv_and_plots(made_up_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(made_up_runs), "--out", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert text in capsys.readouterr().out

    def shown(values: list[float]) -> str:
        return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"

    good, noisy, weak = (markdown_row(text, m) for m in ("good", "noisy", "weak"))
    assert good[1] == f"**{shown(CLICK_AUC['good'])}**"
    assert noisy[1] == f"{shown(CLICK_AUC['noisy'])} †"
    assert weak[1] == shown(CLICK_AUC["weak"])
    assert noisy[2].startswith("**") and good[2].endswith("†") and not weak[2].endswith("†")  # log-loss: lower wins
    assert markdown_row(text, "*oracle*")[1] == "*0.8500*"
    assert "![Test AUC per model on made_up](auc_made_up.png)" in text and "curves_made_up.png" in text
    assert "Warning" not in text and "`train.lr=0.001`" in text

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["model"] for r in rows] == ["good", "noisy", "weak", "oracle"]
    for row in rows[:3]:
        values = CLICK_AUC[row["model"]]
        assert float(row["click_auc_mean"]) == pytest.approx(np.mean(values))
        assert float(row["click_auc_std"]) == pytest.approx(np.std(values, ddof=1))
        assert float(row["conversion_logloss_mean"]) == pytest.approx(np.mean(CLICK_LOGLOSS[row["model"]]) / 10)
    assert [r["click_auc_mark"] for r in rows] == ["best", "tie", "", ""]

    for name in ("auc_made_up.png", "curves_made_up.png"):
        image = imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert sorted(p.name for p in out.iterdir()) == ["auc_made_up.png", "curves_made_up.png", "results.csv", "results.md"]


def test_report_lists_failed_runs_and_warns_about_mixed_settings(made_up_runs, capsys):
    (made_up_runs / "made_up" / "good" / "seed0.json").write_text(json.dumps(fake_run("good", 0, lr=0.01)))
    failure = {"model": "weak", "dataset": "made_up", "seed": 7, "error": "RuntimeError: out of memory", "traceback": ""}
    (made_up_runs / "made_up" / "weak" / "seed7.failed.json").write_text(json.dumps(failure))
    (made_up_runs / "made_up" / "weak" / "seed2.failed.json").write_text(json.dumps({**failure, "seed": 2}))  # retried since
    assert main(["report", str(made_up_runs)]) == 0
    text = (made_up_runs / "report" / "results.md").read_text()
    assert "- weak on made_up, seed 7: RuntimeError: out of memory" in text and "seed 2:" not in text
    assert "Warning" in text and "`train.lr` is 0.001, 0.01" in text


def test_report_of_a_broken_run_file_names_the_file_and_line(made_up_runs, capsys):
    broken = made_up_runs / "made_up" / "good" / "seed1.json"
    broken.write_text('{\n  "model": "good",\n  "tasks": \n')
    assert main(["report", str(made_up_runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(broken) in err and "line 4" in err and "not valid JSON" in err

    broken.write_text(json.dumps({"model": "good", "dataset": "made_up", "tasks": {"click": {"auc": 0.5}}}))
    assert main(["report", str(made_up_runs)]) == 2
    assert "'logloss'" in capsys.readouterr().err


def test_report_of_an_empty_or_missing_folder_says_what_to_do(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "run mtrec benchmark" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_benchmark_of_every_model_then_report_makes_the_table_and_the_plots(tmp_path, capsys):
    """The acceptance path: ``mtrec benchmark --models all --seeds 2 --epochs 1`` then ``mtrec report``."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    assert main(["generate", "--data-dir", str(data), "--name", "tiny", "--train-rows", "800", "--test-rows", "400"]) == 0
    status = main(["benchmark", "--models", "all", "--datasets", "tiny", "--data-dir", str(data), "--seeds", "2", "--epochs", "1",
                   "--out", str(runs), "--max-steps", "2", "--embed-dim", "4", "--expert-num", "2", "--batch-size", "128",
                   "--no-progress"])
    assert status == 0
    assert main(["report", str(runs)]) == 0
    text = (runs / "report" / "results.md").read_text()
    for model in list_models():
        row = markdown_row(text, model)
        assert row[-1] == "2" and all("±" in cell for cell in row[1:5]), row
    assert sum(cell.startswith("**") for model in list_models() for cell in markdown_row(text, model)[1:5]) >= 4
    assert len(list(csv.DictReader((runs / "report" / "results.csv").open()))) == len(list_models())
    for name in ("auc_tiny.png", "curves_tiny.png"):
        assert imread(runs / "report" / name).shape[0] > 200


def speed_row(text: str, label: str) -> list[str]:
    """The row of ``label`` in the training-speed table (after the metrics table's row of the same name)."""
    return markdown_row(text[text.index("Training speed on"):], label)


def write_run(runs: Path, run: dict, name: str | None = None) -> None:
    mto = run["config"]["train"].get("mto", "ew")
    folder = run["model"] if mto == "ew" else f"{run['model']}+{mto}"
    path = runs / run["dataset"] / folder / (name or f"seed{run['seed']}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))


def test_seconds_per_epoch_leave_out_epochs_that_max_steps_cut_short(made_up_runs, capsys):
    for seed in range(3):
        # weak: one whole epoch of 10 s, then one cut after a few steps (1 s).
        weak = fake_run("weak", seed)
        weak["history"][0]["train_seconds"], weak["history"][1]["train_seconds"] = 10.0, 1.0
        weak["history"][1]["complete"] = False
        weak["train_seconds"] = 11.0
        # noisy: --max-steps ended the first epoch; no whole epoch at all.
        noisy = fake_run("noisy", seed)
        noisy["history"] = [{**noisy["history"][0], "train_seconds": 3.0, "complete": False}]
        noisy.update(train_seconds=3.0, epochs_run=1, best_epoch=1)
        write_run(made_up_runs, weak)
        write_run(made_up_runs, noisy)
    assert main(["report", str(made_up_runs)]) == 0
    text = (made_up_runs / "report" / "results.md").read_text()
    assert speed_row(text, "good")[2] == "5.0 ± 0.0"
    assert speed_row(text, "weak")[2] == "10.0 ± 0.0"  # not 11 s / 2 epochs
    assert speed_row(text, "noisy")[2] == "n/a" and "complete epochs only" in text
    rows = {r["model"]: r for r in csv.DictReader((made_up_runs / "report" / "results.csv").open())}
    assert float(rows["weak"]["epoch_seconds_mean"]) == 10.0 and rows["noisy"]["epoch_seconds_mean"] == ""


def visible_tick_labels(ax) -> list[str]:
    low, high = sorted(ax.get_xlim())
    return [label.get_text() for label in ax.get_xticklabels() if low <= label.get_position()[0] <= high]


def test_a_one_epoch_curve_has_whole_epoch_ticks():
    runs = []
    for model in ("good", "weak"):
        for seed in range(3):
            run = fake_run(model, seed, mto="fixed", weights=(1.0, 0.5))
            run["history"] = run["history"][:1]
            runs.append(RunRecord.from_dict(run))
    (table,) = build_tables(runs)
    for figure in (curves_figure(table), weights_figure(table)):
        FigureCanvasAgg(figure).draw()
        for ax in figure.axes:
            assert visible_tick_labels(ax) == ["1"], visible_tick_labels(ax)


def test_two_strategies_give_a_row_each_marked_over_all_rows_and_a_weights_plot(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_run(runs, fake_run("good", seed))
        write_run(runs, fake_run("weak", seed))
        # weak with fixed weights scores as "noisy" does: best log-loss, AUC not distinguishable from the best.
        fixed = fake_run("noisy", seed, mto="fixed", weights=(1.0, 0.5))
        fixed["model"] = fixed["config"]["model"] = "weak"
        fixed["config"]["mto_config"] = {"task_weights": [1.0, 0.5]}
        write_run(runs, fixed)
    failure = {"model": "weak", "dataset": "made_up", "seed": 7, "mto": "fixed", "error": "RuntimeError: boom", "traceback": ""}
    (runs / "made_up" / "weak+fixed" / "seed7.failed.json").write_text(json.dumps(failure))
    assert main(["report", str(runs)]) == 0
    out = runs / "report"
    text = (out / "results.md").read_text()
    good, weak, weak_fixed = (markdown_row(text, label) for label in ("good + ew", "weak + ew", "weak + fixed"))
    assert good[1].startswith("**") and weak_fixed[1].endswith("†") and not weak[1].endswith("†")
    assert weak_fixed[2].startswith("**") and good[2].endswith("†")
    assert "| good |" not in text and "| weak |" not in text
    assert "- weak + fixed on made_up, seed 7: RuntimeError: boom" in text
    assert "Warning" not in text  # the strategy and its settings vary on purpose
    assert "![Task weights per epoch on made_up](weights_made_up.png)" in text
    assert imread(out / "weights_made_up.png").shape[0] > 200

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["mto"]) for r in rows] == [("good", "ew"), ("weak", "ew"), ("weak", "fixed"), ("oracle", "")]
    assert [r["click_logloss_mark"] for r in rows] == ["tie", "", "best", ""]

    (table,) = build_tables(load_runs(runs)[0])
    styles = row_styles(table.rows)
    # weak is there with two strategies: each (model, strategy) a colour of its own (issue 20, stumble 10)
    assert len({styles[key].colour for key in (("good", "ew"), ("weak", "ew"), ("weak", "fixed"))}) == 3
    assert styles[("weak", "ew")].marker != styles[("weak", "fixed")].marker
    assert styles[("weak", "ew")].linestyle != styles[("weak", "fixed")].linestyle
    assert [row.label for row in table.rows if changes_weights(row)] == ["weak + fixed"]


def old_layout_run(steps: list[int], max_steps: int | None) -> dict:
    """A run file of the layout before schema versions: no version, the seed only in the config,
    no per-epoch completeness nor task weights, and no strategy."""
    return {
        "model": "good",
        "dataset": "made_up",
        "tasks": {"click": {"auc": 0.8, "logloss": 0.3}},
        "train_samples_per_sec": 1000.0,
        "epochs_run": len(steps),
        "best_epoch": len(steps),
        "train_seconds": 2.0 * len(steps),
        "history": [
            {"epoch": e, "steps": s, "train_loss": 0.4, "train_seconds": 2.0 if e < len(steps) else 0.5,
             "valid": {"click": {"auc": 0.7, "logloss": 0.3}}, "valid_score": 0.7}
            for e, s in enumerate(steps, start=1)
        ],
        "device": "cpu",
        "config": {"model": "good", "train": {"seed": 3, "max_steps": max_steps}},
    }


def test_an_old_layout_run_file_is_read_typed(tmp_path, capsys):
    path = tmp_path / "runs" / "made_up" / "good" / "seed3.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old_layout_run([6, 12, 14], max_steps=14)))
    record = RunRecord.read(path)
    assert record.schema_version == 1 and record.seed == 3 and record.mto == "ew"
    assert record.tasks["click"] == Metrics(0.8, 0.3) and record.history[0].valid["click"].auc == 0.7
    assert [e.complete for e in record.history] == [True, True, False]  # 2 steps where whole epochs made 6
    assert record.history[0].task_weights == {}

    # A lone epoch that reached --max-steps is taken as cut; without --max-steps every epoch ran whole.
    assert not RunRecord.from_dict(old_layout_run([5], max_steps=5)).history[0].complete
    assert RunRecord.from_dict(old_layout_run([6, 12], max_steps=12)).history[1].complete
    assert all(e.complete for e in RunRecord.from_dict(old_layout_run([6, 12], max_steps=None)).history)

    assert main(["report", str(tmp_path / "runs")]) == 0
    text = (tmp_path / "runs" / "report" / "results.md").read_text()
    assert markdown_row(text, "good")[1] == "**0.8000**" and speed_row(text, "good")[2] == "2.0"
    assert not (tmp_path / "runs" / "report" / "weights_made_up.png").exists()
