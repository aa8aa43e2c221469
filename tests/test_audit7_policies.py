"""Audit (session 7): a step policy given to the workflow.

``Workflow(outputs=[...], policies=[RetryPolicy(3)])`` reads as "retry every step"; a workflow applies
only workflow policies, so before no step was retried (nor timed out, for ``StepTimeoutPolicy``) — in
process, on workers, anywhere — and nothing said so.
"""

from __future__ import annotations

import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.policies import RetryPolicy, StepTimeoutPolicy, WorkflowPolicy


def once() -> int:
    return 1


@pytest.mark.parametrize("policy", [RetryPolicy(3), StepTimeoutPolicy(5.0)])
def test_a_step_policy_given_to_a_workflow_is_said_to_apply_to_no_step(policy) -> None:
    with pytest.warns(UserWarning, match=(
            rf"Workflow\(policies=\.\.\.\) got {type(policy).__name__}\(.*\), a step policy: a workflow applies "
            r"only workflow policies \(WorkflowPolicy\), so no step gets it\. Give it to the steps instead: "
            rf"FunctionStep\(f, policies=\[{type(policy).__name__}\(")):
        fl.Workflow(outputs=[fl.FunctionStep(once)], policies=[policy])


def test_a_workflow_policy_is_taken_without_a_word(recwarn: pytest.WarningsRecorder) -> None:
    class Seen(WorkflowPolicy):
        pass

    wf = fl.Workflow(outputs=[fl.FunctionStep(once)], policies=[Seen()])
    assert wf.run() == 1
    assert [str(w.message) for w in recwarn] == []
