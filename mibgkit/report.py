"""Run the workbook's notebooks with papermill and render them as code-free HTML reports.

Each notebook in :data:`NOTEBOOKS` is executed in order with the run's parameters injected after
its ``parameters`` cell, then rendered with nbconvert without input cells. A failing notebook
stops the run: its partial report is written as ``NAME.failed.html`` beside the previous good
``NAME.html`` (which is kept), and the error names the notebook, the cell and the exception.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pandas as pd

from .errors import MibgkitError
from .outputs import exclusive, write_text

#: The workbook, in execution order: (file stem, title).
NOTEBOOKS: tuple[tuple[str, str], ...] = (
    ("00_data_qc", "Data and quality control"),
    ("01_feature_extraction", "Feature extraction"),
    ("02_cohort_table", "Table 1: patient characteristics"),
    ("03_cox_regression", "Table 2: Cox regression"),
    ("04_roc_cutoffs", "Table 3: ROC cutoffs"),
    ("05_kaplan_meier", "Kaplan–Meier analysis of event-free survival"),
    ("06_robustness", "Beyond the paper: validation and robustness"),
    ("07_reader_agreement", "Beyond the paper: reader agreement and feature robustness"),
    ("08_external_validation", "Beyond the paper: external validation of the published model"),
    ("09_checklist", "Reporting checklists: IBSI, Radiomics Quality Score, TRIPOD+AI"),
)

#: Notebooks that analyse the validation cohort (``validation_manifest``) rather than the run's own.
VALIDATION_NOTEBOOKS = ("08_external_validation",)
#: Notebooks that are told the validation cohort beside the run's own (``validation_manifest``).
BOTH_COHORTS_NOTEBOOKS = ("09_checklist",)


class ReportError(MibgkitError):
    """A notebook failed while the reports were being produced."""


@dataclass
class NotebookRun:
    name: str
    title: str
    status: str
    seconds: float
    html: str
    not_estimable: list = field(default_factory=list)


def not_estimable(executed_notebook: str | os.PathLike) -> list[dict]:
    """The ``{what, reason}`` items an executed notebook reported as not estimable
    (the metadata :meth:`mibgkit.notebook.Session.finish` attaches to its list)."""
    import nbformat

    from .notebook import NOT_ESTIMABLE_KEY

    nb = nbformat.read(executed_notebook, as_version=4)
    return [item for cell in nb.cells for out in cell.get("outputs", [])
            for item in out.get("metadata", {}).get(NOT_ESTIMABLE_KEY, [])]


def default_notebooks_dir() -> Path:
    """The ``notebooks/`` folder of the mibgkit checkout."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def _scrub(text: str, roots: list[str]) -> str:
    """``text`` with each of ``roots`` (absolute folders) replaced by ``…``, longest first."""
    for root in sorted({r for r in roots if r and len(r) > 1}, key=len, reverse=True):
        text = text.replace(root, "…")
    return text


def render_html(notebook_path: str | os.PathLike, *, hide_paths: list[str] | None = None) -> str:
    """HTML of an executed notebook without code cells or prompts.

    Error outputs are reduced to the exception's name and message (no traceback), and every folder
    in ``hide_paths`` (plus the Python installation, the mibgkit checkout and the home folder) is
    replaced by ``…`` in error and stream outputs, so a failed report shows no machine paths.
    """
    import sys

    import nbformat
    from nbconvert import HTMLExporter

    roots = [*(hide_paths or []), sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parents[1]),
             str(Path.home())]
    nb = nbformat.read(notebook_path, as_version=4)
    for cell in nb.cells:
        for i, out in enumerate(cell.get("outputs", [])):
            if out.get("output_type") == "error":
                text = _scrub(f"{out.get('ename', 'Error')}: {out.get('evalue', '')}", roots)
                cell.outputs[i] = nbformat.v4.new_output("stream", name="stderr", text=text + "\n")
            elif out.get("output_type") == "stream":
                out["text"] = _scrub(out.get("text", ""), roots)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return body


def _index_html(runs: list[NotebookRun], title: str) -> str:
    rows = "\n".join(
        f"<tr><td><a href='{html.escape(r.html)}'>{html.escape(r.title)}</a></td><td>{html.escape(r.status)}</td>"
        f"<td style='text-align:right'>{len(r.not_estimable) or ''}</td>"
        f"<td style='text-align:right'>{r.seconds:.1f}</td></tr>"
        for r in runs
    )
    missing = "".join(
        f"<li><a href='{html.escape(r.html)}'>{html.escape(r.title)}</a>: <b>{html.escape(m['what'])}</b> — "
        f"{html.escape(m['reason'])}</li>"
        for r in runs for m in r.not_estimable)
    missing_html = (f"<h2>Not estimable in this cohort</h2><p>These numbers cannot be estimated from this cohort; "
                    f"each report says why in its place.</p><ul>{missing}</ul>") if missing else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:.4rem .6rem;border-bottom:1px solid #ddd}}
