"""Each service's own RabbitMQ user, allowed exactly what its broker work needs, from the contract's names.

A service declares the events exchange and its queues (configure); binds its queue to the exchange
(write on the queue, read on the exchange, and the binding key checked against the read pattern of
its topic permission); publishes its own events to the exchange (write on it, and the routing key
checked against the topic permission's write pattern); moves failed messages to its delay and
dead-letter queues through the default exchange, which RabbitMQ checks as `amq.default` (write on
it; declaring a queue whose dead-letter exchange is the default one needs that write too, and read
on the queue); and consumes its queues (read). RabbitMQ looks for a pattern anywhere in a name, so
every pattern here is anchored.

`python -m deliveryhub_kit.broker_access` creates or updates both services' users through the
management API, idempotently; a one-shot job runs it before the services start. It reads:

    RABBITMQ_MANAGEMENT_URL     the management API, e.g. http://rabbitmq:15672
    RABBITMQ_ADMIN_USER         a user tagged administrator, and its password (or a file
    RABBITMQ_ADMIN_PASSWORD     holding it, RABBITMQ_ADMIN_PASSWORD_FILE, which wins)
    ORDERS_AMQP_URL             the URL the orders service connects with: the user, its password
                                and the vhost are taken from it
    ORDERS_AMQP_PASSWORD_FILE   a file whose contents replace that URL's password, as the
                                service's AMQP_PASSWORD_FILE does (optional)
    DELIVERY_AMQP_URL           the same two for the delivery service
    DELIVERY_AMQP_PASSWORD_FILE
    BROKER_PREFIX               as the services read it (default: none)
    LEGACY_QUEUE_PREFIX         as the delivery service reads it (default: no legacy queues)
    BROKER_ACCESS_WAIT_SECONDS  how long to wait for the management API to answer (default 120)
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from deliveryhub_contracts.events import DELIVERY_SOURCE, ORDERS_SOURCE, PAYLOAD_TYPES, SOURCE_OF
from deliveryhub_contracts.topology import (
    DELIVERY_ORDER_EVENTS,
    ORDERS_DELIVERY_EVENTS,
    Names,
    QueueSpec,
    legacy_queues,
)
from deliveryhub_kit.passwords import read_password_file, with_password

# The name RabbitMQ checks permissions on for the default exchange (whose own name is "").
DEFAULT_EXCHANGE: Final = "amq.default"

MANAGEMENT_URL_VARIABLE: Final = "RABBITMQ_MANAGEMENT_URL"
ADMIN_USER_VARIABLE: Final = "RABBITMQ_ADMIN_USER"
ADMIN_PASSWORD_VARIABLE: Final = "RABBITMQ_ADMIN_PASSWORD"  # noqa: S105 (a variable's name)
ADMIN_PASSWORD_FILE_VARIABLE: Final = "RABBITMQ_ADMIN_PASSWORD_FILE"  # noqa: S105 (a variable's name)
BROKER_PREFIX_VARIABLE: Final = "BROKER_PREFIX"
LEGACY_PREFIX_VARIABLE: Final = "LEGACY_QUEUE_PREFIX"
WAIT_VARIABLE: Final = "BROKER_ACCESS_WAIT_SECONDS"
DEFAULT_WAIT_SECONDS: Final = 120.0


@dataclass(frozen=True)
class ServiceRole:
    """What one service does on the broker: whose events it publishes, which queue it consumes."""

    service: str
    source: str
    consumes: QueueSpec
    consumes_legacy_queues: bool = False

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """The routing keys of the events this service sends."""
        return tuple(key for key in PAYLOAD_TYPES if SOURCE_OF.get(key.partition(".")[0]) == self.source)

    @property
    def amqp_url_variable(self) -> str:
        """The variable the access job reads this service's user, password and vhost from."""
        return f"{self.service.upper()}_AMQP_URL"

    @property
    def amqp_password_file_variable(self) -> str:
        """The variable naming a file whose contents replace the password of that URL."""
        return f"{self.service.upper()}_AMQP_PASSWORD_FILE"


ORDERS: Final = ServiceRole("orders", ORDERS_SOURCE, ORDERS_DELIVERY_EVENTS)
DELIVERY: Final = ServiceRole("delivery", DELIVERY_SOURCE, DELIVERY_ORDER_EVENTS, consumes_legacy_queues=True)
SERVICE_ROLES: Final = (ORDERS, DELIVERY)

