"""Parity with Fuseline's "Function workflows" page, corrected: there,
``workflow_from_functions`` is not a decorator and a function receives every
workflow input."""

from __future__ import annotations

from fuseline_nb import Depends, FunctionStep, FunctionTask, Workflow, workflow_from_functions


def test_decorator_form_builds_a_workflow():
    @workflow_from_functions
    def flow(a: int, b: int) -> int:
        return a + b

    assert isinstance(flow, Workflow)
    assert flow.run({"a": 1, "b": 2}) == 3


def test_list_form_with_depends_pulls_functions_in():
    def double(x: int) -> int:
        return x * 2

    def add_one(v: int = Depends(double)) -> int:
        return v + 1

    wf = workflow_from_functions(outputs=[add_one])
    assert wf.run({"x": 3}) == 7
    assert wf.step_names == ["double", "add_one"]


def test_function_receives_only_the_parameters_it_declares():
    def only_x(x: int) -> int:
        return x

    def with_kwargs(x: int, **rest) -> dict:
        return rest

    wf = workflow_from_functions([only_x, with_kwargs])
    assert wf.run({"x": 1, "y": 2, "z": 3}) == [1, {"y": 2, "z": 3}]


def test_function_step_as_decorator_and_alias():
    assert FunctionTask is FunctionStep

    @FunctionStep
    def square(n: int) -> int:
        return n * n

    assert Workflow(outputs=[square]).run({"n": 4}) == 16
    assert square.name == "square"
