"""A message's header block as a list of raw fields, edited without reflowing.

Forwarding keeps original signatures valid only if the signed fields stay
byte for byte as they came: fields are kept raw (folding included) and only
the ones tmail means to change are touched.
"""
from __future__ import annotations

import re

_FIELD_START = re.compile(rb"^[!-9;-~]+[ \t]*:")


def split_fields(header: bytes) -> list[bytes]:
    """Raw fields, each with its continuation lines and line ends.
    A line that starts no field and continues none is kept as its own
    'field' (it is forwarded as it came; nothing is dropped)."""
    fields: list[list[bytes]] = []
    # lines end at LF only: a bare CR inside a field is content, not a line end
    for line in re.findall(rb"[^\n]*\n|[^\n]+$", header):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)     # joined once below: += was quadratic in a field's lines
        else:
            fields.append([line])
    return [b"".join(lines) for lines in fields]


def name_of(field: bytes) -> str:
    match = _FIELD_START.match(field)
    return field[: field.index(b":")].strip().decode("ascii").lower() if match else ""


def raw_value(field: bytes) -> bytes:
    """The unfolded value, as the bytes it came in."""
    raw = field.split(b":", 1)[1] if b":" in field else b""
    return re.sub(rb"\r?\n(?=[ \t])", b"", raw).strip()


def value_of(field: bytes) -> str:
    """The unfolded value as text (UTF-8 or Latin-1 bytes both survive)."""
    raw = raw_value(field)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def first(fields: list[bytes], name: str) -> bytes | None:
    return next((f for f in fields if name_of(f) == name), None)


def counts(fields: list[bytes]) -> dict[str, int]:
    result: dict[str, int] = {}
    for field in fields:
        name = name_of(field)
        result[name] = result.get(name, 0) + 1
    return result


def make_field(name: str, value: str) -> bytes:
    """A new field; refuses a value that would end it early (header
    injection): a line break only as folding, before a space or tab."""
    if re.search(r"[\r\x00]|\n(?![ \t])|\n[ \t]*(\n|$)", value) or not re.fullmatch(r"[!-9;-~]+", name):
        raise ValueError(f"line break or bad character in a new {name} header field")
    return f"{name}: {value}\n".encode("utf-8")
