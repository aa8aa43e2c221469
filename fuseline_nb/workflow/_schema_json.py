"""A :class:`~fuseline_nb.workflow.schema.WorkflowSchema`'s JSON text, written and read about 10× faster.

The text is exactly ``json.dumps(schema.to_dict(), sort_keys=True)`` (the
form stored in DuckDB's ``definitions`` and served over HTTP), but written
without a dict per step and edge: each step is one ``%`` format whose keys are
already in sorted order, and the values a million steps share (a kind, a
target, a fingerprint, an empty tuple) are encoded once per call. Reading
builds the schema objects directly and keeps one copy of each repeated value.

Examples
--------
>>> import json
>>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
>>> s = WorkflowSchema("w", steps=(StepSchema("a", reads=("x",)), StepSchema("b")),
...                    edges=(EdgeSchema("a", "b", group="g"),), outputs=("b",))
>>> dumps(s) == json.dumps(s.to_dict(), sort_keys=True)
True
>>> WorkflowSchema.from_json(dumps(s)) == s
True
"""

from __future__ import annotations

import json
from array import array
from json.encoder import encode_basestring_ascii
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

_dumps = json.JSONEncoder(sort_keys=True).encode  # json.dumps(..., sort_keys=True), without its keyword handling
_loads = json.JSONDecoder().decode
# The keys in sorted order, cut around the values that differ from step to step (the names).
_STEP_BEFORE = ', {"cache": %s, "conditional": %s, "fingerprint": %s, "inputs": %s, "kind": %s, "name": '
_STEP_AFTER = ', "policies": %s, "reads": %s, "target": %s}'
_EDGE_BEFORE = ', {"action": %s, "group": %s, "source": '
_EDGE_MID = ', "target": '
_step_values = itemgetter("cache", "conditional", "fingerprint", "inputs", "kind", "name", "policies", "reads", "target")
_edge_values = itemgetter("source", "target", "action", "group")
_TOP = ('{"edges": [%s], "name": %s, "outputs": %s, "policies": %s, "steps": [%s], "version": %s, '
        '"workflow_id": %s}')


