"""A rebuilt definition is compared with the registered schema before making its own (issue 13).

``Session.submit`` of a workflow that has no schema yet (a cell run again) compares
what its schema would be with the one registered under its id and version, field
by field (:func:`~fuseline_nb.workflow.toschema.same_schema`), and takes the
registered object when they are equal. Any difference — a step's code, its
policies, its cache flag, an edge's action, the outputs, the workflow's policies —
must leave the workflow to make its own schema and run its own code.
"""

from __future__ import annotations

import dataclasses

import pytest

import fuseline_nb as fl
from fuseline_nb.workflow import graph as graph_module
from fuseline_nb.workflow._schema_parts import _EDGE_FIELDS, _STEP_FIELDS, EdgeSchema, StepSchema
from fuseline_nb.workflow.fingerprint import workflow_fingerprints
from fuseline_nb.workflow.policies import RetryPolicy, WorkflowPolicy
from fuseline_nb.workflow.schema import WorkflowSchema
from fuseline_nb.workflow.toschema import make_schema, same_schema


class Notify(WorkflowPolicy):
    """A workflow policy (the workflow's policies are part of its schema; a step policy there warns)."""


def _made(monkeypatch) -> list[str]:
    """Record each schema a workflow makes (the real ``make_schema`` still runs)."""
    made: list[str] = []
    real = graph_module.make_schema

    def counting(structure, workflow_id, *args, **kwargs):
        made.append(workflow_id)
        return real(structure, workflow_id, *args, **kwargs)

    monkeypatch.setattr(graph_module, "make_schema", counting)
    return made


def _build(k: int = 1, *, retry: int | None = None, cache: bool = True, action: str = "default",
           outputs: str = "total", policies: list[object] | None = None) -> fl.Workflow:
    def load(x: int) -> int:
        return x + k

    a = fl.FunctionStep(load, name="load", policies=[RetryPolicy(max_retries=retry)] if retry else None)

    def total(v: int = fl.Depends(a)) -> int:
        return 10 * v

    def other(v: int = fl.Depends(a)) -> int:
        return -v

    b, c = fl.FunctionStep(total, name="total"), fl.FunctionStep(other, name="other")
    if not cache:
        b.cache = False
    _ = (a - action) >> b if action != "default" else a >> b
    _ = a >> c
    return fl.Workflow(outputs=[b, c] if outputs == "both" else [b], workflow_id="adopt-unmade",
                       policies=policies)


def test_an_unchanged_rebuild_takes_the_registered_schema_without_making_one(monkeypatch):
    made = _made(monkeypatch)
    with fl.Session(None, workers=1) as session:
        first = _build()
        assert session.submit(first, {"x": 1}).wait(timeout=60) == 20
        registered = session.broker.get_workflow("adopt-unmade", first.version)
        assert made == ["adopt-unmade"]
        again = _build()  # the cell run again: nothing changed
        assert session.submit(again, {"x": 2}).wait(timeout=60) == 30
        assert made == ["adopt-unmade"]  # compared with the registered one, no schema of its own made
        assert again.to_schema() is registered
        assert sorted(again.graph.edges) == [("load", "other"), ("load", "total")]  # edges remade from it


@pytest.mark.parametrize(("change", "result"), [
    ({"k": 5}, 60),                       # the closure of load changed: its fingerprint
    ({"retry": 2}, 20),                   # a step's policies
    ({"cache": False}, 20),               # a step's cache flag
    ({"policies": [Notify()]}, 20),  # the workflow's policies
])
def test_a_rebuild_that_differs_in_anything_makes_its_own_schema_and_runs_it(monkeypatch, change, result):
    made = _made(monkeypatch)
    with fl.Session(None, workers=1) as session:
        first = _build()
        assert session.submit(first, {"x": 1}).wait(timeout=60) == 20
        registered = session.broker.get_workflow("adopt-unmade", first.version)
        edited = _build(**change)
        assert session.submit(edited, {"x": 1}).wait(timeout=60) == result
        assert len(made) == 2, change
        assert edited.to_schema() is not registered
        assert edited.to_schema() != registered


