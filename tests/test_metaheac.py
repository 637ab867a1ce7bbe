"""MetaHeac's critic mixture and its meta-learning step."""

from __future__ import annotations

import torch
from conftest import random_batch, small_model

from mtreclib.models import multitask_bce


def test_prediction_is_the_gate_weighted_sum_not_mean_of_critic_probabilities():
    torch.manual_seed(0)
    model = small_model("metaheac")
    with torch.no_grad():  # every critic says "very likely": the mean would cap at 1 / critic_num
        model.critics.biases[-1].fill_(8.0)
    model.eval()
    batch = random_batch(size=32)
    probabilities = torch.sigmoid(model(batch.categorical, batch.numerical))
    assert (probabilities > 0.99).all()


def test_logit_equals_logit_of_the_mixture_computed_naively():
    torch.manual_seed(1)
    model = small_model("metaheac")
    model.eval()
    batch = random_batch(size=16)
    captured = {}
    model.critics.register_forward_hook(lambda m, i, o: captured.setdefault("critics", []).append(o.squeeze(-1)))
    model.critic_gate.register_forward_hook(lambda m, i, o: captured.setdefault("gate", o))
    logits = model(batch.categorical, batch.numerical)
    critic_probabilities = torch.sigmoid(torch.stack(captured["critics"], dim=1)).double()  # (B, T, C)
    weights = torch.softmax(captured["gate"].double(), dim=-1)  # (B, T, C)
    p = (weights * critic_probabilities).sum(-1)
    torch.testing.assert_close(logits.double(), torch.log(p / (1 - p)), rtol=1e-4, atol=1e-4)


def test_meta_step_adapts_the_task_embedding_on_support_and_scores_the_query():
    torch.manual_seed(2)
    model = small_model("metaheac", local_lr=0.5)
    model.eval()  # fixed BatchNorm statistics, so the naive computation below sees the same network
    batch = random_batch(size=40)
    support, query = batch.slice(0, 20), batch.slice(20, 40)
    weight = model.task_embedding.weight
    support_loss = multitask_bce(model(support.categorical, support.numerical), support.labels)
    (grad,) = torch.autograd.grad(support_loss, weight)
    adapted = (weight - 0.5 * grad).detach()
    expected = multitask_bce(model(query.categorical, query.numerical, task_embedding=adapted), query.labels)
    unadapted = multitask_bce(model(query.categorical, query.numerical), query.labels)
    got = model.training_loss([batch])
    torch.testing.assert_close(got, expected)
    assert not torch.isclose(got, unadapted)


def test_outer_gradient_flows_through_the_inner_step():
    """Second order: the task embedding's gradient differs from the first-order (detached) one."""
    torch.manual_seed(3)
    model = small_model("metaheac", local_lr=0.5)
    model.eval()
    batch = random_batch(size=40)
    model.training_loss([batch]).backward()
    second_order = model.task_embedding.weight.grad.clone()
    model.zero_grad()
    support, query = batch.slice(0, 20), batch.slice(20, 40)
    weight = model.task_embedding.weight
    (grad,) = torch.autograd.grad(multitask_bce(model(support.categorical, support.numerical), support.labels), weight)
    multitask_bce(model(query.categorical, query.numerical, task_embedding=weight - 0.5 * grad.detach()), query.labels).backward()
    assert not torch.allclose(second_order, model.task_embedding.weight.grad)
    assert model.batches_per_step == 2
