"""How a :class:`~fuseline_nb.workflow.value.Value` crosses JSON: its pydantic schema (the HTTP edge).

``{"kind": "pickle", "data": <base64 pickle>, "preview", "type_name",
"fingerprint", "rich", "json_text"}``: the bytes and facts, made a closed
Value on arrival (nothing is unpickled). A client that is not Python may
send ``{"kind": "json", "value": ...}`` instead (nested at most
:data:`~fuseline_nb.limits.MAX_DEPTH` levels); it is made a value there.

Examples
--------
>>> from pydantic import TypeAdapter
>>> adapter = TypeAdapter(Value)
>>> sent = adapter.dump_json(Value.of((1, 2)))
>>> back = adapter.validate_json(sent)
>>> back, back.loaded, back.load()
(<Value tuple: (1, 2)>, False, (1, 2))
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import xxhash

from ..limits import depth_error
from .value import Value


def _refused(why: str) -> Exception:
    from pydantic_core import PydanticCustomError

    return PydanticCustomError("invalid_value", why)


def _from_wire(d: dict[str, Any]) -> Value:
    if d["kind"] == "json":  # a client that is not Python: plain JSON, so pickling it runs no code
        if (err := depth_error(d.get("value"), "value")) is not None:
            raise _refused(err)
        return Value.of(d.get("value"))
    try:
        data = base64.b64decode(d["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refused(f"data is not valid base64 ({exc})") from None
    return Value(data, d.get("fingerprint") or xxhash.xxh3_128_hexdigest(data), d.get("preview", ""),
                 d.get("type_name", ""), d.get("rich"), d.get("json_text"))


def _kept(v: Any, validate: Any) -> Value:
    return v if v.__class__ is Value else validate(v)  # type: ignore[no-any-return]


def _to_wire(v: Any) -> dict[str, Any]:
    if v is None:  # a step that returned None: the broker keeps it as it is
        return _NONE_WIRE
    v = Value.of(v)  # a direct caller's object becomes a value here
    return _wire_dict(v)


def _wire_dict(v: Value) -> dict[str, Any]:
    return {"kind": "pickle", "data": base64.b64encode(v.data).decode("ascii"), "preview": v.preview,
            "type_name": v.type_name, "fingerprint": v.fingerprint, "rich": v.rich, "json_text": v.json}


_NONE_WIRE: Final = _wire_dict(Value.of(None))


def wire_schema() -> Any:
    """The pydantic core schema of a :class:`Value` in JSON.

    ``{"kind": "pickle", "data": <base64 pickle>, "preview", "type_name",
    "fingerprint", "rich", "json_text"}``: the bytes and facts, made a
    closed Value on arrival (nothing is unpickled). A client that is not
    Python may send ``{"kind": "json", "value": ...}`` instead.
    """
    from pydantic_core import core_schema as cs

    def text(n: int) -> Any:
        return cs.str_schema(max_length=n)

    pickled = cs.typed_dict_schema({
        "kind": cs.typed_dict_field(cs.literal_schema(["pickle"])),
        "data": cs.typed_dict_field(cs.str_schema(metadata={"pydantic_js_updates": {"contentEncoding": "base64"}})),
        "preview": cs.typed_dict_field(text(4096), required=False),
        "type_name": cs.typed_dict_field(text(512), required=False),
        "fingerprint": cs.typed_dict_field(text(128), required=False),
        "rich": cs.typed_dict_field(cs.nullable_schema(cs.dict_schema(cs.str_schema(), cs.any_schema())),
                                    required=False),
        "json_text": cs.typed_dict_field(cs.nullable_schema(text(1_000_000)), required=False),
    }, extra_behavior="forbid", ref="PickledValue")
    plain = cs.typed_dict_schema({
        "kind": cs.typed_dict_field(cs.literal_schema(["json"])),
        "value": cs.typed_dict_field(cs.any_schema(), required=False),
    }, extra_behavior="forbid", ref="JsonValue")
    wire = cs.no_info_after_validator_function(
        _from_wire, cs.tagged_union_schema({"pickle": pickled, "json": plain}, "kind"))
    return cs.json_or_python_schema(
        json_schema=wire,
        python_schema=cs.no_info_wrap_validator_function(_kept, wire),
        serialization=cs.plain_serializer_function_ser_schema(_to_wire, return_schema=pickled),
    )
