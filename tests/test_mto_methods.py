"""Each strategy against its paper's update on problems small enough to solve by hand.

A toy model makes the task gradients whatever the test says: task t's loss is ``L_t = g_t . theta
+ h_t``, so its gradient on the shared ``theta`` is ``g_t`` and on the banked heads ``h`` (one
tensor, one element per task, as a tower bank holds every task's weights) the unit vector
``e_t``. The heads must stay out of every decision and take the gradient the method gives
task-specific parameters. A coordinate of theta that only one task's gradient touches is that
task's own too, so the shared examples have no zero coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from mtreclib.core.schema import Batch, FeatureSchema
from mtreclib.models.base import MultiTaskModel, TaskLosses
from mtreclib.mto import StepContext, create_strategy, solvers

# Tiny models: one thread each (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(MultiTaskModel):
    """``L_t = g_t . theta + h_t``: (T, D) task gradients on the shared (D,) ``theta``; a task may
    also own some of theta's elements (its gradient is the only nonzero one there)."""

    def __init__(self, gradients: Sequence[Sequence[float]], losses: Sequence[float] | None = None):
        directions = torch.tensor(gradients, dtype=torch.float32)
        names = tuple(f"task{t}" for t in range(len(directions)))
        super().__init__(FeatureSchema(field_dims=(3,), numerical_num=0, task_names=names))
        self.theta = nn.Parameter(torch.zeros(directions.shape[1]))
        start = torch.ones(len(directions)) if losses is None else torch.tensor(losses, dtype=torch.float32)
        self.heads = nn.Parameter(start)
        self.register_buffer("directions", directions)

    def forward(self, categorical: torch.Tensor, numerical: torch.Tensor, bags=()) -> torch.Tensor:
        """(B, F) ids -> (B, T) logits, the same for every row."""
        return (self.directions @ self.theta + self.heads).expand(categorical.shape[0], -1)

    def task_losses(self, batches: Sequence[Batch]) -> TaskLosses:
        return TaskLosses(self.directions @ self.theta + self.heads)


