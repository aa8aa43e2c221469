"""`attempt` of a step without policies writes Attempt's calls out; both paths give the same outcome.

Every kind of step a workflow can hold runs once through :func:`attempt` (the written-out path every step
without a ``StepPolicy`` takes) and once through the :class:`Attempt` path that steps with policies take
(``_with_policies``); the outcomes must agree field by field (timings aside) and both must leave the step
in the same state (``cur_retry``, its hooks' side effects).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import fuseline_nb as fl
from fuseline_nb import Computed, Condition, Depends, FunctionStep, Step, Workflow
from fuseline_nb.running.execute import Attempt, StepInterrupt, StepOutcome, _with_policies, attempt


class Stop(StepInterrupt):
    pass


class Custom(BaseException):
    pass


class Odd(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


class Positive(Condition):
    def check(self, value: Any) -> bool:
        return value > 0


class Hooks(Step):
    """setup feeds a legacy run_step; teardown replaces the result; all three are recorded."""

    seen: list[Any] = []

    def setup(self, shared: dict[str, Any]) -> Any:
        Hooks.seen.append(("setup", dict(shared)))
        return shared.get("n", 0) + 1

    def run_step(self, setup_res):  # type: ignore[no-untyped-def,override]
        return setup_res * 10

    def teardown(self, shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
        Hooks.seen.append(("teardown", setup_res, exec_res))
        return exec_res + 1


class BadTeardown(Step):
    def run_step(self) -> int:  # type: ignore[override]
        return 1

    def teardown(self, shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
        raise RuntimeError("teardown broke")


class Retries(Step):
    def run_step(self) -> int:  # type: ignore[override]
        return self.cur_retry


def _cases() -> list[tuple[str, Workflow, str, dict[str, Any], dict[str, Any], dict[str, str]]]:
    def value(x: int) -> dict[str, Any]:
        return {"x": x, "text": "é\udcff"}

    def boom() -> None:
        raise ValueError("bad row")

    def leaves() -> None:
        raise SystemExit(3)

    def custom() -> None:
        raise Custom("mine")

    def needs(x: int, y: int) -> int:
        return x + y

    def unreprable() -> None:
        raise Odd()

    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    src = FunctionStep(lambda: 5, name="src")

    def gated(v: Computed[int] = Depends(src, condition=Positive())) -> int:
        return v + 1

    def plain_gate(v: Computed[int] = Depends(src, condition=lambda v: v > 100)) -> int:
        return v

    def broken_gate(v: Computed[int] = Depends(src, condition=lambda v: 1 / 0)) -> int:
        return v

    left, right = FunctionStep(lambda: "L", name="left"), FunctionStep(lambda: "R", name="right")

    def either(v: Computed[str] = Depends(left, right)) -> str:
        return v.lower()

    def wf(*steps: Step) -> Workflow:
        return Workflow(outputs=list(steps))

    odd = FunctionStep(lambda: 1, name="odd", policies=[object()])  # not a StepPolicy: no policies
    return [
        ("value", wf(FunctionStep(value)), "value", {"x": 2}, {}, {}),
        ("raises", wf(FunctionStep(boom)), "boom", {}, {}, {}),
        ("system exit", wf(FunctionStep(leaves)), "leaves", {}, {}, {}),
        ("custom base exception", wf(FunctionStep(custom)), "custom", {}, {}, {}),
        ("missing input", wf(FunctionStep(needs)), "needs", {"x": 1}, {}, {}),
        ("str raises", wf(FunctionStep(unreprable)), "unreprable", {}, {}, {}),
        ("async function", wf(FunctionStep(later)), "later", {"x": 4}, {}, {}),
        ("condition passes", wf(FunctionStep(gated)), "gated", {}, {"src": 5}, {}),
        ("condition skips", wf(FunctionStep(gated)), "gated", {}, {"src": -5}, {}),
        ("callable condition skips", wf(FunctionStep(plain_gate)), "plain_gate", {}, {"src": 5}, {}),
        ("condition raises", wf(FunctionStep(broken_gate)), "broken_gate", {}, {"src": 5}, {}),
        ("or group: the winner's result", wf(FunctionStep(either)), "either", {}, {"left": "L", "right": "R"},
         _group_winner(wf(FunctionStep(either)), "either", "right")),
        ("setup, legacy run_step, teardown", wf(Hooks()), "Hooks", {"n": 1}, {}, {}),
        ("teardown raises", wf(BadTeardown()), "BadTeardown", {}, {}, {}),
        ("retry counter", wf(Retries()), "Retries", {}, {}, {}),
        ("a policy that is not a StepPolicy", wf(odd), "odd", {}, {}, {}),
    ]


def _group_winner(wf: Workflow, name: str, member: str) -> dict[str, str]:
    group = next(p.group for p in wf.bindings[name].params if p.group)
    return {group: member}


_PACKAGE = os.path.dirname(fl.__file__)


def _user_part(trace: str | None) -> list[str] | None:
    """A traceback's text without fuseline_nb's own frames (their names and line numbers are not the user's:
    an error raised by fuseline_nb itself keeps its whole traceback, whose frames differ by path)."""
    if trace is None:
        return None
    out: list[str] = []
    ours = False
    for line in trace.splitlines():
        if line.startswith('  File "'):
            ours = line[len('  File "'):].startswith(_PACKAGE)
        elif not line.startswith("    "):
            ours = False
        if not ours:
            out.append(line)
    return out


def _same(a: StepOutcome, b: StepOutcome) -> None:
    assert (a.state, a.result, a.error_type, a.error_message, _user_part(a.traceback), a.conditions) == (
        b.state, b.result, b.error_type, b.error_message, _user_part(b.traceback), b.conditions)
    assert type(a.exception) is type(b.exception)
    assert a.started_at <= a.finished_at and b.started_at <= b.finished_at


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_a_step_without_policies_has_the_outcome_of_the_attempt_with_policies(case: tuple[Any, ...]) -> None:
    _, wf, name, inputs, results, winners = case
    for retry in (0, 2):
        Hooks.seen.clear()
        quick = attempt(wf, name, inputs, results, winners, retry, passthrough=())
        quick_state, quick_seen = wf.steps[name].cur_retry, list(Hooks.seen)
        Hooks.seen.clear()
        full = _with_policies(Attempt(wf, name, inputs, results, winners, retry), ())
        _same(quick, full)
        assert (quick_state, quick_seen) == (wf.steps[name].cur_retry, Hooks.seen) == (retry, Hooks.seen)


def test_the_outcomes_are_what_each_step_does() -> None:
    """The cases above mean something: a few outcomes checked outright (so both paths cannot agree on nonsense)."""
    got = {c[0]: attempt(c[1], c[2], c[3], c[4], c[5], 1, passthrough=()) for c in _cases()}
    assert got["value"].result == {"x": 2, "text": "é\udcff"}
    assert (got["raises"].error, got["system exit"].error_type) == ("ValueError: bad row", "SystemExit")
    assert got["missing input"].state is fl.Status.FAILED and "y" in (got["missing input"].error or "")
    assert got["str raises"].error_type == "Odd"
    assert got["async function"].result == 8
    assert (got["condition passes"].result, got["condition passes"].conditions) == (
        6, [{"dependency": "src", "value": 5, "passed": True}])
    assert got["condition skips"].state is got["callable condition skips"].state is fl.Status.SKIPPED
    assert got["condition raises"].error_type == "ZeroDivisionError"
    assert got["or group: the winner's result"].result == "r"
    assert got["setup, legacy run_step, teardown"].result == 21
    assert got["teardown raises"].error == "RuntimeError: teardown broke"
    assert got["retry counter"].result == 1
    assert "in boom" in (got["raises"].traceback or "") and "execute.py" not in (got["raises"].traceback or "")


def test_interrupts_and_passthrough_types_are_raised_on_both_paths() -> None:
    def stop() -> None:
        raise Stop()

    def interrupted() -> None:
        raise KeyboardInterrupt

    wf = Workflow(outputs=[FunctionStep(stop), FunctionStep(interrupted)])
    for run in (lambda n, p: attempt(wf, n, {}, {}, {}, 0, p),
                lambda n, p: _with_policies(Attempt(wf, n, {}, {}, {}, 0), p)):
        with pytest.raises(Stop):
            run("stop", ())
        with pytest.raises(KeyboardInterrupt):
            run("interrupted", (KeyboardInterrupt,))
        assert run("interrupted", ()).error_type == "KeyboardInterrupt"  # a worker's: the step's failure


def test_a_step_with_a_policy_takes_the_policy_path() -> None:
    calls: list[str] = []

    class Around(fl.StepPolicy):  # type: ignore[misc]
        def on_start(self, step: Step) -> None:
            calls.append("start")

        def execute(self, step: Step, call: Any) -> Any:
            calls.append("execute")
            return call() + 1

        def on_success(self, step: Step, result: Any) -> None:
            calls.append(f"success {result}")

    wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one", policies=[Around()])])
    assert attempt(wf, "one", {}, {}, {}).result == 2
    assert calls == ["start", "execute", "success 2"]


def _doubled(shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
    return exec_res * 2


class Tripled(FunctionStep):
    def teardown(self, shared: dict[str, Any], setup_res: Any, exec_res: Any) -> Any:
        return exec_res * 3


def test_a_function_steps_call_runs_every_hook_that_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """FunctionStep._invoke calls the function alone only while no hook is replaced; it is Step._invoke else."""
    def seven() -> int:
        return 7

    plain = FunctionStep(seven, name="plain")
    mine = FunctionStep(seven, name="mine")
    mine.teardown = _doubled  # type: ignore[method-assign]  # on the step itself
    sub = Tripled(seven, name="sub")  # on a subclass
    wf = Workflow(outputs=[plain, mine, sub])
    got = {n: attempt(wf, n, {}, {}, {}).result for n in ("plain", "mine", "sub")}
    assert got == {"plain": 7, "mine": 14, "sub": 21}
    calls: list[str] = []
    monkeypatch.setattr(Step, "setup", lambda self, shared: calls.append(f"setup {self.name}"))  # at run time
    assert attempt(wf, "plain", {}, {}, {}).result == 7 and calls == ["setup plain"]
    monkeypatch.setattr(FunctionStep, "run_step", lambda self, **kw: 8)  # on the class
    assert attempt(wf, "plain", {}, {}, {}).result == 8
    for name in ("plain", "mine", "sub"):  # and the same as Step._invoke's, hook for hook
        step = wf.steps[name]
        assert step._invoke(wf.bindings[name], {}, {}) == Step._invoke(step, wf.bindings[name], {}, {})
