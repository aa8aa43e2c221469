"""Time pictures with Altair: a run's timeline (Gantt) and trends across runs.

:func:`timeline_bars` turns a run's events into one bar per attempt (start,
end, worker lane, state; a retried attempt ends where it was queued again),
:func:`timeline_chart` draws them, and :func:`trends_chart` draws step
durations across runs and failure rates over time from the ``steps`` and
``runs`` SQL views. Charts are Altair (Vega-Lite): interactive in JupyterLab,
saved in the notebook, exportable with ``chart.save("t.png")`` or
``chart.save("t.svg")`` (vl-convert). Altair is an optional dependency:
``pip install 'fuseline-nb[charts]'``.

Examples
--------
>>> from fuseline_nb.workflow.events import Event
>>> from fuseline_nb import Status
>>> events = [Event("step_started", "r", 1, 10.0, step="a", state=Status.RUNNING, worker="w1", attempt=1),
...           Event("step_queued", "r", 2, 10.5, step="a", state=Status.PENDING, worker="w1", attempt=1,
...                 detail={"error": "ValueError: x"}),
...           Event("step_started", "r", 3, 11.0, step="a", state=Status.RUNNING, worker="w2", attempt=2),
...           Event("step_finished", "r", 4, 11.5, step="a", state=Status.SUCCEEDED, worker="w2", attempt=2)]
>>> [(b["attempt"], b["worker"], b["state"], b["start_s"], b["end_s"]) for b in timeline_bars(events)]
[(1, 'w1', 'FAILED', 0.0, 0.5), (2, 'w2', 'SUCCEEDED', 1.0, 1.5)]
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..workflow.events import Event
from .palette import FILL, VIEW_STATES

INSTALL_HINT: Final = (
    "charts need Altair and vl-convert: pip install 'fuseline-nb[charts]' "
    "(or pip install altair vl-convert-python)"
)


def altair() -> Any:
    """Import Altair, or raise ImportError saying how to install it.

    Examples
    --------
    >>> altair().__name__
    'altair'
    """
    try:
        import altair as alt
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return alt


def timeline_bars(events: Iterable[Event], workers: Mapping[str, str] | None = None,
                  now: float | None = None) -> list[dict[str, Any]]:
    """One bar per attempt: step, attempt, worker, state, start and end in seconds from the run's start.

    A step still running ends at ``now`` (default: the last event's time).
    """
    names = workers or {}
    ordered = sorted(events, key=lambda e: e.seq)
    if not ordered:
        return []
    t0 = ordered[0].at
    open_: dict[str, dict[str, Any]] = {}
    bars: list[dict[str, Any]] = []
    for e in ordered:
        if e.step is None:
            continue
        if e.kind == "step_started":
            open_[e.step] = {"step": e.step, "attempt": e.attempt or 1,
                             "worker": names.get(e.worker or "", e.worker or "?"), "start": e.at}
        elif e.kind in ("step_finished", "step_queued") and e.step in open_:
            bar = open_.pop(e.step)
            if e.kind == "step_finished":
                state = e.state.value if e.state is not None else "SUCCEEDED"
            else:  # queued again: a retry after an error, or a lost lease
                state = "FAILED" if (e.detail or {}).get("error") else "CANCELLED"
            bars.append(_bar(bar, e.at, state, t0))
    end = now if now is not None else ordered[-1].at
    bars.extend(_bar(bar, max(end, bar["start"]), "RUNNING", t0) for bar in open_.values())
    bars.sort(key=lambda b: (b["start_s"], b["step"]))
    return bars


def _bar(bar: dict[str, Any], end: float, state: str, t0: float) -> dict[str, Any]:
    return {"step": bar["step"], "attempt": bar["attempt"], "worker": bar["worker"], "state": state,
            "start_s": round(bar["start"] - t0, 4), "end_s": round(end - t0, 4),
            "duration_s": round(end - bar["start"], 4)}


def _state_scale(alt: Any) -> Any:
    return alt.Scale(domain=list(VIEW_STATES), range=[FILL[s] for s in VIEW_STATES])


def timeline_chart(bars: list[dict[str, Any]], *, title: str = "", width: int = 640) -> Any:
    """A Gantt chart of ``bars``: a lane per worker, a bar per attempt, coloured by state.

    Retried attempts are separate bars; an attempt after the first has a
    dashed outline.

    Examples
    --------
    >>> chart = timeline_chart([{"step": "a", "attempt": 1, "worker": "w1", "state": "SUCCEEDED",
    ...                          "start_s": 0.0, "end_s": 0.5, "duration_s": 0.5}])
    >>> chart.to_dict()["mark"]["type"]
    'bar'
    """
    alt = altair()
    lanes = sorted({b["worker"] for b in bars}, key=_lane_key)
    base = alt.Chart(alt.Data(values=bars), title=title or alt.Undefined)
    return base.mark_bar(stroke="#495057", strokeWidth=0.6, cornerRadius=2).encode(
        x=alt.X("start_s:Q", title="seconds since the run started"),
        x2="end_s:Q",
        y=alt.Y("worker:N", title="worker", sort=lanes),
        color=alt.Color("state:N", scale=_state_scale(alt), legend=alt.Legend(title="state", orient="bottom")),
        strokeDash=alt.condition("datum.attempt > 1", alt.value([3, 2]), alt.value([1, 0])),
        tooltip=["step:N", "attempt:Q", "worker:N", "state:N", "start_s:Q", "duration_s:Q"],
    ).properties(width=width, height=max(60, 28 * len(lanes)))


def _lane_key(name: str) -> tuple[int, str]:
    digits = name[1:] if name[:1] == "w" else ""
    return (int(digits), name) if digits.isdigit() else (10**9, name)


def run_timeline(broker: Any, run_id: str, workers: Mapping[str, str] | None = None) -> Any:
    """The timeline chart of a run, from its events on ``broker`` (a broker or a client)."""
    events = list(broker.events(run_id))
    info = broker.get_run(run_id)
    now = None if info.done else time.time()
    return timeline_chart(timeline_bars(events, workers, now), title=f"run {run_id} of {info.workflow_id}")


def timeline_html(broker: Any, run_id: str, workers: Mapping[str, str] | None = None) -> str:
    """The run's timeline as an inline SVG (what the view's Timeline tab shows), or why not."""
    try:
        chart = run_timeline(broker, run_id, workers)
        import vl_convert
    except ImportError as exc:
        return f"<div>{html.escape(str(exc) or INSTALL_HINT)}</div>"
    if not chart.data.values:
        return "<div><i>no step has started yet</i></div>"
    return str(vl_convert.vegalite_to_svg(chart.to_dict()))


TRENDS_SQL: Final = """
select r.run_id, r.workflow_id, r.created_at, r.state as run_state,
       s.step, s.state, s.duration_s