def step(strategy, model: Toy, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One backward of ``strategy``: (the shared update, the heads' gradient)."""
    model.zero_grad(set_to_none=True)
    strategy.backward(model.task_losses([]), StepContext(model, step=step))
    return model.theta.grad.double().numpy(), model.heads.grad.double().numpy()


def gram(gradients) -> np.ndarray:
    g = np.asarray(gradients, dtype=np.float64)
    return g @ g.T


CONFLICT = [[1.0, 1.0], [-2.0, 1.0]]  # g_1 . g_2 = -1


# ----- PCGrad -----


def test_pcgrad_projects_conflicting_gradients_onto_each_others_normal_plane():
    # g1' = g1 - (-1 / 5) g2 = (0.6, 1.2); g2' = g2 - (-1 / 2) g1 = (-1.5, 1.5); mean (-0.45, 1.35)
    shared, heads = step(create_strategy("pcgrad", 2), Toy(CONFLICT))
    assert np.allclose(shared, [-0.45, 1.35], atol=1e-6)
    assert np.allclose(heads, [0.5, 0.5])  # each head its own gradient e_t, at equal weighting's 1/T


def test_pcgrad_without_conflict_is_equal_weighting():
    gradients = [[1.0, 0.5], [1.0, 1.0]]
    pcgrad, _ = step(create_strategy("pcgrad", 2), Toy(gradients))
    ew, _ = step(create_strategy("ew", 2), Toy(gradients))
    assert np.allclose(pcgrad, ew) and np.allclose(ew, [1.0, 0.75])


def test_pcgrad_weights_equal_the_projections_done_on_the_vectors():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(4, 6))
    orders = [rng.permutation(4) for _ in range(4)]
    projected = g.copy()
    for i in range(4):
        for j in orders[i]:  # every task, i included, as the authors' code and LibMTL loop
            if projected[i] @ g[j] < 0:
                projected[i] -= projected[i] @ g[j] / (g[j] @ g[j]) * g[j]
    assert np.allclose(solvers.pcgrad_weights(g @ g.T, orders) @ g, projected.sum(0))


def test_pcgrad_projects_a_gradient_off_its_own_original_once_it_turned_against_it():
    # g1 = (1, 0), g2 = (-1, 2), g3 = (-3, -1). Task 1 meets g2, g3, then itself:
    #   g1 . g2 = -1, + g2 / 5 -> (0.8, 0.4); . g3 = -2.8, + 0.28 g3 -> (-0.04, 0.12);
    #   . g1 = -0.04 < 0 (turned against its own gradient), + 0.04 g1 -> (0, 0.12).
    # Task 2 meets g1, g2, g3: (-1, 2) + g1 -> (0, 2); . g2 = 4; . g3 = -2, + 0.2 g3 -> (-0.6, 1.8).
    # Task 3 meets g1, g2, g3: (-3, -1) + 3 g1 -> (0, -1); . g2 = -2, + 0.4 g2 -> (-0.4, -0.2); . g3 = 1.4.
    g = np.array([[1.0, 0.0], [-1.0, 2.0], [-3.0, -1.0]])
    orders = [np.array([1, 2, 0]), np.array([0, 1, 2]), np.array([0, 1, 2])]
    weights = solvers.pcgrad_weights(g @ g.T, orders)
    # Rows of coefficients (1.04, 0.2, 0.28), (1, 1, 0.2), (3, 0.4, 1); their column sums.
    assert np.allclose(weights, [5.04, 1.6, 1.48], rtol=0, atol=1e-12)
    assert np.allclose(weights @ g, [0.0 - 0.6 - 0.4, 0.12 + 1.8 - 0.2], rtol=0, atol=1e-12)
    # Skipping the own gradient would have left task 1 at (-0.04, 0.12): the sum at (-1.04, 1.72).
    assert not np.allclose(weights @ g, [-1.04, 1.72], rtol=0, atol=1e-3)


def test_pcgrad_order_is_a_function_of_seed_and_step():
    g = np.random.default_rng(1).normal(size=(3, 4)).tolist()
    torch.manual_seed(5)
    first = create_strategy("pcgrad", 3)
    torch.manual_seed(5)
    second = create_strategy("pcgrad", 3)
    assert np.array_equal(step(first, Toy(g), step=7)[0], step(second, Toy(g), step=7)[0])


# ----- MGDA -----


@pytest.mark.parametrize(
    "gradients, expected",
    [
        ([[1.0, 1.0], [1.0, -1.0]], [1.0, 0.0]),  # orthogonal, equal norms: a = (1/2, 1/2)
        (CONFLICT, [0.0, 1.0]),  # a = (2/3, 1/3): the hull's point orthogonal to g1 - g2 = (3, 0)
        ([[1.0, 1.0], [2.0, 2.0]], [1.0, 1.0]),  # the smaller gradient is the min-norm point
    ],
)
def test_mgda_takes_the_min_norm_point_of_the_convex_hull(gradients, expected):
    strategy = create_strategy("mgda", 2)
    shared, heads = step(strategy, Toy(gradients))
    assert np.allclose(shared, expected, atol=1e-6)
    # The heads take the weighted loss's gradient, a_t e_t, as the authors' code does.
    assert np.allclose(heads, np.array(strategy.task_weights()) / 2, atol=1e-6)


def test_mgda_min_norm_point_satisfies_the_optimality_conditions_for_many_tasks():
    rng = np.random.default_rng(2)
    for _ in range(20):
        g = rng.normal(size=(5, 4))
        k = g @ g.T
        a = solvers.min_norm_weights(k)
        ka, value = k @ a, a @ k @ a
        assert a.min() >= 0 and math.isclose(a.sum(), 1.0)
        assert np.all(ka >= value - 1e-9)  # no vertex gives a smaller norm direction
        assert np.allclose(ka[a > 1e-9], value, atol=1e-8)  # the support all at the same level
        reference = minimize(lambda x: x @ k @ x, np.full(5, 0.2), bounds=[(0, 1)] * 5,
                             constraints=({"type": "eq", "fun": lambda x: x.sum() - 1},), method="SLSQP", options={"ftol": 1e-14})  # fmt: skip
        assert value <= reference.fun + 1e-9


def test_mgda_l2_normalisation_solves_on_unit_gradients():
    # Orthogonal unit vectors: a = (1/2, 1/2), applied to the raw gradients (2, 2) and (1, -1).
    strategy = create_strategy("mgda", 2, mgda_normalization="l2")
    shared, _ = step(strategy, Toy([[2.0, 2.0], [1.0, -1.0]]))
    assert np.allclose(shared, [1.5, 0.5], atol=1e-6)


# ----- CAGrad -----


@pytest.mark.parametrize("c", [0.0, 0.4, 0.9])
def test_cagrad_on_symmetric_conflict_moves_along_the_mean(c):
    # g1 = (1, 2), g2 = (-1, 2): by symmetry w = (1/2, 1/2), g_w = g_0 = (0, 2), so
    # d = g_0 + c |g_0| g_0 / |g_0| = (1 + c) g_0, divided by 1 + c^2.
    shared, heads = step(create_strategy("cagrad", 2, cagrad_c=c), Toy([[1.0, 2.0], [-1.0, 2.0]]))
    assert np.allclose(shared, [0.0, 2.0 * (1 + c) / (1 + c**2)], atol=1e-5)
    assert np.allclose(heads, [0.5, 0.5])


def test_cagrad_maximises_the_worst_improvement_within_its_ball():
    g = np.array([[1.0, 0.2], [-0.6, 1.0]])
    c = 0.5
    d = solvers.cagrad_weights(g @ g.T, c) @ g  # before rescaling
    g0 = g.mean(0)
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) <= radius * (1 + 1e-6)
    best = min(g @ d)
    angles = np.linspace(0, 2 * np.pi, 20_000)
    ring = g0 + radius * np.stack([np.cos(angles), np.sin(angles)], 1)  # the optimum is on the boundary
    assert best >= (ring @ g.T).min(1).max() - 1e-6


