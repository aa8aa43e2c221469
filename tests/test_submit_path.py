"""The submit path: what ``Session.submit`` pickles, ships and keeps (issue 13: a 1M-step workflow)."""

from __future__ import annotations

import base64
import operator
import pickle
import tracemalloc

import fuseline_nb as fl
from fuseline_nb.worker import pool as pool_module
from fuseline_nb.worker.shipping import load_definition, ship
from fuseline_nb.workflow.schema import StepSchema, WorkflowSchema


def _counting_ship(monkeypatch) -> list[tuple[str, str]]:
    """Record each workflow the pool pickles (the real ``ship`` still runs)."""
    shipped: list[tuple[str, str]] = []
    real = pool_module.ship

    def ship(wf):
        shipped.append((wf.workflow_id, wf.version))
        return real(wf)

    monkeypatch.setattr(pool_module, "ship", ship)
    return shipped


def test_a_workflow_is_pickled_once_however_often_it_or_an_unchanged_rebuild_is_submitted(monkeypatch):
    shipped = _counting_ship(monkeypatch)

    def build(k: int) -> fl.Workflow:
        def add(x: int) -> int:
            return x + k

        return fl.workflow_from_functions([add], workflow_id="once")

    with fl.Session(None, workers=1) as session:
        first = build(1)
        assert session.submit(first, {"x": 1}).wait(timeout=60) == 2
        again = build(1)  # the cell run again: nothing changed
        assert session.submit(again, {"x": 2}).wait(timeout=60) == 3
        assert session.submit(again, {"x": 3}).wait(timeout=60) == 4  # the same object again
        assert session.submit(first, {"x": 4}).wait(timeout=60) == 5  # the earlier object, unchanged too
        assert shipped == [("once", first.version)]
        changed = build(5)
        assert session.submit(changed, {"x": 1}).wait(timeout=60) == 6  # its closure changed: shipped
        assert session.submit(changed, {"x": 2}).wait(timeout=60) == 7
        assert len(shipped) == 2


# ship() of `size >> neg`, `size >> pos` (len, operator.neg, abs) made by the code before columns
# (a step and a schema row at a time): a history file written then keeps such definitions.
_ROWS_BLOB = base64.b64decode(
    "gAWVGAQAAAAAAACMGmZ1c2VsaW5lX25iLndvcmtmbG93LmdyYXBolIwIV29ya2Zsb3eUk5QpgZR9lCiMB291dHB1dHOUTowNX2F1"
    "dG9fdmVyc2lvbpSIjAd2ZXJzaW9ulIwBMZSMBXRyYWNllE6MCHBvbGljaWVzlF2UjARuYW1llIwId29ya2Zsb3eUjBBleGVjdXRp"
    "b25fZW5naW5llE6MBXN0YXRllIwbZnVzZWxpbmVfbmIud29ya2Zsb3cuc3RhdHVzlIwGU3RhdHVzlJOUjAZGQUlMRUSUhZRSlIwU"
    "d29ya2Zsb3dfaW5zdGFuY2VfaWSUjCAxNzI3ZTU5YmUxZjM0NGZlYTA4MmY2NTRiYjlkYjI1MZSMCl9zdHJ1Y3R1cmWUKF2UKIwE"
    "c2l6ZZSMA25lZ5SMA3Bvc5RlfZR9lF2UKGgbaBxliYhOdJSMBl9vcmRlcpRoGYwFc3RlcHOUXZQojBpmdXNlbGluZV9uYi53b3Jr"
    "Zmxvdy5zdGVwc5SMDEZ1bmN0aW9uU3RlcJSTlH2UKGgMaBpoCl2UjAhmdW5jdGlvbpSMCGJ1aWx0aW5zlIwDbGVulJOUjA9leGVj"
    "dXRpb25fZ3JvdXCUSwBoD2gVjAljdXJfcmV0cnmUSwB1hpRoJn2UKGgMaBtoCl2UaCmMCV9vcGVyYXRvcpSMA25lZ5STlGgtSwFo"
    "D2gSjAlDQU5DRUxMRUSUhZRSlHWGlGgmfZQoaAxoHGgKXZRoKWgqjANhYnOUk5RoLUsBaA9oN3WGlGWMDG91dHB1dF9uYW1lc5Ro"
    "H4wEX2tleZROjA1fc2NoZW1hX2NhY2hllIwbZnVzZWxpbmVfbmIud29ya2Zsb3cuc2NoZW1hlIwPX3JlYnVpbGRfc2NoZW1hlJOU"
    "KIwEcm93c5RoCF2UKChoGmgpjAxidWlsdGluczpsZW6UKYmMIGI4YzUwZWRkM2FjMWE5M2FjNjRjYzdkYTViNTNiMmEzlIiMA29i"
    "apSFlGhIhZR0lChoG2gpjA1fb3BlcmF0b3I6bmVnlCmJjCAzMThlZTUxOWYzMWYxYThkZGY3NThlNzRjNmRmOTk3YZSIjAFhlIWU"
    "aE6FlHSUKGgcaCmMDGJ1aWx0aW5zOmFic5QpiYwgN2M0Mjg0NDAwZmQ0ZWQ1Zjc4OTkzMDhmNGEyNjAzMjGUiIwBeJSFlGhUhZR0"
    "lGVdlCgoaBpoG4wHZGVmYXVsdJROdJQoaBpoHGhZTnSUZWgbaByGlGgNKYxAYzllNzI1M2I1NjdiMmJhZTE0Yjc3MmM4ZWZjZjJj"
    "YTE1ZGU3MDgyYWE2YTQ3OTJlMDg5Yjk0NjI2YjNiY2Q2ZpR0lFKUjAt3b3JrZmxvd19pZJRoRIwLX3N0YWxlX3RvbGSUj5R1YmhE"
    "aAhoXYeUhpQu"
)


