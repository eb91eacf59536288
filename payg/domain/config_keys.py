"""A configuration key, defined once on its dataclass field: `setting(default, meaning, bounds...)`.

payg/adapters/config reads each key by its field's type and Setting; `python -m payg.adapters.config.reference`
writes the reference (docs/configuration.md) from the same fields.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Setting:
    """A key's meaning and bounds, kept on its field: the loader checks them, the reference prints them."""

    doc: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    key: str | None = None     # the key(s) in the file, when not the field's name
    kind: str | None = None    # the type as the reference says it, when not plain from the field's type
    shown: str | None = None   # the default as the reference says it, when not the value itself
    by_hand: bool = False      # read by the loader's own code (a list, a secret, a URL), not from the field's type


def setting(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING, kw_only: bool = False,
            **rule: Any) -> Any:
    """A configuration key: its default (none: required), its meaning and its Setting."""
    meta = {"setting": Setting(doc, **rule)}
    if kw_only:
        return field(default=default, default_factory=factory, metadata=meta, kw_only=True)
    return field(default=default, default_factory=factory, metadata=meta)


def not_a_key(default: Any = MISSING, *, factory: Any = MISSING) -> Any:
    """A field of a config that is no key of its table (the file's path, what the loader adds)."""
    return field(default=default, default_factory=factory, metadata={"not_a_key": True})


def setting_of(f: Field[Any]) -> Setting | None:
    return f.metadata.get("setting")


def made_from(cls: type[T], source: object, **more: Any) -> T:
    """A `cls` from the same-named fields of `source` (a ControllerConfig makes MeteringSettings), and `more`."""
    return cls(**{f.name: getattr(source, f.name) for f in fields(cls)  # type: ignore[arg-type]
                  if f.init and f.name not in more and hasattr(source, f.name)}, **more)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret (the wallet mnemonic) is read from: never the TOML file itself."""

    env: str | None = None  # name of an environment variable
    file: Path | None = None  # a file readable by its owner only
    key: str = "ledger.mnemonic_env"  # the config key that named it, for error messages
    what: str = "the wallet mnemonic"  # what it holds, for error messages
