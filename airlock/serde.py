"""The versioned envelope that carries trigger event payloads from a triggerer to a resumed task.

This module is part of the wire contract. The worker serializes, the API stores the resulting
JSON text exactly as it received it and never deserializes it, and the worker side deserializes
when the task resumes, importing only the classes its allowlist names.

Envelope (version 1)
--------------------

The text is one JSON object with exactly these keys::

    {"__airlock_serde__": 1, "value": <encoded>}

``__airlock_serde__`` is the envelope version, an integer. A reader refuses a version it does not
know instead of guessing. The text is strict JSON: no ``NaN`` or ``Infinity`` literals, so any
JSON parser, and any JSON column type, accepts it.

Encoding of ``<encoded>``
-------------------------

* ``None``, ``bool``, ``int``, ``str`` and finite ``float`` are written as the JSON value.
* ``list`` and ``tuple`` become a JSON array of encoded items (a tuple is read back as a list).
* A ``dict`` whose keys are all ``str`` and which has no ``"__type__"`` key becomes a JSON object
  of encoded values.
* Every other value is a *tagged* object ``{"__type__": <tag>, "value": <v>}``:

  ==============  ================================================================================
  tag             ``value``
  ==============  ================================================================================
  ``datetime``    ``datetime.isoformat()``; an aware datetime keeps its UTC offset
  ``date``        ``date.isoformat()`` (``YYYY-MM-DD``)
  ``timedelta``   ``total_seconds()``, a number
  ``decimal``     ``str(Decimal)``, so no digit is lost
  ``bytes``       standard base64 with padding (``bytearray`` is read back as ``bytes``)
  ``uuid``        the canonical hyphenated form
  ``float``       ``"nan"``, ``"inf"`` or ``"-inf"``: the floats JSON cannot spell
  ``dict``        an array of ``[<encoded key>, <encoded value>]`` pairs: used for a dict with a
                  ``"__type__"`` key (so that it is not mistaken for a tag) or with keys that are
                  not strings (``int``, ``float``, ``bool``, ``None`` or a tagged scalar above)
  ``object``      the encoded dict of the instance's fields, plus a ``"classpath"`` key next to
                  ``"value"`` that names the class as ``module.QualName``
  ==============  ================================================================================

* ``object`` covers dataclass instances (the fields that ``__init__`` takes) and pydantic models
  (``model_dump(mode="python", by_alias=True)``; nested models therefore travel as dicts and are
  rebuilt by validating the outer model). A dataclass is rebuilt with ``cls(**fields)``, a model
  with ``cls.model_validate(fields)``.
* Anything else is refused with :class:`SerializationError`, naming the type.

Reading an ``object`` imports its module only when the classpath matches one of the
``allowed_classes`` patterns (:func:`fnmatch.fnmatchcase`, so ``"mypkg.events.*"`` matches every
class under ``mypkg.events``); otherwise :class:`DeserializationError` is raised and nothing is
imported. The other tags are always allowed: they only ever build standard-library values.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import fnmatch
import importlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from airlock.protocol import EVENT_KWARG

ENVELOPE_VERSION = 1
ENVELOPE_KEY = "__airlock_serde__"
TYPE_KEY = "__type__"
VALUE_KEY = "value"
CLASSPATH_KEY = "classpath"

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class SerializationError(TypeError):
    """A value that the envelope cannot carry."""


class DeserializationError(ValueError):
    """Text that is not a valid envelope, or an object whose class is not allowed here."""


def serialize(value: Any) -> str:
    """Encode ``value`` into the envelope's JSON text."""
    envelope = {ENVELOPE_KEY: ENVELOPE_VERSION, VALUE_KEY: _encode(value, set())}
    return json.dumps(envelope, allow_nan=False, separators=(",", ":"))


