"""Freed CPU memory kept for reuse while a model trains (``mtreclib.core.allocator``)."""

from __future__ import annotations

import resource
import sys

import pytest
import torch
from conftest import random_table, small_model

from mtreclib.config.experiment import TrainConfig
from mtreclib.core import allocator
from mtreclib.training import trainer as trainer_module
from mtreclib.training.trainer import Trainer

MIB = 2**20
SIZE = 64 * MIB  # above glibc's largest mmap threshold (32 MiB): by default mapped afresh each time
PAGES = SIZE // resource.getpagesize()


def _faults_of_second_allocation() -> int:
    """Minor page faults of touching a SIZE block allocated right after an equal one was freed."""
    first = torch.ones(SIZE // 4)  # touched: every page faulted in
    del first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    second = torch.ones(SIZE // 4)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del second
    return faults


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt: Linux only")


def test_a_freed_block_is_reused_inside_and_mapped_afresh_outside():
    assert _faults_of_second_allocation() > PAGES // 2  # glibc's default: unmapped when freed, faulted in again
    with allocator.reusing_freed_memory() as applied:
        assert applied
        assert _faults_of_second_allocation() < PAGES // 20  # the same pages, already mapped
    assert _faults_of_second_allocation() > PAGES // 2  # the defaults are back


def test_nested_uses_keep_it_on_until_the_outermost_leaves():
    with allocator.reusing_freed_memory():
        with allocator.reusing_freed_memory():
            pass
        assert _faults_of_second_allocation() < PAGES // 20
    assert _faults_of_second_allocation() > PAGES // 2


def test_disabled_changes_nothing():
    with allocator.reusing_freed_memory(enabled=False) as applied:
        assert not applied
        assert _faults_of_second_allocation() > PAGES // 2


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
