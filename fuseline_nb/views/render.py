"""HTML and text pieces of run views: counts, the steps table, a step's details.

Pure functions of a :class:`~fuseline_nb.views.runstate.RunState` (and, for
details, a ``StepInfo``), shared by the live widget, the replay widget and
the static fallback that nbconvert or GitHub show. Every user value is
escaped.

Examples
--------
>>> from fuseline_nb.views.runstate import RunState
>>> rs = RunState(["a", "b"])
>>> "pending 2" in counts_html(rs.counts())
True
>>> preview(list(range(100)), limit=30)
'[0, 1, 2, 3, 4, 5, 6, 7, 8, 9…'
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..workflow.value import RICH_ROWS, Value, preview
from ..workflow.value import rich_preview as value_rich_preview
from .palette import FILL, VIEW_STATES
from .runstate import RunState, StepView

#: Which rows a capped table keeps first: what needs attention.
_ROW_PRIORITY: Final = {"FAILED": 0, "RUNNING": 1, "QUEUED": 2, "CANCELLED": 3}
_TD = 'style="padding:1px 8px;text-align:left"'


def badge(state: str) -> str:
    """A coloured state label.

    Examples
    --------
    >>> badge("FAILED")
    '<span style="background:#ffa8a8;color:#000;padding:0 6px;border:1px solid #ced4da;border-radius:3px">failed</span>'
    """
    return (f'<span style="background:{FILL[state]};color:#000;padding:0 6px;border:1px solid #ced4da;'
            f'border-radius:3px">{state.lower()}</span>')


def duration_text(seconds: float | None) -> str:
    """Seconds as ``"1.23 s"`` or ``"85 ms"``; empty when unknown.

    Examples
    --------
    >>> duration_text(0.0854), duration_text(2.5), duration_text(None)
    ('85 ms', '2.50 s', '')
    """
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def counts_html(counts: Mapping[str, int]) -> str:
    """One coloured chip per state that has steps (the view's legend).

    Examples
    --------
    >>> html_ = counts_html({"FAILED": 1, "SKIPPED": 0})
    >>> "failed 1" in html_, "skipped" in html_
    (True, False)
    """
    chips = [
        f'<span style="background:{FILL[s]};color:#000;padding:1px 8px;margin-right:4px;'
        f'border:1px solid #adb5bd;border-radius:3px">{s.lower()} {counts[s]}</span>'
        for s in VIEW_STATES
        if counts.get(s)
    ]
    return f'<div style="line-height:1.9">{"".join(chips)}</div>'


def legend_html() -> str:
    """The state legend: one chip per state, drawn below the graph (not inside its flow).

    Examples
    --------
    >>> "succeeded" in legend_html() and "queued" in legend_html()
    True
    """
    chips = "".join(
        f'<span style="background:{FILL[s]};color:#000;padding:0 6px;margin-right:4px;'
        f'border:1px solid #adb5bd;border-radius:3px">{s.lower()}</span>' for s in VIEW_STATES
    )
    return f'<div style="font-size:85%;margin:2px 0 6px">{chips}</div>'


def counts_text(counts: Mapping[str, int]) -> str:
    """The counts as ``"succeeded 3, failed 1"``.

    Examples
    --------
    >>> counts_text({"SUCCEEDED": 3, "FAILED": 1, "PENDING": 0})
    'succeeded 3, failed 1'
    """
    return ", ".join(f"{s.lower()} {counts[s]}" for s in VIEW_STATES if counts.get(s))


def header_html(run_id: str, workflow: str, rs: RunState) -> str:
    """The run id, workflow and run state.

    Examples
    --------
    >>> "0/1 steps done" in header_html("r1", "etl", RunState(["load"]))
    True
    """
    return (
        f'<div><b>run</b> <code>{html.escape(run_id)}</code> of <b>{html.escape(workflow)}</b> '
        f"{badge(rs.run_state if rs.run_state in FILL else 'RUNNING')} "
        f"<span>{rs.finished_count}/{len(rs.steps)} steps done</span></div>"
    )


def _rows(rs: RunState, max_rows: int) -> tuple[list[tuple[str, StepView]], int]:
    items = list(rs.steps.items())
    if len(items) <= max_rows:
        return items, 0
    ranked = sorted(range(len(items)), key=lambda i: (_ROW_PRIORITY.get(items[i][1].state, 9), i))
    keep = sorted(ranked[:max_rows])
    return [items[i] for i in keep], len(items) - max_rows


def table_html(rs: RunState, *, max_rows: int = 50, workers: Mapping[str, str] | None = None) -> str:
    """The steps table: state, attempts, worker, duration (failed and running rows first when capped).

    Examples
    --------
    >>> rs = RunState([f"s{i}" for i in range(5)])
    >>> rs.steps["s4"].state = "FAILED"
    >>> out = table_html(rs, max_rows=2)
    >>> "s4" in out, "s1" in out, "3 more steps not listed" in out
    (True, False, True)
    """
    rows, more = _rows(rs, max_rows)
    names = workers or {}
    body = "".join(
        f"<tr><td {_TD}>{html.escape(n)}</td><td {_TD}>{badge(s.state)}</td>"
        f"<td {_TD}>{s.attempts or ''}</td><td {_TD}>{html.escape(names.get(s.worker or '', s.worker or ''))}</td>"
        f"<td {_TD}>{duration_text(s.duration_s)}</td></tr>"
        for n, s in rows
    )
    head = "".join(f"<th {_TD}>{h}</th>" for h in ("step", "state", "attempts", "worker", "duration"))
    note = f"<div><i>{more:,} more steps not listed</i></div>" if more else ""
    return f'<table style="border-collapse:collapse;font-size:90%"><tr>{head}</tr>{body}</table>{note}'


def table_text(rs: RunState, *, max_rows: int = 50, workers: Mapping[str, str] | None = None) -> str:
    """The steps table as aligned text.

    Examples
    --------
    >>> print(table_text(RunState(["load"])))
    step  state    attempts  worker  duration
    load  pending  0
    """
    rows, more = _rows(rs, max_rows)
    names = workers or {}
    table = [("step", "state", "attempts", "worker", "duration")] + [
        (n, s.state.lower(), str(s.attempts), names.get(s.worker or "", s.worker or ""),
         duration_text(s.duration_s))
        for n, s in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    if more:
        lines.append(f"({more:,} more steps not listed)")
    return "\n".join(lines)


def detail_html(name: str, info: Any, inputs: Mapping[str, Any] | None,
                upstream: Iterable[tuple[str, Any]], workers: Mapping[str, str] | None = None) -> str:
    """One step's state, input and result previews, and error with traceback.

    Examples
    --------
    >>> from fuseline_nb import Status, StepInfo
    >>> out = detail_html("load", StepInfo(Status.SUCCEEDED, attempts=1, result=[1, 2]), {"n": 2}, [])
    >>> "input n</code> = <code>2</code>" in out, "<code>[1, 2]</code>" in out
    (True, True)
    """
    parts = [f"<div><b>{html.escape(name)}</b> {badge(_state(info))} attempts {info.attempts}"]
    if info.worker:
        worker = (workers or {}).get(info.worker, info.worker)
        parts.append(f" on <code>{html.escape(str(worker))}</code>")
    if info.duration_s is not None:
        parts.append(f" in {duration_text(info.duration_s)}")
    if info.skip_reason:
        parts.append(f" ({html.escape(info.skip_reason.replace('_', ' '))})")
    parts.append("</div>")
    ins = [(f"input {k}", v) for k, v in (inputs or {}).items()] + [(f"from {k}", v) for k, v in upstream]
    for label, value in ins:
        parts.append(f"<div><code>{html.escape(label)}</code> = <code>{html.escape(preview(value))}</code></div>")
    if info.started_at is not None and _state(info) == "RUNNING":
        parts.append(f'<div>running for <span data-since="{info.started_at!r}"></span></div>')
    times = [(k, getattr(info, f"{k}_at", None)) for k in ("queued", "started", "finished")]
    if any(t for _, t in times):
        parts.append('<div style="color:#495057">' + ", ".join(
            f"{k} {_clock_text(t)}" for k, t in times if t) + "</div>")
    if _state(info) == "SUCCEEDED":
        parts.append(f"<div><b>result</b> {rich_preview(info.value)}</div>")
    if info.error:
        parts.append(f'<div style="color:#c92a2a"><b>error</b> {html.escape(info.error)}</div>')
    if info.traceback:
        parts.append(
            '<pre style="background:#fff5f5;color:#000;padding:6px;max-height:300px;overflow:auto;'
            f'font-size:85%">{html.escape(info.traceback)}</pre>'
        )
    return "".join(parts)


def _clock_text(at: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(at).strftime("%H:%M:%S.%f")[:-3]


def rich_preview(value: Any) -> str:
    """HTML for a result: tables and arrays show shape, dtypes and first rows; anything else its preview.

    ``value`` is a :class:`~fuseline_nb.workflow.value.Value` (its previews
    were made where it was born: nothing is unpickled here) or a plain object.

    Examples
    --------
    >>> from fuseline_nb.workflow.value import Value
    >>> rich_preview(Value.of([1, 2]))
    '<code>[1, 2]</code>'
    >>> import numpy as np
    >>> print(rich_preview(Value.of(np.zeros((3, 4))))[:65])
    <div>ndarray 3 × 4 (first 3 rows)</div><div>dtypes: float64</div>
    """
    if isinstance(value, Value):
        rich, type_name = value.rich, value.type_name
    else:
        rich, type_name = value_rich_preview(value), type(value).__name__
    if not rich:
        return f"<code>{html.escape(preview(value))}</code>"
    shape = [int(n) for n in rich.get("shape", [])]
    dims = " × ".join(f"{n:,}" for n in shape)
    dtypes = rich.get("dtypes") or {}
    kinds = ", ".join(
        (f"<code>{html.escape(str(k))}</code> " if k else "") + html.escape(str(v))
        for k, v in list(dtypes.items())[:20]
    )
    shown = min(RICH_ROWS, shape[0]) if shape else 0
    short = html.escape(type_name.rsplit(".", 1)[-1])
    return (f"<div>{short} {dims} (first {shown} rows)</div><div>dtypes: {kinds}</div>"
            f'<div style="overflow:auto">{rich.get("html", "")}</div>')


def _state(info: Any) -> str:
    return str(getattr(info.state, "value", info.state))


def graph_html(svg: str, *, max_height: int = 520) -> str:
    """An SVG ready to sit inside HTML: no XML prolog, shrinks to fit the width, scrolls when tall.

    Examples
    --------
    >>> out = graph_html('<?xml version="1.0"?><svg width="80pt" height="20pt" viewBox="0 0 80 20"></svg>')
    >>> out.count("<?xml"), '<svg width="100%" style="max-width:80pt"' in out
    (0, True)
    """
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    m = _SVG_SIZE.match(body)
    if m:  # keep the natural size as a maximum; the viewBox keeps the aspect ratio
        body = f'<svg width="100%" style="max-width:{m.group(1)}"{body[m.end():]}'
    return f'<div style="overflow:auto;max-height:{max_height}px;background:#fff">{body}</div>'


_SVG_SIZE = re.compile(r'<svg width="([^"]+)" height="[^"]+"')


__all__ = [
    "badge",
    "counts_html",
    "counts_text",
    "detail_html",
    "duration_text",
    "graph_html",
    "header_html",
    "legend_html",
    "preview",
    "rich_preview",
    "table_html",
    "table_text",
]