# ----- Nash-MTL -----


def test_nashmtl_on_orthogonal_gradients_weights_each_by_its_inverse_norm():
    # g = (2, 2), (1, -1): K = diag(8, 2), K a = 1 / a gives a = (1 / sqrt 8, 1 / sqrt 2), d = (sqrt 2, 0).
    strategy = create_strategy("nashmtl", 2)
    shared, heads = step(strategy, Toy([[2.0, 2.0], [1.0, -1.0]]))
    assert np.allclose(shared, [math.sqrt(2), 0.0], atol=1e-6)
    assert np.allclose(heads, [1 / math.sqrt(8), 1 / math.sqrt(2)], atol=1e-6)  # the weighted loss reaches the heads
    assert np.allclose(strategy.task_weights(), [2 / 3, 4 / 3], atol=1e-6)  # a scaled to sum T


def test_nashmtl_solves_the_bargaining_equation():
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = rng.normal(size=(4, 6))
        k = g @ g.T
        a = solvers.nash_weights(k)
        assert np.all(a > 0)
        assert np.allclose(k @ a, 1 / a, rtol=1e-10, atol=0)
        assert math.isclose(float(np.linalg.norm(a @ g)) ** 2, 4.0, rel_tol=1e-10)  # |d|^2 = T


def test_nashmtl_is_the_root_itself_when_gradients_nearly_cancel():
    # Two unit gradients at cos = -(1 - e), e = 2^-14: K = [[1, -(1 - e)], [-(1 - e), 1]]; by
    # symmetry a_1 = a_2 = a with (1 - (1 - e)) a = 1 / a, so a = e^(-1/2) = 2^7 = 128 exactly.
    # The ridge the solver starts from alone gives 127.979 (1.6e-4 off).
    e = 2.0**-14
    g = np.array([[1.0, 0.0], [-(1 - e), math.sqrt(1 - (1 - e) ** 2)]])
    k = g @ g.T
    a = solvers.nash_weights(k)
    assert np.allclose(a, [128.0, 128.0], rtol=1e-11, atol=0)
    assert np.allclose(k @ a, 1 / a, rtol=1e-10, atol=0)


