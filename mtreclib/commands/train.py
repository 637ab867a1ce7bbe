"""``mtrec train``: train one model on one dataset and report per-task test AUC and log-loss.

Launched by torchrun (``torchrun --nproc_per_node=N -m mtreclib train ...``) it runs as one of N
data-parallel processes: it joins the process group for the run, and only rank 0 prints and
writes results.
"""

from __future__ import annotations

import argparse

from mtreclib import distributed
from mtreclib.atomic import write_json
from mtreclib.data.datasets import builtin_datasets
from mtreclib.experiment import ExperimentConfig, format_results, resolve_device, run_experiment
from mtreclib.models import list_models
from mtreclib.trainer import PRECISIONS, TrainConfig

NAME = "train"
HELP = "train one model and report per-task test AUC and log-loss"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="mmoe", help=f"one of {', '.join(list_models())} (default: %(default)s)")
    parser.add_argument(
        "--dataset",
        default="synthetic",
        help=f"built-in ({', '.join(builtin_datasets())}) or a folder DATA_DIR/NAME with train.csv and test.csv "
        "in the processed AliExpress layout (default: %(default)s)",
    )
    parser.add_argument("--data-dir", default="data", help="where processed datasets live (default: %(default)s)")
    add_training_arguments(parser)
    parser.add_argument("--save-dir", default="chkpt", help="best checkpoint goes to SAVE_DIR/DATASET_MODEL.pt (default: %(default)s)")
    parser.add_argument("--no-save", action="store_true", help="keep no checkpoint file")
    parser.add_argument("--results", help="write the results as JSON to this file")


def add_training_arguments(parser: argparse.ArgumentParser, *, seed_help: str = "seeds initialisation and shuffling") -> None:
    """Model and optimisation flags, shared with every command that trains."""
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="most epochs (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="rows per step over all processes: the global batch, shared by the processes under torchrun (default: %(default)s)",
    )
    parser.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="Adam weight decay (default: %(default)s)")
    parser.add_argument("--embed-dim", type=int, default=128, help="embedding size (default: %(default)s)")
    parser.add_argument("--expert-num", type=int, default=8, help="experts of omoe, mmoe, ple, metaheac (default: %(default)s)")
    parser.add_argument("--task-num", type=int, default=2, help="train the first N tasks: click, conversion (default: %(default)s)")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if present, else CPU), cpu, cuda, cuda:N; under torchrun each process takes cuda:LOCAL_RANK "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"{seed_help} (default: %(default)s)")
    parser.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after N epochs without a better validation mean AUC; 0 trains every epoch and keeps the last (default: %(default)s)",
    )
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="share of train.csv held out for validation (default: %(default)s)")
    parser.add_argument(
        "--valid-split",
        choices=("tail", "random"),
        default="tail",
        help="tail: the last rows of train.csv (files are in time order); random: a seeded random subset (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="bf16: bfloat16 autocast for the forward passes; faster only where the hardware has native bf16 "
        "(recent GPUs, CPUs with AVX-512 BF16/AMX) (default: %(default)s)",
    )
    parser.add_argument("--compile", action="store_true", help="run the model through torch.compile")


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The ``ExperimentConfig`` that ``mtrec train``'s flags describe.

    A command without ``--model``/``--dataset`` (the benchmark sets them per run) gets the defaults.
    """
    defaults = ExperimentConfig()
    return ExperimentConfig(
        model=getattr(args, "model", defaults.model),
        dataset=getattr(args, "dataset", defaults.dataset),
        data_dir=args.data_dir,
        task_num=args.task_num,
        model_config={"embed_dim": args.embed_dim, "expert_num": args.expert_num},
        valid_fraction=args.valid_fraction,
        valid_split=args.valid_split,
        device=args.device,
        save_dir=None if getattr(args, "no_save", False) else getattr(args, "save_dir", None),
        train=TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            patience=args.patience,
            max_steps=args.max_steps,
            seed=args.seed,
            progress=not args.no_progress,
            precision=args.precision,
            compile=args.compile,
        ),
    )


def run(args: argparse.Namespace) -> int:
    config = experiment_config(args)
    place = distributed.place_from_environment()
    with distributed.process_group(place, place.device(resolve_device(config.device))):
        results = run_experiment(config, place=place)
    if place.is_main:
        print(format_results(results))
        if args.results:
            write_json(args.results, results)
    return 0
