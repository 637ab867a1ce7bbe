"""Does ``torch.compile`` pay on this CPU? An expert bank's block after its first product, eager against compiled.

The block every expert model runs on its (B, n * O) first-layer output: BatchNorm, ReLU and
dropout, the batched (O -> O2) product of every expert, BatchNorm, ReLU and dropout; forward and
backward. Three ways, each the best of ``--rounds`` rounds of ``--steps`` steps:

- ``eager``: as the library runs it (``relu_dropout``: NumPy's masks, ReLU's backward kernel);
- ``eager F.dropout``: PyTorch's own dropout, which is what a compiled model traces;
- ``compiled``: the ``F.dropout`` version through ``torch.compile`` (inductor's C++ kernels, its
  own random numbers), with the time of its first call (the compilation) printed apart.

The whole model does not compile in one graph (``torch.unique`` in the split products has an
output shape that depends on the data, a graph break); this block is the part that does.

    python benchmarks/compile_block.py --out benchmarks/compile_block.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mtreclib.core.allocator import reusing_freed_memory
from mtreclib.core.atomic import write_json
from mtreclib.nn.dropout import relu_dropout


def block(batch: int, experts: int, width: int, second: int, dropout: float):
    """(forward with a given dropout, its input) of one expert bank's block after the first product."""
    first_norm, second_norm = torch.nn.BatchNorm1d(experts * width), torch.nn.BatchNorm1d(experts * second)
    weight = torch.randn(experts, width, second, requires_grad=True)
    bias = torch.randn(experts, second, requires_grad=True)
    x = torch.randn(batch, experts * width, requires_grad=True)

    def forward(x: torch.Tensor, drop) -> torch.Tensor:
        h = drop(first_norm(x), dropout).unflatten(1, (experts, -1))  # (B, n, O)
        h = torch.baddbmm(bias.unsqueeze(1), h.transpose(0, 1), weight).transpose(0, 1)  # (B, n, O2)
        return drop(second_norm(h.reshape(batch, -1)), dropout)  # (B, n * O2)

    return forward, x


def best_ms(step, steps: int, rounds: int) -> float:
    step()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) / steps * 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--widths", default="512,256", help="the expert's hidden widths O,O2 (MMoE's bottom_dims)")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    width, second = (int(w) for w in args.widths.split(","))
    torch.manual_seed(0)
    forward, x = block(args.batch_size, args.experts, width, second, args.dropout)

    def ours(h, p):
        return relu_dropout(h, p, True)

    def torchs(h, p):
        return F.dropout(F.relu(h), p, training=True)

    def plain(h):
        return forward(h, torchs)

    compiled = torch.compile(plain)
    record = {"threads": torch.get_num_threads(), "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), **vars(args)}
    record.pop("out")
    with reusing_freed_memory():
        record["eager_ms"] = best_ms(lambda: forward(x, ours).sum().backward(), args.steps, args.rounds)
        record["eager_torch_dropout_ms"] = best_ms(lambda: plain(x).sum().backward(), args.steps, args.rounds)
        start = time.perf_counter()
        compiled(x).sum().backward()
        record["compile_seconds"] = time.perf_counter() - start
        record["compiled_ms"] = best_ms(lambda: compiled(x).sum().backward(), args.steps, args.rounds)
    print(json.dumps(record))
    if args.out:
        write_json(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
