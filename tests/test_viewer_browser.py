"""The viewer in a real browser: ``notebooks/explore.ipynb`` served by Voilà, driven by headless Chromium.

It checks what an analyst sees: the widget renders, the numbers panel shows extraction's ASP, and
changing the MTV method, nudging the fraction slider and clicking "next" change the number in the
page to extraction's value for the new inputs.

Needs Chromium (the ``chromium`` command, or the browser named by ``MIBGKIT_CHROMIUM``), Voilà and
Playwright's Python package (no browser download: it drives the system Chromium); skipped with the
reason when one is missing. With ``MIBGKIT_VIEWER_SCREENSHOT=docs/img/viewer.png`` the screenshot is
also written there (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mibgkit.extraction import extract
from mibgkit.manifest import read_manifest
from mibgkit.viewer import format_number

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 240_000


def _chromium() -> str | None:
    named = os.environ.get("MIBGKIT_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser_tools():
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (no `chromium` command; set MIBGKIT_CHROMIUM to a Chromium binary)")
    try:
        import voila  # noqa: F401
    except ImportError:
        pytest.skip("Voilà is not installed (pip install voila)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        pytest.skip("Playwright's Python package is not installed (pip install playwright; no browser download needed)")
    return chromium


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("viewer-browser")
    generate_cohort(out, n=3, seed=11, progress=False, workers=1)
    return out


@pytest.fixture(scope="module")
def app(browser_tools, cohort, tmp_path_factory):
    """``explore.ipynb`` with this cohort's parameters, served by Voilà on a free localhost port."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    folder = tmp_path_factory.mktemp("voila")
    nb = load_notebook_node(str(NOTEBOOK))
    nb = parameterize_notebook(nb, {"manifest": str(cohort / "data_manifest.csv"), "patient_id": "NB001"})
    nbformat.write(nb, folder / "explore.ipynb")
    (folder / "config").mkdir()
    port = _free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / "config"), "PYTHONUNBUFFERED": "1"}
    log = open(folder / "voila.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", "explore.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--show_tracebacks=True"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Voilà exited ({proc.returncode}):\n{(folder / 'voila.log').read_text()[-3000:]}")
            try:  # any HTTP answer will do (the page itself would start a kernel)
                with urllib.request.urlopen(url + "api/status", timeout=5):
                    break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"Voilà did not answer:\n{(folder / 'voila.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, folder
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # Voilà and the kernel it started (its own process group)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def _asp(manifest, pid, **kwargs) -> str:
    features, _ = extract(manifest.loc[[pid]], progress=False, native_shape=False, **kwargs).tables()
    return format_number("asphericity", features.loc[pid, "asphericity"])


def test_viewer_in_voila(app, cohort, browser_tools, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, folder = app
    manifest = read_manifest(cohort / "data_manifest.csv")
    expected_roi = _asp(manifest, "NB001")
    expected_pm = _asp(manifest, "NB001", mtv_method="percent_max")
    expected_step = _asp(manifest, "NB001", mtv_method="percent_max", mtv_params={"fraction": 0.41})
    expected_next = _asp(manifest, "NB002", mtv_method="percent_max", mtv_params={"fraction": 0.41})
    assert len({expected_roi, expected_pm, expected_step}) == 3

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_tools, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1640, "height": 1400})
            page.goto(url, timeout=TIMEOUT_MS)
            asp = page.locator('td[data-key="asphericity"]')
            try:
                expect(asp).to_have_text(expected_roi, timeout=TIMEOUT_MS)
            except AssertionError:
                page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
                raise AssertionError(f"viewer did not render; Voilà log:\n{(folder / 'voila.log').read_text()[-3000:]}")
            expect(page.locator('td[data-key="patient_id"]')).to_have_text("NB001")
            expect(page.locator(".widget-image").first).to_be_visible()

            page.locator(".widget-dropdown", has_text="MTV").locator("select").select_option("percent_max")
            expect(asp).to_have_text(expected_pm, timeout=60_000)

            handle = page.locator(".widget-slider", has_text="fraction").locator(".noUi-handle")
            handle.focus()
            handle.press("ArrowRight")  # one step of the slider: 0.40 -> 0.41
            expect(page.locator('td[data-key="mtv_method"]')).to_have_text("percent_max (0.41)", timeout=60_000)
            expect(asp).to_have_text(expected_step, timeout=60_000)

            page.get_by_role("button", name="next ▶").click()
            expect(page.locator('td[data-key="patient_id"]')).to_have_text("NB002", timeout=60_000)
            expect(asp).to_have_text(expected_next, timeout=60_000)

            page.get_by_role("button", name="previous", exact=False).click()
            expect(asp).to_have_text(expected_step, timeout=60_000)
            page.get_by_role("button", name="save markups").click()  # relative to the manifest's folder
            expect(page.get_by_text("saved NB001.mrk.json")).to_be_visible(timeout=60_000)
            assert (cohort / "viewer_markups" / "NB001.mrk.json").is_file()
            time.sleep(1.5)  # the CT arrives from its background thread
            shot = tmp_path / "viewer.png"
            page.locator(".mibgkit-viewer").screenshot(path=str(shot))
            target = os.environ.get("MIBGKIT_VIEWER_SCREENSHOT")
            if target:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(shot, target)
        finally:
            browser.close()