@pytest.mark.parametrize("gradients", [[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [-1.0, -1.0]]], ids=["zero", "opposed"])
def test_nashmtl_without_a_root_keeps_finite_weights(gradients):
    """A zero gradient or two that cancel: ``K a = 1 / a`` has no root; the ridged answer stands."""
    a = solvers.nash_weights(gram(gradients))
    assert np.all(np.isfinite(a)) and np.all(a > 0)


def test_nashmtl_reuses_its_weights_between_solves():
    strategy = create_strategy("nashmtl", 2, nashmtl_update_every=3)
    model = Toy([[2.0, 2.0], [1.0, -1.0]])
    step(strategy, model, step=0)  # a = (1 / sqrt 8, 1 / sqrt 2)
    model.directions.copy_(torch.tensor([[1.0, 1.0], [3.0, -3.0]]))  # the gradients change
    shared, _ = step(strategy, model, step=1)  # between solves: the old weights
    old = np.array([1 / math.sqrt(8), 1 / math.sqrt(2)]) @ np.array([[1.0, 1.0], [3.0, -3.0]])
    assert np.allclose(shared, old, atol=1e-6)
    shared, _ = step(strategy, model, step=3)  # solved again: a = (1 / sqrt 2, 1 / sqrt 18)
    assert np.allclose(shared, [math.sqrt(2), 0.0], atol=1e-6)


# ----- IMTL -----


def test_imtl_gives_equal_projections_on_every_unit_gradient():
    # g1 = (1, 1), g2 = (2, -2), orthogonal: d . u_1 = a1 sqrt 2 = d . u_2 = a2 2 sqrt 2 with
    # a1 + a2 = 1, so a = (2/3, 1/3) and d = (4/3, 0).
    shared, heads = step(create_strategy("imtl", 2, imtl_loss_scale=False), Toy([[1.0, 1.0], [2.0, -2.0]]))
    assert np.allclose(shared, [4 / 3, 0.0], atol=1e-6)
    assert np.allclose(heads, [0.5, 0.5])
    rng = np.random.default_rng(4)
    g = rng.normal(size=(4, 7))
    a = solvers.imtl_weights(g @ g.T)
    d = a @ g
    projections = g @ d / np.linalg.norm(g, axis=1)
    assert math.isclose(a.sum(), 1.0) and np.allclose(projections, projections[0])


def test_imtl_loss_scales_drive_the_scaled_losses_toward_one():
    strategy = create_strategy("imtl", 2)
    model = Toy([[1.0, 1.0], [2.0, -2.0]], losses=[0.5, 4.0])
    step(strategy, model)
    assert np.allclose(strategy.loss_scales.grad.numpy(), [0.5 - 1, 4.0 - 1])  # e^s L - 1 at s = 0
    with torch.no_grad():
        strategy.loss_scales.copy_(torch.log(torch.tensor([2.0, 0.25])))  # e^s L = 1 for both
    strategy.loss_scales.grad = None
    shared, heads = step(strategy, model)
    assert np.allclose(strategy.loss_scales.grad.numpy(), [0.0, 0.0], atol=1e-6)
    # IMTL-G on the scaled gradients (2, 2) and (1/2, -1/2): a = (1/5, 4/5), d = (4/5, 0).
    assert np.allclose(shared, [0.8, 0.0], atol=1e-6)
    assert np.allclose(heads, [2.0 / 2, 0.25 / 2], atol=1e-6)  # own scaled gradient, 1/T


# ----- GradNorm -----


def test_gradnorm_weights_converge_to_equal_weighted_gradient_norms():
    # Norms 2 and 1 and equal training rates: the balance is w_1 |g_1| = w_2 |g_2|, w = (2/3, 4/3).
    gradients = [[math.sqrt(2), math.sqrt(2)], [math.sqrt(0.5), -math.sqrt(0.5)]]
    strategy = create_strategy("gradnorm", 2)
    model = Toy(gradients)
    optimizer = torch.optim.Adam(strategy.parameters(), lr=0.01)
    for k in range(600):
        step(strategy, model, step=k)
        optimizer.step()
        strategy.loss_weights.grad = None
    assert np.allclose(strategy.task_weights(), [2 / 3, 4 / 3], atol=0.03)
    shared, heads = step(strategy, model)
    w = np.array(strategy.task_weights())
    assert np.allclose(shared, (w / 2) @ np.array(gradients), atol=1e-6)
    assert np.allclose(heads, w / 2, atol=1e-6)  # a loss weighting: every parameter is weighted