def deserialize(text: str, allowed_classes: Sequence[str]) -> Any:
    """Decode envelope text; ``object`` values are rebuilt only for classes ``allowed_classes`` matches."""
    if isinstance(allowed_classes, str):
        # A bare string is a sequence of one-character patterns, and "*" would allow everything.
        raise TypeError("allowed_classes must be a sequence of patterns, not a single string")
    try:
        envelope = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise DeserializationError(f"not a serialized payload: {exc}") from None
    if not isinstance(envelope, dict) or ENVELOPE_KEY not in envelope or VALUE_KEY not in envelope:
        raise DeserializationError(f"not a serialized payload: expected an object with {ENVELOPE_KEY!r}")
    version = envelope[ENVELOPE_KEY]
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise DeserializationError(
            f"unknown serialization envelope version {version!r} (this reader knows {ENVELOPE_VERSION})"
        )
    return _Decoder(tuple(allowed_classes)).decode(envelope[VALUE_KEY])


def load_next_kwargs(text: str | None, allowed_classes: Sequence[str]) -> dict[str, Any]:
    """A resuming task's ``next_kwargs``: JSON from the API, with the trigger's event still in its
    envelope under ``"event"``. The envelope is opened here, on the worker, behind the allowlist
    (``allowed_deserialization_classes``); the API only ever spliced it in as text."""
    if not text:
        return {}
    kwargs = json.loads(text)
    if not isinstance(kwargs, dict):
        raise DeserializationError("next_kwargs must be a JSON object")
    event = kwargs.get(EVENT_KWARG)
    if isinstance(event, dict) and ENVELOPE_KEY in event:
        kwargs[EVENT_KWARG] = deserialize(json.dumps(event), allowed_classes)
    return kwargs


def classpath_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {TYPE_KEY: name, VALUE_KEY: value}