th{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Reproduction and extension of Zhou et al. 2025 (EJNMMI Research): 123I-MIBG SPECT/CT uptake ratios,
tumour asphericity and event-free survival. Each report shows the published numbers beside this run's
and ends with its provenance.</p>
<table><tr><th>report</th><th>status</th><th>not estimable</th><th>seconds</th></tr>
{rows}
</table>
{missing_html}
</body></html>
"""


def run_report(
    manifest: str | os.PathLike,
    *,
    out_dir: str | os.PathLike = "reports",
    parameters: Mapping | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
    progress: bool = True,
    lock_wait_s: float = 10.0,
    validation_manifest: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Execute and render the workbook for ``manifest``; returns the timing table.

    Parameters
    ----------
    manifest : path
        ``data_manifest.csv`` of the cohort.
    out_dir : path
        Where ``NAME.html``, ``index.html`` and the executed notebooks (``_executed/``) go.
    parameters : mapping, optional
        Extra notebook parameters (e.g. ``mtv_method``, ``clinical``, ``cutoff_asp``).
    notebooks_dir : path, optional
        Folder of the ``.ipynb`` files (default: the checkout's ``notebooks/``).
    only : list of str, optional
        Run only these notebooks (file stems).
    lock_wait_s : float
        Seconds a second report on the same ``out_dir`` waits for the first before it stops with an
        :class:`~mibgkit.errors.OutputError` (:func:`mibgkit.outputs.exclusive`).
    validation_manifest : path, optional
        ``data_manifest.csv`` of the external-validation cohort: notebook 08 applies the frozen
        published model to it (``manifest`` is then its derivation cohort) and notebook 09 reports
        both. None: notebook 08 validates the published model on ``manifest`` itself.
    """

    out = Path(out_dir).resolve()
    with exclusive(out, what="report", wait_s=lock_wait_s):
        return _run_report(manifest, out, parameters=parameters, notebooks_dir=notebooks_dir, only=only,
                           progress=progress, validation_manifest=validation_manifest)


def _notebook_parameters(name: str, params: dict, validation: str | None) -> dict:
    """The parameters one notebook gets: the validation notebooks see the validation cohort."""
    if validation is None:
        return params
    if name in VALIDATION_NOTEBOOKS:
        return {**params, "manifest": validation, "derivation_manifest": params["manifest"],
                "clinical": None}
    if name in BOTH_COHORTS_NOTEBOOKS:
        return {**params, "validation_manifest": validation}
    return params


def _kernel_manager_class():
    """The notebooks' kernels talk over local IPC sockets (files in the Jupyter runtime folder)
    rather than unencrypted TCP on localhost, which ipykernel warns about on every start."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return LocalKernelManager


def _run_report(manifest, out: Path, *, parameters, notebooks_dir, only, progress,
                validation_manifest=None) -> pd.DataFrame:
    import papermill as pm

    executed = out / "_executed"
    executed.mkdir(parents=True, exist_ok=True)
    nb_dir = Path(notebooks_dir or default_notebooks_dir()).resolve()
    params = {"manifest": str(Path(manifest).resolve()), "workdir": str(out / "_work"),
              "tables_dir": str(out / "tables"), **dict(parameters or {})}
    validation = None if validation_manifest is None else str(Path(validation_manifest).resolve())
    hide = [str(Path(manifest).resolve().parent), str(out), str(nb_dir)]
    if validation is not None:
        hide.append(str(Path(validation).parent))
    runs: list[NotebookRun] = []
    for name, title in NOTEBOOKS:
        if only and name not in only:
            continue
        src = nb_dir / f"{name}.ipynb"
        if not src.is_file():
            raise ReportError(f"notebook {name}.ipynb not found", path=src)
        dst = executed / f"{name}.ipynb"
        t0 = time.perf_counter()
        if progress:
            print(f"[report] {name} ...", flush=True)
        try:
            pm.execute_notebook(str(src), str(dst), parameters=_notebook_parameters(name, params, validation),
                                cwd=str(nb_dir), progress_bar=False,
                                kernel_name="python3", log_output=False,
                                kernel_manager_class=_kernel_manager_class())
        except pm.PapermillExecutionError as e:
            write_text(out / f"{name}.failed.html", render_html(dst, hide_paths=hide))
            runs.append(NotebookRun(name, title, "failed", time.perf_counter() - t0, f"{name}.failed.html"))
            write_text(out / "index.html", _index_html(runs, "mibgkit reports"))
            raise ReportError(
                f"notebook {name} failed in cell {e.exec_count or e.cell_index}: {e.ename}: {e.evalue} "
                f"(partial report: {name}.failed.html; the previous {name}.html is kept)",
                path=src,
            ) from None
        write_text(out / f"{name}.html", render_html(dst, hide_paths=hide))
        (out / f"{name}.failed.html").unlink(missing_ok=True)
        runs.append(NotebookRun(name, title, "ok", time.perf_counter() - t0, f"{name}.html", not_estimable(dst)))
    write_text(out / "index.html", _index_html(runs, "mibgkit reports"))
    return pd.DataFrame([r.__dict__ for r in runs])
