"""The fuzzing campaign runner behind ``fuzz/run``: each harness in its own libFuzzer process.

A harness process runs ``-runs=N`` inputs starting from its committed seed corpus
(``fuzz/corpus/<name>``, read-only) and the inputs earlier runs found interesting
(``fuzz/work/<name>/corpus``, where libFuzzer adds new ones; not committed). A crash, a hang
(``-timeout``) or an exhausted memory limit writes the input to ``fuzz/work/<name>/`` as
``crash-*``/``timeout-*``/``oom-*`` and ends that harness's run; the summary names the file.
Everything a harness printed is in ``fuzz/work/<name>/log.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fuzz.common import HARNESSES

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "corpus"
WORK = ROOT / "fuzz" / "work"
LONG_RUNS = 1_000_000
SHORT_RUNS = 3_000
_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXEC_RATE = re.compile(r"^stat::average_exec_per_sec:\s+(\d+)", re.M)


@dataclass
class Result:
    """One harness run, as the summary reports it."""

    harness: str
    runs_asked: int
    runs: int = 0
    seconds: float = 0.0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    returncode: int = 0
    artifacts: list[str] = field(default_factory=list)
    log: str = ""
    fuzzer_exec_per_s: int = 0
    """libFuzzer's own average, which leaves out the process start."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.artifacts

    @property
    def exec_per_s(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def command(harness: str, runs: int, work: Path, *, timeout: int = 60, seed: int | None = None,
            extra: tuple[str, ...] = ()) -> list[str]:
    """The libFuzzer command line of one harness run."""
    out = work / harness
    cmd = [sys.executable, "-m", f"fuzz.fuzz_{harness}", f"-runs={runs}",
           f"-artifact_prefix={out}/", f"-timeout={timeout}", "-rss_limit_mb=2048",
           "-max_len=4096", "-print_final_stats=1", *extra]
    if seed is not None:
        cmd.append(f"-seed={seed}")
    return [*cmd, str(out / "corpus"), str(SEEDS / harness)]


def start(harness: str, runs: int, work: Path, **kw: object) -> tuple[subprocess.Popen[bytes],
                                                                        float, Path]:
    """Launch one harness run; its output goes to ``<work>/<harness>/log.txt``."""
    out = work / harness
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as sink:
        proc = subprocess.Popen(command(harness, runs, work, **kw),  # type: ignore[arg-type]
                                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return proc, time.monotonic(), log


def finish(harness: str, runs: int, proc: subprocess.Popen[bytes], began: float,
           log: Path) -> Result:
    """Wait for a run and read its outcome from the log."""
    code = proc.wait()
    text = log.read_text(errors="replace")
    result = Result(harness, runs, seconds=time.monotonic() - began, returncode=code,
                    log=str(log))
    final = _DONE.findall(text) or _STATUS.findall(text)
    if final:
        n, cov, ft, corp = (int(x) for x in final[-1])
        result.runs, result.cov, result.ft, result.corpus = n, cov, ft, corp
    result.artifacts = _ARTIFACT.findall(text)
    rate = _EXEC_RATE.findall(text)
    if rate:
        result.fuzzer_exec_per_s = int(rate[-1])
    return result


def run_all(harnesses: list[str], runs: int, *, jobs: int = 1, work: Path = WORK,
            timeout: int = 60, seed: int | None = None, fresh: bool = False,
            report: bool = True) -> list[Result]:
    """Run the harnesses, ``jobs`` at a time; results in the order given."""
    if fresh:
        for name in harnesses:
            shutil.rmtree(work / name, ignore_errors=True)
    pending = list(harnesses)
    running: dict[str, tuple[subprocess.Popen[bytes], float, Path]] = {}
    results: dict[str, Result] = {}
    while pending or running:
        while pending and len(running) < max(1, jobs):
            name = pending.pop(0)
            running[name] = start(name, runs, work, timeout=timeout, seed=seed)
        for name, (proc, began, log) in list(running.items()):
            if proc.poll() is not None:
                results[name] = finish(name, runs, proc, began, log)
                del running[name]
                if report:
                    print(_line(results[name]), flush=True)
        time.sleep(0.05)
    return [results[name] for name in harnesses]


def _line(r: Result) -> str:
    status = "ok" if r.ok else f"FAILED (exit {r.returncode}) {' '.join(r.artifacts)}"
    return (f"{r.harness:14} {r.runs:>9} inputs {r.seconds:8.1f} s {r.exec_per_s:8.0f}/s "
            f"cov {r.cov:5} ft {r.ft:6} corpus {r.corpus:5}  {status}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fuzz/run", description="Run the atheris harnesses (see fuzz/README.md).")
    parser.add_argument("harness", nargs="*", help=f"default: all ({', '.join(HARNESSES)})")
    parser.add_argument("--runs", type=int, default=None,
                        help=f"inputs per harness (default {LONG_RUNS:,})")
    parser.add_argument("--short", action="store_true",
                        help=f"{SHORT_RUNS:,} inputs per harness, two at a time: a smoke test")
    parser.add_argument("--jobs", "-j", type=int, default=None,
                        help="harnesses run in parallel (default 1; 2 with --short)")
    parser.add_argument("--timeout", type=int, default=60,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--seed", type=int, default=None, help="libFuzzer's random seed")
    parser.add_argument("--fresh", action="store_true",
                        help="forget what earlier runs found (fuzz/work/<harness>)")
    parser.add_argument("--work", type=Path, default=WORK, help="where corpora and crashes go")
    parser.add_argument("--list", action="store_true", help="list the harnesses and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(HARNESSES))
        return 0
    names = args.harness or list(HARNESSES)
    unknown = sorted(set(names) - set(HARNESSES))
    if unknown:
        parser.error(f"unknown harness {', '.join(unknown)} (see --list)")
    runs = args.runs if args.runs is not None else SHORT_RUNS if args.short else LONG_RUNS
    jobs = args.jobs if args.jobs is not None else 2 if args.short else 1
    print(f"{len(names)} harness(es), {runs:,} inputs each, {jobs} at a time; "
          f"logs in {args.work}/<harness>/log.txt", flush=True)
    began = time.monotonic()
    results = run_all(names, runs, jobs=jobs, work=args.work, timeout=args.timeout,
                      seed=args.seed, fresh=args.fresh)
    args.work.mkdir(parents=True, exist_ok=True)
    summary = {"runs_per_harness": runs, "seconds": round(time.monotonic() - began, 1),
               "results": [dict(asdict(r), exec_per_s=round(r.exec_per_s, 1))
                           for r in results]}
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    failed = [r for r in results if not r.ok]
    print(f"{len(results) - len(failed)} of {len(results)} harnesses clean in "
          f"{summary['seconds']} s" + ("" if not failed else
                                       f"; failed: {', '.join(r.harness for r in failed)}"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
