"""Step and workflow policies: retries, timeouts and custom hooks.

Every policy class registers under its own name (a ``name`` class attribute
declared on that very class, else its class name) so schemas and YAML can
name it. A subclass that declares no ``name`` of its own registers under its
class name and never overwrites its parent's entry (a Fuseline defect).

A :class:`StepPolicy` wraps each attempt with :meth:`StepPolicy.execute` and
may decide what follows a failure with :meth:`StepPolicy.on_failure`.

Examples
--------
>>> from fuseline_nb.workflow.policies import RetryPolicy, StepTimeoutPolicy, get_policy_class
>>> RetryPolicy(max_retries=3, wait=0.5).to_spec()
{'name': 'retry', 'config': {'max_retries': 3, 'wait': 0.5}}
>>> get_policy_class("timeout") is StepTimeoutPolicy
True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

_POLICY_REGISTRY: dict[str, type[Policy]] = {}


def get_policy_class(name: str) -> type[Policy]:
    """The policy class registered under ``name``.

    Examples
    --------
    >>> get_policy_class("retry").__name__
    'RetryPolicy'
    """
    try:
        return _POLICY_REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown policy: {name!r} (must be one of {sorted(_POLICY_REGISTRY)})") from None


def policy_from_spec(spec: dict[str, Any]) -> Policy:
    """Rebuild a policy from its :meth:`Policy.to_spec` dict.

    Examples
    --------
    >>> policy_from_spec({"name": "retry", "config": {"max_retries": 2, "wait": 0}})
    RetryPolicy(max_retries=2, wait=0)
    """
    return get_policy_class(spec["name"]).from_config(dict(spec.get("config") or {}))


class Policy:
    """Base of all policies: a registry name and a JSON config.

    Examples
    --------
    >>> class Audit(Policy):
    ...     name = "audit"
    >>> get_policy_class("audit") is Audit
    True
    """

    name: ClassVar[str] = "policy"
    #: The step (or workflow) the policy was given to; set by the default
    #: :meth:`attach_to_step` / :meth:`attach_to_workflow`. Not part of the config.
    bound_to: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a name declared on this very class counts: an inherited one
        # would make the subclass overwrite its parent's registry entry.
        if "name" not in cls.__dict__:
            cls.name = cls.__name__
        _POLICY_REGISTRY[cls.name] = cls

    def to_config(self) -> dict[str, Any]:
        """Constructor arguments as a JSON-serialisable dict."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "bound_to"}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Policy:
        """Inverse of :meth:`to_config`."""
        return cls(**config)

    def to_spec(self) -> dict[str, Any]:
        """``{"name": ..., "config": ...}``, the form schemas and YAML carry."""
        return {"name": self.name, "config": self.to_config()}

    def attach_to_step(self, step: Any) -> None:
        """Called when the policy is given to a step (``Step(policies=[...])``); records :attr:`bound_to`."""
        self.bound_to = step

    def attach_to_workflow(self, workflow: Any) -> None:
        """Called when the policy is given to a workflow (``Workflow(policies=[...])``); records :attr:`bound_to`."""
        self.bound_to = workflow

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_config().items())
        return f"{type(self).__name__}({args})"


class FailureAction(str, Enum):
    """What a step policy decides after a failed attempt.

    Examples
    --------
    >>> FailureAction("retry") is FailureAction.RETRY
    True
    """

    RETRY = "retry"  # run the step again after FailureDecision.delay
    FAIL = "fail"  # the step FAILS


@dataclass(frozen=True)
class FailureDecision:
    """The answer of :meth:`StepPolicy.on_failure`.

    Examples
    --------
    >>> FailureDecision(FailureAction.RETRY, delay=1.0).delay
    1.0
    """

    action: FailureAction
    delay: float = 0.0


class StepPolicy(Policy):
    """Base of step policies: hooks around each attempt of a step.

    Examples
    --------
    >>> class Shout(StepPolicy):
    ...     def execute(self, step, call):
    ...         return str(call()).upper()
    >>> Shout().execute(None, lambda: "hi")
    'HI'
    """

    def execute(self, step: Any, call: Callable[[], Any]) -> Any:
        """Run one attempt by calling ``call()``; return its result."""
        return call()

    async def execute_async(self, step: Any, call: Callable[[], Any]) -> Any:
        """Async form of :meth:`execute`: ``call()`` returns an awaitable."""
        return await call()

    def on_start(self, step: Any) -> None:
        """Called before each attempt."""

    def on_success(self, step: Any, result: Any) -> None:
        """Called after a successful attempt."""

    def on_failure(self, step: Any, exc: BaseException, attempt: int) -> FailureDecision | None:
        """Decide after failed attempt number ``attempt`` (0-based); ``None``: no opinion."""
        return None


class WorkflowPolicy(Policy):
    """Base of workflow policies: hooks around a whole in-process run.

    Examples
    --------
    >>> class Count(WorkflowPolicy):
    ...     def on_workflow_start(self, workflow):
    ...         self.started = True
    >>> p = Count(); p.on_workflow_start(None); p.started
    True
    """

    def on_workflow_start(self, workflow: Any) -> None:
        """Called before the first step runs."""

    def on_workflow_finished(self, workflow: Any, result: Any) -> None:
        """Called after the run ended (whatever its state) with its outputs."""

    def on_step_start(self, workflow: Any, step: Any) -> None:
        """Called before a step runs."""

    def on_step_success(self, workflow: Any, step: Any, result: Any) -> None:
        """Called after a step succeeded."""

    def on_step_failure(self, workflow: Any, step: Any, exc: BaseException) -> None:
        """Called after a step failed (after its retries)."""


