"""Raw values and their conversion: what the TOML file and the environment hold, each value
remembering its origin (``Val``), converted to a field's Python value by the field's type
(``KINDS``, ``convert``), plus the two value grammars callers also use on their own:
``parse_size`` ("10GiB") and ``parse_host_port`` ("host:port", "[ipv6]:port").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import typing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from seeder.config.schema import ARRAYS, SECTIONS, SIZE_KEYS, HostPort

__all__ = [
    "KINDS",
    "BadValue",
    "Item",
    "Raw",
    "Val",
    "convert",
    "describe",
    "origin_of",
    "parse_host_port",
    "parse_size",
]

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_host_port(text: str) -> HostPort:
    """``"host:port"`` or ``"[ipv6]:port"`` -> HostPort (brackets dropped). The host is an
    IPv4 address, a bracketed IPv6 address or a host name; the port 0..65535 (0: any free
    port). Raises ValueError with a one-line message."""
    bad = f"bad address {text!r}"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f'{bad}: expected "host:port" or "[ipv6]:port"')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{bad}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'{bad}: expected "host:port" or "[ipv6]:port"')
        if ":" in host:
            raise ValueError(f'{bad}: an IPv6 address needs brackets: "[{host}]:{port}"')
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{bad}: {host!r} is not an IP address or host name")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{bad}: the port must be a number 0-65535")
    return HostPort(host, int(port))


def parse_size(value: int | str) -> int:
    """A byte count from an int or a string: ``"1048576"``, ``"512KiB"``, ``"1.5 GiB"``,
    ``"10GB"``. Units (any case): B; KB MB GB TB (powers of 1000); KiB MiB GiB TiB (powers
    of 1024). Raises ValueError for a negative, fractional or malformed size."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"bad size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad size {value}: must not be negative")
        return value
    m = _SIZE_RE.fullmatch(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise ValueError(
            f"bad size {value!r}: expected bytes or a number with a unit "
            "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        )
    n = Fraction(m.group(1)) * _SIZE_UNITS[unit]
    if n.denominator != 1:
        raise ValueError(f"bad size {value!r}: not a whole number of bytes")
    return int(n)


@dataclass(slots=True)
class Val:
    """One raw value and where it came from."""

    value: object
    origin: str  # "path/to/seeder.toml", "env SEEDER_X" or DEFAULTS_LABEL
    base: Path  # what a relative path in it is relative to
    from_env: bool = False


Item = dict[str, Val]


class BadValue(Exception):
    """A value does not convert; the message is the problem text after ``KEY: ``."""


def _tname(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    return {int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(v), type(v).__name__
    )


def describe(v: object, secret: bool = False) -> str:
    if secret:
        return _tname(v)
    text = repr(v)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_tname(v)} {text}"


def _field_types(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _kind(section: str, key: str, tp: object) -> str:
    args = set(typing.get_args(tp))
    if tp is bool:
        return "bool"
    if tp is int:
        return "size" if (section, key) in SIZE_KEYS else "int"
    if tp is float:
        return "float"
    if tp is str:
        return "str"
    if tp is HostPort:
        return "hostport"
    if args == {str, type(None)}:
        return "optstr"
    if args == {HostPort, type(None)}:
        return "opthostport"
    if typing.get_origin(tp) is tuple:
        return "strlist"
    raise TypeError(f"no converter for {section}.{key}: {tp!r}")  # a new field needs one


KINDS: dict[tuple[str, str], str] = {
    (section, key): _kind(section, key, tp)
    for section, cls in {**SECTIONS, **ARRAYS}.items()
    for key, tp in _field_types(cls).items()
}


def convert(kind: str, v: object, from_env: bool, secret: bool) -> object:
    """A raw TOML or environment value -> the field's Python value, or BadValue."""
    got = describe(v, secret)
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if from_env and isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            return v.strip().lower() in _TRUE
        raise BadValue(f"expected a boolean (true or false), got {got}")
    if kind in ("int", "size"):
        if from_env and isinstance(v, str) and kind == "int":
            try:
                return int(v.strip())
            except ValueError:
                raise BadValue(f"expected an integer, got {got}") from None
        if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "size" and isinstance(v, int | str) and not isinstance(v, bool):
            try:
                return parse_size(v)
            except ValueError as e:
                raise BadValue(str(e)) from None
        if kind == "size":
            raise BadValue(f'expected a size (bytes, or a string like "10GiB"), got {got}')
        raise BadValue(f"expected an integer, got {got}")
    if kind == "float":
        if from_env and isinstance(v, str):
            try:
                v = float(v.strip())
            except ValueError:
                raise BadValue(f"expected a number, got {got}") from None
        if isinstance(v, int | float) and not isinstance(v, bool):
            if not math.isfinite(v):
                raise BadValue(f"expected a finite number, got {got}")
            return float(v)
        raise BadValue(f"expected a number, got {got}")
    if kind in ("str", "optstr"):
        if isinstance(v, str):
            return None if kind == "optstr" and v == "" else v
        raise BadValue(f"expected a string, got {got}")
    if kind in ("hostport", "opthostport"):
        if not isinstance(v, str):
            raise BadValue(f'expected a string "host:port", got {got}')
        if kind == "opthostport" and v.strip() == "":
            return None
        try:
            return parse_host_port(v.strip())
        except ValueError as e:
            raise BadValue(str(e)) from None
    if kind == "strlist":
        if from_env and isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return tuple(v)
        raise BadValue(f"expected an array of strings, got {got}")
    raise AssertionError(kind)


@dataclass(slots=True)
class Raw:
    """A whole configuration as raw values: the sections by name, the array items in order,
    and the problems found while reading them."""

    sections: dict[str, Item]
    buckets: list[Item]
    credentials: list[Item]
    problems: list[str]


def origin_of(item: Item, key: str, fallback: str) -> str:
    """Where ``item[key]`` came from, or ``fallback`` when the key is not set."""
    v = item.get(key)
    return v.origin if v is not None else fallback
