"""The small problems gradient methods solve each step, over a (T, T) Gram matrix ``K = G G^T``.

Every method here decides from the inner products of the task gradients alone, so each step's
decision is a problem in T (a handful of) variables, solved on the CPU in float64 whatever the size
of the model. Each function returns weights ``w`` (T,) such that the method's direction is
``sum_t w_t g_t``.
"""

from __future__ import annotations

import numpy as np

# Relative size under which a squared norm counts as zero.
_TINY = 1e-12


def min_norm_weights(gram: np.ndarray, tolerance: float = 1e-12, max_iter: int = 500) -> np.ndarray:
    """The point of the simplex minimising ``|sum_t a_t g_t|^2 = a^T K a``: MGDA's min-norm element.

    Wolfe's min-norm-point algorithm, written with inner products only: a corral ``S`` of tasks
    whose affine hull's min-norm point lies inside their convex hull; each major step adds the
    task whose gradient has the smallest inner product with the current point, each minor step
    moves toward the new affine minimiser and drops the tasks whose weight reaches zero. It ends
    on the exact answer in finitely many steps (the authors' Frank-Wolfe solver only approaches
    it); for two tasks that is ``a_1 = clip((g_2 - g_1).g_2 / |g_1 - g_2|^2, 0, 1)``.
    """
    task_num = gram.shape[0]
    scale = max(float(np.max(np.diag(gram))), _TINY)
    alpha = np.zeros(task_num)
    alpha[int(np.argmin(np.diag(gram)))] = 1.0
    corral = [int(np.argmin(np.diag(gram)))]
    for _ in range(max_iter):
        ka = gram @ alpha
        value = float(alpha @ ka)
        newcomer = int(np.argmin(ka))
        if value - ka[newcomer] <= tolerance * scale or newcomer in corral:
            break
        corral.append(newcomer)
        for _ in range(task_num + 1):
            size = len(corral)
            system = np.zeros((size + 1, size + 1))
            system[:size, :size] = gram[np.ix_(corral, corral)]
            system[:size, size] = system[size, :size] = 1.0
            rhs = np.zeros(size + 1)
            rhs[size] = 1.0
            affine = np.linalg.lstsq(system, rhs, rcond=None)[0][:size]  # min |sum mu_i g_i| with sum mu = 1
            current = alpha[corral]
            if np.all(affine > -1e-12):
                alpha[:] = 0.0
                alpha[corral] = np.clip(affine, 0.0, None) / np.clip(affine, 0.0, None).sum()
                break
            negative = affine < 0
            step = float(np.min(current[negative] / (current[negative] - affine[negative])))
            moved = current + step * (affine - current)
            alpha[:] = 0.0
            alpha[corral] = np.clip(moved, 0.0, None)
            corral = [t for t in corral if alpha[t] > 1e-15]
            alpha /= alpha.sum()
    return alpha


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's combination ``d = g_0 + (c |g_0| / |g_w|) g_w`` as weights on the task gradients.

    ``g_0`` is the mean gradient and ``w`` minimises ``g_w . g_0 + c |g_0| |g_w|`` over the simplex
    (the dual of ``max_d min_t g_t . d`` within ``|d - g_0| <= c |g_0|``); solved by SLSQP, as
    the authors do, with the analytic gradient and a tight tolerance.
    """
    from scipy.optimize import minimize

    task_num = gram.shape[0]
    mean = np.full(task_num, 1.0 / task_num)
    toward_mean = gram @ mean  # (T,) g_t . g_0
    radius = c * float(np.sqrt(max(mean @ toward_mean, 0.0)))  # c |g_0|
    if radius == 0.0:
        return mean

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        norm = float(np.sqrt(max(w @ gram @ w, _TINY)))
        return float(w @ toward_mean) + radius * norm, toward_mean + radius * (gram @ w) / norm

    found = minimize(
        objective, mean, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * task_num,
        constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},),
        options={"ftol": 1e-12, "maxiter": 200},
    )  # fmt: skip
    w = np.clip(found.x, 0.0, None)
    w /= w.sum()
    norm = float(np.sqrt(max(w @ gram @ w, _TINY * max(float(np.max(np.diag(gram))), _TINY))))
    return mean + (radius / norm) * w


def nash_weights(gram: np.ndarray, max_iter: int = 100, polish_steps: int = 60) -> np.ndarray:
    """Nash-MTL's bargaining solution: the ``a > 0`` with ``K a = 1 / a`` (element-wise).

    It is the minimiser of the strictly convex ``a^T K a / 2 - sum_t log a_t``, found by damped
    Newton steps (the authors approximate it with a sequence of convex programs). Solved first on
    ``K / |K|_F`` plus a tiny ridge, which always has a root (a task with no shared gradient gets
    a large but finite weight) but moves it (by up to ~1e-4 where gradients nearly cancel); then
    plain Newton steps on ``K`` itself from there, each kept only while it shrinks the residual
    ``max_t |(K a)_t a_t - 1|``. Where ``K a = 1 / a`` has a root, the answer is that root to
    rounding; where it has none (a zero gradient, gradients that cancel), the ridged one stands.
    """
    task_num = gram.shape[0]
    scale = float(np.linalg.norm(gram))
    if scale <= 0.0:
        return np.ones(task_num)
    k = gram / scale
    ridged = k + 1e-8 * np.eye(task_num)
    alpha = 1.0 / np.sqrt(np.diag(ridged))  # the answer when the gradients are orthogonal

    def value(a: np.ndarray) -> float:
        return 0.5 * float(a @ ridged @ a) - float(np.log(a).sum())

    for _ in range(max_iter):
        gradient = ridged @ alpha - 1.0 / alpha
        if float(np.abs(gradient * alpha).max()) < 1e-12:
            break
        step = np.linalg.solve(ridged + np.diag(1.0 / alpha**2), gradient)
        length, current = 1.0, value(alpha)
        while np.any(alpha - length * step <= 0) or value(alpha - length * step) > current - 1e-4 * length * float(gradient @ step):
            length *= 0.5
            if length < 1e-12:
                break
        alpha = alpha - length * step

    def residual(a: np.ndarray) -> float:
        return float(np.abs((k @ a) * a - 1.0).max())

    for _ in range(polish_steps):
        try:
            polished = alpha - np.linalg.solve(k + np.diag(1.0 / alpha**2), k @ alpha - 1.0 / alpha)
        except np.linalg.LinAlgError:  # no root: a weight has run off to where 1/a^2 vanishes beside K
            break
        if np.any(polished <= 0) or residual(polished) >= residual(alpha):
            break
        alpha = polished
    return alpha / np.sqrt(scale)


def imtl_weights(gram: np.ndarray) -> np.ndarray:
    """IMTL-G's closed form: the ``a`` (summing to one) whose ``g = sum_t a_t g_t`` has equal
    projections on every task's unit gradient ``u_t = g_t / |g_t|``.

    ``a_{2:T} = g_1 U^T (D U^T)^{-1}`` with rows ``D_t = g_1 - g_t``, ``U_t = u_1 - u_t``, and
    ``a_1 = 1 - sum a_{2:T}``, written with inner products only.
    """
    task_num = gram.shape[0]
    norms = np.sqrt(np.maximum(np.diag(gram), _TINY * max(float(np.max(np.diag(gram))), _TINY)))
    # (g_i . u_j) = K_ij / |g_j|
    proj = gram / norms[None, :]
    first = proj[0, 0] - proj[0, 1:]  # (T-1,) g_1 . (u_1 - u_t)
    # (g_1 - g_s) . (u_1 - u_t) = K_11/n_1 - K_1t/n_t - K_s1/n_1 + K_st/n_t
    du = proj[0, 0] - proj[0, 1:][None, :] - proj[1:, 0][:, None] + proj[1:, 1:]  # (T-1, T-1)
    rest = np.linalg.lstsq(du.T, first, rcond=None)[0]  # a_{2:T} du = first
    alpha = np.empty(task_num)
    alpha[1:] = rest
    alpha[0] = 1.0 - rest.sum()
    return alpha


def pcgrad_weights(gram: np.ndarray, orders: list[np.ndarray]) -> np.ndarray:
    """PCGrad's summed projected gradients, ``sum_i g_i^PC``, as weights on the task gradients.

    ``g_i^PC`` starts as ``g_i``; for each task ``j`` in ``orders[i]``, when ``g_i^PC . g_j < 0``
    it loses its component along ``g_j``. ``orders[i]`` holds every task, ``i`` included, as in
    the authors' code and LibMTL: once earlier projections have turned ``g_i^PC`` against the
    original ``g_i`` (possible from three tasks on), it is projected off ``g_i`` too. Every
    ``g_i^PC`` stays a combination ``sum_k C_ik g_k``, so the projections need only ``K``.
    Returns the column sums of ``C`` (gradients of zero norm are never projected on).
    """
    task_num = gram.shape[0]
    scale = max(float(np.max(np.diag(gram))), _TINY)
    coefficients = np.eye(task_num)
    for i in range(task_num):
        for j in orders[i]:
            if gram[j, j] <= _TINY * scale:
                continue
            dot = float(coefficients[i] @ gram[:, j])
            if dot < 0:
                coefficients[i, j] -= dot / gram[j, j]
    return coefficients.sum(axis=0)
