"""What every workbook notebook does around its methods: set up, load the cohort, say what could
not be estimated and what warned, and end with provenance.

A notebook opens with ``nb = notebook.start(globals())``, has its ``parameters`` cell, loads the
cohort with ``cohort = nb.cohort(globals())`` (which records every parameter the notebook
defines, however papermill set it) and ends with ``nb.finish()``. In between it holds narrative,
tables and figures; the analyses are functions of :mod:`mibgkit.workbook`.

Warnings are shown, not silenced: while a notebook runs, every warning mibgkit or a model raises
is collected and listed at the end under "Warnings" (once each); only third-party API noise
(:data:`NOISE`, by category) is dropped. Numbers that could not be estimated on this cohort are
collected with their reasons (:meth:`Session.not_estimable`) and listed at the end; the list also
travels in the output's metadata (:data:`NOT_ESTIMABLE_KEY`), from which ``mibgkit report``
builds the index page's list.

Every string that comes from the data (IDs, file names, QC messages, levels) reaches HTML through
:func:`text` or a DataFrame (which escapes), never raw into Markdown.
"""

from __future__ import annotations

import html
import re
import types
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping

import pandas as pd

from .workbook import NotEstimable

__all__ = ["start", "Session", "NotEstimable", "text", "table", "mtv_params", "NOISE", "NOT_ESTIMABLE_KEY"]

#: Warning categories that are third-party API noise (deprecations), dropped in reports.
NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)

#: Metadata key of the display output that carries a notebook's not-estimable list.
NOT_ESTIMABLE_KEY = "mibgkit_not_estimable"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def text(value) -> str:
    """A data string made safe for Markdown and HTML: tags escaped, Markdown punctuation inert.

    >>> text("<img src=x onerror=alert(1)>")
    '&lt;img src=x onerror=alert\\\\(1\\\\)&gt;'
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(value), quote=False))


@dataclass
class Session:
    """One notebook run: its clock, parameters, collected warnings and not-estimable numbers."""

    started: datetime
    before: frozenset
    parameters: dict = field(default_factory=dict)
    warned: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    cohort_obj: object = None
    _showwarning: object = None

    # -- parameters and cohort -------------------------------------------------------------------

    def record_parameters(self, namespace: Mapping) -> dict:
        """The notebook's parameters: the names its parameters cell (and papermill) defined."""
        new = {k: v for k, v in namespace.items()
               if k not in self.before and not k.startswith("_") and not isinstance(v, types.ModuleType)
               and not callable(v) and k not in ("nb", "In", "Out")}
        self.parameters.update(new)
        return new

    def cohort(self, namespace: Mapping):
        """Record the parameters and load the cohort they name (:func:`mibgkit.cohort.load_cohort`).

        Uses ``manifest``, ``clinical``, ``workdir``, ``mtv_method`` and ``mtv_fraction`` from the
        notebook's namespace.
        """
        from .cohort import load_cohort

        p = self.record_parameters(namespace)
        self.cohort_obj = load_cohort(p["manifest"], clinical=p.get("clinical"), workdir=p["workdir"],
                                      mtv_method=p.get("mtv_method", "roi"), mtv_params=mtv_params(p))
        return self.cohort_obj

    # -- what could not be estimated --------------------------------------------------------------

    def not_estimable(self, items: NotEstimable | Iterable[NotEstimable]) -> None:
        """Record numbers this cohort cannot give (listed at the end and on the index page)."""
        for item in [items] if isinstance(items, NotEstimable) else items:
            if item not in self.missing:
                self.missing.append(item)

    def explain(self, missing: Iterable[NotEstimable], what: str) -> None:
        """Say, in the report where a number would stand, why it is not estimable (items whose
        ``what`` starts with ``what``)."""
        from IPython.display import Markdown, display

        for m in missing:
            if m.what.startswith(what):
                display(Markdown(f"*{text(m.what)}: not estimable — {text(m.reason)}.*"))

    # -- warnings --------------------------------------------------------------------------------

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = f"{category.__name__}: {message}"
        self.warned[key] = self.warned.get(key, 0) + 1

    def warnings(self) -> list[str]:
        """The distinct warnings collected so far, with how often each came."""
        return [k + (f" (×{n})" if n > 1 else "") for k, n in self.warned.items()]

    # -- the foot of the report ------------------------------------------------------------------

    def finish(self, *, inputs: Iterable[str] | None = None, base=None) -> None:
        """Display the not-estimable list, the warnings and the provenance table.

        ``inputs`` and ``base`` default to the loaded cohort's files and folder. Nothing is returned:
        as a notebook's last expression, a returned table would be shown a second time, unformatted.
        """
        from IPython.display import Markdown, display

        from .provenance import provenance_table

        if self.missing:
            lines = "\n".join(f"- **{text(m.what)}**: {text(m.reason)}" for m in self.missing)
            display(Markdown("## Not estimable in this cohort\n\n" + lines),
                    metadata={NOT_ESTIMABLE_KEY: [{"what": m.what, "reason": m.reason} for m in self.missing]})
        if self.warned:
            display(Markdown("## Warnings\n\n" + "\n".join(f"- {text(w)}" for w in self.warnings())))
        display(Markdown("## Provenance"))
        cohort = self.cohort_obj
        if inputs is None and cohort is not None:
            inputs = cohort.inputs()
        if base is None:
            base = cohort.base if cohort is not None else "."
        params = dict(self.parameters)
        if cohort is not None:
            params["clinical"] = str(cohort.clinical_path)
        prov = provenance_table(params, inputs=list(inputs or []), base=base, started=self.started)
        display(table(prov, index=False))
        warnings.showwarning = self._showwarning or warnings.showwarning


def table(df: pd.DataFrame, *, index: bool = True, precision: int | None = None, formats=None,
          caption: str | None = None, na_rep: str = ""):
    """A DataFrame as a report shows it: every cell HTML-escaped, numbers formatted.

    ``formats`` as :meth:`pandas.io.formats.style.Styler.format` takes them (a mapping of column to
    format string or function); ``precision`` for the other floats.
    """
    styler = df.style.format(formats, precision=precision, na_rep=na_rep, escape="html")
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    if not index:
        styler = styler.hide(axis="index")
    return styler.set_caption(html.escape(caption)) if caption else styler


def mtv_params(parameters: Mapping) -> dict:
    """The MTV parameters a notebook's ``mtv_fraction`` gives (empty: the method's default)."""
    fraction = parameters.get("mtv_fraction")
    return {} if fraction is None else {"fraction": fraction}


def start(namespace: Mapping) -> Session:
    """Begin a notebook: house style, display options, warnings collected instead of silenced.

    ``namespace`` is the notebook's ``globals()``: names defined after this call (the parameters
    cell) are the run's parameters.
    """
    from . import plots

    plots.set_style()
    pd.set_option("display.max_columns", 40, "display.width", 200)
    session = Session(datetime.now(timezone.utc), frozenset(namespace))
    session._showwarning = warnings.showwarning
    warnings.resetwarnings()
    warnings.simplefilter("always")
    for category in NOISE:
        warnings.filterwarnings("ignore", category=category)
    warnings.showwarning = session._record
    return session
