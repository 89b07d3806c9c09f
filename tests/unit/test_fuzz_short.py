"""The fuzz harnesses in the test suite: every seed replayed in-process, then a short
coverage-guided run of every harness under atheris.

The long campaign (a million inputs per harness, ``fuzz/run``) is too slow for a test run; a
few thousand inputs per harness still catches a harness that no longer fits the code it
drives, and a regression on the paths the seeds already reach. atheris runs one fuzz target
per process (libFuzzer exits when done), so the short run starts one process per harness, two
at a time, with a fixed seed and a throw-away work directory; the committed corpora are only
read.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz import seeds
from fuzz.common import HARNESSES

SEED_DIR = Path(seeds.CORPUS)


@pytest.fixture
def pyl2tp_logging() -> Iterator[None]:
    """The harnesses route pyl2tp's warnings to their recorder; give other tests the
    logger back as it was."""
    log = logging.getLogger("pyl2tp")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    log.handlers[:], log.propagate, log.level = saved


@pytest.mark.parametrize("harness", HARNESSES)
def test_every_seed_runs_clean_in_process(harness: str, pyl2tp_logging: None) -> None:
    module = importlib.import_module(f"fuzz.fuzz_{harness}")
    files = sorted((SEED_DIR / harness).iterdir())
    assert files, f"no seeds for {harness}: run python -m fuzz.seeds"
    for path in files:
        try:
            module.test_one_input(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{harness} seed {path.name} fails") from exc


def test_committed_corpus_is_what_seeds_py_builds(tmp_path: Path) -> None:
    if not (seeds.AVP_PCAP.exists() and seeds.VECTORS.exists()):
        pytest.skip("shared/reference is not next to the repository")
    built = seeds.build(HARNESSES, tmp_path)
    for harness in HARNESSES:
        committed = {p.name for p in (SEED_DIR / harness).iterdir()}
        fresh = {p.name for p in (tmp_path / harness).iterdir()}
        assert committed == fresh, f"{harness}: corpus is stale, run python -m fuzz.seeds"
        assert built[harness] == len(fresh)


def test_short_coverage_guided_run_of_every_harness(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    from fuzz import runner

    runs = runner.SHORT_RUNS
    results = runner.run_all(list(HARNESSES), runs, jobs=2, work=tmp_path, seed=1, report=False)
    problems = []
    for result in results:
        if not result.ok or result.runs < runs:
            tail = Path(result.log).read_text(errors="replace")[-3000:]
            problems.append(f"{result.harness}: exit {result.returncode}, {result.runs} runs, "
                            f"artifacts {result.artifacts}\n{tail}")
    assert not problems, "\n\n".join(problems)
