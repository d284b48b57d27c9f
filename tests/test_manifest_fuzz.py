"""Fuzzing the manifest and clinical readers: whatever the bytes, the answer is a validated table or a
ManifestError that names the file — never another exception, never a silent bad value."""

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mibgkit.errors import ManifestError
from mibgkit.manifest import CLINICAL_COLUMNS, MANIFEST_COLUMNS, read_clinical, read_manifest

cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "0", "1", "-1", "1e309", "nan", "inf", "2020-13-45", "2021-02-03", "yes", "M", "abdomen",
                     "../../etc/passwd", "x" * 300, "1,5", "\"", "NB001", " 3 "]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


def table(columns, draw_rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(draw_rows)
    return buf.getvalue()


@st.composite
def csv_text(draw, schema):
    names = [c.name for c in schema]
    cols = draw(st.lists(st.sampled_from(names + ["patient_name", "extra", ""]), min_size=1, max_size=12, unique=True))
    if draw(st.booleans()) and "patient_id" not in cols:
        cols = ["patient_id", *cols]
    n = draw(st.integers(0, 5))
    rows = [[draw(cells) for _ in cols] for _ in range(n)]
    return table(cols, rows)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_text(MANIFEST_COLUMNS))
def test_manifest_reader_never_crashes(tmp_path, text):
    p = tmp_path / "data_manifest.csv"
    p.write_text(text)
    try:
        m = read_manifest(p)
    except ManifestError as e:
        assert "data_manifest.csv" in str(e)
    else:  # accepted: then it really is valid
        assert m.index.is_unique and (m["efs_days"] > 0).all() and set(m["efs_event"]) <= {0, 1}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=csv_text(CLINICAL_COLUMNS))
def test_clinical_reader_never_crashes(tmp_path, text):
    p = tmp_path / "clinical.csv"
    p.write_text(text)
    try:
        c = read_clinical(p)
    except ManifestError as e:
        assert "clinical.csv" in str(e)
    else:
        assert c.index.is_unique and "patient_name" not in c and "extra" not in c
        for col in CLINICAL_COLUMNS:
            if col.levels and col.name in c:
                assert set(c[col.name].dropna()) <= set(col.levels)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes(tmp_path, data):
    p = tmp_path / "data_manifest.csv"
    p.write_bytes(data)
    try:
        read_manifest(p)
    except ManifestError:
        pass
