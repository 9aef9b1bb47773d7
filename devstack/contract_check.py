"""The contract check: the API as an app team and an outside fuzzer see it, against the local stack.

``python -m devstack.contract_check [--fuzz-time-s S] [--fuzz-examples N] [--no-clients] [--no-fuzz]``
(``make contract-check`` — what CI runs — and ``make fuzz``, a longer fuzz run).

1. Starts the local stack (``python -m devstack``) on free ports and waits for ``/_local/health``.
2. Downloads the live ``GET /openapi.json`` (to ``.local/contract/openapi.json``): every later step
   reads that document, never one kept in the repository.
3. Redocly CLI lint with the ``recommended`` rules (clients/ts/redocly.yaml): 0 errors, 0 warnings.
4. TypeScript: openapi-typescript types of the document, ``clients/ts/src/drive.ts`` checked to have
   no type assertion, compiled by ``tsc --strict`` and run with node against the stack.
5. Python: an openapi-python-client package of the document, driven by ``clients/python/drive.py``.
   Both programs walk the app flow: models, submit, replay, wait, download, history, ledger,
   cancel, a 401, a 422.
6. schemathesis with ``--checks all`` and every phase (examples, coverage, fuzzing, stateful along
   the document's links), as two users of the stack (so object-level authorization is probed),
   bounded by ``--fuzz-examples`` per operation and ``--fuzz-time-s``.
7. Once every job has finished, the credits invariant (:mod:`devstack.invariants`) audited on the
   stack's table and bucket; with the fal simulator's faults off, no job may have failed either.

The tools come from pinned versions: requirements-contract.txt in ``.venv-contract`` and
clients/ts/package-lock.json (the Makefile installs both). Each step's output goes to
``.local/contract/<step>.log``. Exit code 0 when every step passed, 1 otherwise, 2 when the stack
could not be started; the stack is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from devstack.chaos.evidence import Aws, settle
from devstack.invariants import TERMINAL, Bucket, audit_items, delivered_events
from devstack.process import StackProcess

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".local" / "contract"
TS = ROOT / "clients" / "ts"
PY = ROOT / "clients" / "python"
NODE_BIN = TS / "node_modules" / ".bin"
CONTRACT_VENV = Path(os.environ.get("CONTRACT_VENV", ROOT / ".venv-contract"))
SCHEMATHESIS_CONFIG = ROOT / "devstack" / "schemathesis.toml"
CAST_PROBE = "const a = 1 as number;\nconst b = <number>a;\nconst c = [a][0]!;\nlet d: any = b;\n// @ts-ignore\n"
RICH = 1_000_000  # credits of each user the fuzzer plays: never the reason a request is refused


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    summary: str


class Check:
    def __init__(self, stack: StackProcess) -> None:
        self.stack = stack
        self.steps: list[Step] = []
        self.http = requests.Session()
        self.document = OUT / "openapi.json"

    # --- helpers -------------------------------------------------------------------------------

    def user(self, user_id: str, credits: int) -> str:
        reply = self.http.post(
            f"{self.stack.api}/_local/users", json={"user_id": user_id, "credits": credits}, timeout=30
        )
        reply.raise_for_status()
        return str(reply.json()["token"])

    def run(
        self, log: str, cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout_s: float = 300
    ) -> tuple[int, str]:
        """Run a tool; its output goes to .local/contract/<log>.log and is returned."""
        path = OUT / f"{log}.log"
        started = time.monotonic()
        try:
            done = subprocess.run(
                cmd,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            code, output = done.returncode, done.stdout
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            code, output = 124, f"{out}\n[contract-check] timed out after {timeout_s:.0f} s"
        with path.open("a") as f:
            f.write(f"$ {' '.join(cmd)}  (exit {code}, {time.monotonic() - started:.1f} s)\n{output}\n")
        return code, output

    def step(self, name: str, body: Callable[[], tuple[bool, str]]) -> bool:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            ok, summary = body()
        except Exception as exc:  # a broken step is a failed step, the others still run
            ok, summary = False, f"{type(exc).__name__}: {exc}"
        seconds = time.monotonic() - started
        self.steps.append(Step(name, ok, seconds, summary))
        print(f"   {'PASS' if ok else 'FAIL'} ({seconds:.1f} s) {summary}", flush=True)
        return ok

    # --- the steps -------------------------------------------------------------------------------

    def fetch_document(self) -> tuple[bool, str]:
        reply = self.http.get(f"{self.stack.api}/openapi.json", timeout=30)
        reply.raise_for_status()
        document = reply.json()
        self.document.write_text(json.dumps(document, indent=2))
        operations = sum(len(item) for item in document.get("paths", {}).values())
        return True, f"OpenAPI {document.get('openapi')}, {operations} operations"

    def redocly(self) -> tuple[bool, str]:
        cmd = [str(NODE_BIN / "redocly"), "lint", "--config", "../redocly.yaml", "--format=json", str(self.document)]
        code, output = self.run("redocly", cmd, cwd=TS)
        report, _ = json.JSONDecoder().raw_decode(output, output.index("{"))  # node may print more after it
        totals = report["totals"]
        for problem in report["problems"]:
            where = ", ".join(loc.get("pointer", "") for loc in problem.get("location", []))
            print(f"   {problem['severity']}: {problem['ruleId']}: {problem['message']} at {where}")
        summary = f"redocly lint (recommended): {totals['errors']} errors, {totals['warnings']} warnings"
        return code == 0 and totals["errors"] == 0 and totals["warnings"] == 0, summary

    def typescript(self) -> tuple[bool, str]:
        generated = TS / "src" / "generated"
        shutil.rmtree(generated, ignore_errors=True)
        shutil.rmtree(TS / "dist", ignore_errors=True)
        probe = OUT / "cast-probe"  # the cast check must see each kind of cast, or it proves nothing
        probe.mkdir(exist_ok=True)
        (probe / "probe.ts").write_text(CAST_PROBE)
        code, output = self.run("typescript", ["node", "check-no-casts.mjs", str(probe)], cwd=TS)
        if code == 0 or "1 file(s), 5 cast(s)" not in output:
            print(_tail(output))
            return False, "check-no-casts.mjs missed a cast in its probe"
        steps = [
            [
                str(NODE_BIN / "openapi-typescript"),
                str(self.document),
                "--default-non-nullable",
                "false",
                "-o",
                "src/generated/schema.d.ts",
            ],
            ["node", "check-no-casts.mjs", "src"],
            [str(NODE_BIN / "tsc"), "-p", "tsconfig.json", "--strict"],
        ]
        for cmd in steps:
            code, output = self.run("typescript", cmd, cwd=TS)
            if code != 0:
                print(_tail(output))
                return False, f"{Path(cmd[0]).name} {cmd[1]} failed (exit {code})"
        return self._drive("typescript", ["node", "dist/drive.js"], cwd=TS)

    def python(self) -> tuple[bool, str]:
        generated = PY / "generated"
        shutil.rmtree(generated, ignore_errors=True)
        cmd = [
            str(CONTRACT_VENV / "bin" / "openapi-python-client"),
            "generate",
            "--path",
            str(self.document),
            "--config",
            "generator.yaml",
            "--meta",
            "none",
            "--output-path",
            "generated/videogen_client",
        ]
        code, output = self.run("python", cmd, cwd=PY)
        if code != 0 or "Warning(s) encountered" in output:
            print(_tail(output))
            return False, "openapi-python-client did not generate the whole client"
        env = {"PYTHONPATH": str(generated)}
        return self._drive("python", [str(CONTRACT_VENV / "bin" / "python"), "drive.py"], cwd=PY, env=env)

    def _drive(self, log: str, cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[bool, str]:
        """One client program's app flow, as a user of its own with 100 credits."""
        user = f"{log}-{os.urandom(3).hex()}"
        env = {**(env or {}), "VIDEOGEN_API": self.stack.api, "VIDEOGEN_TOKEN": self.user(user, 100)}
        code, output = self.run(log, cmd, cwd=cwd, env=env, timeout_s=180)
        print("\n".join(f"   | {line}" for line in output.strip().splitlines()[-15:]))
        return code == 0, f"{' '.join(cmd)}: exit {code}"

    def schemathesis(self, examples: int, time_s: int) -> tuple[bool, str]:
        auth = OUT / "wfc-auth.json"  # two users: the fuzzer acts as the first, probes with the second
        auth.write_text(
            json.dumps(
                {
                    "auth": [
                        {
                            "name": name,
                            "fixedHeaders": [
                                {
                                    "name": "Authorization",
                                    "value": f"Bearer {self.user(f'fuzz-{name}-{os.urandom(3).hex()}', RICH)}",
                                }
                            ],
                        }
                        for name in ("owner", "peer")
                    ]
                }
            )
        )
        cmd = [
            str(CONTRACT_VENV / "bin" / "schemathesis"),
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "run",
            f"{self.stack.api}/openapi.json",
            "--checks",
            "all",
            # `unsupported_method` wants 405 (+ Allow) for a declared path with an undeclared method. The
            # API's front door, API Gateway's HTTP API, answers such a request itself with 404 {"message":
            # "Not Found"} (no route, no Lambda), and so does the local gateway; only `ANY` routes to a
            # Lambda could change that, and the product keeps API Gateway's answer. The undeclared methods
            # are still sent (the coverage phase's unexpected methods): a 5xx to any fails not_a_server_error.
            "--exclude-checks",
            "unsupported_method",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(examples),
            "--max-time",
            str(time_s),
            "--report",
            "junit",
            "--report-dir",
            str(OUT / "schemathesis"),
        ]
        code, output = self.run(
            "schemathesis", cmd, env={"WFC_AUTH": str(auth), "PYTHONPATH": str(ROOT)}, timeout_s=time_s + 120
        )  # the run stops itself at --max-time; the timeout is for a hung run
        lines = [line for line in output.strip().splitlines() if line.strip()]
        summary = lines[-1].strip("= ") if lines else "no output"
        if code != 0:
            print(_tail(output, 120))
        return code == 0, f"schemathesis: {summary}"

    def invariants(self) -> tuple[bool, str]:
        aws = Aws(self.stack)
        # let the jobs the fuzzer started finish (the simulator takes seconds) and the system go quiet
        items, quiet = settle(aws, self.stack.api, 90)
        unfinished = sum(1 for i in items if i["sk"] == "JOB" and i["status"] not in TERMINAL)
        result = audit_items(items, Bucket.read(aws.s3, aws.bucket), delivered_events(aws.logs, aws.event_log))
        errors = Counter(
            str((i.get("error") or {}).get("code")) for i in items if i["sk"] == "JOB" and i["status"] == "failed"
        )
        if errors:
            print(f"   failed jobs by error code: {dict(errors)}")
        for problem in result.problems[:20]:
            print(f"   {problem}")
        jobs = ", ".join(f"{n} {status}" for status, n in sorted(result.jobs.items()))
        # every simulator fault is off, so a job that failed is a bug (a cancel that lost a race, ...)
        return result.ok and quiet and not errors, (
            f"{result.users} users, jobs: {jobs or 'none'} ({unfinished} unfinished after 90 s, "
            f"{sum(errors.values())} failed); "
            f"{result.charges} charges, {result.refunds} refunds, {len(result.problems)} problems"
        )


