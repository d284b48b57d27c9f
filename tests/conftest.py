"""Shared fixtures: the default synthetic cohort, generated once per test session."""

import os

import pytest
from hypothesis import settings

# The property tests draw the same examples on every run (seeded from each test's source), so
# that a run on a clean checkout is repeatable; HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("repeatable", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def default_cohort(tmp_path_factory):
    """The calibrated synthetic cohort (default seed, n = 50), as ``mibgkit synth`` writes it."""
    from mibgkit.synth.generate import DEFAULT_SEED, generate_cohort

    out = tmp_path_factory.mktemp("synthetic")
    generate_cohort(out, n=50, seed=DEFAULT_SEED, progress=False)
    return out


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the slow matrices (every cohort variant end to end); the default run samples them")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a slow matrix case; run with --run-slow (the default run samples the matrix)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow matrix case: run with --run-slow (the default run samples this matrix)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A 6-patient synthetic cohort (seed 11), the size a new user first tries."""
    from mibgkit.synth.generate import generate_cohort

    out = tmp_path_factory.mktemp("small")
    generate_cohort(out, n=6, seed=11, progress=False)
    return out
