"""Code fingerprints (workflow/fingerprint.py) and data fingerprints (workflow/datafingerprint.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading

import pytest

from fuseline_nb import Depends, FunctionStep, Step, Workflow, workflow_from_functions
from fuseline_nb.workflow.datafingerprint import data_fingerprint
from fuseline_nb.workflow.fingerprint import step_fingerprint


def _fp_of(source: str, name: str = "f", **globs) -> str:
    """The fingerprint of function ``name`` defined by ``source`` in a fresh namespace."""
    namespace = {"__name__": "__main__", **globs}
    exec(compile(textwrap.dedent(source), "<cell>", "exec"), namespace)
    return step_fingerprint(FunctionStep(namespace[name]))


class TestCode:
    def test_comments_whitespace_and_docstrings_do_not_count(self):
        a = _fp_of("def f(x):\n    return x + 1\n")
        b = _fp_of('\n\ndef f(x):\n    """Add one."""\n    # one more\n    return x  +  1\n')
        assert a == b

    def test_a_changed_constant_operator_or_parameter_counts(self):
        base = _fp_of("def f(x):\n    return x + 1\n")
        assert _fp_of("def f(x):\n    return x + 2\n") != base
        assert _fp_of("def f(x):\n    return x - 1\n") != base
        assert _fp_of("def f(y):\n    return y + 1\n") != base
        assert _fp_of("def f(x=3):\n    return x + 1\n") != base

    def test_a_plain_global_counts_by_value(self):
        src = "def f(x):\n    return x > THRESHOLD\n"
        assert _fp_of(src, THRESHOLD=10) == _fp_of(src, THRESHOLD=10)
        assert _fp_of(src, THRESHOLD=10) != _fp_of(src, THRESHOLD=20)
        assert _fp_of(src, THRESHOLD=(1, "a")) != _fp_of(src, THRESHOLD=(1, "b"))
        assert _fp_of(src, THRESHOLD={"k": [1, 2]}) != _fp_of(src, THRESHOLD={"k": [1, 3]})

    def test_a_frozen_dataclass_global_counts_by_its_fields(self):
        @dataclasses.dataclass(frozen=True)
        class Config:
            cutoff: int

        src = "def f(x):\n    return x > CFG.cutoff\n"
        assert _fp_of(src, CFG=Config(1)) == _fp_of(src, CFG=Config(1))
        assert _fp_of(src, CFG=Config(1)) != _fp_of(src, CFG=Config(2))

    def test_a_user_helper_counts_transitively(self):
        def cell(body: str) -> str:
            return f"def inner(v):\n    return {body}\ndef helper(v):\n    return inner(v)\n" \
                   "def f(x):\n    return helper(x)\n"

        assert _fp_of(cell("v * 2")) == _fp_of(cell("v * 2"))
        assert _fp_of(cell("v * 2")) != _fp_of(cell("v * 3"))

    def test_mutual_recursion_terminates(self):
        src = "def f(n):\n    return 0 if n == 0 else g(n - 1)\ndef g(n):\n    return f(n)\n"
        assert _fp_of(src) == _fp_of(src)

    def test_an_installed_library_counts_by_version_not_by_code(self):
        import json

        parts: list[str] = []
        from fuseline_nb.workflow.fingerprint import _Walker

        def f(x):
            return json.dumps(x)

        _Walker(parts).function(f)  # type: ignore[arg-type]
        assert any(p.startswith("lib python==") for p in parts) or "python==" in " ".join(parts)

    def test_a_class_step_counts_its_methods_bases_and_attributes(self):
        def make(factor_src: str, value: int):
            ns: dict = {"__name__": "__main__", "Step": Step}
            exec(textwrap.dedent(f"""
                class Base(Step):
                    def scale(self, x):
                        return x * {factor_src}
                class Scale(Base):
                    def __init__(self, k):
                        super().__init__()
                        self.k = k
                    def run_step(self, x):
                        return self.scale(x) + self.k
            """), ns)
            return step_fingerprint(ns["Scale"](value))

        assert make("2", 1) == make("2", 1)
        assert make("3", 1) != make("2", 1)  # the base class changed
        assert make("2", 5) != make("2", 1)  # an instance attribute changed

    def test_code_version_pins_the_fingerprint(self):
        class Reader(Step):
            code_version = "v1"

            def run_step(self):
                return open("data.csv").read()

        class Reader2(Step):
            code_version = "v1"

            def run_step(self):
                return "something else entirely"

        assert step_fingerprint(Reader()) == step_fingerprint(Reader2())
        Reader2.code_version = "v2"
        assert step_fingerprint(Reader()) != step_fingerprint(Reader2())

    def test_an_unpicklable_global_counts_by_its_type(self):
        src = "def f():\n    with LOCK:\n        return 1\n"
        assert _fp_of(src, LOCK=threading.Lock()) == _fp_of(src, LOCK=threading.Lock())

    def test_wf_fingerprints_names_every_step(self):
        def load(n):
            return list(range(n))

        def total(rows=Depends(load)):
            return sum(rows)

        wf = workflow_from_functions([total])
        fps = wf.fingerprints()
        assert list(fps) == ["load", "total"]
        assert wf.to_schema().fingerprints() == fps
        assert all(len(v) == 32 for v in fps.values())

    def test_the_fingerprint_does_not_change_the_workflow_id(self):
        def one():
            return 1

        a = Workflow(outputs=[FunctionStep(one)])

        def one():  # the cell run again, edited
            return 2

        b = Workflow(outputs=[FunctionStep(one)])
        assert a.workflow_id == b.workflow_id
        assert a.fingerprints() != b.fingerprints()

    def test_the_same_code_gives_the_same_fingerprint_in_another_process(self, tmp_path):
        module = tmp_path / "userpipe.py"
        module.write_text(textwrap.dedent("""
            LIMIT = 3
            def helper(v):
                return v[:LIMIT]
            def clean(rows):
                return helper(sorted(rows))
        """))
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import userpipe; "
                "from fuseline_nb import FunctionStep; "
                "from fuseline_nb.workflow.fingerprint import step_fingerprint; "
                "print(step_fingerprint(FunctionStep(userpipe.clean)))")
        runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                               check=True, env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip()
                for seed in ("1", "2")]
        sys.path.insert(0, str(tmp_path))
        try:
            import userpipe  # type: ignore[import-not-found]

            here = step_fingerprint(FunctionStep(userpipe.clean))
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("userpipe", None)
        assert runs == [here, here]


class TestData:
    def test_equal_values_give_equal_fingerprints(self):
        assert data_fingerprint({"a": [1, 2]}) == data_fingerprint({"a": [1, 2]})
        assert data_fingerprint({"a": [1, 2]}) != data_fingerprint({"a": [1, 3]})
        assert data_fingerprint(1) != data_fingerprint("1") != data_fingerprint(1.0)

    def test_numpy_arrays_hash_their_buffers_dtype_and_shape(self):
        np = pytest.importorskip("numpy")
        a = np.arange(12, dtype="int64")
        assert data_fingerprint(a) == data_fingerprint(a.copy())
        assert data_fingerprint(a) != data_fingerprint(a.reshape(3, 4))
        assert data_fingerprint(a) != data_fingerprint(a.astype("int32"))
        assert data_fingerprint(a.reshape(3, 4).T) == data_fingerprint(np.ascontiguousarray(a.reshape(3, 4).T))
        b = a.copy()
        b[5] = -1
        assert data_fingerprint(a) != data_fingerprint(b)

    def test_dataframes_hash_columns_index_and_values(self):
        pd = pytest.importorskip("pandas")
        df = pd.DataFrame({"x": [1, 2, 3], "name": ["a", "b", "c"]})
        assert data_fingerprint(df) == data_fingerprint(df.copy())
        assert data_fingerprint(df) != data_fingerprint(df.rename(columns={"x": "y"}))
        assert data_fingerprint(df) != data_fingerprint(df.assign(name=["a", "b", "d"]))
        assert data_fingerprint(df) != data_fingerprint(df.set_index(pd.Index([5, 6, 7])))
        assert data_fingerprint(df["x"]) == data_fingerprint(df["x"].copy())

    def test_an_unpicklable_value_is_refused_with_its_type(self):
        with pytest.raises(TypeError, match=r"a _thread.lock cannot be fingerprinted: it cannot be pickled"):
            data_fingerprint(threading.Lock())


def test_data_fingerprint_of_dates_times_and_structured_arrays() -> None:
    """datetime64 / timedelta64 columns refuse the buffer protocol; they must still hash (and by value)."""
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    days = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(5), unit="D")
    frame = pd.DataFrame({"day": days, "gap": days - days[0], "amount": np.arange(5.0)})
    assert data_fingerprint(frame) == data_fingerprint(frame.copy())
    later = frame.assign(day=frame["day"] + pd.Timedelta(seconds=1))
    assert data_fingerprint(later) != data_fingerprint(frame)
    dates = np.array(["2025-01-01", "2025-01-02"], dtype="datetime64[D]")
    assert data_fingerprint(dates) == data_fingerprint(dates.copy())
    assert data_fingerprint(dates) != data_fingerprint(dates.astype("datetime64[s]"))  # the unit counts
    pairs = np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])
    assert data_fingerprint(pairs) == data_fingerprint(pairs.copy())
    assert data_fingerprint(np.float64(3.0)) == data_fingerprint(np.float64(3.0))


def test_a_value_whose_buffers_cannot_be_read_falls_back_to_its_pickle() -> None:
    np = pytest.importorskip("numpy")

    class Odd(np.ndarray):
        """An array subclass whose buffer export fails: hashed from its pickle instead."""

        def reshape(self, *args, **kwargs):  # type: ignore[override]
            raise ValueError("no buffer for you")

    odd = np.arange(4).view(Odd)
    assert data_fingerprint(odd) == data_fingerprint(np.arange(4).view(Odd))
