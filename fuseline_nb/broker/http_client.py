"""HttpBrokerClient: the broker service as a :class:`BrokerClient`, over httpx.

One keep-alive connection pool per client. A report also asks for the
worker's next step (one round trip per step); the answer is kept and handed
out by the following :meth:`HttpBrokerClient.get_step`.

Connection failures are retried with backoff (``retries`` times), then
raised as :class:`~fuseline_nb.errors.BrokerUnavailableError`. A worker the
broker no longer knows (404 ``unknown_worker``: the service restarted) is
registered again with the same workflows, under the hood: callers keep using
the worker id they were first given. Other refusals become the matching
error of :mod:`fuseline_nb.errors`, with the service's explanation.

Pickled values in answers are opened (unpickled) here: only point a client
at a broker you started, and use a token off loopback.

Examples
--------
>>> client = HttpBrokerClient("http://127.0.0.1:9", retries=0, timeout=1)
>>> try:
...     client.status()
... except BrokerUnavailableError as exc:
...     print(type(exc).__name__)
BrokerUnavailableError
>>> client.close()
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote

import httpx

from ..errors import (
    BrokerRequestError,
    BrokerUnavailableError,
    RunNotFoundError,
    UnknownRunError,
    UnknownWorkerError,
)
from ..workflow.events import Event
from ..workflow.runinfo import RunInfo
from ..workflow.schema import WorkflowSchema
from ..workflow.status import Status
from ..workflow.value import values_of
from ._http_send import Sender, parse
from .base import BrokerClient, StepAssignment, StepReport, WorkerInfo
from .registry import RepositoryInfo
from .wire import (
    Cancelled,
    CancelRequest,
    Dispatched,
    DispatchRequest,
    KeptAlive,
    Registered,
    RegisterRequest,
    StepAnswer,
    WorkerRef,
    report_body,
)

log = logging.getLogger(__name__)

#: Events the service sends in one answer at most (its MAX_EVENTS): a full page means ask again.
MAX_EVENTS_PAGE: Final = 10_000


class HttpBrokerClient(BrokerClient):
    """Talks to a ``fuseline-nb broker`` service.

    Parameters
    ----------
    base_url:
        The service, e.g. ``"http://127.0.0.1:8000"``.
    token:
        The service's bearer token (``None``: send none).
    timeout:
        Seconds to wait for connecting and for each answer.
    retries:
        How many times a request is retried after a connection failure.
    backoff:
        First pause between retries, doubled each time (capped at 5 s).
    poll_wait:
        How long :meth:`get_step` (and the next-step part of a report) may
        wait on the service for a step to be queued (long-poll; 0: answer
        at once). Workers use a few seconds; it keeps them quick and idle.
    prefetch:
        Ask for the next step with each report (one round trip per step).
    transport:
        An httpx transport. The default for ``http://`` is a plain keep-alive
        socket transport (each request in one write, about half a worker's
        CPU per step less than httpx's own); for ``https://`` it is httpx's
        keep-alive connection pool. Tests pass ``httpx.MockTransport``.

    Examples
    --------
    >>> import httpx
    >>> def service(request):
    ...     return httpx.Response(404, json={"error": "unknown_run", "detail": "unknown run: 'r1'"})
    >>> client = HttpBrokerClient("http://broker:8000", token="s3cret", transport=httpx.MockTransport(service))
    >>> client.get_run("r1")
    Traceback (most recent call last):
    fuseline_nb.errors.UnknownRunError: unknown run: 'r1' (GET /runs/r1 → 404)
    >>> client.close()
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 0.2, poll_wait: float = 0.0, prefetch: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        if retries < 0 or timeout <= 0 or poll_wait < 0:
            raise ValueError("retries and poll_wait must be >= 0 and timeout > 0")
        self.base_url = str(base_url).rstrip("/")
        self.retries, self.backoff, self.poll_wait, self.prefetch = retries, backoff, poll_wait, prefetch
        self.timeout = timeout
        self._sender = Sender(self.base_url, token, timeout, retries, backoff, transport)
        self._send = self._sender.send
        self._lock = threading.Lock()
        self._registered: dict[str, tuple[list[WorkflowSchema], str | None]] = {}
        self._alias: dict[str, str] = {}  # first worker id -> id after re-registering
        self._next: dict[str, StepAssignment] = {}  # prefetched assignment per first worker id

    # -- workers ---------------------------------------------------------------------------
    def _wid(self, worker_id: str) -> str:
        return self._alias.get(worker_id, worker_id)

    def _as_worker(self, worker_id: str, call: Any) -> Any:
        """Run ``call(current id)``; on unknown_worker re-register once and retry."""
        used = self._wid(worker_id)
        try:
            return call(used)
        except UnknownWorkerError:
            if worker_id not in self._registered:
                raise
            self._reregister(worker_id, used)
            return call(self._wid(worker_id))

    def _reregister(self, worker_id: str, forgotten: str) -> None:
        schemas, name = self._registered[worker_id]
        with self._lock:  # the heartbeat thread may find out at the same time
            if self._wid(worker_id) != forgotten:
                return
            self._next.pop(worker_id, None)
            resp = self._send("POST", "/worker/register", RegisterRequest.model_construct(workflows=schemas, name=name))
            self._alias[worker_id] = parse(Registered, resp).worker_id
        log.warning("the broker forgot worker %s (restarted?): registered again as %s",
                    forgotten, self._alias[worker_id])

    def register_worker(self, workflows: Iterable[WorkflowSchema], name: str | None = None) -> str:
        schemas = list(workflows)
        resp = self._send("POST", "/worker/register", RegisterRequest.model_construct(workflows=schemas, name=name))
        wid = parse(Registered, resp).worker_id
        self._registered[wid] = (schemas, name)
        return wid

    def unregister_worker(self, worker_id: str) -> None:
        self._next.pop(worker_id, None)
        self._send("POST", "/worker/unregister", WorkerRef.model_construct(worker_id=self._wid(worker_id)))
        self._registered.pop(worker_id, None)

    def keep_alive(self, worker_id: str) -> list[tuple[str, str]]:
        resp = self._as_worker(worker_id, lambda wid: self._send(
            "POST", "/worker/keep-alive", WorkerRef.model_construct(worker_id=wid)))
        if resp.status_code == 204 or not resp.content:  # a service from before cancelling
            return []
        return list(parse(KeptAlive, resp).cancelled)

    # -- steps -------------------------------------------------------------------------------
    def get_step(self, worker_id: str) -> StepAssignment | None:
        ready = self._next.pop(worker_id, None)
        if ready is not None:
            return ready

        def call(wid: str) -> StepAssignment | None:
            resp = self._send("GET", "/workflow/step", params={"worker_id": wid, "wait": self.poll_wait},
                              extra_timeout=self.poll_wait)
            if resp.status_code == 204:
                return None
            return parse(StepAnswer, resp).next  # type: ignore[no-any-return]

        return self._as_worker(worker_id, call)

    def report_step(self, worker_id: str, report: StepReport) -> None:
        wait = self.poll_wait if self.prefetch else 0.0
        if report.action is None and isinstance(report.result, str):  # a direct caller's str result
            report = replace(report, action=report.result)  # the service sees the value closed

        def call(wid: str) -> None:
            body = report_body(wid, report, next=self.prefetch, wait=wait)
            nxt = parse(StepAnswer, self._send("POST", "/workflow/step", body, extra_timeout=self.poll_wait)).next
            if nxt is not None:
                self._next[worker_id] = nxt

        try:
            self._as_worker(worker_id, call)
        except BrokerRequestError as exc:
            # The broker cannot take this report (e.g. the result is over its body limit): report
            # the attempt FAILED with the reason, rather than lose it and run the step forever.
            log.warning("report of step %r refused (%s); reporting it FAILED", report.step_name, exc)
            error = f"{type(exc).__name__}: the broker refused the step's report: {exc}"
            report = replace(report, state=Status.FAILED, result=None, action=None,
                             error=error + (f"; the step's error: {report.error[:2000]}" if report.error else ""),
                             traceback=(report.traceback or "")[-20000:] or None)
            try:
                self._as_worker(worker_id, call)
            except BrokerRequestError as again:  # even that: a bare FAILED naming the refusal
                log.warning("the FAILED report of step %r was refused too (%s); sending a bare one",
                            report.step_name, again)
                report = replace(report, error=f"{type(exc).__name__}: the broker refused the step's "
                                               f"report twice; see the worker's log", traceback=None,
                                 conditions=None)
                self._as_worker(worker_id, call)

    # -- runs ----------------------------------------------------------------------------------
    def dispatch_workflow(self, workflow: WorkflowSchema, inputs: dict[str, Any] | None = None) -> str:
        """Start a run of ``workflow`` (a schema, or a ``Workflow``) on the service; its run id.

        Warns (``UserWarning``) when no worker registered with the service
        holds the workflow's id and version: the run waits until one does.
        """
        if not isinstance(workflow, WorkflowSchema):
            to_schema = getattr(workflow, "to_schema", None)
            if not callable(to_schema):
                raise TypeError(f"expected a WorkflowSchema (or a Workflow), not {workflow!r}")
            workflow = to_schema()
        workflow.check_inputs(inputs or {})  # the service refuses it too; say so without a round trip
        body = DispatchRequest.model_construct(workflow=workflow, inputs=values_of(inputs), request_id=uuid.uuid4().hex)
        run_id: str = parse(Dispatched, self._send("POST", "/workflow/dispatch", body)).run_id
        self._say_if_unserved(workflow, run_id)
        return run_id

    def _say_if_unserved(self, workflow: WorkflowSchema, run_id: str) -> None:
        """Warn when no worker registered with the service holds ``workflow``'s id and version: its run waits.

        The run is not refused (a worker may register later); the warning
        says which versions the workers hold, for a definition that got
        another version in a notebook session (``auto-…``) or was edited.
        """
        key = f"{workflow.workflow_id}@{workflow.version}"
        try:
            workers = self.list_workers()
        except (BrokerRequestError, BrokerUnavailableError):  # an older service, or gone meanwhile: the run
            return  # is dispatched all the same, and its id is what the caller needs
        if any(key in w.workflows for w in workers):
            return
        held = sorted({k.partition("@")[2] for w in workers for k in w.workflows
                       if k.partition("@")[0] == workflow.workflow_id})
        warnings.warn(
            f"run {run_id} waits: no worker registered with {self.base_url} holds workflow "
            f"{workflow.workflow_id!r} version {workflow.version!r} "
            + (f"(its workers hold version(s) {', '.join(map(repr, held))})" if held else
               f"({len(workers)} worker(s) registered, none with this workflow)")
            + ". Start a worker with this definition (`fuseline-nb worker MODULE:ATTR --broker URL`), or "
            "dispatch the definition the workers hold; cancel the run if it should not wait.",
            UserWarning, stacklevel=3)

    def get_run(self, run_id: str, *, steps: bool = True, wait: float = 0.0) -> RunInfo:
        """The run; ``steps=False`` leaves the steps out (cheap for big runs).

        ``wait`` > 0 lets the service answer as soon as the run ends (or
        after ``wait`` seconds, at most 60, with the run as it is then).
        """
        params: dict[str, Any] = {} if steps else {"steps": "false"}
        if wait:
            params["wait"] = min(float(wait), 60.0)
        resp = self._send("GET", f"/runs/{quote(str(run_id), safe='')}", params=params or None,
                          extra_timeout=float(params.get("wait", 0.0)))
        return parse(RunInfo, resp)  # type: ignore[no-any-return]

    def cancel_run(self, run_id: str, reason: str | None = None) -> bool:
        """Cancel a run on the service; ``False`` (and a logged message) when it had already ended.

        Raises
        ------
        RunNotFoundError
            The service knows no run with this id.
        """
        try:
            resp = self._send("POST", f"/runs/{quote(str(run_id), safe='')}/cancel",
                              CancelRequest.model_construct(reason=reason))
        except UnknownRunError as exc:
            raise RunNotFoundError(run_id, str(exc)) from exc
        answer = parse(Cancelled, resp)
        if not answer.cancelled:
            log.warning("%s", answer.message)
        return answer.cancelled

    def wait_run(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """Block until the run ends (or ``timeout`` seconds pass); return its :class:`RunInfo`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else min(30.0, deadline - time.monotonic())
            info = self.get_run(run_id, wait=max(left, 0.0) or 0.0)
            if info.done or (deadline is not None and time.monotonic() >= deadline):
                return info

    def events(self, run_id: str, *, after: int = 0, wait: float = 0.0) -> list[Event]:
        """The run's events with ``seq`` > ``after``, oldest first (all of them by default).

        ``wait`` > 0 long-polls: the service answers as soon as there is a
        newer event, or after ``wait`` seconds (at most 60) with none.
        """
        out: list[Event] = []
        while True:
            params: dict[str, Any] = {"after": after}
            if wait and not out:
                params["wait"] = min(float(wait), 60.0)
            resp = self._send("GET", f"/runs/{quote(str(run_id), safe='')}/events", params=params,
                              extra_timeout=float(params.get("wait", 0.0)))
            page: list[Event] = parse(list[Event], resp)
            out.extend(page)
            if len(page) < MAX_EVENTS_PAGE:
                return out
            after = page[-1].seq

    def list_runs(self) -> list[RunInfo]:
        return parse(list[RunInfo], self._send("GET", "/runs"))  # type: ignore[no-any-return]

    def list_workers(self) -> list[WorkerInfo]:
        return parse(list[WorkerInfo], self._send("GET", "/workers"))  # type: ignore[no-any-return]

    def list_workflows(self) -> list[WorkflowSchema]:
        return parse(list[WorkflowSchema], self._send("GET", "/workflows"))  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return dict(self._send("GET", "/status").json())

    # -- repositories (credentials come back masked: the service never sends a token out) --
    def register_repository(self, repo: RepositoryInfo) -> None:
        if not isinstance(repo, RepositoryInfo):
            raise TypeError(f"expected a RepositoryInfo, not {repo!r}")
        self._send("POST", "/repository/register", repo)

    def get_repository(self, name: str) -> RepositoryInfo | None:
        try:
            resp = self._send("GET", "/repository", params={"name": name})
        except BrokerRequestError as exc:
            if exc.code == "unknown_repository":
                return None
            raise
        return parse(RepositoryInfo, resp)  # type: ignore[no-any-return]

    def list_repositories(self, page: int = 1, page_size: int = 50) -> list[RepositoryInfo]:
        resp = self._send("GET", "/repositories", params={"page": page, "page_size": page_size})
        return parse(list[RepositoryInfo], resp)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Give back prefetched steps (by leaving) and close the connections; idempotent."""
        for wid in list(self._next):
            try:
                self.unregister_worker(wid)
            except (BrokerUnavailableError, UnknownWorkerError, BrokerRequestError):
                log.info("could not give back the prefetched step of worker %s", wid)
        self._sender.transport.close()

    def __repr__(self) -> str:
        return f"HttpBrokerClient({self.base_url!r})"


__all__ = ["HttpBrokerClient"]