def _encode(value: Any, path: set[int]) -> Any:
    # Order matters: bool is an int, datetime is a date.
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return _tag("float", "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    scalar = _encode_scalar(value)
    if scalar is not None:
        return scalar
    if isinstance(value, list | tuple | dict) or _is_object(value):
        # Only the containers on the current path: the same object may appear twice side by side.
        if id(value) in path:
            raise SerializationError(f"cannot serialize a circular reference through {type(value).__name__}")
        path.add(id(value))
        try:
            return _encode_container(value, path)
        finally:
            path.discard(id(value))
    raise SerializationError(f"cannot serialize a value of type {_type_name(value)}")


def _encode_scalar(value: Any) -> dict[str, Any] | None:
    if isinstance(value, datetime):
        return _tag("datetime", value.isoformat())
    if isinstance(value, date):
        return _tag("date", value.isoformat())
    if isinstance(value, timedelta):
        return _tag("timedelta", value.total_seconds())
    if isinstance(value, Decimal):
        return _tag("decimal", str(value))
    if isinstance(value, bytes | bytearray):
        return _tag("bytes", base64.b64encode(value).decode("ascii"))
    if isinstance(value, UUID):
        return _tag("uuid", str(value))
    return None


def _encode_container(value: Any, path: set[int]) -> Any:
    if isinstance(value, list | tuple):
        return [_encode(item, path) for item in value]
    if isinstance(value, dict):
        if TYPE_KEY not in value and all(isinstance(key, str) for key in value):
            return {key: _encode(item, path) for key, item in value.items()}
        return _tag("dict", [[_encode_key(key), _encode(item, path)] for key, item in value.items()])
    cls = type(value)
    if "<locals>" in cls.__qualname__:
        raise SerializationError(
            f"cannot serialize {classpath_of(cls)}: a class defined inside a function cannot be imported back"
        )
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
    else:
        fields = value.model_dump(mode="python", by_alias=True)
    return {TYPE_KEY: "object", CLASSPATH_KEY: classpath_of(cls), VALUE_KEY: _encode(fields, path)}


def _encode_key(key: Any) -> Any:
    if key is None or isinstance(key, bool | int | float | str):
        return _encode(key, set())
    scalar = _encode_scalar(key)
    if scalar is None or isinstance(key, bytearray):
        raise SerializationError(f"cannot serialize a dict key of type {_type_name(key)}")
    return scalar


def _is_object(value: Any) -> bool:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return True
    # pydantic is never imported for this check: if it is not loaded, value cannot be a model.
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else classpath_of(cls)


class _Decoder:
    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.scalars: dict[str, Callable[[Any], Any]] = {
            "datetime": lambda v: datetime.fromisoformat(_str(v)),
            "date": lambda v: date.fromisoformat(_str(v)),
            "timedelta": lambda v: timedelta(seconds=_number(v)),
            "decimal": lambda v: Decimal(_str(v)),
            "bytes": lambda v: base64.b64decode(_str(v), validate=True),
            "uuid": lambda v: UUID(_str(v)),
            "float": lambda v: _NON_FINITE[_str(v)],
        }

    def decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.decode(item) for item in value]
        if not isinstance(value, dict):
            return value
        if TYPE_KEY not in value:
            return {key: self.decode(item) for key, item in value.items()}
        tag = value[TYPE_KEY]
        if VALUE_KEY not in value:
            raise DeserializationError(f"tagged value {tag!r} has no {VALUE_KEY!r}")
        inner = value[VALUE_KEY]
        if tag == "dict":
            return self._dict(inner)
        if tag == "object":
            return self._object(value.get(CLASSPATH_KEY), inner)
        convert = self.scalars.get(tag) if isinstance(tag, str) else None
        if convert is None:
            raise DeserializationError(f"unknown type tag {tag!r}")
        try:
            return convert(inner)
        except (TypeError, ValueError, KeyError, OverflowError, InvalidOperation, binascii.Error) as exc:
            raise DeserializationError(f"invalid {tag} value {inner!r}: {exc}") from None

    def _dict(self, pairs: Any) -> dict[Any, Any]:
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise DeserializationError("a tagged dict must hold a list of [key, value] pairs")
        result: dict[Any, Any] = {}
        for key, item in pairs:
            decoded_key = self.decode(key)
            try:
                result[decoded_key] = self.decode(item)
            except TypeError:
                raise DeserializationError(f"dict key {key!r} is not hashable") from None
        return result

    def _object(self, classpath: Any, fields: Any) -> Any:
        if not isinstance(classpath, str) or not classpath:
            raise DeserializationError("a serialized object has no classpath")
        # The allowlist is checked before anything is imported: importing runs module code.
        if not any(fnmatch.fnmatchcase(classpath, pattern) for pattern in self.allowed):
            raise DeserializationError(
                f"class {classpath!r} is not in allowed_deserialization_classes "
                f"({', '.join(self.allowed) or 'empty'})"
            )
        cls = _import_class(classpath)
        decoded = self.decode(fields)
        if not isinstance(decoded, dict):
            raise DeserializationError(f"the fields of {classpath!r} are not an object")
        try:
            if dataclasses.is_dataclass(cls):
                return cls(**decoded)
            model_validate = getattr(cls, "model_validate", None)
            if model_validate is not None and _is_pydantic_class(cls):
                return model_validate(decoded)
        except (TypeError, ValueError) as exc:
            raise DeserializationError(f"cannot rebuild {classpath!r}: {exc}") from None
        raise DeserializationError(f"{classpath!r} is neither a dataclass nor a pydantic model")


def _is_pydantic_class(cls: type) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(cls, pydantic.BaseModel)


def _import_class(classpath: str) -> type:
    """Import ``module.QualName``, finding where the module ends by trying the longest prefix first."""
    parts = classpath.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this prefix is not a module" means keep looking; a missing dependency is an error.
            if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                continue
            raise DeserializationError(f"cannot import {classpath!r}: {exc}") from None
        except ImportError as exc:
            raise DeserializationError(f"cannot import {classpath!r}: {exc}") from None
        for attr in parts[split:]:
            target = getattr(target, attr, None)
            if target is None:
                raise DeserializationError(f"cannot import {classpath!r}: {module_name} has no {attr!r}")
        if not isinstance(target, type):
            raise DeserializationError(f"{classpath!r} is not a class")
        return target
    raise DeserializationError(f"cannot import {classpath!r}: no such module")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return value
