"""The Dask side of a :class:`~fuseline_nb.worker.dask_engine.DaskEngine`: the client and the shipped workflows.

:func:`connect` makes a ``distributed.Client`` of whatever ``dask=`` names;
:func:`quicken` shortens that client's send interval (Dask batches what a
client sends for 10 ms, which alone would cap a chain of steps the broker
releases one by one at 100 steps a second); :class:`Definitions` ships each
workflow once per definition, as a
:class:`~fuseline_nb.worker.dask_task.DefinitionPlugin` the scheduler
installs on every worker, including workers that join later.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from ..workflow.graph import Workflow
from ..workflow.policies import timeout_seconds
from ..workflow.steps import step_policies
from .shipping import ship

log = logging.getLogger(__name__)

_HINT = 'DaskEngine needs dask.distributed: pip install "fuseline-nb[dask]"'
#: Longest time the client holds a message to the scheduler before sending it (Dask's default: 10 ms).
SEND_INTERVAL = 0.002


def import_distributed() -> Any:
    """The ``distributed`` module, or an ImportError that says how to install it.

    Examples
    --------
    >>> import_distributed().__name__
    'distributed'
    """
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(f"{_HINT} ({exc})") from exc
    return distributed


def connect(dask: Any) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``dask`` (a Client, a cluster, or a scheduler address).

    Returns the client and whether it was made here (then its owner closes it).

    Examples
    --------
    >>> connect(3)
    Traceback (most recent call last):
    TypeError: dask= takes a distributed.Client, a cluster or a scheduler address such as 'tcp://10.0.0.5:8786', not 3
    """
    if isinstance(dask, str):
        return import_distributed().Client(dask), True
    if hasattr(dask, "submit") and hasattr(dask, "register_plugin"):
        return dask, False
    if isinstance(getattr(dask, "scheduler_address", None), str):  # a LocalCluster, a dask-jobqueue cluster...
        return import_distributed().Client(dask), True
    raise TypeError("dask= takes a distributed.Client, a cluster or a scheduler address such as "
                    f"'tcp://10.0.0.5:8786', not {dask!r}")


def quicken(client: Any) -> None:
    """Let ``client`` send to the scheduler every :data:`SEND_INTERVAL` s instead of every 10 ms.

    The engine submits each step as the broker releases it, so the client's
    batching delay is paid once per step of a chain. Dask offers no setting
    for it; a client without the attribute (another Dask version) is left as it is.
    """
    comm = getattr(client, "scheduler_comm", None)
    interval = getattr(comm, "interval", None)
    if isinstance(interval, float) and interval > SEND_INTERVAL:
        comm.interval = SEND_INTERVAL  # type: ignore[union-attr]


def keep_definition(client: Any, key: tuple[str, str], blob: bytes) -> None:
    """Keep shipped bytes in ``client``'s broker when it is in this process (a DuckDB file keeps them),
    so a reopened file resumes its runs on Dask; failing to costs the resume, not the run."""
    broker = getattr(client, "broker", None)
    if broker is None:
        return
    try:
        broker.store_definition(key[0], key[1], blob)
    except Exception as exc:
        log.warning("could not keep workflow %r version %r in the history (%s: %s): its unfinished "
                    "runs will resume only when it is submitted again", key[0], key[1],
                    type(exc).__name__, exc)


class Shipped:
    """A workflow as shipped to the cluster: its plugin's definition id and its steps' timeouts."""

    __slots__ = ("definition_id", "timeouts", "workflow")

    def __init__(self, workflow: Workflow, definition_id: str) -> None:
        self.workflow = workflow
        self.definition_id = definition_id
        self.timeouts = {n: timeout_seconds(step_policies(s)) for n, s in workflow.steps.items()}


class Definitions:
    """The workflows one engine shipped to a Dask cluster, one plugin per definition.

    ``owner`` names the engine: closing it removes its plugins only (another
    engine on the same cluster keeps the definitions it shares).
    """

    def __init__(self, dask: Any, owner: str) -> None:
        from . import dask_task

        self._plugin = dask_task.DefinitionPlugin
        self.dask = dask
        self.owner = owner
        self.shipped: dict[tuple[str, str], Shipped] = {}
        self._schemas: dict[tuple[str, str], Any] = {}  # the schema of what the cluster holds
        self._plugins: list[str] = []

    def ship(self, wf: Workflow) -> bytes | None:
        """Ship ``wf`` unless the cluster holds it: its bytes when shipped now, else ``None``."""
        key = (wf.workflow_id, wf.version)
        # the same object with the same schema: ``refresh()`` makes a new schema when a step's code or
        # settings changed (a policy added to a step: its timeout is the cluster's to enforce)
        schema = wf.to_schema()
        known = self.shipped.get(key)
        if known is not None and known.workflow is wf and self._schemas.get(key) is schema:
            return None
        self._schemas[key] = schema
        _, blob = ship(wf)
        definition_id = hashlib.sha256(blob).hexdigest()[:24]
        if known is not None and known.definition_id == definition_id:
            known.workflow = wf
            return None
        plugin = self._plugin(definition_id, blob, self.owner)
        self.dask.register_plugin(plugin, name=plugin.name)
        self._plugins.append(plugin.name)
        self.shipped[key] = Shipped(wf, definition_id)
        return blob

    def forget(self, wf: Workflow) -> None:
        """Drop ``wf`` from what is served (the broker refused it); its plugin stays until :meth:`close`."""
        self.shipped.pop((wf.workflow_id, wf.version), None)
        self._schemas.pop((wf.workflow_id, wf.version), None)

    def schemas(self) -> list[Any]:
        """The schemas of every workflow served (what the engine registers with the broker)."""
        return [d.workflow.to_schema() for d in self.shipped.values()]

    def get(self, workflow_id: str, version: str) -> Shipped | None:
        """What was shipped for this workflow id and version, else ``None``."""
        return self.shipped.get((workflow_id, version))

    def close(self) -> None:
        """Remove this engine's plugins from the cluster."""
        plugins, self._plugins = self._plugins, []
        for name in plugins:
            try:
                self.dask.unregister_worker_plugin(name)
            except Exception:
                log.info("could not remove plugin %s", name, exc_info=True)

    def __len__(self) -> int:
        return len(self.shipped)
