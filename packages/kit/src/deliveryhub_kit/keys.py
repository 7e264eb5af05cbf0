"""The Ed25519 key pair that signs and verifies tokens, and the secrets made beside it.

In development it lives in `.deliveryhub/keys`, outside git. In containers a one-shot job makes it
into volumes on first start, with every password of the deployment:

    python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR] [--owner UID:GID]
        [--passwords STORE_DIR] [--give DIR UID:GID NAME[,NAME...]]...
        [--rabbitmq-administrator FILE UID:GID USER NAME]

--owner                   who the key files belong to (by default, whoever runs the job)
--passwords               where each password named below is made once, at random, for the job
                          alone; later runs keep it. NAME's variable (postgres-orders-password:
                          POSTGRES_ORDERS_PASSWORD), when set, gives it instead
--give                    a copy of each named password for one reader: a file named NAME in DIR
                          (a volume of that reader's alone), owned by UID:GID
--rabbitmq-administrator  RabbitMQ's first user with the password NAME, as a configuration file
                          (RABBITMQ_CONFIG_FILE) RabbitMQ reads at its first start, owned by UID:GID

Every file holding a secret is 0600 in a 0700 folder, and has its owner, from the first byte.
Handing a file to another user takes root: the compose job runs as root for that alone.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deliveryhub_kit.passwords import DEVELOPMENT_PASSWORDS, read_password_file

PRIVATE_KEY_FILE = "jwt-private.pem"
PUBLIC_KEY_FILE = "jwt-public.pem"
SESSION_SECRET_FILE = "session-secret"  # noqa: S105 (a file name)

USAGE: Final = (
    "python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR] [--owner UID:GID] [--passwords STORE_DIR] "
    "[--give DIR UID:GID NAME[,NAME...]]... [--rabbitmq-administrator FILE UID:GID USER NAME]"
)
# A password's name is its file's name and gives the variable that may set it.
PASSWORD_NAME: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# What an operator's own password may hold: it goes into RabbitMQ's configuration as it is.
OPERATOR_PASSWORD: Final = re.compile(r"[A-Za-z0-9._~-]+")
RABBITMQ_USER: Final = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


@dataclass(frozen=True)
class Owner:
    """The user and group a file is made for."""

    uid: int
    gid: int

    @classmethod
    def parse(cls, text: str) -> Owner:
        """`UID:GID`, both numbers: the user a container runs as need not exist in this one."""
        uid, colon, gid = text.partition(":")
        if not (colon and uid.isdigit() and gid.isdigit()):
            raise ValueError(f"an owner is UID:GID in numbers, not {text!r}")
        return cls(int(uid), int(gid))

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"


def generate_key_pair() -> KeyPair:
    """A fresh Ed25519 key pair in PEM."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


def private_directory(directory: Path, owner: Owner | None = None) -> Path:
    """`directory`, made if missing, readable by its owner alone (0700), and `owner`'s when given."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a volume's mount point may belong to someone else
        directory.chmod(0o700)
    if owner is not None:
        _give(directory, owner)
    return directory


def _give(path: Path, owner: Owner) -> None:
    found = path.stat()
    if (found.st_uid, found.st_gid) == (owner.uid, owner.gid):
        return
    try:
        os.chown(path, owner.uid, owner.gid)
    except PermissionError:
        message = f"cannot give {path} to {owner}: only root may hand a file to another user"
        raise PermissionError(message) from None


@contextlib.contextmanager
def _locked(directory: Path, owner: Owner | None = None) -> Iterator[None]:
    """Hold the folder's lock file, so that jobs and services starting together agree on one secret."""
    descriptor = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if owner is not None:
            os.fchown(descriptor, owner.uid, owner.gid)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def ensure_development_keys(directory: Path, owner: Owner | None = None) -> KeyPair:
    """Load the key pair from `directory`, creating it once if it is not there."""
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    private_directory(directory, owner)
    with _locked(directory, owner):
        if not (private_path.exists() and public_path.exists()):
            pair = generate_key_pair()
            write_whole(private_path, pair.private_pem, 0o600, owner)
            write_whole(public_path, pair.public_pem, 0o644, owner)
        return KeyPair(private_path.read_text(), public_path.read_text())