def _tail(output: str, lines: int = 40) -> str:
    return "\n".join(f"   | {line}" for line in output.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.contract_check", description=__doc__.split("\n")[0])
    parser.add_argument("--fuzz-examples", type=int, default=10, help="schemathesis test cases per operation")
    parser.add_argument("--fuzz-time-s", type=int, default=60, help="schemathesis time budget for the whole run")
    parser.add_argument("--no-clients", action="store_true", help="skip the lint and the generated clients")
    parser.add_argument("--no-fuzz", action="store_true", help="skip schemathesis")
    args = parser.parse_args(argv)

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.log"):
        old.unlink()
    stack = StackProcess(
        seed=7,
        time_scale=0.02,
        crash_rate=0,
        reconcile_every_s=5,
        reconcile_grace_s=5,
        log_path=OUT / "stack.log",
        log_level="WARNING",
    )
    started = time.monotonic()
    checks: list[Check] = []

    def run(on: StackProcess) -> int:
        check = Check(on)
        checks.append(check)
        if check.step("fetch /openapi.json", check.fetch_document):
            if not args.no_clients:
                check.step("redocly lint", check.redocly)
                check.step("typescript client", check.typescript)
                check.step("python client", check.python)
            if not args.no_fuzz:
                check.step("schemathesis", lambda: check.schemathesis(args.fuzz_examples, args.fuzz_time_s))
        check.step("credits invariant audit", check.invariants)
        return 0

    if stack.serve(run):
        return 2
    check = checks[0]
    print(f"logs in {OUT.relative_to(ROOT)}/")
    for s in check.steps:
        print(f"  {'PASS' if s.ok else 'FAIL'}  {s.name:<26} {s.seconds:6.1f} s  {s.summary}")
    ok = all(s.ok for s in check.steps)
    print(f"contract check {'PASS' if ok else 'FAIL'} in {time.monotonic() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
