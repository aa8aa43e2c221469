"""Workflow: collect steps, name them, wire the edges, validate, identify.

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> a, b, c = (FunctionStep(lambda: 1, name=n) for n in "abc")
>>> _ = (a - "left") >> b
>>> _ = (a - "right") >> c
>>> wf = Workflow(outputs=[b])
>>> sorted(wf.graph.nodes)
['a', 'b', 'c']
>>> wf.graph.edges["a", "c"]["action"]
'right'
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ..errors import CycleError
from ._graph_adopt import adopt_schema, adopt_unmade, fingerprints_changed, own_version
from .binding import Bindings
from .fingerprint import _fingerprint_list, workflow_fingerprints
from .gcpause import paused_gc
from .joins import check_joins
from .packing import complete, pack, unpack
from .policies import _workflow_policies
from .rules import Plan
from .runners import _CACHED_RUNNER, install_local_runner, local_runner, run_inputs
from .schema import WorkflowSchema
from .stale import warn_stale
from .status import Status
from .steps import Step
from .structure import Structure, build
from .surface import Surface
from .toschema import make_schema, policy_spec

if TYPE_CHECKING:
    import networkx as nx


log = logging.getLogger(__name__)


_NAME = attrgetter("name")

class Workflow(Surface):
    """A graph of steps, collected from ``outputs`` backwards and forwards.

    Parameters
    ----------
    outputs:
        Steps whose results :meth:`run` returns. Every step linked to them
        (upstream, or downstream such as the other side of a branch) is part
        of the workflow.
    workflow_id:
        Stable identifier; by default derived from the structure (names and
        edges), so the same code gives the same id in every process.
    version:
        Version string; the broker refuses a different structure under the
        same id and version. Without it the version is ``"1"``, and
        ``Session.submit`` gives a definition a version of its own (``auto-``
        and 12 hex digits, derived from its structure and contents) when the
        one registered under its id has another structure (prototyping under
        a fixed id), or other code while runs of it are still going (a run
        keeps the code it started with; pipelines made by one function run
        side by side).
    trace:
        Path of a JSON-lines trace file, or a ``Tracer``.
    policies:
        Workflow policies.
    name:
        A human name (defaults to ``"workflow"``).
    execution_engine:
        The default engine of :meth:`run` (e.g. ``PoolEngine(4)``).

    Examples
    --------
    >>> from fuseline_nb import FunctionStep, Workflow
    >>> def load(n: int) -> list[int]:
    ...     return list(range(n))
    >>> def total(items=None) -> int:
    ...     return sum(items)
    >>> a, b = FunctionStep(load), FunctionStep(total)
    >>> _ = a >> b
    >>> wf = Workflow(outputs=[b])
    >>> wf.step_names
    ['load', 'total']
    >>> wf.workflow_id == Workflow(outputs=[b]).workflow_id
    True
    """

    def __init__(
        self,
        outputs: Iterable[Step] | Step,
        execution_engine: Any = None,
        *,
        workflow_id: str | None = None,
        version: str | None = None,
        trace: Any = None,
        policies: Iterable[Any] | None = None,
        name: str | None = None,
    ) -> None:
        outs = [outputs] if isinstance(outputs, Step) else list(outputs)
        if not outs:
            raise ValueError("Workflow needs at least one output step")
        for o in outs:
            if not isinstance(o, Step):
                raise TypeError(f"Workflow outputs must be steps, not {o!r}")
        self.outputs = outs
        self._auto_version = version is None
        self.version = "1" if version is None else str(version)
        self.trace = trace
        self.policies = _workflow_policies(policies)  # (warns of a step policy: it would apply to no step)
        for policy in self.policies:
            attach = getattr(policy, "attach_to_workflow", None)
            if callable(attach):
                attach(self)
        self.name = name or "workflow"
        self.execution_engine = execution_engine
        self.state = Status.PENDING
        #: The id of the latest run started by :meth:`run` or :meth:`dispatch` (Fuseline's name).
        self.workflow_instance_id: str | None = None
        with paused_gc():  # building makes no garbage cycles; a collection would only rescan the heap
            self._build()
            self.workflow_id = workflow_id or self._derived_id()
            warn_stale(self, stacklevel=3)
            if self._structure.branching:  # only a step choosing among actions can starve an AND join
                check_joins(self.plan)

    # -- construction -------------------------------------------------------
    def _build(self) -> None:
        st = self._structure = build(self.outputs)
        self._order = st.order
        self.steps: dict[str, Step] = st.steps
        self.output_names = st.output_names
        self._key: str | None = None
        self._bindings: Bindings | None = None
        self._graph: nx.DiGraph | None = None
        self._schema_cache: WorkflowSchema | None = None
        self._plan: Plan | None = None
        if not st.acyclic:
            import networkx as nx

            cycle = nx.find_cycle(self.graph)
            raise CycleError([u for u, _ in cycle] + [cycle[0][0]])

    @property
    def bindings(self) -> Bindings:
        """How each step's parameters get their values (each step's made on first use: a run needs them,
        building does not, and a worker process only those of the steps it runs).

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> def double(x):
        ...     return 2 * x
        >>> Workflow(outputs=[FunctionStep(double)]).bindings["double"].required_inputs
        ('x',)
        """
        if self._bindings is None:
            self._bindings = Bindings(self._structure)
        return self._bindings

    @property
    def graph(self) -> nx.DiGraph:
        """The structure as a networkx ``DiGraph`` (made on first use).

        Nodes carry ``name``, ``kind`` and ``step``; edges ``actions``,
        ``action`` (joined with ``|``) and ``group``.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> a, b = FunctionStep(lambda: 1, name="a"), FunctionStep(lambda: 2, name="b")
        >>> _ = a >> b
        >>> Workflow(outputs=[b]).graph.edges["a", "b"]["action"]
        'default'
        """
        if self._graph is None:
            import networkx as nx

            g = nx.DiGraph()
            for n, s in self.steps.items():
                g.add_node(n, name=n, kind=s.kind, step=s)
            for (u, v), (actions, group) in (self._full().edges or {}).items():
                g.add_edge(u, v, actions=actions, action="|".join(actions), group=group)
            self._graph = g
        return self._graph

    def _derived_id(self) -> str:
        key = self._key = self._structure.structure_key()  # the SHA-256 of the structure's canonical text
        return f"{self.name}-{key[:12]}"

    def __getstate__(self) -> dict[str, Any]:
        return pack(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        unpack(self, state)

    def __copy__(self) -> Workflow:
        clone = Workflow.__new__(Workflow)  # shallow: the same steps (pickling would pack them)
        clone.__dict__.update(self.__dict__)
        return clone

    def _full(self) -> Structure:
        """The structure with what pickling left behind remade (before the schema cache is dropped)."""
        return complete(self._structure, self._schema_cache)

    def settle_version(self, registered: Iterable[WorkflowSchema],
                       live: Callable[[], Iterable[tuple[str, str]]] | None = None) -> bool:
        """Give this definition a version of its own when its id's version ``"1"`` names another definition
        that must stay: another structure, or other code while runs of it are still going.

        Only a workflow built without ``version=`` moves; the new version is
        derived from its structure and contents (code fingerprints,
        policies), so the same definition gets the same version in every
        process, and one already registered under such a version keeps it.
        Otherwise it goes under ``"1"`` (taking the place of an idle older
        definition there). ``live()`` gives the ``(workflow id, version)``
        of the runs still going (asked only when the contents differ).
        Returns whether the version changed. ``Session.submit`` calls this.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> old = Workflow(outputs=[FunctionStep(lambda: 1, name="a")], workflow_id="sales")
        >>> new = Workflow(outputs=[FunctionStep(lambda: 2, name="b")], workflow_id="sales")
        >>> new.settle_version([old.to_schema()]), new.version.startswith("auto-")
        (True, True)
        >>> edited = Workflow(outputs=[FunctionStep(lambda: 3, name="a")], workflow_id="sales")
        >>> edited.settle_version([old.to_schema()]), edited.version      # no run of the old one is going
        (False, '1')
        >>> edited.settle_version([old.to_schema()], live=lambda: [("sales", "1")]), edited.version[:5]
        (True, 'auto-')
        """
        if not self._auto_version:
            return False
        version = own_version(self.to_schema(), registered, live) or "1"
        if version == self.version:
            return False
        self.version = version
        self._full()
        self._schema_cache = None
        self._plan = None
        return True

    def _adopt_schema(self, registered: Iterable[WorkflowSchema]) -> bool:
        """Use the registered schema equal to this workflow's own (see :func:`._graph_adopt.adopt_schema`)."""
        return adopt_schema(self, registered)

    def _adopt_unmade(self, registered: Iterable[WorkflowSchema], kind: list[Any] | None = None) -> bool:
        """Before making a schema, use an equal registered one (see :func:`._graph_adopt.adopt_unmade`)."""
        return adopt_unmade(self, registered, kind)

    def fingerprints(self) -> dict[str, str]:
        """``{step: code fingerprint}``, computed now (see :mod:`fuseline_nb.workflow.fingerprint`).

        A fingerprint changes when the step's code, the user code it calls or
        a plain global it reads changes; the same code gives the same
        fingerprint in every process and after a kernel restart.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> def one() -> int:
        ...     return 1
        >>> wf = Workflow(outputs=[FunctionStep(one)])
        >>> fps = wf.fingerprints()
        >>> list(fps), len(fps["one"])
        (['one'], 32)
        """
        return workflow_fingerprints(self.steps)

    def refresh(self) -> bool:
        """Recompute the fingerprints; whether they changed since the schema was made.

        A changed fingerprint makes a new :meth:`to_schema`.
        ``Session.submit`` calls this, so an edited global reaches the
        workers.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")])
        >>> wf.refresh()
        False
        """
        return self._refresh(None)

    def _refresh(self, kind: list[Any] | None) -> bool:
        """:meth:`refresh`; ``kind`` receives the ``(class, function)`` every step holds, when it found one."""
        schema = self._schema_cache
        if schema is None or not fingerprints_changed(self, schema, kind):
            return False
        self._full()
        self._schema_cache = None
        self._plan = None
        return True

    # -- views of the structure ------------------------------------------------
    @property
    def step_names(self) -> list[str]:
        """Step names in topological order."""
        return list(self._order)

    def __getitem__(self, name: str) -> Step:
        try:
            return self.steps[name]
        except KeyError:
            raise KeyError(f"no step named {name!r} (steps: {self._order})") from None

    def __len__(self) -> int:
        return len(self._order)

    def _schema(self, workflow_id: str, fps: dict[str, str] | list[str] | None = None) -> WorkflowSchema:
        st = self._full()
        if fps is None:  # in the structure's order (the steps dict's), a column at a time
            steps = list(self.steps.values())
            fps = _fingerprint_list(steps) if list(map(_NAME, steps)) == st.order else self.fingerprints()
        return make_schema(st, workflow_id, self.version, self.name, tuple(map(policy_spec, self.policies)), fps,
                           self._key)

    def to_schema(self) -> WorkflowSchema:
        """The serialisable :class:`WorkflowSchema` a broker works from.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> wf = Workflow(outputs=[FunctionStep(lambda: 1, name="one")], workflow_id="w")
        >>> wf.to_schema().step_names
        ('one',)
        """
        if self._schema_cache is None:
            with paused_gc():
                self._schema_cache = self._schema(self.workflow_id)
            # The schema holds the edges now: one table of them is enough (``_full()`` remakes this
            # one from the schema when the graph or a new schema needs it).
            self._structure.edges = None
        return self._schema_cache

    @property
    def plan(self) -> Plan:
        """The schema compiled for the readiness rules."""
        if self._plan is None:
            self._plan = Plan.from_schema(self.to_schema())
        return self._plan

    # -- running ----------------------------------------------------------------
    def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        execution_engine: Any = None,
        *,
        raise_on_failure: bool = False,
        cache: Any = None,
        rerun: Iterable[str] = (),
    ) -> Any:
        """Run in this process and return the outputs.

        With ``cache`` (``True``: this process's in-memory cache; or a
        ``Session`` or broker, to share its store), the run goes through a
        broker's result cache: steps whose code and inputs were seen are not
        run again, except those named in ``rerun`` (``docs/caching.md``).

        One output gives its result; several give a list in ``outputs``
        order (as in Fuseline); an output that did not run gives ``None``.
        A failed run logs a warning and returns ``None`` (as in Fuseline; the
        outputs that were computed stay in ``wf.last_run.outputs``), or
        raises :class:`~fuseline_nb.errors.StepFailedError` with
        ``raise_on_failure=True``. Afterwards :attr:`state` and each step's
        ``state`` hold the final states, and :attr:`last_run` the full
        :class:`RunResult`.

        Examples
        --------
        >>> from fuseline_nb import FunctionStep, Workflow
        >>> def double(x: int) -> int:
        ...     return 2 * x
        >>> Workflow(outputs=[FunctionStep(double)]).run({"x": 21})
        42
        """
        if cache is not None and cache is not False:
            if not _CACHED_RUNNER:  # installed by fuseline_nb.worker.inprocess, a layer up
                importlib.import_module("fuseline_nb.worker.inprocess")
            result = _CACHED_RUNNER[0](self, run_inputs(inputs), cache, rerun)
            if raise_on_failure:
                result.raise_for_failure()
            return result.outputs
        engine = execution_engine or self.execution_engine
        result = local_runner()(self, run_inputs(inputs), engine=engine)
        self.workflow_instance_id = result.run_id
        if raise_on_failure:
            result.raise_for_failure()
        return None if result.state is Status.FAILED else result.outputs

__all__ = [
    "Workflow",
    "install_local_runner",
    "local_runner",
    "run_inputs",
]
