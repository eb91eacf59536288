"""Reading TOML tables key by key: every error names the file, the key and what was expected."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import tomllib
import types
import typing
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar

from payg.domain.config_keys import Setting, setting_of
from payg.domain.settings import SecretRef
from payg.errors import ConfigError

URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys looked for only to be refused (a secret never goes in the file): never offered as a known key.
REFUSED_KEYS = frozenset({"mnemonic", "landlord_password", "landlord_password_hash"})


class Table:
    """Reads keys out of one TOML table and remembers which ones were used, and which were looked for:
    those are the table's known keys, offered when a key in the file is not one of them ("did you mean")."""

    def __init__(self, file: str, prefix: str, data: Any):
        self.file = file
        self.prefix = prefix
        if not isinstance(data, dict):
            raise ConfigError(file, prefix, "a table", data, has_got=True)
        self.data = data
        self.used: set[str] = set()
        self.asked: set[str] = set()  # optional keys looked for with has(), there or not

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, expected: str, got: Any = None, has_got: bool = True) -> ConfigError:
        """A missing key (has_got False) also names a key of the file that looks like a typo for it."""
        if not has_got:
            typos = self.typos()
            typo = next((k for k, known in typos if known == name), None)
            if typo is not None:
                expected += f" ({typo!r} is set: a typo for {name!r}?)"
            elif typos:
                expected += f" ({typos[0][0]!r} is set: a typo for {typos[0][1]!r}?)"
        return ConfigError(self.file, self.key(name), expected, got, has_got=has_got)

    def has(self, name: str) -> bool:
        if name not in REFUSED_KEYS:
            self.asked.add(name)
        return name in self.data

    def known(self) -> set[str]:
        return self.used | self.asked

    def typos(self) -> list[tuple[str, str]]:
        """(a key of the file that is not known, the known key not in the file closest to it), for each close one."""
        known = self.known()
        absent = sorted(known - set(self.data))
        found = []
        for key in sorted(set(self.data) - known):
            match = difflib.get_close_matches(str(key), absent, n=1, cutoff=0.6)
            if match:
                found.append((key, match[0]))
        return found

    def raw(self, name: str, default: Any = ..., expected: str = "a value") -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise self.error(name, expected, has_got=False)
            return default
        return self.data[name]

    def string(self, name: str, default: Any = ..., choices: tuple[str, ...] | None = None) -> str:
        expected = f"one of {', '.join(repr(c) for c in choices)}" if choices else "a string"
        value = self.raw(name, default, expected)
        if not isinstance(value, str) or (choices and value not in choices):
            raise self.error(name, expected, value)
        return value

    def boolean(self, name: str, default: Any = ...) -> bool:
        value = self.raw(name, default, "true or false")
        if not isinstance(value, bool):
            raise self.error(name, "true or false", value)
        return value

    def integer(self, name: str, default: Any = ..., minimum: int | None = None, maximum: int | None = None) -> int:
        expected = range_text("an integer", minimum, maximum)
        value = self.raw(name, default, expected)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(name, expected, value)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self.error(name, expected, value)
        return value

    def number(self, name: str, default: Any = ..., minimum: float | None = None, positive: bool = False,
               maximum: float | None = None) -> float:
        if positive:
            expected = "a number > 0" + (f" and at most {maximum}" if maximum is not None else "")
        else:
            expected = range_text("a number", minimum, maximum)
        value = self.raw(name, default, expected)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(name, expected, value)
        if ((positive and value <= 0) or (minimum is not None and value < minimum)
                or (maximum is not None and value > maximum)):
            raise self.error(name, expected, value)
        return float(value)

    def table(self, name: str, default: Any = ...) -> Table:
        value = self.raw(name, default, "a table")
        return Table(self.file, self.key(name), value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            key = unknown[0]
            known = sorted(self.known())
            match = difflib.get_close_matches(str(key), [k for k in known if k != key], n=1, cutoff=0.6)
            hint = f"did you mean {match[0]!r}? " if match else ""
            raise ConfigError(self.file, self.key(key), f"no such key here ({hint}known keys: "
                              f"{', '.join(known) or 'none'})")


def range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


C = TypeVar("C")


def fill(t: Table, cls: type[C], base_dir: Path | None = None, **given: Any) -> C:
    """A `cls` (a dataclass of payg.domain.settings) from table `t`: each key read by its field (`read_key`), but
    the fields in `given`, read by the caller's own code."""
    return cls(**values(t, cls, base_dir, **given))


def values(t: Table, cls: type, base_dir: Path | None = None, **given: Any) -> dict[str, Any]:
    """The fields of `cls` read from `t` by `read_key`, and `given`: what `fill` passes to `cls`."""
    read = {f.name: read_key(t, cls, f.name, base_dir=base_dir) for f in dataclasses.fields(cls)
            if f.name not in given and (rule := setting_of(f)) is not None and not rule.by_hand}
    return read | given


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """`cls`'s field types, resolved once: resolving evaluates every annotation of the class (they are strings),
    and a config load reads dozens of keys."""
    return typing.get_type_hints(cls)


def read_key(t: Table, cls: type, name: str, *, default: Any = ..., base_dir: Path | None = None) -> Any:
    """The key of field `name` of `cls`, read by the field's type, checked against its Setting's bounds and choices,
    its default (or `default`) when it is not in the table. Optional fields (`X | None`) are None when absent."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    rule: Setting = setting_of(f) or Setting("")
    kind = type_hints(cls)[name]
    key = rule.key or name
    if default is ...:
        default = f.default if f.default is not dataclasses.MISSING else ...
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if default is not ... and not t.has(key) and kind is Path:
        return default
    if default is None and not t.has(key):
        return None
    if kind is bool:
        return t.boolean(key, default)
    if kind is int:
        low = rule.ge if rule.gt is None else rule.gt + 1
        return t.integer(key, default, minimum=None if low is None else int(low),
                         maximum=None if rule.le is None else int(rule.le))
    if kind is float and rule.gt in (None, 0):
        return t.number(key, default, minimum=rule.ge, positive=rule.gt == 0, maximum=rule.le)
    if kind is str:
        return t.string(key, default, choices=rule.choices or None)
    if kind is Path:
        path = Path(t.string(key))
        return base_dir / path if not path.is_absolute() and base_dir is not None else path
    raise TypeError(f"{cls.__name__}.{name}: no reader for {kind}; give it a Setting with by_hand=True")


def exact(t: Table, name: str, default: Fraction) -> Fraction:
    """An exact positive rational: an integer, or a decimal written as a string ("0.25")."""
    expected = 'a positive integer or a decimal string such as "0.25"'
    value = t.raw(name, default, expected)
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool):
        raise t.error(name, expected, value)
    if isinstance(value, int):
        result = Fraction(value)
    elif isinstance(value, str):
        try:
            result = Fraction(Decimal(value.strip()))
        except (InvalidOperation, ValueError):
            raise t.error(name, expected, value) from None
    else:
        # Floats are refused: 0.1 is not exactly one tenth, and money is exact.
        raise t.error(name, expected, value)
    if result <= 0:
        raise t.error(name, expected, value)
    return result


def url(t: Table, name: str, example: str) -> str:
    value = t.string(name)
    if not URL.match(value):
        raise t.error(name, f"an http:// or https:// URL such as {example}", value)
    return value


def units(t: Table, name: str, default: int | EllipsisType = ...) -> int:
    """A positive whole number of ledger units: a TOML integer, or a string of digits for values
    beyond 64 bits (wei)."""
    expected = 'a positive integer (or a string of digits, such as "1000000000000000000")'
    value = t.raw(name, default, expected)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value >= 2**255:
        raise t.error(name, expected, value)
    return value


def secret(t: Table, base_dir: Path | None) -> SecretRef:
    if t.has("mnemonic"):
        raise t.error("mnemonic", "no mnemonic in the configuration file: name an environment variable "
                      "(mnemonic_env) or an owner-only file (mnemonic_file)", "(hidden)")
    given = [k for k in ("mnemonic_env", "mnemonic_file") if t.has(k)]
    if len(given) != 1:
        raise t.error("mnemonic_env", "exactly one of mnemonic_env (an environment variable's name) or "
                      "mnemonic_file (a file readable by its owner only); the mnemonic itself never goes in "
                      "this file", has_got=False)
    if given[0] == "mnemonic_env":
        name = t.string("mnemonic_env")
        if not ENV_NAME.match(name):
            raise t.error("mnemonic_env", "the name of an environment variable, such as PAYG_MNEMONIC", name)
        return SecretRef(env=name, key=t.key("mnemonic_env"))
    path = Path(t.string("mnemonic_file"))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return SecretRef(file=path, key=t.key("mnemonic_file"))


def read_toml(path: str | Path) -> dict:
    """A configuration file's tables; ConfigError naming the file when it is missing, unreadable or not TOML."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(file, "(file)", "an existing, readable TOML file (not found)") from None
    except OSError as exc:
        raise ConfigError(file, "(file)", f"an existing, readable TOML file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", f"valid TOML ({exc})") from None