from runs r join steps s using (run_id)
where ($workflow is null or r.workflow_id = $workflow) and ($step is null or s.step = $step)
order by r.created_at
"""


def trends_chart(sql: Any, workflow: str | None = None, step: str | None = None, *, width: int = 560) -> Any:
    """Step durations across runs and the share of failed runs over time (two charts, one above the other).

    ``sql`` runs a query with named parameters (``session.sql``).

    Raises
    ------
    ValueError
        There are no runs (of ``workflow``, with ``step``) in the history.
    """
    alt = altair()
    rows = sql(TRENDS_SQL, {"workflow": workflow, "step": step}).fetchall()
    if not rows:
        where = (f" of workflow {workflow!r}" if workflow else "") + (f" with step {step!r}" if step else "")
        raise ValueError(f"no runs{where} in the history to draw trends from")
    order: dict[str, int] = {}
    for r in rows:  # oldest first
        order.setdefault(r[0], len(order) + 1)
    data = [{"run_id": r[0], "run": order[r[0]], "workflow": r[1], "created": _iso(r[2]), "run_state": r[3],
             "step": r[4], "state": r[5], "duration_s": r[6]} for r in rows]
    runs: dict[str, dict[str, Any]] = {}
    for d in data:
        runs.setdefault(d["run_id"], {"created": d["created"], "failed": int(d["run_state"] == "FAILED"),
                                      "workflow": d["workflow"]})
    durations = alt.Chart(alt.Data(values=[d for d in data if d["duration_s"] is not None]),
                          title="step durations per run").mark_line(point=True).encode(
        x=alt.X("run:O", title="run (oldest first)"),
        y=alt.Y("duration_s:Q", title="seconds"),
        color=alt.Color("step:N", legend=alt.Legend(orient="bottom", columns=4)),
        tooltip=["run_id:N", "created:T", "step:N", "state:N", "duration_s:Q"],
    ).properties(width=width, height=200)
    failures = alt.Chart(alt.Data(values=list(runs.values())), title="share of failed runs").mark_bar().encode(
        x=alt.X("yearmonthdatehoursminutes(created):T", title="run started (by minute)"),
        y=alt.Y("mean(failed):Q", title="failed share", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("workflow:N"),
        tooltip=[alt.Tooltip("count():Q", title="runs"), alt.Tooltip("mean(failed):Q", title="failed share")],
    ).properties(width=width, height=140)
    return alt.vconcat(durations, failures).resolve_scale(color="independent")


def _iso(at: Any) -> str | None:
    if at is None:
        return None
    if isinstance(at, int | float):
        import datetime

        return datetime.datetime.fromtimestamp(at).isoformat()
    return str(at)


__all__ = [
    "altair",
    "run_timeline",
    "timeline_bars",
    "timeline_chart",
    "timeline_html",
    "trends_chart",
]
