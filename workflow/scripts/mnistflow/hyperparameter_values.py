"""How hyperparameter values are ordered and written, in the study, its tables and its plot."""

from __future__ import annotations

import json


def value_order(value) -> tuple:
    """Numbers by value, anything else by its JSON text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, json.dumps(value, sort_keys=True))


def hyperparameter_text(value) -> str:
    """A hyperparameter as written in the config: 0.001, 1e-05, [32, 64], adam."""
    return json.dumps(value) if isinstance(value, list) else str(value)
