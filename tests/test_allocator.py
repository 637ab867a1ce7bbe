"""Freed CPU memory kept for reuse while a model trains (``mtreclib.core.allocator``)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
import torch
from conftest import random_table, small_model

from mtreclib.config.experiment import TrainConfig
from mtreclib.core import allocator
from mtreclib.training import trainer as trainer_module
from mtreclib.training.trainer import Trainer

# Run in a fresh process: in a long one (the test suite), blocks freed earlier into the heap
# serve a new allocation whatever the settings, and would hide what glibc does by default.
PROBE = """
import json, resource, torch
from mtreclib.core import allocator

SIZE = 64 * 2**20  # above glibc's largest mmap threshold (32 MiB): by default mapped afresh each time

def faults():
    # minor page faults of touching a SIZE block allocated right after an equal one was freed
    first = torch.ones(SIZE // 4)
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(SIZE // 4)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

seen = {"default": faults()}
with allocator.reusing_freed_memory(enabled=False) as applied:
    seen["disabled_applied"] = applied
    seen["disabled"] = faults()
with allocator.reusing_freed_memory() as applied:
    seen["applied"] = applied
    faults()  # the first step: the heap grows to the block's size (glibc sometimes places it afresh)
    seen["inside"] = faults()  # every step after it
    with allocator.reusing_freed_memory():
        pass
    seen["after_a_nested_use"] = faults()
seen["after"] = faults()
print(json.dumps(seen))
"""
PAGES = 64 * 2**20 // resource.getpagesize()


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")


@pytest.fixture(scope="module")
def seen() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_freed_block_is_reused_inside_and_mapped_afresh_outside(seen):
    assert seen["default"] > PAGES // 2  # glibc's default: unmapped when freed, faulted in again
    assert seen["applied"] and seen["inside"] < PAGES // 20  # the same pages, already mapped
    assert seen["after"] > PAGES // 2  # the defaults are back


def test_nested_uses_keep_it_on_until_the_outermost_leaves(seen):
    assert seen["after_a_nested_use"] < PAGES // 20


def test_disabled_changes_nothing(seen):
    assert not seen["disabled_applied"] and seen["disabled"] > PAGES // 2


@pytest.mark.parametrize("release", [False, True])
def test_training_and_scoring_keep_freed_memory_unless_told_to_release_it(monkeypatch, release):
    entered = []

    def recording(enabled=True):
        entered.append(enabled)
        return allocator.reusing_freed_memory(enabled)

    monkeypatch.setattr(trainer_module, "reusing_freed_memory", recording)
    trainer = Trainer(small_model("mmoe"), TrainConfig(batch_size=32, epochs=1, patience=0, release_memory=release), torch.device("cpu"), progress=False)
    trainer.fit(random_table(64, seed=0), random_table(0, seed=1))
    trainer.predict(random_table(40, seed=2))
    assert entered == [not release, not release]  # fit, then predict (fit's evaluation of an empty split scores nothing)
