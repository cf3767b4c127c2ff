"""Loading: a TOML file plus ``SEEDER_<SECTION>_<KEY>`` environment overrides -> ``Config``.

Loading goes in three passes, each collecting problems instead of stopping at the first:
the file (unknown sections and keys) and the environment (unknown variables) become raw
values that remember their origin; each value is converted by its field's type and
checked on its own (``rules.CHECKS``); then cross-key rules run (``checks``: duplicates,
directories, credentials naming buckets, listeners colliding). Every problem is one line,
``ORIGIN: KEY: MESSAGE``, so ``seeder check-config`` can list them all at once.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from seeder.config.checks import cross_check
from seeder.config.defaults import DEFAULT_BUCKET_NAME, DEFAULT_BUCKET_PATH, DEFAULTS_LABEL
from seeder.config.rules import CHECKS
from seeder.config.schema import (
    ARRAYS,
    PATH_KEYS,
    SECRET_KEYS,
    SECTIONS,
    BucketConfig,
    Config,
    CredentialConfig,
)
from seeder.config.values import KINDS, BadValue, Item, Raw, Val, convert, describe, origin_of

__all__ = ["ENV_PREFIX", "ConfigError", "check", "env_token", "load"]

ENV_PREFIX = "SEEDER_"


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per problem, each
    ``ORIGIN: KEY: MESSAGE`` (ORIGIN is the file path, ``env NAME`` or ``(defaults)``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def env_token(bucket_name: str) -> str:
    """The NAME part of ``SEEDER_BUCKETS_<NAME>_<KEY>`` for a bucket: upper case, with
    ``-`` and ``.`` as ``_``."""
    return bucket_name.upper().replace("-", "_").replace(".", "_")


# --- the raw layer: TOML file + environment, with origins --------------------------------------


def _read_toml(path: Path, label: str) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{label}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{label}: invalid TOML: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{label}: invalid TOML: {e}"]) from None


def _from_file(data: dict[str, object], label: str, base: Path) -> Raw:
    raw = Raw({s: {} for s in SECTIONS}, [], [], [])

    def item(table: dict[str, object], section: str, where: str) -> Item:
        known = KINDS.keys()
        out: Item = {}
        for key, value in table.items():
            if (section, key) in known:
                out[key] = Val(value, label, base)
            else:
                raw.problems.append(f"{label}: {where}{key}: unknown key")
        return out

    for top, value in data.items():
        if top in SECTIONS:
            if not isinstance(value, dict):
                raw.problems.append(
                    f"{label}: {top}: expected a table [{top}], got {describe(value)}"
                )
                continue
            raw.sections[top] = item(value, top, f"{top}.")
        elif top in ARRAYS:
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raw.problems.append(
                    f"{label}: {top}: expected an array of tables [[{top}]], got {describe(value)}"
                )
                continue
            items = [item(t, top, f"{top}[{i}].") for i, t in enumerate(value)]
            getattr(raw, top).extend(items)
        else:
            what = "section" if isinstance(value, dict) else "key"
            raw.problems.append(f"{label}: {top}: unknown {what}")
    return raw


def _apply_env(raw: Raw, env: Mapping[str, str], cwd: Path) -> None:
    """Overlay ``SEEDER_*`` variables on ``raw`` (sorted by name, so the result is stable)."""
    bucket_keys = sorted((k for s, k in KINDS if s == "buckets"), key=len, reverse=True)
    cred_keys = {k for s, k in KINDS if s == "credentials"}
    new_buckets: dict[str, Item] = {}
    new_creds: dict[int, Item] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):]
        val = Val(env[name], f"env {name}", cwd, from_env=True)
        head, _, tail = rest.partition("_")
        section = head.lower()
        if section in SECTIONS and (section, tail.lower()) in KINDS:
            raw.sections[section][tail.lower()] = val
        elif section == "buckets":
            key = next((k for k in bucket_keys if tail.endswith("_" + k.upper())), None)
            token = tail[: -len(key) - 1] if key else ""
            if not key or not token:
                raw.problems.append(
                    f"env {name}: unknown variable (expected SEEDER_BUCKETS_<NAME>_<KEY>)"
                )
                continue
            matches = [b for b in raw.buckets if env_token(str(b["name"].value)) == token
                       if "name" in b and isinstance(b["name"].value, str)]
            if len(matches) > 1:
                names = ", ".join(repr(b["name"].value) for b in matches)
                raw.problems.append(f"env {name}: matches more than one bucket ({names})")
                continue
            target = matches[0] if matches else new_buckets.setdefault(token, {})
            target[key] = val
        elif section == "credentials":
            index, _, key = tail.partition("_")
            key = key.lower()
            if not index.isdigit() or key not in cred_keys:
                raw.problems.append(
                    f"env {name}: unknown variable (expected SEEDER_CREDENTIALS_<N>_<KEY>)"
                )
                continue
            n = int(index)
            target = raw.credentials[n] if n < len(raw.credentials) else new_creds.setdefault(n, {})
            target[key] = val
        else:
            raw.problems.append(f"env {name}: unknown variable")
    for token, item in new_buckets.items():
        if "name" not in item:
            first = next(iter(item.values()))
            item["name"] = Val(token.lower(), first.origin, cwd, from_env=True)
        raw.buckets.append(item)
    raw.credentials.extend(new_creds[n] for n in sorted(new_creds))


# --- raw -> dataclasses ------------------------------------------------------------------------


def _resolve(value: str, base: Path) -> str:
    return os.path.normpath(base / Path(value).expanduser())


def _build(
    cls: type, section: str, item: Item, where: str, default: Val, problems: list[str]
) -> object | None:
    """One dataclass from raw values; None (and problems) if any value is bad or missing."""
    kwargs: dict[str, object] = {}
    ok = True
    for f in dataclasses.fields(cls):
        key = f.name
        path = f"{where}{key}"
        v = item.get(key)
        if v is None:
            has_default = (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                problems.append(f"{default.origin}: {path}: missing (required)")
                ok = False
            elif (section, key) in PATH_KEYS and isinstance(f.default, str):
                kwargs[key] = _resolve(f.default, default.base)
            continue
        try:
            value = convert(KINDS[section, key], v.value, v.from_env,
                            (section, key) in SECRET_KEYS)
            check = CHECKS.get((section, key))
            message = check(value) if check is not None and value is not None else None
            if message:
                raise BadValue(message)
        except BadValue as e:
            problems.append(f"{v.origin}: {path}: {e}")
            ok = False
            continue
        if (section, key) in PATH_KEYS and isinstance(value, str):
            value = _resolve(value, v.base)
        kwargs[key] = value
    return cls(**kwargs) if ok else None


def _load(path: str | Path | None, env: Mapping[str, str]) -> tuple[Config | None, list[str]]:
    cwd = Path.cwd()
    if path is None:
        label, base = DEFAULTS_LABEL, cwd
        raw = Raw({s: {} for s in SECTIONS}, [], [], [])
        raw.buckets.append({
            "name": Val(DEFAULT_BUCKET_NAME, DEFAULTS_LABEL, cwd),
            "path": Val(DEFAULT_BUCKET_PATH, DEFAULTS_LABEL, cwd),
        })
    else:
        label = str(path)
        base = Path(os.path.abspath(path)).parent
        try:
            raw = _from_file(_read_toml(Path(path), label), label, base)
        except ConfigError as e:
            return None, e.problems
    _apply_env(raw, env, cwd)
    problems = raw.problems
    default = Val(None, label, base)

    parts = {
        section: _build(cls, section, raw.sections[section], f"{section}.", default, problems)
        for section, cls in SECTIONS.items()
    }
    buckets = [
        _build(BucketConfig, "buckets", item, f"buckets[{i}].",
               Val(None, origin_of(item, "name", label), base), problems)
        for i, item in enumerate(raw.buckets)
    ]
    creds = [
        _build(CredentialConfig, "credentials", item, f"credentials[{i}].",
               Val(None, next(iter(item.values())).origin if item else label, base), problems)
        for i, item in enumerate(raw.credentials)
    ]
    problems += cross_check(parts, buckets, creds, raw, label)  # type: ignore[arg-type]
    if problems:
        return None, problems
    cfg = Config(**parts, buckets=tuple(buckets), credentials=tuple(creds))  # type: ignore[arg-type]
    return cfg, []


def load(path: str | Path | None, env: Mapping[str, str]) -> Config:
    """The daemon's configuration: the TOML file at ``path`` (None: the embedded default, one
    public local bucket ``data`` at ``./data``), then ``SEEDER_*`` overrides from ``env``.

    Relative paths in the file are relative to the file's directory; relative paths from
    ``env``, and those of the embedded default, to the current directory. Paths in the
    result are absolute. Raises ConfigError listing every problem found (unknown keys and
    variables, wrong types, bad values, missing directories, cross-key conflicts).
    Reads the file and looks at the file system; nothing else.
    """
    cfg, problems = _load(path, env)
    if cfg is None:
        raise ConfigError(problems)
    return cfg


def check(path: str | Path | None, env: Mapping[str, str]) -> list[str]:
    """The problems ``load(path, env)`` would raise, one line each; [] when it loads."""
    return _load(path, env)[1]

