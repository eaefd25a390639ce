"""click parameter types: bad input is refused before anything is written."""
from __future__ import annotations

import click

from ..core import address, durations


class _Checked(click.ParamType):
    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def parse(self, value: str):
        raise NotImplementedError


class Duration(_Checked):
    name = "duration"
    parse = staticmethod(durations.parse_duration)


class DurationOrNone(_Checked):
    """A duration, or 'none' to clear a setting."""
    name = "duration|none"

    def parse(self, value: str):
        return "none" if value.strip().lower() == "none" else durations.parse_duration(value)


class When(_Checked):
    name = "date"
    parse = staticmethod(durations.parse_when)


class Address(_Checked):
    name = "address"
    parse = staticmethod(address.parse_address)


class Domain(_Checked):
    name = "domain"
    parse = staticmethod(address.normalise_domain)


class BlockPattern(_Checked):
    name = "sender"
    parse = staticmethod(address.parse_block_pattern)


class Text(_Checked):
    name = "text"

    def parse(self, value: str) -> str:
        address.check_text(value, "text")
        if len(value) > 500:
            raise ValueError("text is longer than 500 characters")
        return value


DURATION, WHEN, ADDRESS, DOMAIN, BLOCK_PATTERN, TEXT, DURATION_OR_NONE = (
    Duration(), When(), Address(), Domain(), BlockPattern(), Text(), DurationOrNone())