def _rows_workflow() -> fl.Workflow:
    a = fl.FunctionStep(len, name="size")
    b, c = fl.FunctionStep(operator.neg, name="neg"), fl.FunctionStep(abs, name="pos")
    _ = a >> b
    _ = a >> c
    return fl.Workflow(outputs=[b, c], workflow_id="rows")


def _same_steps(got: fl.Workflow, want: fl.Workflow) -> None:
    assert list(got.steps) == list(want.steps)
    for name, step in want.steps.items():
        assert type(got.steps[name]) is type(step)
        assert got.steps[name].function is step.function
        assert got.steps[name].policies == step.policies


def test_a_definition_pickled_a_row_per_step_by_the_earlier_code_still_loads():
    want = _rows_workflow()
    old = load_definition(("rows", "1"), _ROWS_BLOB)
    assert old.to_schema() == want.to_schema()
    assert old.to_schema().structure_key() == want.to_schema().structure_key()
    _same_steps(old, want)


def test_a_shipped_workflow_comes_back_the_same_from_columns():
    want = _rows_workflow()
    key, blob = ship(want)
    got = load_definition(key, blob)
    assert got.to_schema() == want.to_schema()
    _same_steps(got, want)


def test_shipping_a_large_workflow_makes_no_container_per_step_on_the_way():
    # Pickling a row (tuple/dict) per step kept ~1 KB per step alive until the pickle was done
    # (the pickler's memo holds every object it wrote): ~1 GB for 1M steps. Columns make none: what is
    # left is the buffer's slack, the memo of the names and the step lists (~125 B/step).
    def noop() -> None:
        return None

    head, tail = fl.FunctionStep(noop, name="head"), fl.FunctionStep(noop, name="tail")
    for i in range(20_000):
        _ = head >> fl.FunctionStep(noop, name=f"m{i}") >> tail
    wf = fl.Workflow(outputs=[tail], workflow_id="wide")
    wf.to_schema()
    ship(wf)  # warm: cloudpickle's and this module's one-time objects
    tracemalloc.start()
    try:
        _, blob = ship(wf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(blob) < 100 * 20_000
    assert peak - len(blob) < 300 * 20_000, f"{(peak - len(blob)) / 20_000:.0f} bytes per step beside the blob"
    got = load_definition(("wide", wf.version), blob)
    assert got.to_schema() == wf.to_schema()
    assert [s.name for s in got.steps.values()] == list(wf.steps)


def test_the_final_record_of_a_run_makes_no_step_record_until_one_is_read(monkeypatch):
    # At 1M steps, making every step's StepInfo when the run ended cost ~3-5 µs/step in the thread that
    # reported the last step and ~300 B/step kept; the session keeps the ended run's compact records instead.
    from fuseline_nb.broker.records import StepRecords
    from fuseline_nb.session import Session

    made = []
    real_made, real_copy = StepRecords._made, StepRecords.copy
    monkeypatch.setattr(StepRecords, "_made", lambda self, i: made.append(i) or real_made(self, i))
    monkeypatch.setattr(StepRecords, "copy", lambda self, step: made.append(step) or real_copy(self, step))
    at_end = []
    real_on_event = Session._on_event

    def on_event(self, event):
        before = len(made)
        real_on_event(self, event)
        if event.kind == "run_finished":
            at_end.append(len(made) - before)

    monkeypatch.setattr(Session, "_on_event", on_event)

    def one(i: int) -> int:
        return i

    root, sink = fl.FunctionStep(one, name="root"), fl.FunctionStep(one, name="sink")
    for k in range(200):
        root >> fl.FunctionStep(one, name=f"s{k}") >> sink
    wf = fl.Workflow(outputs=[sink], workflow_id="final")
    with fl.Session(None, workers=1) as session:
        run = session.submit(wf, {"i": 7})
        assert run.wait(timeout=60) == 7
        assert at_end == [0]  # the run's end made no StepInfo
        info = run.info()
        before = len(made)
        assert info.state is fl.Status.SUCCEEDED and info.counts()[fl.Status.SUCCEEDED] == 202
        assert len(made) == before  # counted in the arrays
        assert len(info.steps) == 202 and "s3" in info.steps and "nope" not in info.steps
        assert {s.state for s in info.steps.values()} == {fl.Status.SUCCEEDED}
        assert [info.steps[f"s{k}"].result for k in range(200)] == [7] * 200
        assert info.steps["s5"].worker is not None and info.steps["s5"].attempts == 1
        assert info.failures() == {} and run.outputs() == 7
        assert pickle.loads(pickle.dumps(info)).steps == dict(info.steps)  # travels as a plain dict
        assert info == session.broker.get_run(run.id)  # the same record as the history's
        live = session.submit(fl.Workflow(outputs=[fl.FunctionStep(one, name="x")], workflow_id="live"), {"i": 1})
        assert live.state in (fl.Status.RUNNING, fl.Status.SUCCEEDED)  # asking its state makes no record
        live.wait(timeout=60)
        assert live.state is fl.Status.SUCCEEDED and live.info().steps["x"].result == 1


def test_a_column_of_one_object_travels_once_and_equal_but_different_objects_stay_apart():
    import pickle
    from operator import itemgetter

    from fuseline_nb.workflow.columns import Column

    shared = ["one list"]
    same = pickle.loads(pickle.dumps(Column([{"v": shared}] * 500, itemgetter("v"))))
    assert len(same) == 500 and all(v is same[0] for v in same) and same[0] == shared
    mixed = pickle.loads(pickle.dumps(Column([{"v": 1}, {"v": True}, {"v": 1.0}], itemgetter("v"))))
    assert [type(v) for v in mixed] == [int, bool, float]  # 1 == True == 1.0, yet not one object
    assert pickle.loads(pickle.dumps(Column([], itemgetter("v")))) == []
    # immutable values (by_value): equal strings made apart travel as one value, a column of
    # different ones as each of them; an empty column stays empty
    rows = [{"v": "".join(["finger", "print"])} for _ in range(500)]
    assert len({id(r["v"]) for r in rows}) == 500
    data = pickle.dumps(Column(rows, itemgetter("v"), by_value=True))
    assert pickle.loads(data) == ["fingerprint"] * 500 and len(data) < 100
    assert pickle.loads(pickle.dumps(Column([{"v": "a"}, {"v": "b"}], itemgetter("v"), by_value=True))) == ["a", "b"]
    assert pickle.loads(pickle.dumps(Column([], itemgetter("v"), by_value=True))) == []


def test_a_schema_whose_steps_share_equal_values_travels_them_once():
    steps = tuple(StepSchema(f"s{i}", fingerprint="".join(["ab", "12"]), inputs=("x",)) for i in range(300))
    schema = WorkflowSchema("w", steps=steps)
    back = pickle.loads(pickle.dumps(schema))
    assert back == schema
    one = "ab12"
    shared = WorkflowSchema("w", steps=tuple(StepSchema(f"s{i}", fingerprint=one, inputs=("x",)) for i in range(300)))
    assert len(pickle.dumps(schema)) == len(pickle.dumps(shared))  # equal values: as if one object


def test_a_rebuilt_unchanged_definition_takes_the_registered_schema_and_an_edited_one_does_not():
    def build(k: int) -> fl.Workflow:
        def add(x: int) -> int:
            return x + k

        def double(v: int = fl.Depends(add)) -> int:
            return 2 * v

        return fl.workflow_from_functions([double], workflow_id="adopt")

    with fl.Session(None, workers=1) as session:
        first = build(1)
        assert session.submit(first, {"x": 1}).wait(timeout=60) == 4
        registered = session.broker.get_workflow("adopt", first.version)
        assert registered is first.to_schema()
        again = build(1)  # the cell run again: the same definition, a new schema object until submitted
        assert again.to_schema() is not registered and again.to_schema() == registered
        assert session.submit(again, {"x": 2}).wait(timeout=60) == 6
        assert again.to_schema() is registered  # known by identity from here on (pool, broker, version check)
        assert again.step_names == first.step_names and again["double"] is not first["double"]
        edited = build(10)  # add's closure changed: its fingerprint differs, so its own schema stays
        assert session.submit(edited, {"x": 2}).wait(timeout=60) == 24
        assert edited.to_schema() is not registered
        assert edited.to_schema().fingerprints()["add"] != registered.fingerprints()["add"]


def test_policies_given_as_a_class_attribute_still_count():
    from fuseline_nb.workflow.lookup import step_policies
    from fuseline_nb.workflow.policies import RetryPolicy

    retry = RetryPolicy(max_retries=2)

    class Flaky(fl.Step):
        policies = [retry]  # a class attribute, as a user may write it

        def run_step(self) -> int:
            return 1

    assert list(step_policies(Flaky())) == [retry]
    assert step_policies(fl.FunctionStep(len, name="n")) == ()
    assert list(step_policies(fl.FunctionStep(len, name="r", policies=[retry]))) == [retry]


def test_a_rebuilt_definition_whose_code_may_have_changed_unseen_is_shipped_again(monkeypatch):
    # The fingerprints do not cover a pinned code_version's code or a custom policy's: such a
    # rebuild goes to the workers again even when its schema is the same.
    from fuseline_nb.workflow.policies import RetryPolicy, StepPolicy

    shipped = _counting_ship(monkeypatch)

    class Pinned(fl.Step):
        code_version = "v1"

        def run_step(self) -> int:
            return 1

    class Shout(StepPolicy):
        def execute(self, step, call):
            return call() + 1

    def one() -> int:
        return 1

    def pinned_instance() -> fl.Workflow:
        step = fl.FunctionStep(one, name="one")
        step.code_version = "v1"
        return fl.Workflow(outputs=[step], workflow_id="pinned-instance")

    builds = {
        "plain": (lambda: fl.Workflow(outputs=[fl.FunctionStep(one, name="one", policies=[RetryPolicy(1)])],
                                      workflow_id="plain"), 1, 1),
        "pinned-class": (lambda: fl.Workflow(outputs=[Pinned(name="p")], workflow_id="pinned-class"), 2, 1),
        "pinned-instance": (pinned_instance, 2, 1),
        "custom-policy": (lambda: fl.Workflow(outputs=[fl.FunctionStep(one, name="one", policies=[Shout()])],
                                              workflow_id="custom-policy"), 2, 2),
    }
    with fl.Session(None, workers=1) as session:
        for name, (build, times, result) in builds.items():
            before = len(shipped)
            for _ in range(2):
                assert session.submit(build()).wait(timeout=60) == result, name
            assert len(shipped) - before == times, name
