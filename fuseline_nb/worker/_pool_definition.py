"""Whether a workflow given to the pool is new to it: shipped again, or refused.

:meth:`WorkerPool.add_workflow <fuseline_nb.worker.pool.WorkerPool.add_workflow>`
skips shipping a fresh object that runs exactly as the shipped one does
(:func:`same_definition`: a cell run again, nothing changed), and refuses a
definition whose structure differs from the one the broker registered under
the same id and version (:func:`check_schema`).

Examples
--------
>>> from fuseline_nb import FunctionStep, Workflow
>>> from fuseline_nb.broker import MemoryBroker
>>> from fuseline_nb.broker.clients import LocalBrokerClient
>>> build = lambda: Workflow(outputs=[FunctionStep(len, name="n")], workflow_id="w")
>>> same_definition(build(), build())      # the same cell run again: no need to ship it
True
>>> same_definition(None, build())         # nothing shipped yet
False
>>> check_schema(LocalBrokerClient(MemoryBroker()), build())   # nothing registered: accepted
>>> check_schema(LocalBrokerClient(MemoryBroker()), "w")
Traceback (most recent call last):
TypeError: expected a Workflow, not 'w'
"""

from __future__ import annotations

from itertools import repeat
from operator import attrgetter, is_not

from ..broker.clients import BrokerClient
from ..errors import SchemaMismatchError
from ..workflow.graph import Workflow
from ..workflow.steps import step_policies

_DICT = attrgetter("__dict__")


def same_definition(old: Workflow | None, new: Workflow) -> bool:
    """Whether ``new`` (a fresh object) runs exactly as the shipped ``old`` does, so shipping it
    again can be skipped: the same schema (structure, code fingerprints, policy settings), no
    pinned ``code_version`` (its code may have changed under the pin) and only built-in
    policies (a custom policy's code is not fingerprinted)."""
    if old is None or old is new:
        return False
    builtin = "fuseline_nb.workflow.policies"
    if any(type(p).__module__ != builtin for p in new.policies):
        return False
    steps = list(new.steps.values())
    plain: dict[type, bool] = {  # class -> it sets neither policies nor code_version itself
        cls: getattr(cls, "policies", None) is None and getattr(cls, "code_version", None) is None
        for cls in set(map(type, steps))}
    if all(plain.values()):  # what each step holds is in its own dict: a column at a time
        try:
            dicts = list(map(_DICT, steps))
        except AttributeError:  # a step without a __dict__: one at a time below
            pass
        else:
            if any(map(is_not, map(dict.get, dicts, repeat("code_version")), repeat(None))):
                return False
            for policies in filter(None, map(dict.get, dicts, repeat("policies"))):  # steps with policies
                if any(type(p).__module__ != builtin for p in policies):
                    return False
            return old.to_schema() == new.to_schema()  # the same object when Session.submit adopted it
    plain = {}
    for step in steps:
        cls = type(step)
        bare = plain.get(cls)
        if bare is None:
            bare = plain[cls] = getattr(cls, "policies", None) is None and \
                getattr(cls, "code_version", None) is None and hasattr(step, "__dict__")
        if bare:  # what the step holds is in its own dict (a class asked once, not once per step)
            d = step.__dict__
            policies = d.get("policies")
            if d.get("code_version") is not None:
                return False
        else:
            if getattr(step, "code_version", None) is not None:
                return False
            policies = step_policies(step)
        if policies and any(type(p).__module__ != builtin for p in policies):
            return False
    return old.to_schema() == new.to_schema()  # the same object when Session.submit adopted it


def check_schema(client: BrokerClient, wf: Workflow) -> None:
    """Refuse ``wf`` when ``client``'s broker knows another structure under its id and version.

    Raises
    ------
    TypeError
        ``wf`` is not a :class:`~fuseline_nb.workflow.graph.Workflow`.
    SchemaMismatchError
        The broker registered a different definition under this id and version.
    """
    if not isinstance(wf, Workflow):
        raise TypeError(f"expected a Workflow, not {wf!r}")
    schema = wf.to_schema()
    for known in client.list_workflows():
        if (known.workflow_id, known.version) == (schema.workflow_id, schema.version) and \
                known.structure_key() != schema.structure_key():
            raise SchemaMismatchError(
                f"workflow {wf.workflow_id!r} version {wf.version!r} is already registered with a "
                f"different definition ({'; '.join(known.differences(schema))}): give the new "
                "definition another version or workflow_id"
            )


__all__ = ["check_schema", "same_definition"]