ENVIRONMENT_VARIABLES: Final = (
    MANAGEMENT_URL_VARIABLE,
    ADMIN_USER_VARIABLE,
    ADMIN_PASSWORD_VARIABLE,
    ADMIN_PASSWORD_FILE_VARIABLE,
    *(role.amqp_url_variable for role in SERVICE_ROLES),
    *(role.amqp_password_file_variable for role in SERVICE_ROLES),
    BROKER_PREFIX_VARIABLE,
    LEGACY_PREFIX_VARIABLE,
    WAIT_VARIABLE,
)


@dataclass(frozen=True)
class TopicPermission:
    """The routing keys a user may publish with (write) and bind with (read) on one topic exchange."""

    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class BrokerAccess:
    """One service's rights in its vhost: configure, write and read patterns, and a topic permission."""

    service: str
    configure: str
    write: str
    read: str
    topic: TopicPermission


def broker_access(
    role: ServiceRole, broker_prefix: str = "", legacy_prefix: str | None = None
) -> BrokerAccess:
    """The rights of `role`'s service on the broker names of `broker_prefix` (and its legacy queues)."""
    names = Names(broker_prefix)
    queue = names.queue(role.consumes)
    # As the delivery service decides: an empty legacy prefix consumes no legacy queue.
    legacy = legacy_queues(legacy_prefix) if role.consumes_legacy_queues and legacy_prefix else ()
    exchange = re.escape(names.exchange)
    configure = [exchange]
    # Not its dead-letter queues: only the operator's `deliveryhub dead-letters` reads them.
    read = [exchange]
    for consumed in (queue, *legacy):
        dead_letters, delays = re.escape(Names.dead_letter_queue(consumed)), _delay_queues(consumed)
        configure += [re.escape(consumed), dead_letters, delays]
        # A delay queue dead-letters back to its queue, and declaring such a queue needs read on it.
        read += [re.escape(consumed), delays]
    return BrokerAccess(
        service=role.service,
        configure=_any_of(configure),
        # Only the queue it binds takes write: messages reach its other queues through amq.default.
        write=_any_of([exchange, re.escape(DEFAULT_EXCHANGE), re.escape(queue)]),
        read=_any_of(read),
        topic=TopicPermission(
            exchange=names.exchange,
            write=_any_of([re.escape(key) for key in role.routing_keys]),
            read=_any_of([re.escape(key) for key in role.consumes.bindings]),
        ),
    )


def _any_of(patterns: Sequence[str]) -> str:
    return "^(?:" + "|".join(patterns) + ")$"


def _delay_queues(queue: str) -> str:
    """Every delay queue of `queue`, whatever its delay: the delays are the service's own setting."""
    head, _, tail = Names.retry_queue(queue, 0).rpartition("0")
    return re.escape(head) + "[0-9]+" + re.escape(tail)


@dataclass(frozen=True)
class BrokerUser:
    """A service's credentials and the vhost it works in."""

    name: str
    password: str = field(repr=False)
    vhost: str = "/"

    def __post_init__(self) -> None:
        for what, value in (("user name", self.name), ("vhost", self.vhost)):
            # rabbitmqctl would read a leading "-" as an option.
            if not value or value.startswith("-") or any(char in value for char in "\r\n"):
                raise ValueError(f"a RabbitMQ {what} must be non-empty, on one line and not start with '-'")
        if not self.password:
            raise ValueError(f"the RabbitMQ user {self.name!r} has no password")

    @classmethod
    def from_amqp_url(cls, url: str) -> BrokerUser:
        """The user, password and vhost of an `amqp://` URL, read as the services' client reads it."""
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps") or not parts.username or parts.password is None:
            raise ValueError("an AMQP URL with a user and a password is needed (amqp://USER:PASSWORD@HOST/)")
        vhost = "/" if parts.path in ("", "/") else unquote(parts.path[1:])
        return cls(unquote(parts.username), unquote(parts.password), vhost)


@dataclass(frozen=True)
class ApiCall:
    """One request to RabbitMQ's management HTTP API."""

    method: str
    path: str
    body: Mapping[str, str] = field(repr=False)


def management_api_calls(access: BrokerAccess, user: BrokerUser) -> tuple[ApiCall, ...]:
    """Create or update the user (untagged: no management access), then set its rights; all idempotent."""
    name = quote(user.name, safe="")
    vhost = quote(user.vhost, safe="")
    return (
        ApiCall("PUT", f"/api/users/{name}", {"password": user.password, "tags": ""}),
        ApiCall(
            "PUT",
            f"/api/permissions/{vhost}/{name}",
            {"configure": access.configure, "write": access.write, "read": access.read},
        ),
        ApiCall(
            "PUT",
            f"/api/topic-permissions/{vhost}/{name}",
            {"exchange": access.topic.exchange, "write": access.topic.write, "read": access.topic.read},
        ),
    )


