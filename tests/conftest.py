"""Shared fixtures: the default synthetic cohort, generated once per test session."""

import pytest


@pytest.fixture(scope="session")
def default_cohort(tmp_path_factory):
    """The calibrated synthetic cohort (default seed, n = 50), as ``mibgkit synth`` writes it."""
    from mibgkit.synth.generate import DEFAULT_SEED, generate_cohort

    out = tmp_path_factory.mktemp("synthetic")
    generate_cohort(out, n=50, seed=DEFAULT_SEED, progress=False)
    return out
