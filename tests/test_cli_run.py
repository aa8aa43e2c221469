"""``fuseline-nb run``: the README's main job, end to end, plus its parsing and progress display."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuseline_nb.cli import build_parser
from fuseline_nb.cli.loader import load_workflow
from fuseline_nb.cli.run import Progress, parse_inputs
from fuseline_nb.examples import tour
from fuseline_nb.workflow.events import Event
from fuseline_nb.workflow.status import Status

EXE = Path(sys.executable).with_name("fuseline-nb")


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[str]]]:
    """Process groups a test starts: killed at its end whatever happened (a failed test leaves none)."""
    started: list[subprocess.Popen[str]] = []
    yield started
    import signal

    for proc in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate(timeout=10)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "run", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ""})


@pytest.mark.slow
def test_the_main_job_runs_the_tour_and_summarises_it_from_duckdb(tmp_path: Path) -> None:
    proc = _run("fuseline_nb.examples:tour", "--workers", "2", "--db", "runs.duckdb",
                "--input", "n=10", "--input", "delay=0.05", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "running 'tour' (8 steps) on 2 worker processes" in out
    assert "✔ Validate" in out and "↷ Reject" in out  # a plain line per finished step
    assert "tour [" in out and "8/8  7 succeeded  1 skipped" in out
    assert "\x1b[" not in out  # no terminal codes when not a terminal
    assert ": SUCCEEDED in " in out
    assert "outputs: {'total': 45, 'mean': 4.5, 'largest': 9, 'source': 'mirror_a'}" in out
    assert "steps (from SQL over the steps view):" in out
    table = out.split("steps (from SQL over the steps view):")[1]
    assert "Report    SUCCEEDED  1" in table and "Reject    SKIPPED    0" in table
    assert " w1 " in table or " w2 " in table
    assert "history: runs.duckdb holds 1 run (1 succeeded)" in out
    assert (tmp_path / "runs.duckdb").exists()


@pytest.mark.slow
def test_a_failing_workflow_from_the_current_directory_exits_1(tmp_path: Path) -> None:
    (tmp_path / "mywf.py").write_text(textwrap.dedent('''
        import fuseline_nb as fl

        def load(n: int) -> int:
            return n

        def check(v: int = fl.Depends(load)) -> int:
            raise ValueError(f"value {v} is bad")

        def build():
            return fl.workflow_from_functions([check], workflow_id="failing")
    '''))
    proc = _run("mywf:build", "--workers", "1", "-i", "n=3", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "✘ check" in proc.stdout and "ValueError: value 3 is bad" in proc.stdout
    assert "steps (from the in-memory history):" in proc.stdout
    assert "history:" not in proc.stdout


def test_a_bad_target_exits_2_with_a_message(tmp_path: Path) -> None:
    proc = _run("fuseline_nb.examples:nothing", cwd=tmp_path)
    assert proc.returncode == 2
    assert "module 'fuseline_nb.examples' has no attribute 'nothing'" in proc.stderr


def test_the_parser_knows_run() -> None:
    args = build_parser().parse_args(["run", "m:a", "--workers", "3", "--db", "x.duckdb", "-i", "k=1"])
    assert (args.target, args.workers, args.db, args.input) == ("m:a", 3, "x.duckdb", ["k=1"])
    assert callable(args.handler)


def test_inputs_and_targets_are_validated() -> None:
    assert parse_inputs(["s=hello world", "f=1.5", "b=true", "n=null"]) == {
        "s": "hello world", "f": 1.5, "b": True, "n": None}
    with pytest.raises(ValueError, match="an input must look like KEY=VALUE, not 'oops'"):
        parse_inputs(["oops"])
    with pytest.raises(ValueError, match="expected MODULE:ATTR"):
        load_workflow("fuseline_nb.examples")
    with pytest.raises(TypeError, match="is a str, not a Workflow"):
        load_workflow("fuseline_nb.examples:__name__")
    assert load_workflow("fuseline_nb.examples:build_tour").workflow_id == "tour"


def test_the_terminal_progress_redraws_one_coloured_line() -> None:
    out = io.StringIO()
    p = Progress(tour, out, tty=True, names={"abc": "w1"})
    p.run_id = "r1"
    p.on_event(Event("step_started", "r1", 1, 10.0, "Validate", Status.RUNNING, "abc", 1))
    p.on_event(Event("step_started", "other-run", 1, 10.0, "Total", Status.RUNNING))  # ignored
    p.render()
    p.on_event(Event("step_finished", "r1", 2, 10.5, "Validate", Status.SUCCEEDED, "abc", 1))
    p.render(final=True)
    text = out.getvalue()
    assert text.count("\r\x1b[2K") == 3
    assert "\x1b[33m1 running\x1b[0m" in text and "0/8" in text
    assert "Validate" in text and "0.50s  w1" in text and "1/8" in text
    assert text.endswith("\n")


def _slow_tour(cwd: Path, groups: list) -> subprocess.Popen[str]:
    """``fuseline-nb run`` of the tour with 30 s steps, in a process group of its own, Ctrl-C as in a shell."""
    import signal

    proc = subprocess.Popen(
        [str(EXE), "run", "fuseline_nb.examples:tour", "--workers", "2", "--db", "runs.duckdb",
         "-i", "delay=30"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    groups.append(proc)
    return proc


@pytest.mark.slow
def test_ctrl_c_cancels_the_run_and_stops_the_workers_at_once(tmp_path: Path, groups: list) -> None:
    import signal
    import time

    import psutil

    proc = _slow_tour(tmp_path, groups)
    me = psutil.Process(proc.pid)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # wait until the progress line shows steps running (not a fixed sleep)
        seen.append(line)
        if re.search(r"\b[12] running\b", line):
            break
    assert seen and "running" in seen[-1], seen
    kids = me.children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - t0 < 5
    assert re.search(r"interrupted; run \w+ cancelled; workers stopped", err), err
    time.sleep(0.5)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE]
    import duckdb  # Ctrl-C cancelled the run before exiting: the history says so

    with duckdb.connect(str(tmp_path / "runs.duckdb"), read_only=True) as con:
        assert con.execute("SELECT state FROM runs").fetchall() == [("CANCELLED",)]
        steps = dict(con.execute("SELECT step, state FROM steps").fetchall())
        assert steps["Total"] == "CANCELLED" and steps["Report"] == "CANCELLED"
        assert set(steps.values()) <= {"SUCCEEDED", "CANCELLED"}, steps
        causes = con.execute("SELECT DISTINCT detail_json FROM events WHERE kind = 'step_finished' "
                             "AND state = 'CANCELLED'").fetchall()
        assert causes and all("run cancelled" in c for (c,) in causes)


@pytest.mark.slow
def test_run_with_cache_reuses_the_results_of_the_last_invocation(tmp_path: Path) -> None:
    (tmp_path / "cachedwf.py").write_text(textwrap.dedent('''
        import fuseline_nb as fl

        def load(n: int) -> list:
            return list(range(n))

        def total(rows: list = fl.Depends(load)) -> int:
            return sum(rows)

        wf = fl.workflow_from_functions([total], workflow_id="cached-cli")
    '''))
    first = _run("cachedwf:wf", "--workers", "1", "--db", "h.duckdb", "--cache", "-i", "n=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "steps cached" not in first.stdout and "outputs: 6" in first.stdout
    second = _run("cachedwf:wf", "--workers", "1", "--db", "h.duckdb", "--cache", "-i", "n=4", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert ": SUCCEEDED in " in second.stdout and "(2 of 2 steps cached)" in second.stdout
    assert "outputs: 6" in second.stdout


@pytest.mark.slow
@pytest.mark.parametrize("when", ["first child", "both workers"])
def test_ctrl_c_while_the_workers_start_ends_the_cli_at_once_without_tracebacks(tmp_path: Path, when: str,
                                                                              groups: list) -> None:
    # Ctrl-C reaches the whole process group. It used to kill a worker still importing (a
    # KeyboardInterrupt traceback; multiprocessing's resource tracker unblocks SIGINT in the
    # starting thread), and a Ctrl-C landing in a DuckDB query's import was swallowed by DuckDB:
    # the CLI ran on for minutes. Now workers are born with SIGINT held back and the CLI
    # remembers the press.
    import signal
    import time

    import psutil

    proc = _slow_tour(tmp_path, groups)
    me = psutil.Process(proc.pid)
    want = 1 if when == "first child" else 3  # the resource tracker and two workers
    end = time.monotonic() + 60
    while len(me.children()) < want and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.005)
    kids = me.children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert time.monotonic() - t0 < 10
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert re.search(r"interrupted(; run \w+ cancelled;| while starting; nothing ran,|;) workers stopped", err), err
    assert "WARNING" not in err, err
    time.sleep(0.5)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(k.cmdline())]


def test_a_ctrl_c_during_a_duckdb_query_comes_back_as_keyboard_interrupt(tmp_path: Path) -> None:
    # a Ctrl-C during a long query on the history's connection (one DuckDB thread) stops it and
    # comes back as a Ctrl-C, and the storage still closes cleanly
    code = textwrap.dedent(f'''
        import os, signal, threading
        from fuseline_nb.broker.storage.duckdb import DuckDBRuntimeStorage
        storage = DuckDBRuntimeStorage({str(tmp_path / "h.duckdb")!r})
        caught = threading.Event()
        def press() -> None:  # Ctrl-C every 0.5 s until one is caught: a loaded machine may still
            while not caught.wait(0.5):  # be importing when the first lands (DuckDB drops those)
                os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=press, daemon=True).start()
        try:
            storage._execute("SELECT count(*) FROM range(20000000000) t(i) WHERE i % 7 = 3")
            print("finished")
        except KeyboardInterrupt as exc:
            caught.set()
            print("KeyboardInterrupt", exc)
        except BaseException as exc:
            caught.set()
            print("other:", type(exc).__name__, exc)
        storage.close()
        print("closed")
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("KeyboardInterrupt") and done.stdout.endswith("closed\n"), (
        done.stdout, done.stderr)


def test_duckdbs_query_interrupted_error_comes_back_as_keyboard_interrupt(tmp_path: Path) -> None:
    # DuckDB on several threads turns a Ctrl-C during a query into RuntimeError('Query
    # interrupted'), which an `except Exception` on the way would swallow; the storage's one
    # call into DuckDB hands it back as a Ctrl-C
    from fuseline_nb.broker.storage.duckdb import DuckDBRuntimeStorage

    def interrupted() -> None:
        raise RuntimeError("Query interrupted")

    with DuckDBRuntimeStorage(tmp_path / "h.duckdb") as storage:
        with pytest.raises(KeyboardInterrupt, match=r"a query on .*h\.duckdb' was interrupted"):
            storage._db(interrupted)
        with pytest.raises(RuntimeError, match="something else"):  # other RuntimeErrors stay themselves
            storage._db(lambda: (_ for _ in ()).throw(RuntimeError("something else")))


def test_one_loader_names_the_culprit_for_run_and_worker(tmp_path: Path) -> None:
    """``run`` and ``worker`` load MODULE:ATTR the same way, and say which part failed and why."""
    (tmp_path / "broken.py").write_text("import fuseline_nb\nundefined_name\n")
    (tmp_path / "builders.py").write_text(textwrap.dedent('''
        def build():
            raise RuntimeError("no config file")
    '''))
    cases = {
        "broken:wf": "workflow 'broken:wf': importing module 'broken' raised NameError: name 'undefined_name' "
                     "is not defined",
        "builders:build": "workflow 'builders:build': calling build() to build the workflow raised RuntimeError: "
                          "no config file",
        "nowhere:wf": "workflow 'nowhere:wf': cannot import module 'nowhere' (No module named 'nowhere')",
    }
    for spec, message in cases.items():
        ran = _run(spec, cwd=tmp_path)
        assert ran.returncode == 2 and message in ran.stderr, (spec, ran.stderr)
        served = subprocess.run([str(EXE), "worker", spec, "--broker", "http://127.0.0.1:9"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
        assert served.returncode == 2 and message in served.stderr, (spec, served.stderr)


def test_a_history_path_that_cannot_be_a_file_is_named(tmp_path: Path) -> None:
    """``run --db``, ``broker --db`` and ``Session(path)`` open brokers one way and refuse a bad path alike."""
    import fuseline_nb as fl
    from fuseline_nb.errors import StorageError

    ran = _run("fuseline_nb.examples:tour", "--workers", "1", "--db", str(tmp_path), cwd=tmp_path)
    assert ran.returncode == 2
    assert f"the run history '{tmp_path}' is a folder: pass a file in it, e.g. '{tmp_path}/history.duckdb'" \
        in ran.stderr
    missing = tmp_path / "no" / "h.duckdb"
    served = subprocess.run([str(EXE), "broker", "--db", str(missing), "--port", "0"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 2, served.stderr
    assert f"the folder '{tmp_path / 'no'}' does not exist (create it first, or pass another path)" in served.stderr
    with pytest.raises(StorageError, match="is a folder: pass a file in it"):
        fl.Session(tmp_path)
    assert not list(tmp_path.glob("*.duckdb"))
