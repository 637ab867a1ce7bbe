"""``mtrec evaluate``: a saved model's per-task AUC and log-loss on a split of a dataset, without training."""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "per-task AUC and log-loss of a saved model on a split of a dataset (default: the test split of the data it was trained on)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder (SAVE_DIR/DATASET_MODEL/run-N) or its best.pt")
    parser.add_argument("--dataset", help="the dataset, as mtrec train takes it (default: the one the model was trained on)")
    parser.add_argument("--data-dir", help="where dataset folders live (default: the training run's)")
    parser.add_argument("--split", default="test", choices=("test", "valid", "train"), help="which split, cut as training cut it (default: %(default)s)")
    parser.add_argument("--results", metavar="FILE", help="also write the results as JSON, in the layout of mtrec train --results")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress while a dataset's cache is built")


def run(args: argparse.Namespace) -> int:
    from mtreclib.core.atomic import check_writable
    from mtreclib.serving.evaluation import evaluate_checkpoint
    from mtreclib.serving.inference import load_checkpoint
    from mtreclib.training.experiment import format_results

    if args.results:
        check_writable(args.results, "--results")
    inference = load_checkpoint(args.checkpoint, device=args.device)
    record = evaluate_checkpoint(inference, args.dataset, data_dir=args.data_dir, split=args.split, progress=not args.no_progress)
    print(format_results(record))
    if args.results:
        record.write(args.results)
    return 0
