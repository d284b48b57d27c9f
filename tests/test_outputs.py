"""Outputs as open() would make them, inert in a spreadsheet, never corrupted by a second run or a full disk."""

import errno
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mibgkit import outputs
from mibgkit.errors import OutputError
from mibgkit.outputs import csv_safe, exclusive, write_csv, write_text


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text(tmp_path / "report.html", "<p>x</p>")
        write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1]}))
    finally:
        os.umask(old)
    for name in ("report.html", "t.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_an_existing_file_keeps_its_mode(tmp_path):
    target = tmp_path / "features.csv"
    target.write_text("old")
    target.chmod(0o640)
    write_text(target, "new")
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EACCES, "permission denied")])
def test_a_failing_write_is_a_clear_error_and_leaves_the_previous_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "features.csv"
    write_text(target, "previous\n")

    def fail(*_a, **_k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(outputs.os, "replace", fail)
    with pytest.raises(OutputError, match=words) as info:
        write_text(target, "new\n")
    assert str(target) in str(info.value)
    assert target.read_text() == "previous\n"
    assert sorted(os.listdir(tmp_path)) == ["features.csv"]  # no temporary left


def test_an_unwritable_folder_is_a_clear_error(tmp_path, monkeypatch):
    def refuse(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="cannot write here .permission denied"):
        write_text(tmp_path / "sub" / "x.csv", "x")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=6))
def test_no_csv_cell_starts_like_a_formula_unless_it_is_a_number(cells):
    text = outputs.csv_text(pd.DataFrame({"cell": cells, "=head": cells}))
    parsed = pd.read_csv(pd.io.common.StringIO(text), dtype=str, keep_default_na=False)
    for value in [*parsed.columns, *parsed["cell"], *parsed.iloc[:, 1]]:
        if value[:1] in ("=", "+", "-", "@", "\t", "\r"):
            float(value)  # only a number may start so


def test_numbers_stay_numbers():
    assert [csv_safe(v) for v in ("-0.5", "+3", "-1e-3", "-inf", "1.0")] == ["-0.5", "+3", "-1e-3", "-inf", "1.0"]
    assert csv_safe("-x") == "'-x" and csv_safe("@SUM(A1)") == "'@SUM(A1)" and csv_safe("=1+1") == "'=1+1"


_HOLDER = textwrap.dedent("""
    import sys, time
    from mibgkit.outputs import exclusive
    with exclusive(sys.argv[1], what="extraction"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold(folder, seconds):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_refuses_a_held_folder_naming_the_first(tmp_path):
    proc = _hold(tmp_path / "features.parts", 30)
    try:
        with pytest.raises(OutputError, match=rf"another mibgkit extraction \(process {proc.pid}\)"):
            with exclusive(tmp_path / "features.parts", what="extraction", wait_s=0):
                pass
    finally:
        proc.kill()
        proc.wait()
    with exclusive(tmp_path / "features.parts"):  # released when the holder died
        pass


def test_a_second_run_waits_for_the_first(tmp_path):
    proc = _hold(tmp_path / "out", 2.0)  # a margin for a busy machine between "held" and t0
    t0 = time.monotonic()
    with exclusive(tmp_path / "out", wait_s=20, poll_s=0.1):
        waited = time.monotonic() - t0
    proc.wait()
    assert waited > 0.3