@pytest.mark.parametrize("change", [{"action": "go"}, {"outputs": "both"}])
def test_a_rebuild_with_another_structure_gets_its_own_version(monkeypatch, change):
    made = _made(monkeypatch)
    with fl.Session(None, workers=1) as session:
        first = _build()
        session.submit(first, {"x": 1}).wait(timeout=60)
        edited = _build(**change)
        session.submit(edited, {"x": 1}).wait(timeout=60)
        assert len(made) == 3  # its own schema, then again under its own version
        assert edited.version != first.version and edited.version.startswith("auto-")


def _shapes() -> list[fl.Workflow]:
    """Workflows with every kind of fact a schema holds: actions, OR groups, Depends, policies,
    an uncached step, several outputs, workflow policies."""
    def src() -> int:
        return 1

    def left(v: int = 0) -> int:
        return v

    def right(v: int = 0) -> int:
        return -v

    def join(a: int = fl.Depends(left), b: int = fl.Depends(right)) -> int:
        return a + b

    s = fl.FunctionStep(src, name="src", policies=[RetryPolicy(max_retries=3)])
    lft, rgt, j = fl.FunctionStep(left, name="left"), fl.FunctionStep(right, name="right"), fl.FunctionStep(join)
    _ = (s - "l") >> lft
    _ = (s - "r") >> rgt
    _ = (lft | rgt) >> j
    lft.cache = False
    branchy = fl.Workflow(outputs=[j, rgt], workflow_id="branchy", policies=[Notify()])

    class Retried(fl.Step):
        policies = [RetryPolicy(max_retries=2)]  # set in the class body: the schema holds them too

        def run_step(self) -> int:
            return 1

    classy = fl.Workflow(outputs=[Retried(name="r1"), Retried(name="r2")], workflow_id="classy")
    return [branchy, classy, _build(), _build(outputs="both", action="go")]


def _schema(wf: fl.Workflow) -> WorkflowSchema:
    return make_schema(wf._full(), wf.workflow_id, wf.version, wf.name,
                       tuple(graph_module.policy_spec(p) for p in wf.policies), workflow_fingerprints(wf.steps))


def _other(value: object) -> object:
    """A value of the same kind that is not ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, "z")
    return ("z",)  # None (a step's reads)


def test_same_schema_compares_every_field_of_every_step_and_edge():
    # the rows it compares are the schema objects' fields: a new field must be compared too
    assert tuple(f.name for f in dataclasses.fields(StepSchema)) == _STEP_FIELDS
    assert tuple(f.name for f in dataclasses.fields(EdgeSchema)) == _EDGE_FIELDS
    assert tuple(f.name for f in dataclasses.fields(WorkflowSchema)) == (
        "workflow_id", "version", "steps", "edges", "outputs", "name", "policies")
    for wf in _shapes():
        known = _schema(wf)
        fps = list(workflow_fingerprints(wf.steps).values())
        policies = tuple(graph_module.policy_spec(p) for p in wf.policies)
        assert same_schema(wf._full(), known, wf.name, policies, fps), wf.workflow_id
        for i, step in enumerate(known.steps):
            for f in _STEP_FIELDS:
                steps = (*known.steps[:i], dataclasses.replace(step, **{f: _other(getattr(step, f))}),
                         *known.steps[i + 1:])
                changed = dataclasses.replace(known, steps=steps)
                assert not same_schema(wf._full(), changed, wf.name, policies, fps), (wf.workflow_id, step.name, f)
        for i, e in enumerate(known.edges):
            for f in _EDGE_FIELDS:
                edges = (*known.edges[:i], dataclasses.replace(e, **{f: "changed"}), *known.edges[i + 1:])
                changed = dataclasses.replace(known, edges=edges)
                assert not same_schema(wf._full(), changed, wf.name, policies, fps), (wf.workflow_id, f)
        assert not same_schema(wf._full(), dataclasses.replace(known, outputs=("x",)), wf.name, policies, fps)
        assert not same_schema(wf._full(), dataclasses.replace(known, policies=({"type": "x"},)), wf.name,
                               policies, fps)
        assert not same_schema(wf._full(), known, "another name", policies, fps)
        assert not same_schema(wf._full(), known, wf.name, policies, ["0" * 32] * len(fps))
        assert not same_schema(wf._full(), known, wf.name, policies, fps[:-1])