class ManagementApiError(Exception):
    """The management API refused a request, or did not answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ManagementApi:
    """RabbitMQ's management HTTP API, called as an administrator."""

    def __init__(self, url: str, user: str, password: str, *, timeout_seconds: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the management API needs an http:// or https:// URL, not {parts.scheme!r}")
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        # Without any credentials it carries: this URL is shown in messages.
        self.url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._timeout = timeout_seconds

    def request(self, method: str, path: str, body: Mapping[str, str] | None = None) -> bytes:
        """Send one request; the answer's body, or `ManagementApiError` saying why not."""
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._authorization, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                answer: bytes = response.read()
                return answer
        except urllib.error.HTTPError as error:
            raise ManagementApiError(
                f"{method} {path}: {error.code} {_reason(error.read())}", status=error.code
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise ManagementApiError(f"{method} {path}: {error}") from None

    def apply(self, calls: Iterable[ApiCall]) -> None:
        """Make the calls in order; the first refusal stops them."""
        for call in calls:
            self.request(call.method, call.path, call.body)

    def delete_user(self, name: str) -> None:
        """Delete a user (closing its connections); one that does not exist is not an error."""
        try:
            self.request("DELETE", f"/api/users/{quote(name, safe='')}")
        except ManagementApiError as error:
            if error.status != 404:
                raise

    def wait_until_answering(self, timeout_seconds: float) -> None:
        """Return once the API answers; fail at the deadline, or at once if it refuses the credentials."""
        deadline = time.monotonic() + timeout_seconds
        pause = 0.2
        while True:
            try:
                self.request("GET", "/api/overview")
                return
            except ManagementApiError as error:
                if error.status in (401, 403):
                    message = f"{self.url} refuses the administrator: {error}"
                    raise ManagementApiError(message, error.status) from None
                last = error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ManagementApiError(f"{self.url} did not answer within {timeout_seconds:g}s: {last}")
            # The broker starts its management plugin last; ask again shortly, never past the deadline.
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 2.0)


def _reason(body: bytes) -> str:
    """The reason RabbitMQ gives in an error answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:300]
    reason = answer.get("reason") if isinstance(answer, dict) else None
    return str(reason or answer)[:300]


@dataclass(frozen=True)
class RabbitmqctlCommands:
    """The `rabbitmqctl` arguments that add the user (or change its password), then set its rights."""

    add_user: tuple[str, ...] = field(repr=False)
    change_password: tuple[str, ...] = field(repr=False)
    set_permissions: tuple[str, ...]
    set_topic_permissions: tuple[str, ...]


def rabbitmqctl_commands(access: BrokerAccess, user: BrokerUser) -> RabbitmqctlCommands:
    """The arguments after `rabbitmqctl` for the user's rights (`--`: a password may start with "-")."""
    return RabbitmqctlCommands(
        add_user=("add_user", "--", user.name, user.password),
        change_password=("change_password", "--", user.name, user.password),
        set_permissions=(
            "set_permissions",
            "-p",
            user.vhost,
            "--",
            user.name,
            access.configure,
            access.write,
            access.read,
        ),
        set_topic_permissions=(
            "set_topic_permissions",
            "-p",
            user.vhost,
            "--",
            user.name,
            access.topic.exchange,
            access.topic.write,
            access.topic.read,
        ),
    )


def apply_with_rabbitmqctl(
    access: BrokerAccess, user: BrokerUser, rabbitmqctl: Sequence[str] = ("rabbitmqctl",)
) -> None:
    """Create or update the user with `rabbitmqctl`, given as the command (and arguments) that runs it."""
    commands = rabbitmqctl_commands(access, user)
    changed = _rabbitmqctl(rabbitmqctl, commands.change_password, "change_password")
    if changed.returncode == os.EX_NOUSER:
        _check(_rabbitmqctl(rabbitmqctl, commands.add_user, "add_user"), "add_user")
    else:
        _check(changed, "change_password")
    for arguments in (commands.set_permissions, commands.set_topic_permissions):
        _check(_rabbitmqctl(rabbitmqctl, arguments, arguments[0]), arguments[0])


def _rabbitmqctl(
    rabbitmqctl: Sequence[str], arguments: Sequence[str], what: str
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [*rabbitmqctl, "-q", *arguments],
            # Nothing on standard input: asked for a password there, some versions wait for ever.
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        # Not the exception itself: it would show the command, and with it a password.
        raise RuntimeError(f"rabbitmqctl {what} did not finish within 60s") from None


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {what} failed ({result.returncode}): {result.stderr.strip()[:500]}")


@dataclass(frozen=True)
class AccessJob:
    """What `python -m deliveryhub_kit.broker_access` is told by its environment."""

    management_url: str
    admin_user: str
    admin_password: str = field(repr=False)
    users: tuple[tuple[ServiceRole, BrokerUser], ...]
    broker_prefix: str = ""
    legacy_prefix: str | None = None
    wait_seconds: float = DEFAULT_WAIT_SECONDS

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> AccessJob:
        """Read the job's variables; `ValueError` names what is missing or wrong (never a password)."""
        missing = [
            name
            for name in (
                MANAGEMENT_URL_VARIABLE,
                ADMIN_USER_VARIABLE,
                *(role.amqp_url_variable for role in SERVICE_ROLES),
            )
            if not environment.get(name)
        ]
        if not (environment.get(ADMIN_PASSWORD_VARIABLE) or environment.get(ADMIN_PASSWORD_FILE_VARIABLE)):
            missing.append(f"{ADMIN_PASSWORD_VARIABLE} or {ADMIN_PASSWORD_FILE_VARIABLE}")
        if missing:
            raise ValueError(f"set {', '.join(missing)}")
        admin_password = environment.get(ADMIN_PASSWORD_VARIABLE, "")
        if environment.get(ADMIN_PASSWORD_FILE_VARIABLE):
            try:
                admin_password = read_password_file(Path(environment[ADMIN_PASSWORD_FILE_VARIABLE]))
            except ValueError as error:
                raise ValueError(f"{ADMIN_PASSWORD_FILE_VARIABLE}: {error}") from None
        users: list[tuple[ServiceRole, BrokerUser]] = []
        for role in SERVICE_ROLES:
            url = _service_url(role, environment)
            try:
                users.append((role, BrokerUser.from_amqp_url(url)))
            except ValueError as error:
                raise ValueError(f"{role.amqp_url_variable}: {error}") from None
        admin = environment[ADMIN_USER_VARIABLE]
        names = [user.name for _, user in users]
        if len(set(names)) != len(names):
            raise ValueError("each service needs a RabbitMQ user of its own: their AMQP URLs name one user")
        if admin in names:
            raise ValueError(f"the administrator {admin!r} cannot be a service's user: it would lose rights")
        try:
            wait_seconds = float(environment.get(WAIT_VARIABLE) or DEFAULT_WAIT_SECONDS)
        except ValueError:
            raise ValueError(f"{WAIT_VARIABLE} is not a number of seconds") from None
        return cls(
            management_url=environment[MANAGEMENT_URL_VARIABLE],
            admin_user=admin,
            admin_password=admin_password,
            users=tuple(users),
            broker_prefix=environment.get(BROKER_PREFIX_VARIABLE, ""),
            legacy_prefix=environment.get(LEGACY_PREFIX_VARIABLE) or None,
            wait_seconds=wait_seconds,
        )


def _service_url(role: ServiceRole, environment: Mapping[str, str]) -> str:
    """The URL the service connects with, its password from its file when one is named."""
    url = environment[role.amqp_url_variable]
    password_file = environment.get(role.amqp_password_file_variable)
    if not password_file:
        return url
    try:
        return with_password(url, read_password_file(Path(password_file)))
    except ValueError as error:
        raise ValueError(f"{role.amqp_password_file_variable}: {error}") from None


def main(environment: Mapping[str, str] | None = None) -> None:
    """Give both services their users through the management API; see the module's docstring."""
    try:
        job = AccessJob.from_environment(os.environ if environment is None else environment)
        api = ManagementApi(job.management_url, job.admin_user, job.admin_password)
    except ValueError as error:
        sys.exit(f"broker access: {error}")
    print(f"broker access: waiting for the management API at {api.url}", flush=True)
    try:
        api.wait_until_answering(job.wait_seconds)
        for role, user in job.users:
            access = broker_access(role, job.broker_prefix, job.legacy_prefix)
            api.apply(management_api_calls(access, user))
            print(
                f"broker access: {role.service} is user {user.name!r} in vhost {user.vhost!r}, "
                f"publishing {', '.join(role.routing_keys)} to {access.topic.exchange}",
                flush=True,
            )
    except ManagementApiError as error:
        sys.exit(f"broker access: {error}")


if __name__ == "__main__":
    main()