class RetryPolicy(StepPolicy):
    """Attempt a step up to ``max_retries`` times in all, waiting ``wait`` seconds between.

    ``max_retries`` counts total attempts, as in Fuseline: ``RetryPolicy(3)``
    runs a failing step three times. Brokers apply it too: a step that failed
    or timed out in a worker process is re-queued until its attempts run out.

    Examples
    --------
    >>> RetryPolicy(max_retries=3).on_failure(None, ValueError(), 0)
    FailureDecision(action=<FailureAction.RETRY: 'retry'>, delay=0)
    >>> RetryPolicy(max_retries=3).on_failure(None, ValueError(), 2).action
    <FailureAction.FAIL: 'fail'>
    >>> RetryPolicy(0)
    Traceback (most recent call last):
    ValueError: max_retries counts total attempts and must be >= 1, not 0
    """

    name = "retry"

    def __init__(self, max_retries: int = 1, wait: float = 0) -> None:
        if int(max_retries) < 1:
            raise ValueError(f"max_retries counts total attempts and must be >= 1, not {max_retries!r}")
        if wait < 0:
            raise ValueError(f"wait must be >= 0 seconds, not {wait!r}")
        self.max_retries = int(max_retries)
        self.wait = wait

    def on_failure(self, step: Any, exc: BaseException, attempt: int) -> FailureDecision:
        if attempt < self.max_retries - 1:
            return FailureDecision(FailureAction.RETRY, self.wait)
        return FailureDecision(FailureAction.FAIL)


class StepTimeoutPolicy(StepPolicy):
    """Fail an attempt with ``TimeoutError`` after ``seconds``.

    In-process (``wf.run``, or ``ProcessEngine`` in the calling process) the
    attempt runs in a helper thread and the caller gets ``TimeoutError`` on
    time, not when the step ends. Python cannot kill a thread, so the step's
    code may go on in the background. In ``WorkerPool`` processes the worker
    process is terminated instead and a replacement started.

    Examples
    --------
    >>> import time
    >>> StepTimeoutPolicy(0.05).execute(None, lambda: time.sleep(1))
    Traceback (most recent call last):
    TimeoutError: step exceeded 0.05 s
    """

    name = "timeout"

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"seconds must be > 0, not {seconds!r}")
        self.seconds = seconds

    def execute(self, step: Any, call: Callable[[], Any]) -> Any:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = call()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        name = getattr(step, "name", None) or "step"
        t = threading.Thread(target=target, daemon=True, name=f"fuseline-timeout-{name}")
        t.start()
        t.join(self.seconds)
        if t.is_alive():
            raise TimeoutError(f"step exceeded {self.seconds} s")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    async def execute_async(self, step: Any, call: Callable[[], Any]) -> Any:
        import asyncio

        try:
            return await asyncio.wait_for(call(), self.seconds)
        except TimeoutError:
            raise TimeoutError(f"step exceeded {self.seconds} s") from None


def _specs(policies: Iterable[Any]) -> Iterable[tuple[type, dict[str, Any]]]:
    for p in policies:
        if isinstance(p, dict):
            cls = _POLICY_REGISTRY.get(p.get("name", ""))
            if cls is not None:
                yield cls, dict(p.get("config") or {})
        elif isinstance(p, Policy):
            yield type(p), p.to_config()


def retry_settings(policies: Iterable[Any]) -> tuple[int, float]:
    """``(total attempts, wait)`` from a step's policies or policy specs.

    Examples
    --------
    >>> retry_settings([{"name": "retry", "config": {"max_retries": 4, "wait": 1}}])
    (4, 1)
    >>> retry_settings([])
    (1, 0)
    """
    for cls, cfg in _specs(policies):
        if issubclass(cls, RetryPolicy):
            return int(cfg.get("max_retries", 1)), cfg.get("wait", 0)
    return 1, 0


def timeout_seconds(policies: Iterable[Any]) -> float | None:
    """The ``StepTimeoutPolicy`` seconds among ``policies`` (objects or specs), if any.

    Examples
    --------
    >>> timeout_seconds([StepTimeoutPolicy(2)])
    2.0
    """
    for cls, cfg in _specs(policies):
        if issubclass(cls, StepTimeoutPolicy):
            return float(cfg["seconds"])
    return None


def _workflow_policies(policies: Iterable[Any] | None) -> list[Any]:
    """``Workflow(policies=...)`` as a list; a step policy among them is said to apply to no step.

    A workflow runs only workflow policies (hooks around a run); a
    :class:`StepPolicy` given there was kept and ignored without a word, so
    ``Workflow(..., policies=[RetryPolicy(3)])`` retried nothing.
    """
    out = list(policies or ())
    for policy in out:
        if isinstance(policy, StepPolicy):
            import warnings

            warnings.warn(
                f"Workflow(policies=...) got {policy!r}, a step policy: a workflow applies only workflow "
                f"policies (WorkflowPolicy), so no step gets it. Give it to the steps instead: "
                f"FunctionStep(f, policies=[{policy!r}]), MyStep(policies=[...]) or policies = [...] in a "
                f"Step class", UserWarning, stacklevel=3)
    return out


__all__ = [
    "FailureAction",
    "FailureDecision",
    "Policy",
    "RetryPolicy",
    "StepPolicy",
    "StepTimeoutPolicy",
    "WorkflowPolicy",
    "get_policy_class",
    "policy_from_spec",
    "retry_settings",
    "timeout_seconds",
]
