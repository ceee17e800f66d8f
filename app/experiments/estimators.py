"""Estimators at the user level: delta-method ratio differences, CUPED, a user bootstrap.

A ratio metric (CTR = starts / impressions) is a ratio of per-user sums, and a user's
impressions are correlated, so treating impressions as independent Bernoulli trials
understates the variance. The delta method linearises the ratio per user,

    R = sum(y) / sum(x),   l_u = (y_u - R x_u) / mean(x),   Var(R) ~ var(l) / n,

which is exact to first order and costs one pass (Deng et al., "Applying the delta method
in metric analytics", KDD 2018). CUPED subtracts the part of ``l`` that the users'
pre-experiment behaviour predicts, ``l - (c - mean(c)) theta``, with ``theta`` the pooled
within-arm least-squares fit; the pre-period is untouched by the treatment, so the estimate
stays unbiased and its variance shrinks by the share of variance the covariates explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Difference:
    """Canary minus champion of one metric, with the per-user spread behind its variance.

    ``variance`` is the CUPED-adjusted variance of ``difference`` (equal to ``variance_raw``
    without covariates); ``sd_*`` are the per-user standard deviations of each arm's
    (adjusted) linearised values, so that ``variance = sd_canary^2 / n_canary +
    sd_champion^2 / n_champion`` and the power at another sample size follows;
    ``variance_se`` is the standard error of ``variance`` itself (from the fourth moments),
    which says how far a power computed from it can be trusted.
    """

    champion: float
    canary: float
    difference: float
    variance: float
    variance_raw: float
    sd_champion: float
    sd_canary: float
    n_champion: int
    n_canary: int
    variance_se: float = 0.0

    @property
    def se(self) -> float:
        return float(np.sqrt(self.variance))

    @property
    def variance_reduction(self) -> float:
        """1 - Var(CUPED) / Var(raw): the share of variance the covariates removed."""
        if self.variance_raw <= 0:
            return 0.0
        return float(1.0 - self.variance / self.variance_raw)

    def se_at(self, n_canary: float, n_champion: float) -> float:
        """The standard error this metric would have with other arm sizes."""
        return float(np.sqrt(self.sd_canary**2 / n_canary + self.sd_champion**2 / n_champion))


def _linearised(y: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Ratio of sums and the per-user delta-method linearisation (mean 0 by construction)."""
    mean_x = float(x.mean())
    if mean_x <= 0:
        raise ZeroDivisionError("the denominator is zero for every user of an arm")
    ratio = float(y.sum() / x.sum())
    return ratio, (y - ratio * x) / mean_x


def _spread(centred: np.ndarray) -> tuple[float, float]:
    """Sample variance of mean-zero values and that variance's large-sample variance."""
    n = centred.shape[0]
    squares = centred * centred
    m2 = float(squares.sum()) / n
    m4 = float(squares @ squares) / n
    return m2 * n / (n - 1), max(m4 - m2 * m2, 0.0) / n