def _text(value: Any) -> str:
    """One value's JSON text, as ``json.dumps(..., sort_keys=True)`` writes it inside the schema."""
    if type(value) is str:
        return encode_basestring_ascii(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return _dumps(value)


def _policies_text(policies: Any) -> str:
    return _dumps([dict(p) for p in policies])


_step_facts = attrgetter("cache", "conditional", "fingerprint", "inputs", "kind", "policies", "reads", "target")
_edge_facts = attrgetter("action", "group")


def dumps(schema: Any) -> str:
    """The JSON text of ``schema``: ``json.dumps(schema.to_dict(), sort_keys=True)``, quicker.

    Steps that share every field but their name (the steps of one function
    or class) share the text around the name: a step costs a lookup, its
    name's encoding and three list items. Equal field values are written as
    the first step that had them writes them.
    """
    try:
        return _dumps_shared(schema)
    except TypeError:  # a name that is not a string, an unhashable value
        return _dumps_each(schema)


def _memo(table: dict[Any, Any], facts: tuple[Any, ...], make: Any) -> tuple[Any, Any]:
    """``(table's entry for a step's facts, the key it is under)``, made by ``make(facts)`` when missing.

    A step's facts are its fields but its name; a policy spec (a dict) cannot
    be hashed, so such a step is keyed by the spec's identity instead.

    Examples
    --------
    >>> table = {}
    >>> _memo(table, ("a",) * 8, len), _memo(table, ("a",) * 8, lambda f: 0)
    ((8, ('a', 'a', 'a', 'a', 'a', 'a', 'a', 'a')), (8, ('a', 'a', 'a', 'a', 'a', 'a', 'a', 'a')))
    """
    try:
        got = table.get(facts)
        key = facts
    except TypeError:  # a policy spec (a dict): keyed by the step's own tuple of specs
        key = (*facts[:5], id(facts[5]), *facts[6:])
        got = table.get(key)
    if got is None:
        got = table[key] = make(facts)
    return got, key


def _around_facts(facts: tuple[Any, ...]) -> tuple[str, str]:
    return _around(*facts)


def _dumps_shared(schema: Any) -> str:
    enc = encode_basestring_ascii
    parts: list[str] = []
    extend = parts.extend
    around: dict[Any, tuple[str, str]] = {}  # a step's fields but its name -> the texts before and after the name
    last: Any = None
    before = after = ""
    names: dict[str, str] = {}  # step name -> its text (edges name the steps again)
    for s in schema.steps:
        facts = _step_facts(s)
        if facts != last:
            (before, after), last = _memo(around, facts, _around_facts)
        name = s.name
        name_text = names[name] = enc(name)
        extend((before, name_text, after))
    if parts:
        parts[0] = parts[0][2:]  # each step starts with ", "
    steps = parts
    # One list of every part in the text's order, joined once: the text is made once (not the
    # steps' text, the edges' text, then the whole: ~2.7x the text at the peak).
    head, middle, tail = _frame(schema)
    parts = [head]
    extend = parts.extend
    last = None
    names_get = names.get
    for e in schema.edges:
        facts = _edge_facts(e)
        if facts != last:
            before = _EDGE_BEFORE % (_text(facts[0]), _text(facts[1]))
            last = facts
        source, target = e.source, e.target
        extend((before, names_get(source) or enc(source), _EDGE_MID, names_get(target) or enc(target), "}"))
    if len(parts) > 1:
        parts[1] = parts[1][2:]  # each edge starts with ", "
    parts.append(middle)
    parts += steps
    del steps
    parts.append(tail)
    return "".join(parts)


def _frame(schema: Any) -> list[str]:
    """The text before the edges, between the edges and the steps, and after the steps."""
    whole = _TOP % ("\0", _text(schema.name), _dumps(list(schema.outputs)), _policies_text(schema.policies),
                    "\0", _text(schema.version), _text(schema.workflow_id))
    return whole.split("\0")  # the JSON text of a string never holds a NUL character


def _around(cache: Any, conditional: Any, fp: Any, inputs: Any, kind: Any, policies: Any, reads: Any,
            target: Any) -> tuple[str, str]:
    return (_STEP_BEFORE % (_text(cache), _text(conditional), _text(fp), _dumps(list(inputs)), _text(kind)),
            _STEP_AFTER % (_policies_text(policies), "null" if reads is None else _dumps(list(reads)), _text(target)))


class Pieces(NamedTuple):
    """A schema's JSON text cut where it changes from step to step (see :func:`pieces`).

    The text is ``head + E + middle + S + tail``, where ``S`` joins, with
    ``", "``, each step's ``shapes[shape][0] + name + shapes[shape][1]`` and
    ``E`` each edge's ``shapes[shape][0] + source + shapes[shape][1] +
    target + "}"``; a name stands as ``"name"`` unless ``escaped`` holds its
    JSON text (a quote, a backslash, a control or non-ASCII character).
    """

    head: str
    middle: str
    tail: str
    #: (text before, text after) the name (a step) or the source (an edge), without the leading ", "
    shapes: list[tuple[str, str]]
    #: each step's shape, in the schema's order
    step_shapes: array[int]
    #: each edge's shape, in the schema's order
    edge_shapes: array[int]
    #: names whose JSON text is not the name in double quotes -> that text
    escaped: dict[str, str]


def pieces(schema: Any) -> Pieces | None:
    """:func:`dumps`'s text of ``schema`` cut into the few texts its steps share and a shape per step and edge.

    ``None`` when a name is not a string or a value cannot be keyed (then
    only the whole text can be written). Nothing is made per step but one
    number (the name's own string is the step's part), so a store can keep
    a 1,000,000-step definition as small rows instead of ~350 MB of text.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> s = WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b")), edges=(EdgeSchema("a", "b"),))
    >>> p = pieces(s)
    >>> len(p.shapes), list(p.step_shapes), list(p.edge_shapes)
    (2, [0, 0], [1])
    >>> text = p.head + p.shapes[1][0] + '"a"' + p.shapes[1][1] + '"b"}' + p.middle + ", ".join(
    ...     p.shapes[0][0] + f'"{n}"' + p.shapes[0][1] for n in "ab") + p.tail
    >>> text == dumps(s)
    True
    """
    try:
        return _pieces(schema)
    except TypeError:  # a name that is not a string, an unhashable value
        return None


def _pieces(schema: Any) -> Pieces:
    enc = encode_basestring_ascii
    shapes: list[tuple[str, str]] = []
    index: dict[Any, int] = {}  # a step's fields but its name (or an edge's) -> its shape
    escaped: dict[str, str] = {}
    step_shapes = array("i")
    put = step_shapes.append

    def new_shape(facts: tuple[Any, ...]) -> int:
        shapes.append(_around_name(*facts))
        return len(shapes) - 1

    last: Any = None
    shape = 0
    for s in schema.steps:
        facts = _step_facts(s)
        if facts != last:
            shape, last = _memo(index, facts, new_shape)
        name = s.name
        if type(name) is not str:
            raise TypeError(name)
        text = enc(name)
        if len(text) != len(name) + 2:
            escaped[name] = text
        put(shape)
    edge_shapes = array("i")
    put = edge_shapes.append
    last = None
    for e in schema.edges:
        facts = ("edge", *_edge_facts(e))
        if facts != last:
            got = index.get(facts)
            if got is None:
                got = index[facts] = len(shapes)
                shapes.append(((_EDGE_BEFORE % (_text(facts[1]), _text(facts[2])))[2:], _EDGE_MID))
            shape, last = got, facts
        for name in (e.source, e.target):
            if name not in escaped:
                if type(name) is not str:
                    raise TypeError(name)
                text = enc(name)
                if len(text) != len(name) + 2:
                    escaped[name] = text
        put(shape)
    head, middle, tail = _frame(schema)
    return Pieces(head, middle, tail, shapes, step_shapes, edge_shapes, escaped)


def from_pieces(head: str, middle: str, tail: str, shapes: dict[int, tuple[str, str]], step_shapes: list[int],
                names: list[str], edge_shapes: list[int], sources: list[str], targets: list[str]) -> Any:
    """The :class:`~fuseline_nb.workflow.schema.WorkflowSchema` whose :class:`Pieces` these are, without its text.

    ``shapes`` maps each shape number to its texts; the steps (``names``)
    and edges (``sources``, ``targets``) come with their shapes, in order.
    Each shape is read once; a step costs one :func:`~.schema.step_schema`
    call, and edges name the steps' own strings.

    Examples
    --------
    >>> from fuseline_nb.workflow.schema import WorkflowSchema, StepSchema, EdgeSchema
    >>> s = WorkflowSchema("w", steps=(StepSchema("a"), StepSchema("b", cache=False)), edges=(EdgeSchema("a", "b"),))
    >>> p = pieces(s)
    >>> from_pieces(p.head, p.middle, p.tail, dict(enumerate(p.shapes)), list(p.step_shapes), ["a", "b"],
    ...             list(p.edge_shapes), ["a"], ["b"]) == s
    True
    """
    from .schema import WorkflowSchema, edge_schema, step_schema

    used = dict.fromkeys(step_shapes)
    on_edges = dict.fromkeys(edge_shapes)
    # one small text holding each shape once (names empty): read by loads, with its defaults and sharing
    sample = loads("".join((
        head, ", ".join(shapes[k][0] + '""' + shapes[k][1] + '""}' for k in on_edges), middle,
        ", ".join(shapes[k][0] + '""' + shapes[k][1] for k in used), tail)),
        WorkflowSchema, step_schema, edge_schema)
    fields = attrgetter("kind", "target", "policies", "conditional", "fingerprint", "cache", "reads", "inputs")
    step_facts = dict(zip(used, map(fields, sample.steps), strict=True))
    steps = [step_schema(name, *step_facts[k]) for k, name in zip(step_shapes, names, strict=True)]
    own = {name: name for name in names}.get  # edges and outputs name the steps' own strings
    edge_facts = {k: (e.action, e.group) for k, e in zip(on_edges, sample.edges, strict=True)}
    edges = [edge_schema(own(a, a), own(b, b), *edge_facts[k]) for k, a, b in zip(edge_shapes, sources, targets, strict=True)]
    return WorkflowSchema(workflow_id=sample.workflow_id, version=sample.version, steps=tuple(steps),
                          edges=tuple(edges), outputs=tuple(own(o, o) for o in sample.outputs), name=sample.name,
                          policies=sample.policies)


def _around_name(*facts: Any) -> tuple[str, str]:
    before, after = _around(*facts)
    return before[2:], after


def _dumps_each(schema: Any) -> str:
    steps = ", ".join(
        (_STEP_BEFORE % (_text(s.cache), _text(s.conditional), _text(s.fingerprint), _dumps(list(s.inputs)),
                         _text(s.kind)))[2:]
        + _text(s.name)
        + _STEP_AFTER % (_policies_text(s.policies), "null" if s.reads is None else _dumps(list(s.reads)),
                         _text(s.target))
        for s in schema.steps)
    edges = ", ".join((_EDGE_BEFORE % (_text(e.action), _text(e.group)))[2:] + _text(e.source) + _EDGE_MID
                      + _text(e.target) + "}" for e in schema.edges)
    return _TOP % (edges, _text(schema.name), _dumps(list(schema.outputs)), _policies_text(schema.policies),
                   steps, _text(schema.version), _text(schema.workflow_id))


def loads(text: str, schema_class: Any, step_schema: Any, edge_schema: Any) -> Any:
    """Read :func:`dumps` text (or any older ``to_json`` text: missing keys take their defaults).

    ``step_schema`` and ``edge_schema`` make a step and an edge from their
    field values in order. Repeated strings and tuples are kept once: a
    million steps read back share one kind, target and fingerprint object
    each, as they did when built, and edges name the steps' own strings.
    """
    d = _loads(text)
    memo: dict[Any, Any] = {}
    specs: dict[str, tuple[dict[str, Any], ...]] = {}
    intern = memo.setdefault
    out: list[Any] = []
    append = out.append
    for s in d.get("steps", ()):
        try:
            if len(s) != 9:
                raise KeyError
            cache, conditional, fp, inputs, kind, name, policies, reads, target = _step_values(s)
            append(step_schema(
                name, intern(kind, kind), intern(target, target),
                _intern_policies(policies, specs) if policies else (),
                conditional is True or bool(conditional),
                intern(fp, fp) if type(fp) is str else str(fp),
                cache is True or bool(cache),
                None if reads is None else _intern_tuple(reads, memo),
                _intern_tuple(inputs, memo) if inputs else ()))
        except (KeyError, TypeError):  # an older or hand-written definition: from_dict's defaults
            append(step_schema(
                s["name"], s.get("kind", "step"), s.get("target", ""),
                tuple(dict(p) for p in s.get("policies", ())), bool(s.get("conditional", False)),
                str(s.get("fingerprint", "")), bool(s.get("cache", True)),
                None if s.get("reads") is None else tuple(s["reads"]), tuple(s.get("inputs", ()))))
    names = {s.name: s.name for s in out}  # edges name the steps' own string objects
    names_get = names.get
    try:
        edges = [edge_schema(names_get(source, source), names_get(target, target), intern(action, action),
                             None if group is None else intern(group, group))
                 for source, target, action, group in map(_edge_values, d.get("edges", ()))]
    except KeyError:  # an older or hand-written definition: an edge's action and group have defaults
        edges = [edge_schema(e["source"], e["target"], e.get("action", "default"), e.get("group"))
                 for e in d.get("edges", ())]
    return schema_class(
        workflow_id=str(d["workflow_id"]),
        version=str(d.get("version", "1")),
        steps=tuple(out),
        edges=tuple(edges),
        outputs=tuple(names_get(o, o) for o in d.get("outputs", ())),
        name=d.get("name", ""),
        policies=tuple(dict(p) for p in d.get("policies", ())),
    )


def _intern_tuple(items: list[Any], memo: dict[Any, Any]) -> tuple[Any, ...]:
    t = tuple(items)
    try:
        return memo.setdefault(t, t)  # type: ignore[no-any-return]
    except TypeError:  # an unhashable item: kept as read
        return t


def _intern_policies(policies: list[Any], specs: dict[str, tuple[dict[str, Any], ...]]) -> tuple[dict[str, Any], ...]:
    key = _dumps(policies)  # equal specs, one tuple of dicts (only read)
    got = specs.get(key)
    if got is None:
        got = specs[key] = tuple(dict(p) for p in policies)
    return got
