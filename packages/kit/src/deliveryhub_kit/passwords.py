"""Passwords as a deployment hands them over: a file each, put into the URL that needs it.

The keys job (keys.py) makes the files; the services' settings, the broker-access job and the
postgres init script read them. The development values below are the ones compose once defaulted
to, and RabbitMQ's own: anyone can read them in the repository, so production refuses them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

DEVELOPMENT_PASSWORDS: Final = frozenset({"deliveryhub", "orders", "delivery", "web", "guest"})


def read_password_file(path: Path) -> str:
    """The password a file holds, without the line end an editor adds; `ValueError` if there is none."""
    try:
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if not password:
        raise ValueError(f"{path} is empty")
    return password


def with_password(url: str, password: str) -> str:
    """`url` with `password` in place of its own, quoted as a URL's user part needs it."""
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError("names no user to give the password to")
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostinfo}"))


def password_in(url: str) -> str:
    """The password a URL carries, unquoted; empty when it has none."""
    return unquote(urlsplit(url).password or "")


def names_a_server(url: str) -> bool:
    """Whether the URL names a server to log in to (not a SQLite file or the in-process broker)."""
    return bool(urlsplit(url).hostname)
