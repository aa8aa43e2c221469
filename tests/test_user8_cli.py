"""A new user's first commands: ``fuseline-nb`` with odd arguments says what is wrong, never hangs.

Each test runs the installed command in a real process, as a user types it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).with_name("fuseline-nb")


def _cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": ""})


def test_run_with_no_workers_is_refused_at_once_not_left_waiting(tmp_path: Path) -> None:
    # before: "running 'tour' ... on 0 worker processes" and a progress line that never moved
    proc = _cli("run", "fuseline_nb.examples:tour", "--workers", "0", cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert "--workers must be >= 1" in proc.stderr and "not 0" in proc.stderr
    assert "running" not in proc.stdout


@pytest.mark.slow
def test_run_names_an_input_no_step_reads(tmp_path: Path) -> None:
    # a misspelt input ran the tour on its default n=100 without a word
    proc = _cli("run", "fuseline_nb.examples:tour", "--workers", "1", "-i", "N=5", "-i", "delay=0",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ("no step of 'tour' reads the input(s) 'N' (its steps read: delay, n); check the name after --input"
            in proc.stderr)
    proc = _cli("run", "fuseline_nb.examples:tour", "--workers", "1", "-i", "n=5", "-i", "delay=0",
                cwd=tmp_path)
    assert proc.returncode == 0 and "reads the input" not in proc.stderr, proc.stderr


def test_subcommand_help_is_plain_text_that_says_what_the_command_does(tmp_path: Path) -> None:
    broker = _cli("broker", "--help", cwd=tmp_path).stdout
    worker = _cli("worker", "--help", cwd=tmp_path).stdout
    # before: broker --help printed the module docstring with ``markup`` and :mod:`roles`;
    # worker --help had no description at all
    assert "``" not in broker and ":mod:" not in broker
    assert "Serve a broker over HTTP" in broker and "fuseline-nb worker" in broker
    assert "Import the named workflows" in worker and "--dask" in worker.split("options:")[0]


def test_run_names_a_missing_input_in_the_commands_words(tmp_path: Path) -> None:
    # before: "MissingInputError: ... pass them in the run's inputs, e.g. wf.run({'n': ...})" — Python, not
    # the command line — and only after the worker processes had started
    (tmp_path / "flows.py").write_text(
        "import fuseline_nb as fl\n"
        "def half(n: int, by: int) -> float:\n"
        "    return n / by\n"
        "wf = fl.workflow_from_functions(outputs=[half], workflow_id='half')\n")
    proc = _cli("run", "flows:wf", "-i", "by=2", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("fuseline-nb run: missing run input(s) 'n' (needed by 'half'): give each with --input, "
                           "e.g. --input n=VALUE\n")


@pytest.mark.parametrize("timeout", ["-1", "0", "nan", "inf"])
def test_run_refuses_a_timeout_that_is_no_time(tmp_path: Path, timeout: str) -> None:
    # before: -1 and 0 said "run ... still running after -1.0 s" at once; nan and inf waited forever
    proc = _cli("run", "fuseline_nb.examples:tour", "--timeout", timeout, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == f"fuseline-nb run: --timeout must be a number of seconds > 0, not {float(timeout)}\n"


@pytest.mark.parametrize(("args", "said"), [
    (["broker", "--lease-seconds", "0"], "fuseline-nb broker: --lease-seconds must be a number > 0, not 0.0"),
    (["broker", "--lease-seconds", "nan"], "fuseline-nb broker: --lease-seconds must be a number > 0, not nan"),
    (["broker", "--worker-ttl", "-5"], "fuseline-nb broker: --worker-ttl must be a number > 0, not -5.0"),
    (["broker", "--max-body", "0"], "fuseline-nb broker: --max-body must be a number >= 1, not 0"),
    (["worker", "flows:daily", "--broker", "http://127.0.0.1:1", "--poll-wait", "-1"],
     "fuseline-nb worker: --poll-wait must be a number >= 0, not -1.0"),
    (["worker", "flows:daily", "--broker", "http://127.0.0.1:1", "--grace", "-1"],
     "fuseline-nb worker: --grace must be a number >= 0, not -1.0"),
    (["worker", "flows:daily", "--broker", "http://127.0.0.1:1", "--dask", "tcp://127.0.0.1:1",
      "--max-in-flight", "0"], "fuseline-nb worker: --max-in-flight must be a number >= 1, not 0"),
    (["worker", "flows:daily", "--broker", "http://127.0.0.1:1", "--max-in-flight", "5"],
     "fuseline-nb worker: --max-in-flight applies to --dask only: it bounds the steps submitted to the Dask "
     "cluster at once"),
])
def test_service_commands_refuse_numbers_that_make_no_sense(tmp_path: Path, args: list[str], said: str) -> None:
    # before: a Python traceback naming the parameter (lease_seconds, max_in_flight; a nan lease blamed
    # worker_ttl), or --poll-wait -1 crashing each worker process in a loop, or -1 / 0 / nan taken silently
    (tmp_path / "flows.py").write_text("import fuseline_nb as fl\n"
                                       "def one() -> int:\n    return 1\n"
                                       "daily = fl.workflow_from_functions(outputs=[one], workflow_id='daily')\n")
    proc = _cli(*args, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == said