def ratio_difference(
    numerator: np.ndarray,
    denominator: np.ndarray,
    is_canary: np.ndarray,
    covariates: np.ndarray | None = None,
) -> Difference:
    """Delta-method (and CUPED, given ``covariates`` [n, k]) difference of a ratio of sums.

    ``numerator``, ``denominator``: per-user sums [n]; ``is_canary``: bool [n]; a plain mean
    is the ratio with ``denominator`` all ones. Raises ZeroDivisionError when an arm's
    denominator is zero for every user (the metric is undefined there).
    """
    y = np.asarray(numerator, dtype=np.float64)
    x = np.asarray(denominator, dtype=np.float64)
    canary = np.asarray(is_canary, dtype=bool)
    n_t = int(canary.sum())
    n_c = canary.shape[0] - n_t
    if min(n_t, n_c) < 2:
        raise ValueError("both arms need users")
    r_t, l_t = _linearised(y[canary], x[canary])
    r_c, l_c = _linearised(y[~canary], x[~canary])
    var_raw = _spread(l_t)[0] / n_t + _spread(l_c)[0] / n_c
    difference = r_t - r_c
    adj_t, adj_c = l_t, l_c
    if covariates is not None and np.size(covariates):
        c = np.asarray(covariates, dtype=np.float64).reshape(len(y), -1)
        c_t, c_c = c[canary], c[~canary]
        mean_t, mean_c = c_t.mean(axis=0), c_c.mean(axis=0)
        c_t, c_c = c_t - mean_t, c_c - mean_c
        # pooled within-arm least squares of l on c, through its k x k normal equations
        gram, moment = c_t.T @ c_t + c_c.T @ c_c, c_t.T @ l_t + c_c.T @ l_c
        theta = np.linalg.lstsq(gram, moment, rcond=None)[0]
        adj_t, adj_c = l_t - c_t @ theta, l_c - c_c @ theta
        # The CUPED estimate: the covariates' chance imbalance between arms taken out.
        difference -= float((mean_t - mean_c) @ theta)
    (var_t, var_var_t), (var_c, var_var_c) = _spread(adj_t), _spread(adj_c)
    return Difference(
        champion=r_c,
        canary=r_t,
        difference=float(difference),
        variance=var_t / n_t + var_c / n_c,
        variance_raw=float(var_raw),
        sd_champion=float(np.sqrt(var_c)),
        sd_canary=float(np.sqrt(var_t)),
        n_champion=n_c,
        n_canary=n_t,
        variance_se=float(np.sqrt(var_var_t / n_t**2 + var_var_c / n_c**2)),
    )


def quantile_difference(
    values: np.ndarray,
    user_index: np.ndarray,
    is_canary_user: np.ndarray,
    q: float,
    n_resamples: int,
    rng: np.random.Generator,
    confidence: float,
) -> tuple[float, float, float, float, float, np.ndarray]:
    """Relative difference of a quantile (canary / champion - 1), user-level bootstrap.

    ``values`` [m]: one per request; ``user_index`` [m]: the user of each request, an index
    into ``is_canary_user`` [n_users]. Users, not requests, are resampled
    (``scipy.stats.bootstrap``, percentile interval), because a user's requests are
    correlated. Returns (champion, canary, relative difference, ci low, ci high, the
    bootstrap distribution).
    """
    values = np.asarray(values, dtype=np.float64)
    user_index = np.asarray(user_index, dtype=np.int64)
    is_canary_user = np.asarray(is_canary_user, dtype=bool)
    arms = []
    for canary in (False, True):
        users = np.flatnonzero(is_canary_user == canary)
        local = np.full(is_canary_user.shape[0], -1, np.int64)
        local[users] = np.arange(users.shape[0])
        mine = local[user_index] >= 0
        order = np.argsort(values[mine], kind="stable")
        arms.append((users.shape[0], values[mine][order], local[user_index][mine][order]))

    def weighted_quantile(sample: np.ndarray, arm: int) -> np.ndarray:
        n_users, sorted_values, sorted_users = arms[arm]
        batch = sample.reshape(-1, sample.shape[-1])
        offsets = np.arange(batch.shape[0])[:, None] * n_users
        weights = np.bincount((batch + offsets).ravel(), minlength=batch.shape[0] * n_users)
        per_request = weights.reshape(batch.shape[0], n_users)[:, sorted_users]
        cumulative = np.cumsum(per_request, axis=1)
        position = (cumulative >= q * cumulative[:, -1:]).argmax(axis=1)
        return sorted_values[position].reshape(sample.shape[:-1])

    def relative(champion: np.ndarray, canary: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis
        return weighted_quantile(canary, 1) / weighted_quantile(champion, 0) - 1.0

    samples = (np.arange(arms[0][0]), np.arange(arms[1][0]))
    point_c = float(np.quantile(arms[0][1], q, method="inverted_cdf"))
    point_t = float(np.quantile(arms[1][1], q, method="inverted_cdf"))
    result = stats.bootstrap(
        samples,
        relative,
        n_resamples=n_resamples,
        batch=max(1, 2_000_000 // max(1, values.shape[0])),
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",
        rng=rng,
    )
    interval = result.confidence_interval
    return (
        point_c,
        point_t,
        point_t / point_c - 1.0,
        float(interval.low),
        float(interval.high),
        result.bootstrap_distribution,
    )
