"""Who is told what ([notify] contacts_file): socket ids and `landlord` to lists of Apprise URLs.

The URLs hold passwords and tokens (an SMTP login, a bot token), so they are kept out of the configuration, in a
TOML file readable by its owner only, like the other secrets (payg/adapters/secrets.py):

    landlord = ["mailto://landlord:app-password@example.com"]
    kitchen = ["ntfy://ntfy.sh/payg-kitchen-7f3a", "tgram://123456:ABC-token/987654"]
    flat-2 = { urls = ["mailto://..."], language = "fr" }

A recipient written as a table names the language its messages are written in (`[web] language` otherwise).

A key that is neither a configured socket nor `landlord`, a value that is not a list of URLs, or a URL Apprise
cannot read is a ConfigError naming the key (never the URL itself: it may hold a password).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path

from payg.domain.messages import LANDLORD
from payg.domain.settings import LANGUAGES
from payg.errors import ConfigError

KEY = "notify.contacts_file"


def read_contacts(path: Path, config_file: str | Path, socket_ids: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Each recipient's Apprise URLs (a socket id or `landlord`; one without any is left out). ConfigError when the
    file is missing, readable by others, owned by another user, or holds something else."""
    return read_contact_book(path, config_file, socket_ids)[0]


def read_contact_book(path: Path, config_file: str | Path,
                      socket_ids: Iterable[str]) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """`read_contacts`, and the language of each recipient that names one."""
    import apprise

    file = str(config_file)
    try:
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise ConfigError(file, KEY, f"a file readable by its owner only (chmod 600 {path})",
                              f"mode {st.st_mode & 0o777:04o}", has_got=True)
        if st.st_uid != os.geteuid():
            raise ConfigError(file, KEY, f"a file owned by the user running payg (uid {os.geteuid()})",
                              f"owned by uid {st.st_uid}", has_got=True)
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(file, KEY, f"a readable file of contacts ({exc.strerror}: {path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, KEY, f"a TOML file of contacts ({path}: {exc})") from None
    known = set(socket_ids) | {LANDLORD}
    contacts: dict[str, tuple[str, ...]] = {}
    languages: dict[str, str] = {}
    for key, urls in data.items():
        where = f"{KEY} ({path}: {key})"
        if key not in known:
            raise ConfigError(file, where, f"`landlord` or a configured socket id ({', '.join(sorted(known))})",
                              key, has_got=True)
        if isinstance(urls, dict):
            extra = set(urls) - {"urls", "language"}
            if extra:
                raise ConfigError(file, where, "a table of `urls` and `language` only", ", ".join(sorted(extra)),
                                  has_got=True)
            language = urls.get("language")
            if language is not None:
                if language not in LANGUAGES:
                    raise ConfigError(file, f"{KEY} ({path}: {key}.language)", f"one of {', '.join(LANGUAGES)}",
                                      str(language), has_got=True)
                languages[key] = language
            urls = urls.get("urls", [])
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) and u.strip() for u in urls):
            raise ConfigError(file, where, "a list of Apprise URLs, such as [\"mailto://user:pass@example.com\"]",
                              "something else", has_got=True)
        for i, url in enumerate(urls):
            if apprise.Apprise.instantiate(url.strip()) is None:
                scheme = url.partition("://")[0] if "://" in url else "(no scheme)"
                raise ConfigError(file, f"{where}[{i}]", "an Apprise URL it can read (see the Apprise wiki: "
                                  "https://github.com/caronc/apprise/wiki)", f"a {scheme}:// URL it cannot",
                                  has_got=True)
        if urls:
            contacts[key] = tuple(dict.fromkeys(u.strip() for u in urls))
    return contacts, languages
