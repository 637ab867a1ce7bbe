"""The original MTReclib's invocation, kept working on top of mtreclib.

    python main.py --model_name metaheac --expert_num 8 --dataset_name AliExpress_NL

Every flag of the original is accepted with its default (and ``--num_expert``, which its README
wrote for ``--expert_num``). Deliberate differences: ``--device`` defaults to ``auto`` (CUDA
when present, else CPU) where the original hard-coded ``cuda:0``; early stopping watches a
validation split carved from train.csv, never the test set; and each run's checkpoint goes to
a folder of its own, ``<save_dir>/<dataset>_<model>/run-N/best.pt``, so that a second run never
overwrites the first. As the original did, the final test metrics are appended to
``<model_name>_<dataset_name>.txt``.

New work should use the ``mtrec`` command, which has more options.
"""

from __future__ import annotations

import argparse
import sys

from mtreclib.config.experiment import ExperimentConfig
from mtreclib.config.resolve import with_changes
from mtreclib.core.errors import UserError
from mtreclib.models import list_models
from mtreclib.training.experiment import format_results, run_experiment


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_name", default="AliExpress_NL")
    parser.add_argument("--dataset_path", default="./data/")
    parser.add_argument("--model_name", default="metaheac", choices=list_models())
    parser.add_argument("--epoch", type=int, default=50)
    parser.add_argument("--task_num", type=int, default=2)
    parser.add_argument("--expert_num", "--num_expert", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=0.001)
    parser.add_argument("--batch_size", type=int, default=2048)
    parser.add_argument("--embed_dim", type=int, default=128)
    parser.add_argument("--weight_decay", type=float, default=1e-6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save_dir", default="chkpt")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # with_changes applies expert_num only to the models that take it, as the original's models each took what they knew.
        config = with_changes(
            ExperimentConfig(),
            model=args.model_name,
            dataset=args.dataset_name,
            data_dir=args.dataset_path,
            task_num=args.task_num,
            embed_dim=args.embed_dim,
            expert_num=args.expert_num,
            device=args.device,
            save_dir=args.save_dir,
            epochs=args.epoch,
            batch_size=args.batch_size,
            lr=args.learning_rate,
            weight_decay=args.weight_decay,
        )
        record = run_experiment(config)
    except UserError as error:
        print(f"main.py: error: {error}", file=sys.stderr)
        return 2
    print(format_results(record))
    with open(f"{args.model_name}_{args.dataset_name}.txt", "a", encoding="utf-8") as log:
        log.write(f"learning rate: {args.learning_rate}\n")
        for i, metrics in enumerate(record.tasks.values()):
            log.write(f"task {i}, AUC {metrics.auc}, Log-loss {metrics.logloss}\n")
        log.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