def write_whole(path: Path, text: str, mode: int, owner: Owner | None = None) -> None:
    """Write through a new temporary file, so that a reader never sees half a key; the file has
    `mode` and `owner` from its first byte (created so, not changed afterwards)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if owner is not None:
            os.fchown(descriptor, owner.uid, owner.gid)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def ensure_secret_file(path: Path, owner: Owner | None = None) -> None:
    """Write a random secret to `path` once (owner-only, in an owner-only folder); an existing one
    is kept."""
    private_directory(path.parent, owner)
    if not path.exists():
        write_whole(path, secrets.token_urlsafe(48), 0o600, owner)


def ensure_keys(private_dir: Path, public_dir: Path | None = None, owner: Owner | None = None) -> None:
    """Make the key pair and the session secret in `private_dir` once; copy the public key to `public_dir`."""
    pair = ensure_development_keys(private_dir, owner)
    ensure_secret_file(private_dir / SESSION_SECRET_FILE, owner)
    if public_dir is not None:
        public_dir.mkdir(parents=True, exist_ok=True)
        write_whole(public_dir / PUBLIC_KEY_FILE, pair.public_pem, 0o644, owner)


def password_variable(name: str) -> str:
    """The variable that gives the password `name` instead of a random one."""
    return name.upper().replace("-", "_")


@dataclass(frozen=True)
class PasswordCopies:
    """The passwords one reader uses: a file each, named after the password, in a folder of its own."""

    folder: Path
    owner: Owner
    names: tuple[str, ...]


@dataclass(frozen=True)
class RabbitmqAdministrator:
    """The user RabbitMQ makes when it first starts (with its password), as a configuration file."""

    path: Path
    owner: Owner
    user: str
    password_name: str

    def configuration(self, password: str) -> str:
        """The file's text, in rabbitmq.conf's format."""
        return f"default_user = {self.user}\ndefault_pass = {password}\n"


@dataclass(frozen=True)
class KeysJob:
    """What `python -m deliveryhub_kit.keys` is told by its arguments."""

    private_dir: Path
    public_dir: Path | None = None
    owner: Owner | None = None
    password_store: Path | None = None
    copies: tuple[PasswordCopies, ...] = ()
    rabbitmq_administrators: tuple[RabbitmqAdministrator, ...] = ()

    @classmethod
    def from_arguments(cls, arguments: Sequence[str]) -> KeysJob:
        """Read the command line; `SystemExit` with the usage when it is not one."""
        given = _ArgumentParser().parse_args(arguments)
        try:
            job = cls(
                private_dir=Path(given.private_dir),
                public_dir=Path(given.public_dir) if given.public_dir else None,
                owner=Owner.parse(given.owner) if given.owner else None,
                password_store=Path(given.passwords) if given.passwords else None,
                copies=tuple(
                    PasswordCopies(Path(folder), Owner.parse(owner), _password_names(names))
                    for folder, owner, names in given.give or ()
                ),
                rabbitmq_administrators=tuple(
                    RabbitmqAdministrator(Path(path), Owner.parse(owner), user, _password_name(name))
                    for path, owner, user, name in given.rabbitmq_administrator or ()
                ),
            )
        except ValueError as error:
            _usage(str(error))
        for administrator in job.rabbitmq_administrators:
            if not RABBITMQ_USER.fullmatch(administrator.user):
                _usage(f"a RabbitMQ user here is letters, digits and ._- only, not {administrator.user!r}")
        if job.password_names and job.password_store is None:
            _usage("--give and --rabbitmq-administrator need --passwords, where the passwords are kept")
        return job

    @property
    def password_names(self) -> tuple[str, ...]:
        """Every password the job hands out, each once, in the order first named."""
        named = [name for copies in self.copies for name in copies.names]
        named += [administrator.password_name for administrator in self.rabbitmq_administrators]
        return tuple(dict.fromkeys(named))

    def run(self, environment: Mapping[str, str]) -> None:
        """Make what is missing and hand out the copies; `ValueError` names a password refused."""
        ensure_keys(self.private_dir, self.public_dir, self.owner)
        if self.password_store is None:
            return
        passwords = ensure_passwords(self.password_store, self.password_names, environment)
        for copies in self.copies:
            private_directory(copies.folder, copies.owner)
            for name in copies.names:
                write_whole(copies.folder / name, passwords[name], 0o600, copies.owner)
        for administrator in self.rabbitmq_administrators:
            private_directory(administrator.path.parent, administrator.owner)
            text = administrator.configuration(passwords[administrator.password_name])
            write_whole(administrator.path, text, 0o600, administrator.owner)


def ensure_passwords(store: Path, names: Sequence[str], environment: Mapping[str, str]) -> dict[str, str]:
    """Each named password: its variable's value when set, else the one kept in `store`, else a new
    random one, kept there for later runs."""
    private_directory(store)
    passwords: dict[str, str] = {}
    with _locked(store):
        for name in names:
            path = store / name
            chosen = environment.get(password_variable(name), "")
            if chosen:
                _check_operator_password(password_variable(name), chosen)
                if not path.exists() or read_password_file(path) != chosen:
                    write_whole(path, chosen, 0o600)
            elif not path.exists():
                write_whole(path, secrets.token_urlsafe(32), 0o600)
            passwords[name] = read_password_file(path)
    return passwords


def _check_operator_password(variable: str, password: str) -> None:
    if password in DEVELOPMENT_PASSWORDS:
        raise ValueError(f"{variable} is a development value, which anyone can read in the repository")
    if not OPERATOR_PASSWORD.fullmatch(password):
        raise ValueError(f"{variable} may hold letters, digits and -._~ only")


def _password_name(name: str) -> str:
    if not PASSWORD_NAME.fullmatch(name):
        raise ValueError(f"a password's name is lowercase words joined by -, not {name!r}")
    return name


def _password_names(names: str) -> tuple[str, ...]:
    return tuple(_password_name(name) for name in names.split(","))


def _usage(problem: str) -> NoReturn:
    sys.exit(f"usage: {USAGE}\n{problem}")


class _ArgumentParser(argparse.ArgumentParser):
    def __init__(self) -> None:
        super().__init__(prog="python -m deliveryhub_kit.keys", usage=USAGE, allow_abbrev=False)
        self.add_argument("private_dir", metavar="PRIVATE_DIR")
        self.add_argument("public_dir", metavar="PUBLIC_DIR", nargs="?")
        self.add_argument("--owner", metavar="UID:GID")
        self.add_argument("--passwords", metavar="STORE_DIR")
        self.add_argument("--give", nargs=3, action="append", metavar=("DIR", "UID:GID", "NAME[,NAME...]"))
        self.add_argument(
            "--rabbitmq-administrator", nargs=4, action="append", metavar=("FILE", "UID:GID", "USER", "NAME")
        )

    def error(self, message: str) -> NoReturn:
        _usage(message)


def main(arguments: Sequence[str] | None = None, environment: Mapping[str, str] | None = None) -> None:
    """`python -m deliveryhub_kit.keys ...`, idempotent: later runs keep the keys and the passwords."""
    job = KeysJob.from_arguments(sys.argv[1:] if arguments is None else arguments)
    try:
        job.run(os.environ if environment is None else environment)
    except (ValueError, PermissionError) as error:
        sys.exit(f"keys: {error}")
    print(
        f"token keys ready in {job.private_dir}"
        + (f", public key in {job.public_dir}" if job.public_dir else "")
        + (f"; {len(job.password_names)} passwords handed out" if job.password_names else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