def test_gradnorm_pulls_up_the_task_that_trains_slower():
    strategy = create_strategy("gradnorm", 2)
    model = Toy([[1.0, 1.0], [1.0, -1.0]], losses=[1.0, 1.0])
    step(strategy, model)  # remembers L(0) = (1, 1)
    strategy.loss_weights.grad = None
    with torch.no_grad():
        model.heads.copy_(torch.tensor([0.2, 0.9]))  # task 2's loss fell less
    step(strategy, model, step=1)
    grad = strategy.loss_weights.grad.numpy()
    assert grad[0] > 0 > grad[1]  # gradient descent lowers w_1, raises w_2


# ----- MetaBalance -----


def test_metabalance_moves_each_auxiliary_magnitude_toward_the_target_per_parameter():
    # Two shared parameters: the auxiliary gradient is half the target's on the first, twice on the second.
    class TwoParameters(Toy):
        def __init__(self):
            super().__init__([[1.2, 1.6, 0.6, 0.8], [0.6, -0.8, 1.2, -1.6]])
            self.theta = nn.Parameter(torch.zeros(2))
            self.other = nn.Parameter(torch.zeros(2))

        def task_losses(self, batches):
            return TaskLosses(self.directions @ torch.cat([self.theta, self.other]) + self.heads)

        def forward(self, categorical, numerical, bags=()):
            return self.task_losses([]).tasks.expand(categorical.shape[0], -1)

    model = TwoParameters()
    strategy = create_strategy("metabalance", 2, metabalance_relax=0.7)
    model.zero_grad(set_to_none=True)
    strategy.backward(model.task_losses([]), StepContext(model))
    # First step: the moving averages are (1 - beta) |g| for both tasks, so the ratio is exact:
    # theta: target |2|, auxiliary |1| -> scale 0.7 * 2 + 0.3 = 1.7; other: |1| vs |2| -> 0.65.
    assert np.allclose(model.theta.grad.numpy(), (np.array([1.2, 1.6]) + 1.7 * np.array([0.6, -0.8])) / 2, atol=1e-6)
    assert np.allclose(model.other.grad.numpy(), (np.array([0.6, 0.8]) + 0.65 * np.array([1.2, -1.6])) / 2, atol=1e-6)
    assert np.allclose(model.heads.grad.numpy(), [0.5, 0.5])


# ----- loss weightings -----


def test_uncertainty_weights_converge_to_the_inverse_loss_scale():
    strategy = create_strategy("uw", 2)
    losses = TaskLosses(torch.tensor([0.5, 2.0]))
    optimizer = torch.optim.Adam(strategy.parameters(), lr=0.05)
    for _ in range(1500):
        optimizer.zero_grad()
        strategy.combine(losses, StepContext(None)).backward()
        optimizer.step()
    assert np.allclose(strategy.log_variances.detach().exp().numpy(), [0.5, 2.0], rtol=1e-3)  # e^s = L
    assert np.allclose(strategy.task_weights(), [2 * 1 / (2 * 0.5), 2 * 1 / (2 * 2.0)], rtol=1e-3)  # T / (2 L)


def test_dwa_weights_follow_the_last_two_epochs_loss_ratios():
    strategy = create_strategy("dwa", 2)
    losses = TaskLosses(torch.tensor([0.3, 0.6], requires_grad=True))
    strategy.combine(losses, StepContext(None))
    assert strategy.task_weights() == [1.0, 1.0]
    strategy.end_epoch(torch.tensor([1.0, 1.0]))
    strategy.combine(losses, StepContext(None))
    assert strategy.task_weights() == [1.0, 1.0]  # equal for the first two epochs
    strategy.end_epoch(torch.tensor([0.5, 0.9]))
    total = strategy.combine(losses, StepContext(None))
    ratios = np.array([0.5, 0.9]) / 2.0
    expected = 2 * np.exp(ratios) / np.exp(ratios).sum()  # T softmax(r / temperature)
    assert np.allclose(strategy.task_weights(), expected, atol=1e-6)
    assert math.isclose(float(total.detach()), float(expected @ [0.3, 0.6]) / 2, rel_tol=1e-6)


