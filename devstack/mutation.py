"""The mutation score of the domain and the services against the unit tests (``make mutate``).

``python -m devstack.mutation [--budget-s S] [--jobs N] [--min-score P] [--report-only] [PATTERN ...]``

1. Lays out the work dir ``.mutmut/`` (git-ignored, rebuilt on every run): the package as
   ``./videogen`` — mutmut names a mutant after its import path, so the package must sit at the
   top — beside ``tests/``, ``devstack/``, ``docs/``, ``template.yaml`` and ``pyproject.toml`` (whose ``[tool.mutmut]``
   says what is mutated and which tests run).
2. Runs the pinned mutmut there (``mutmut run``; its log in ``.mutmut/mutmut.log``), at most ``--jobs``
   mutants at a time, each with mutmut's own per-mutant timeout, the whole run bounded by
   ``--budget-s``: past it the run is interrupted, and every mutant not checked by then counts as a
   survivor. ``PATTERN`` (mutmut's names, globs allowed: ``'videogen.domain.timing*'``) restricts
   the run and the score to those mutants.
3. Prints the score per module and in total — killed / mutants, where a mutant whose tests time
   out counts as killed and one no unit test reaches counts as a survivor — then each survivor with
   its diff, marked when docs/mutation.md does not explain it.

Exit code 0 when the total score is at least ``--min-score`` percent (90), 1 below it, 2 when
mutmut itself failed (its clean run or its forced-fail check).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutmut"
DOC = ROOT / "docs" / "mutation.md"
# What the work dir holds (name there -> the repository's path); [tool.mutmut] also_copy brings
# devstack/, docs/, events/, statemachines/ and template.yaml into mutmut's own copy.
LAYOUT = {
    "videogen": ROOT / "layers" / "videogen" / "videogen",
    "tests": ROOT / "tests",
    "devstack": ROOT / "devstack",
    "docs": ROOT / "docs",
    "events": ROOT / "events",
    "statemachines": ROOT / "statemachines",
    "template.yaml": ROOT / "template.yaml",
    "pyproject.toml": ROOT / "pyproject.toml",
}
MUTATED = ("videogen/domain/", "videogen/services/")
KILLED = {"killed", "timeout", "caught by type check"}
DOCUMENTED = re.compile(r"`(videogen\.[^`\s]+__mutmut_\d+)`")


@dataclass
class Mutant:
    name: str
    module: str
    path: str
    status: str


def lay_out() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, source in LAYOUT.items():
        if source.is_dir():
            shutil.copytree(source, WORK / name, ignore=skip)
        else:
            shutil.copy2(source, WORK / name)


def run_mutmut(patterns: list[str], jobs: int, budget_s: float) -> tuple[int, bool]:
    """mutmut's exit code and whether it finished within the budget."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # it would import the unmutated package
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(jobs), *patterns]
    with open(WORK / "mutmut.log", "wb") as log:
        proc = subprocess.Popen(
            command, cwd=WORK, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return proc.wait(timeout=budget_s), True
        except subprocess.TimeoutExpired:
            print(f"mutation budget of {budget_s:.0f} s spent: interrupting mutmut", flush=True)
            os.killpg(proc.pid, signal.SIGINT)  # mutmut stops its children and saves what it has
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            return 0, False


def collect(patterns: list[str]) -> list[Mutant]:
    from mutmut.__main__ import status_by_exit_code

    mutants = []
    for meta in sorted((WORK / "mutants" / "videogen").rglob("*.py.meta")):
        path = meta.relative_to(WORK / "mutants").as_posix().removesuffix(".meta")
        if not path.startswith(MUTATED):
            continue
        module = path.removesuffix(".py").replace("/", ".")
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            if not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns):
                mutants.append(Mutant(name, module, path, status_by_exit_code[code]))
    return mutants


@functools.cache
def mutated_module(path: str) -> Any:
    import libcst

    return libcst.parse_module((WORK / "mutants" / path).read_text(encoding="utf-8"))


def changed_lines(mutant: Mutant) -> list[str]:
    """The lines the mutant changes: the original function against the mutant, both read from the
    mutated module (mutmut's own line index mixes up some methods, ``__init__`` among them)."""
    import libcst
    from mutmut.__main__ import read_mutant_function, read_original_function

    module = mutated_module(mutant.path)
    original, changed = (
        libcst.Module([read(module, mutant.name)]).code.strip().splitlines()
        for read in (read_original_function, read_mutant_function)
    )
    diff = difflib.unified_diff(original, changed, lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def percent(killed: int, total: int) -> float:
    return 100.0 * killed / total if total else 0.0


def report(mutants: list[Mutant], min_score: float, complete: bool) -> bool:
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for m in mutants:
        by_module[m.module][m.status] += 1
    print("mutation score: killed / mutants (a timeout is a kill; no covering unit test or not checked is not)")
    width = max((len(name) for name in by_module), default=10)
    for module, counts in sorted(by_module.items()):
        total = sum(counts.values())
        killed = sum(counts[s] for s in KILLED)
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in KILLED)
        print(f"  {module:<{width}}  {killed:4d}/{total:<4d} {percent(killed, total):5.1f} %  {others}")
    total = len(mutants)
    killed = sum(1 for m in mutants if m.status in KILLED)
    score = percent(killed, total)
    survivors = [m for m in mutants if m.status not in KILLED]
    documented = set(DOCUMENTED.findall(DOC.read_text(encoding="utf-8"))) if DOC.exists() else set()
    undocumented = [m for m in survivors if m.name not in documented and m.status != "not checked"]
    print(f"  {'total':<{width}}  {killed:4d}/{total:<4d} {score:5.1f} %  (threshold {min_score:g} %)")
    print(f"\nsurviving mutants: {len(survivors)}, {len(undocumented)} not explained in docs/mutation.md")
    unchecked = [m for m in survivors if m.status == "not checked"]
    if unchecked:
        print(f"  ({len(unchecked)} mutants not checked before the budget ran out, not listed one by one)")
    for m in survivors:
        if m.status == "not checked":
            continue
        mark = "" if m.name in documented else "  [not in docs/mutation.md]"
        print(f"  {m.name}  ({m.status}){mark}")
        for line in changed_lines(m):
            print(f"      {line.strip()[:1]} {line[1:].strip()}")
    ok = complete and total > 0 and score >= min_score
    verdict = "PASS" if ok else "FAIL"
    reason = "" if complete else " (the run was cut short by its budget)"
    print(f"\n{verdict}: {killed}/{total} mutants killed, {score:.1f} %{reason}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", help="mutmut mutant names or globs (default: every mutant)")
    parser.add_argument("--budget-s", type=float, default=1200, help="wall-clock limit of the mutmut run")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--min-score", type=float, default=90.0, help="percent of mutants that must be killed")
    parser.add_argument("--report-only", action="store_true", help="print the results of the last run again")
    args = parser.parse_args(argv)

    complete = True
    if not args.report_only:
        started = time.monotonic()
        lay_out()
        code, complete = run_mutmut(args.patterns, args.jobs, args.budget_s)
        print(f"mutmut ran {time.monotonic() - started:.0f} s (log: .mutmut/mutmut.log)")
        if code != 0:
            tail = (WORK / "mutmut.log").read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
            print("\n".join(line for line in tail.splitlines()[-40:] if line.strip()))
            print(f"mutmut failed (exit code {code})")
            return 2
    mutants = collect(args.patterns)
    complete = complete and all(m.status != "not checked" for m in mutants)
    return 0 if report(mutants, args.min_score, complete) else 1


if __name__ == "__main__":
    sys.exit(main())
