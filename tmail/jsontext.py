"""JSON as tmail writes it, at the CLI and in the API: sorted keys, dates in
ISO 8601 UTC with a Z, enums as their values."""
from __future__ import annotations

import json
from datetime import datetime
from enum import Enum


def _default(value):
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(data) -> str:
    return json.dumps(data, default=_default, sort_keys=True)
