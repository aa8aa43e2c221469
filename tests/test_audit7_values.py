"""Audit (session 7): odd run inputs with the cache on, through real worker processes and a DuckDB history.

Before: with ``cache=True`` a run input named by a str holding a lone surrogate (a name from undecodable
bytes, read by a ``**kwargs`` step) made ``Session.submit`` raise a bare ``UnicodeEncodeError`` from the
cache key, and an input whose name is not a str made it raise a bare ``TypeError: '<' not supported``;
without the cache both runs went on (the first succeeds, the second fails its step naming the cause).
"""

from __future__ import annotations

import pytest

import fuseline_nb as fl


def takes_all(**kw):
    return sorted(map(str, kw))


def reads_x(x):
    return x


@pytest.mark.slow
def test_an_input_named_with_a_lone_surrogate_is_cached_like_any_other(tmp_path) -> None:
    wf = fl.Workflow(outputs=[fl.FunctionStep(takes_all)], workflow_id="audit7-surrogate-input")
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        first = session.submit(wf, {"x": 1, "\udcff": 2})
        assert first.wait(timeout=60) == ["x", "\udcff"]
        again = session.submit(wf, {"x": 1, "\udcff": 2})
        assert again.wait(timeout=60) == ["x", "\udcff"]
        assert again.info().steps["takes_all"].cached
        other = session.submit(wf, {"x": 1, "\udcfe": 2})
        assert other.wait(timeout=60) == ["x", "\udcfe"] and not other.info().steps["takes_all"].cached


@pytest.mark.slow
def test_an_input_whose_name_is_not_a_str_runs_as_without_the_cache(tmp_path) -> None:
    reads = fl.Workflow(outputs=[fl.FunctionStep(reads_x)], workflow_id="audit7-int-key")
    everything = fl.Workflow(outputs=[fl.FunctionStep(takes_all)], workflow_id="audit7-int-key-all")
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        assert session.submit(reads, {"x": 1, 2: 3}).wait(timeout=60) == 1
        run = session.submit(everything, {"x": 1, 2: 3})
        assert run.wait(timeout=60) is None
        assert run.info().steps["takes_all"].error == "TypeError: keywords must be strings"
