"""The cost of tuning: Optuna's overhead per trial against a plain run of the same settings, and trials per hour.

    python benchmarks/tune_cost.py --trials 3 --searched 4 --out benchmarks/tune_cost.json

In one process, the built-in dataset loaded once (its test split dropped, as ``mtrec tune`` does):

1. **plain**: ``run_experiment(config, test=False)``: training plus validation after every epoch,
   the work a trial does, with no Optuna anywhere;
2. **trials at the same settings**: a study in an SQLite database (as ``mtrec tune`` keeps it)
   whose space is one choice, so every trial is the same point; each is timed whole
   (``study.optimize(n_trials=1)``: sampling, the database writes, the heartbeat, the per-epoch
   pruning reports) and inside its ``run_experiment``; the difference is the tuning overhead.
   Plain runs and trials alternate (after one plain run that is not counted: the warm-up), so
   that the machine's drift affects both alike;
3. **trials over the declared space**: ``--searched`` trials of the model's declared space (TPE
   seeded, no pruning): their mean length gives trials per hour at the built-in size.

Prints a Markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mtreclib.core.atomic import write_json
from mtreclib.core.settings import Search
from mtreclib.data.datasets import load_dataset
from mtreclib.training.experiment import experiment, run_experiment
from mtreclib.tuning import trial as trial_module
from mtreclib.tuning.available import require_optuna
from mtreclib.tuning.space import SearchSpace
from mtreclib.tuning.storage import open_storage
from mtreclib.tuning.study import make_pruner, make_sampler
from mtreclib.tuning.trial import Objective
from mtreclib.tuning.workers import without_test


class TimedRun:
    """``run_experiment`` as a trial calls it, timed."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return run_experiment(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--trials", type=int, default=3, help="plain runs and trials at the same settings, each")
    parser.add_argument("--searched", type=int, default=4, help="trials over the declared space")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    optuna = require_optuna()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = experiment(model=args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs, patience=0, save=False,
                        progress=False, device="cpu", threads=args.threads)
    dataset = without_test(load_dataset(args.dataset, args.data_dir))
    timed = TimedRun()
    trial_module.run_experiment = timed  # the trials' runs, timed; the plain runs call run_experiment itself
    with tempfile.TemporaryDirectory() as folder:
        storage = open_storage(f"sqlite:///{folder}/cost.db")
        fixed = optuna.create_study(storage=storage, study_name="fixed", direction="maximize",
                                    sampler=make_sampler(optuna, 0, 0), pruner=make_pruner(optuna, "median", 1, args.epochs))
        one_point = SearchSpace.of(config, {"dropout": Search(choices=(config.model_config.dropout,))})
        run_experiment(config, dataset=dataset, announce=False, test=False)  # warm-up, not counted
        plain, whole, plain_cpu = [], [], []
        for _ in range(args.trials):
            start, start_cpu = time.perf_counter(), time.process_time()
            run_experiment(config, dataset=dataset, announce=False, test=False)
            plain.append(time.perf_counter() - start)
            plain_cpu.append(time.process_time() - start_cpu)
            start = time.perf_counter()
            fixed.optimize(Objective(optuna, config, one_point, dataset), n_trials=1)
            whole.append(time.perf_counter() - start)
            print(f"plain {plain[-1]:.2f} s, trial {whole[-1]:.2f} s (its run {timed.seconds[-1]:.2f} s)", file=sys.stderr, flush=True)
        inside = list(timed.seconds)
        searched_study = optuna.create_study(storage=storage, study_name="searched", direction="maximize",
                                             sampler=make_sampler(optuna, 0, 2), pruner=make_pruner(optuna, "none", 0, args.epochs))
        start, start_cpu = time.perf_counter(), time.process_time()
        searched_study.optimize(Objective(optuna, config, SearchSpace.declared(config), dataset), n_trials=args.searched)
        searched = (time.perf_counter() - start) / args.searched
        searched_cpu = (time.process_time() - start_cpu) / args.searched
    overhead = [w - i for w, i in zip(whole, inside)]
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "rows": {"train": len(dataset.train) - round(len(dataset.train) * config.data.valid_fraction)},
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "plain_seconds": plain,
        "plain_cpu_seconds": plain_cpu,
        "trial_seconds": whole,
        "trial_run_seconds": inside,
        "overhead_seconds": overhead,
        "searched_trial_seconds": searched,
        "searched_trial_cpu_seconds": searched_cpu,
        "searched_trials_per_hour": 3600 / searched,
        "fixed_trials_per_hour": 3600 / statistics.mean(whole),
    }
    print(f"{args.model} on {args.dataset}, {args.epochs} epoch(s) a trial, {result['threads']} threads, SQLite storage\n")
    print("| | seconds per run, wall (mean of %d) | trials per hour |" % args.trials)
    print("|---|--:|--:|")
    print(f"| plain run (training + validation) | {statistics.mean(plain):.2f} ({statistics.mean(plain_cpu):.1f} CPU s) | |")
    print(f"| trial at the same settings | {statistics.mean(whole):.2f} | {result['fixed_trials_per_hour']:.0f} |")
    print(f"| tuning overhead per trial (trial − its run) | {statistics.mean(overhead):.3f} "
          f"({100 * statistics.mean(overhead) / statistics.mean(inside):.2f}% of the run) | |")
    print(f"| trial over the declared space (mean of {args.searched}) | {searched:.2f} ({searched_cpu:.1f} CPU s) | "
          f"{result['searched_trials_per_hour']:.0f} |")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
