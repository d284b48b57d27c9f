r"""Forward stepwise selection as SPSS ``Forward: LR`` does it, once, for any Cox fitter.

The loop lives here and nowhere else. :func:`mibgkit.stats.cox_forward_stepwise` runs it on the
``statsmodels`` fitter of :mod:`mibgkit.stats._coxcore` (full checks and tables) and
:func:`mibgkit.stats.validation.select_model` on the vectorised likelihood of
:mod:`mibgkit.stats._coxfast` (fast enough for a thousand bootstrap repetitions); both pass the
same three steps to :class:`ForwardLR`:

``fit(names) -> fit``
    Fit the model on ``names`` (a tuple in candidate order); the result has ``.beta`` (in that
    order) and ``.loglik``; raises :class:`~mibgkit.errors.StatisticsError` when it cannot be fitted.
``null_loglik() -> float``
    The partial log-likelihood without covariates.
``score(names, beta) -> float``
    The efficient score statistic :math:`U^\top I^{-1} U` of the model on ``names`` at ``beta``
    (raises :class:`numpy.linalg.LinAlgError` when the information is singular).

Algorithm (:meth:`ForwardLR.run`):

1. Start from the empty model :math:`M`.
2. **Entry.** For each candidate :math:`x \notin M` compute the score statistic of adding it at
   :math:`(\hat\beta_M, 0)`; :math:`S \sim \chi^2_1`. Enter the candidate with the smallest p if it
   is below ``p_enter``; otherwise stop. A candidate whose statistic cannot be computed (collinear
   with :math:`M`) cannot enter.
3. **Removal.** For each :math:`x \in M`, the LR statistic
   :math:`2\{\ell(\hat\beta_M) - \ell(\hat\beta_{M\setminus x})\} \sim \chi^2_1`; remove the one
   with the largest p if it exceeds ``p_remove`` and repeat step 3; otherwise go to 2.
4. An entry that would recreate a model already visited ends the procedure (cycling guard),
   logged as ``"stop (cycle)"``; ``max_steps`` (default ``4 × candidates + 4``) is a further limit.

Ties between equal p (to 1e-12) are broken by the order of the candidates.

References
----------
.. [1] IBM SPSS Statistics 27 Algorithms, "COXREG: Stepwise selection".
.. [2] Hosmer DW, Lemeshow S, May S. *Applied Survival Analysis*, 2nd ed. Wiley, 2008, ch. 5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import special

__all__ = ["ForwardLR", "StepwiseTrace", "univariate_screen"]


def _chi2_1df_sf(statistic: float) -> float:
    """P(χ²₁ > statistic): the function ``scipy.stats.chi2.sf(statistic, 1)`` evaluates, called directly
    (the same values; the distribution object's argument handling cost more than a likelihood fit)."""
    return special.chdtrc(1, statistic)


def univariate_screen(p_values: Mapping[str, float], screen_p: float | None) -> list[str]:
    """The candidates that pass a univariate screen: finite p ≤ ``screen_p`` (all when None).

    The paper screens on the univariate Wald p at 0.05; a covariate whose univariate model could
    not be fitted (p is NaN) does not pass. Order is that of ``p_values``.

    Examples
    --------
    >>> univariate_screen({"a": 0.01, "b": 0.2, "c": float("nan"), "d": 0.05}, 0.05)
    ['a', 'd']
    """
    if screen_p is None:
        return list(p_values)
    return [k for k, p in p_values.items() if np.isfinite(p) and p <= screen_p]


@dataclass
class StepwiseTrace:
    """What :meth:`ForwardLR.run` did.

    ``selected`` is the final model in order of entry; ``steps`` one dict per entry/removal
    (``step, variable, action, statistic, df, p, model``); ``candidates`` the score statistic and p
    of every candidate outside the model at every step (``step, variable, statistic, p``);
    ``cycled`` whether the cycling guard ended the procedure.
    """

    selected: list[str]
    steps: list[dict] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    cycled: bool = False


class ForwardLR:
    """SPSS ``Forward: LR`` over one fitter (see the module docstring for the three steps).

    Fits are cached by their set of covariates, so each model is fitted once however often the
    loop visits it.
    """

    def __init__(self, candidates: Sequence[str], fit: Callable, null_loglik: Callable[[], float],
                 score: Callable[[tuple, np.ndarray], float]):
        self.candidates = list(candidates)
        self._col = {c: i for i, c in enumerate(self.candidates)}
        self._fit, self._null, self._score = fit, null_loglik, score
        self._fits: dict[tuple[str, ...], object] = {}
        self._ll0: float | None = None

    def _key(self, model: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(model, key=self._col.get))

    def fit(self, model: Sequence[str]):
        """The (cached) fit of ``model``, covariates in candidate order."""
        key = self._key(model)
        if key not in self._fits:
            self._fits[key] = self._fit(key)
        return self._fits[key]

    def coefficients(self, model: Sequence[str]) -> np.ndarray:
        """The fitted coefficients of ``model``, in the order of ``model``."""
        coef = dict(zip(self._key(model), self.fit(model).beta))
        return np.array([coef[c] for c in model])

    def loglik(self, model: Sequence[str]) -> float:
        """Partial log-likelihood of the fitted ``model`` (the null model when empty)."""
        if not model:
            if self._ll0 is None:
                self._ll0 = float(self._null())
            return self._ll0
        return float(self.fit(model).loglik)

    def score_for(self, model: Sequence[str], x: str) -> float:
        """Score statistic of adding ``x`` to the fitted ``model``."""
        beta = np.concatenate([self.coefficients(model), [0.0]]) if model else np.zeros(1)
        return float(self._score((*model, x), beta))

    def lr_for(self, model: Sequence[str], x: str) -> float:
        """LR statistic of dropping ``x`` from ``model`` (floored at 0)."""
        rest = [m for m in model if m != x]
        return max(2.0 * (self.loglik(model) - self.loglik(rest)), 0.0)

    def run(self, p_enter: float = 0.05, p_remove: float = 0.10, max_steps: int | None = None) -> StepwiseTrace:
        """Run the selection; returns the :class:`StepwiseTrace`."""
        max_steps = 4 * len(self.candidates) + 4 if max_steps is None else max_steps
        trace = StepwiseTrace([])
        model: list[str] = []
        visited = {frozenset()}
        step = 0
        while step < max_steps:
            # --- entry
            outside = [c for c in self.candidates if c not in model]
            if not outside:
                break
            scores = []
            for c in outside:
                try:
                    s = self.score_for(model, c)
                except np.linalg.LinAlgError:
                    s = np.nan  # collinear with the current model: cannot enter
                scores.append((c, s, _chi2_1df_sf(s) if np.isfinite(s) else np.nan))
                trace.candidates.append({"step": step + 1, "variable": c, "statistic": s, "p": scores[-1][2]})
            usable = [s for s in scores if np.isfinite(s[2])]
            if not usable:
                break
            best_p = min(s[2] for s in usable)
            best = next(s for s in usable if s[2] <= best_p + 1e-12)
            if best[2] >= p_enter:
                break
            new_model = [*model, best[0]]
            if frozenset(new_model) in visited:
                trace.cycled = True
                trace.steps.append({"step": step + 1, "variable": best[0], "action": "stop (cycle)",
                                    "statistic": best[1], "df": 1, "p": best[2], "model": ", ".join(model)})
                break
            self.fit(new_model)  # raises a clear error on separation / non-convergence
            model = new_model
            visited.add(frozenset(model))
            step += 1
            trace.steps.append({"step": step, "variable": best[0], "action": "enter", "statistic": best[1],
                                "df": 1, "p": best[2], "model": ", ".join(model)})
            # --- removal, repeated while something leaves
            while model and step < max_steps:
                lrs = [(c, lr, _chi2_1df_sf(lr)) for c in model for lr in [self.lr_for(model, c)]]
                worst_p = max(s[2] for s in lrs)
                worst = next(s for s in lrs if s[2] >= worst_p - 1e-12)
                if worst[2] <= p_remove:
                    break
                model = [m for m in model if m != worst[0]]
                visited.add(frozenset(model))
                step += 1
                trace.steps.append({"step": step, "variable": worst[0], "action": "remove",
                                    "statistic": worst[1], "df": 1, "p": worst[2], "model": ", ".join(model)})
        trace.selected = model
        return trace