@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet"])
def test_rlw_draws_fresh_weights_on_the_simplex_each_step(distribution):
    strategy = create_strategy("rlw", 3, rlw_distribution=distribution)
    losses = TaskLosses(torch.ones(3))
    draws = []
    for k in range(400):
        strategy.combine(losses, StepContext(None, step=k))
        draws.append(strategy.task_weights())
    draws = np.array(draws) / 3
    assert np.allclose(draws.sum(1), 1.0, atol=1e-6) and draws.min() > 0
    assert len({tuple(d) for d in draws}) == 400
    assert np.allclose(draws.mean(0), 1 / 3, atol=0.03)  # every task alike in expectation
    strategy.combine(losses, StepContext(None, step=5))
    assert np.allclose(np.array(strategy.task_weights()) / 3, draws[5])  # a function of the step


def test_famo_weights_and_its_logit_step():
    strategy = create_strategy("famo", 2)
    losses = TaskLosses(torch.tensor([1.0, 4.0], requires_grad=True))
    context = StepContext(None, recompute_losses=lambda: TaskLosses(torch.tensor([0.5, 3.6])))
    strategy.combine(losses, context)
    # z = (1/2, 1/2): weights proportional to z_t / L_t, summing to one.
    assert np.allclose(np.array(strategy.task_weights()) / 2, [0.8, 0.2], atol=1e-6)
    strategy.after_step(context)
    # delta = log L_before - log L_after = (log 2, log(4 / 3.6)): task 2 fell less. The softmax
    # Jacobian gives gradient (+d, -d), so Adam's first step (lr * sign) moves the logits to
    # (-0.025, +0.025): task 2 gains weight.
    assert np.allclose(strategy.logits.numpy(), [-0.025, 0.025], atol=1e-6)
    strategy.combine(losses, context)
    z = np.exp([-0.025, 0.025]) / np.exp([-0.025, 0.025]).sum()
    expected = (z / [1.0, 4.0]) / (z / [1.0, 4.0]).sum()
    assert np.allclose(np.array(strategy.task_weights()) / 2, expected, atol=1e-6)


# ----- element-level sharing -----


@pytest.mark.parametrize("name", ["pcgrad", "mgda", "cagrad", "nashmtl", "imtl", "gradnorm", "metabalance"])
def test_an_element_only_one_task_reaches_stays_out_of_the_decision(name):
    # theta[2] is task 2's alone (a slice of a shared tensor, like one task's bottom in AITM's
    # bank); with it in the Gram matrix task 2's norm would grow and every method decide otherwise.
    settings = {"imtl_loss_scale": False} if name == "imtl" else {}
    mixed, mixed_heads = step(create_strategy(name, 2, **settings), Toy([[1.0, 1.0, 0.0], [-2.0, 1.0, 5.0]]))
    strategy = create_strategy(name, 2, **settings)
    alone, alone_heads = step(strategy, Toy(CONFLICT))
    assert np.allclose(mixed[:2], alone, atol=1e-5)
    # The heads show what task-specific parameters get: e_t times the task's weight for them.
    assert np.allclose(alone_heads, [0.5, 0.5]) if strategy.task_specific == "own" else True
    assert np.allclose(mixed_heads, alone_heads, atol=1e-5)
    assert math.isclose(mixed[2], 5.0 * alone_heads[1], rel_tol=1e-5)  # task 2's own gradient, nobody else's


def test_no_shared_element_means_equal_weights():
    # Each task owns its own coordinate of theta: nothing to balance.
    for name in ["pcgrad", "mgda", "cagrad", "nashmtl", "imtl", "gradnorm", "metabalance"]:
        settings = {"imtl_loss_scale": False} if name == "imtl" else {}
        shared, heads = step(create_strategy(name, 2, **settings), Toy([[3.0, 0.0], [0.0, 1.0]]))
        assert np.allclose(shared, [1.5, 0.5]) and np.allclose(heads, [0.5, 0.5]), name
