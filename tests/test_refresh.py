"""``Workflow.refresh``: what ``Session.submit`` asks before every run — did any step's code or data change?

It compares the steps' fingerprints with the schema's column side by side
(no name-keyed table); every kind of change that makes a new fingerprint
must still be seen, in a fan-out where neighbours share one.
"""

from __future__ import annotations

import itertools

import fuseline_nb as fl
from fuseline_nb import FunctionStep, Step, Workflow
from fuseline_nb.workflow.fingerprint import _fingerprint_list, workflow_fingerprints

SCALE = 2


def scaled() -> int:
    return SCALE


def other() -> int:
    return 7


class Holder(Step):
    def run_step(self) -> int:
        return 1


def _fan(n: int = 6) -> tuple[Workflow, list[FunctionStep]]:
    head, tail = FunctionStep(other, name="head"), FunctionStep(other, name="tail")
    mids = [FunctionStep(scaled, name=f"m{i}") for i in range(n)]
    for m in mids:
        head >> m >> tail
    return Workflow(outputs=[tail], name="fan"), mids


def test_nothing_changed_keeps_the_schema() -> None:
    wf, _ = _fan()
    schema = wf.to_schema()
    assert wf.refresh() is False and wf.to_schema() is schema
    assert _fingerprint_list(list(wf.steps.values())) == list(workflow_fingerprints(wf.steps).values())


def test_an_edited_global_shared_by_a_fan_out_is_seen() -> None:
    global SCALE
    wf, _ = _fan()
    before = wf.to_schema()
    SCALE = 3
    try:
        assert wf.refresh() is True
        after = wf.to_schema()
        assert after is not before and after.fingerprints()["m4"] != before.fingerprints()["m4"]
        assert after.fingerprints()["head"] == before.fingerprints()["head"]
    finally:
        SCALE = 2


def test_one_step_given_another_function_is_seen() -> None:
    wf, mids = _fan()
    before = wf.to_schema().fingerprints()
    mids[3].function = other  # type: ignore[assignment]
    assert wf.refresh() is True
    after = wf.to_schema().fingerprints()
    assert after["m3"] != before["m3"] and after["m2"] == before["m2"]


def test_one_step_holding_a_value_of_its_own_is_seen_when_it_changes() -> None:
    steps = [Holder(name=f"h{i}") for i in range(5)]
    for a, b in itertools.pairwise(steps):
        a >> b
    wf = Workflow(outputs=[steps[-1]])
    steps[2].limit = 10  # type: ignore[attr-defined]
    wf.refresh()
    before = wf.to_schema().fingerprints()
    assert wf.refresh() is False  # the same value: nothing new
    steps[2].limit = 11  # type: ignore[attr-defined]
    assert wf.refresh() is True
    after = wf.to_schema().fingerprints()
    assert after["h2"] != before["h2"] and after["h1"] == before["h1"] and after["h3"] == before["h3"]


def test_a_class_code_version_bumped_is_seen() -> None:
    class Versioned(Step):
        code_version = "1"

        def run_step(self) -> int:
            return 1

    a, b = Versioned(name="a"), Versioned(name="b")
    a >> b
    wf = Workflow(outputs=[b])
    before = wf.to_schema().fingerprints()
    Versioned.code_version = "2"
    assert wf.refresh() is True
    assert wf.to_schema().fingerprints()["a"] != before["a"]


def test_a_schema_in_another_step_order_is_compared_by_name() -> None:
    wf = fl.workflow_from_functions([scaled, other])
    schema = wf.to_schema()
    reordered = type(schema)(schema.workflow_id, steps=tuple(reversed(schema.steps)), edges=schema.edges,
                             version=schema.version, name=schema.name, outputs=schema.outputs,
                             policies=schema.policies)
    wf._schema_cache = reordered
    assert wf.refresh() is False
    object.__setattr__(reordered.steps[0], "fingerprint", "0" * 32)
    assert wf.refresh() is True



def test_steps_of_two_classes_each_keep_their_own_fingerprint() -> None:
    class Tagged(Step):
        tag = "a"

        def run_step(self) -> int:
            return 2

    first, second, third = Holder(name="first"), Tagged(name="second"), Tagged(name="third")
    first >> second >> third
    wf = Workflow(outputs=[third])
    before = wf.to_schema().fingerprints()
    assert before["first"] != before["second"] == before["third"]  # the class is part of the fingerprint
    Tagged.tag = "b"
    assert wf.refresh() is True
    after = wf.to_schema().fingerprints()
    assert after["second"] == after["third"] != before["second"] and after["first"] == before["first"]
