"""How the console shows a conn type's form: which connection fields the type uses, what it calls
them, what it suggests in them. Part of the public plugin API: import it from :mod:`airlock.sdk`.

A form is data, registered under its conn_type in a module that imports no driver (the API loads it,
and the API never loads a tester)::

    [project.entry-points."airlock.connection_forms"]
    mongodb = "mypkg.forms:MONGODB_FORM"

A conn type without a form shows every field, under its default label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

FormField = Literal["host", "port", "schema", "login", "password", "extra"]
FORM_FIELDS: tuple[FormField, ...] = get_args(FormField)
DEFAULT_LABELS: Mapping[FormField, str] = MappingProxyType(
    {
        "host": "Host",
        "port": "Port",
        "schema": "Schema",
        "login": "Login",
        "password": "Password",
        "extra": "Extra (JSON object)",
    }
)


def _frozen(value: Mapping[FormField, str]) -> Mapping[FormField, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class ConnectionForm:
    """Airflow's ``get_ui_field_behaviour`` as data: fields hidden, relabelled, given a placeholder."""

    hidden: frozenset[FormField] = frozenset()
    labels: Mapping[FormField, str] = field(default_factory=dict)
    placeholders: Mapping[FormField, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A typo in a plugin's form would otherwise hide nothing, silently.
        for name in (*self.hidden, *self.labels, *self.placeholders):
            if name not in FORM_FIELDS:
                raise ValueError(
                    f"{name!r} is not a connection form field (fields: {', '.join(FORM_FIELDS)})"
                )
        object.__setattr__(self, "hidden", frozenset(self.hidden))
        object.__setattr__(self, "labels", _frozen(self.labels))
        object.__setattr__(self, "placeholders", _frozen(self.placeholders))

    def label(self, name: FormField) -> str:
        return self.labels.get(name, DEFAULT_LABELS[name])

    def as_json(self) -> dict[str, object]:
        """What the console's script applies when the conn type is chosen."""
        return {
            "hidden": sorted(self.hidden),
            "labels": {name: self.label(name) for name in FORM_FIELDS},
            "placeholders": {name: self.placeholders.get(name, "") for name in FORM_FIELDS},
        }


# What a conn type without a registered form shows.
EVERY_FIELD = ConnectionForm()
