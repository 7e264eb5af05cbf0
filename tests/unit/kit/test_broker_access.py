"""Each service's broker rights: patterns that match exactly its own names, and how they are rendered."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from urllib.parse import quote

import pytest

from deliveryhub_contracts.events import PAYLOAD_TYPES
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names, legacy_queues
from deliveryhub_kit.broker_access import (
    ADMIN_PASSWORD_FILE_VARIABLE,
    ADMIN_PASSWORD_VARIABLE,
    ADMIN_USER_VARIABLE,
    DELIVERY,
    LEGACY_PREFIX_VARIABLE,
    MANAGEMENT_URL_VARIABLE,
    ORDERS,
    WAIT_VARIABLE,
    AccessJob,
    BrokerAccess,
    BrokerUser,
    ServiceRole,
    broker_access,
    main,
    management_api_calls,
    rabbitmqctl_commands,
)
from deliveryhub_kit.settings import ServiceSettings

# The delays a service may be set to, and the usual ones.
DELAYS = (*ServiceSettings.model_fields["retry_delays_seconds"].default, 0.2, 86_400)
LEGACY_PREFIX = "laptev_"
PASSWORD = "-s3cret:/+ word"  # noqa: S105 (a test's password)

PREFIXES = pytest.mark.parametrize("prefix", ["", "staging.", "t-1a2b.", "a.b-"], ids=repr)


def allows(pattern: str, name: str) -> bool:
    """As RabbitMQ matches a permission: the pattern found anywhere in the name."""
    return re.search(pattern, name) is not None


def queues_of(queue: str) -> dict[str, list[str]]:
    """A consuming queue, its dead-letter queue and its delay queues."""
    return {
        "queue": [queue],
        "dead-letter": [Names.dead_letter_queue(queue)],
        "delays": [Names.retry_queue(queue, delay) for delay in DELAYS],
    }


def own_and_foreign(role: ServiceRole, prefix: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The names of the service's queues and of the other service's, with the delivery legacy queues."""
    names = Names(prefix)
    orders = queues_of(names.queue(ORDERS_DELIVERY_EVENTS))
    delivery = queues_of(names.queue(DELIVERY_ORDER_EVENTS))
    for legacy in legacy_queues(LEGACY_PREFIX):
        for kind, found in queues_of(legacy).items():
            delivery[kind] = [*delivery[kind], *found]
    return (orders, delivery) if role is ORDERS else (delivery, orders)


def lookalikes(name: str) -> list[str]:
    """Names that differ from `name` only where an unanchored or unescaped pattern would let them in."""
    altered = [name + ".x", "x" + name, name.replace(".", "X"), name.replace("-", "")]
    return [candidate for candidate in altered if candidate != name]


@PREFIXES
@pytest.mark.parametrize("role", [ORDERS, DELIVERY], ids=lambda role: role.service)
def test_configure_covers_the_exchange_and_the_services_queues_only(role: ServiceRole, prefix: str) -> None:
    access = broker_access(role, prefix, LEGACY_PREFIX)
    own, foreign = own_and_foreign(role, prefix)

    for name in [Names(prefix).exchange, *(name for names in own.values() for name in names)]:
        assert allows(access.configure, name), name
        for lookalike in lookalikes(name):
            assert not allows(access.configure, lookalike), lookalike
    for name in [name for names in foreign.values() for name in names]:
        assert not allows(access.configure, name), name
    for name in (Names("other.").exchange, "amq.default", "amq.topic", ""):
        assert not allows(access.configure, name), name


@PREFIXES
@pytest.mark.parametrize("role", [ORDERS, DELIVERY], ids=lambda role: role.service)
def test_write_covers_the_exchange_the_default_exchange_and_the_bound_queue(
    role: ServiceRole, prefix: str
) -> None:
    access = broker_access(role, prefix, LEGACY_PREFIX)
    own, foreign = own_and_foreign(role, prefix)
    bound = Names(prefix).queue(role.consumes)

    for name in (Names(prefix).exchange, "amq.default", bound):
        assert allows(access.write, name), name
        for lookalike in lookalikes(name):
            assert not allows(access.write, lookalike), lookalike
    others = [name for names in (*own.values(), *foreign.values()) for name in names if name != bound]
    for name in [*others, "amq.topic", Names("other.").exchange, ""]:
        assert not allows(access.write, name), name


@PREFIXES
@pytest.mark.parametrize("role", [ORDERS, DELIVERY], ids=lambda role: role.service)
def test_read_covers_the_exchange_and_the_queues_consumed_or_dead_lettering_back(
    role: ServiceRole, prefix: str
) -> None:
    access = broker_access(role, prefix, LEGACY_PREFIX)
    own, foreign = own_and_foreign(role, prefix)

    for name in [Names(prefix).exchange, *own["queue"], *own["delays"]]:
        assert allows(access.read, name), name
        for lookalike in lookalikes(name):
            assert not allows(access.read, lookalike), lookalike
    for name in [*own["dead-letter"], *(name for names in foreign.values() for name in names)]:
        assert not allows(access.read, name), name
    assert not allows(access.read, "amq.default")


@PREFIXES
def test_the_topic_permission_publishes_only_the_services_own_keys_and_binds_only_its_own(
    prefix: str,
) -> None:
    orders, delivery = broker_access(ORDERS, prefix), broker_access(DELIVERY, prefix, LEGACY_PREFIX)

    for access, own, bound in ((orders, "order.", "delivery.*"), (delivery, "delivery.", "order.*")):
        assert access.topic.exchange == Names(prefix).exchange
        for key in PAYLOAD_TYPES:
            assert allows(access.topic.write, key) == key.startswith(own), (access.service, key)
        for key in ("#", "*.*", f"{own}*", f"{own}created.x", "x" + next(iter(PAYLOAD_TYPES)), ""):
            assert not allows(access.topic.write, key), (access.service, key)
        assert allows(access.topic.read, bound)
        for key in ("#", "*.*", f"{own}*", bound.replace("*", "finished"), bound + ".x"):
            assert not allows(access.topic.read, key), (access.service, key)


def test_the_events_each_service_sends_come_from_the_contract() -> None:
    assert set(ORDERS.routing_keys) | set(DELIVERY.routing_keys) == set(PAYLOAD_TYPES)
    assert not set(ORDERS.routing_keys) & set(DELIVERY.routing_keys)


@pytest.mark.parametrize("legacy_prefix", [None, ""])
def test_without_a_legacy_prefix_no_legacy_queue_is_the_delivery_services(legacy_prefix: str | None) -> None:
    access = broker_access(DELIVERY, "", legacy_prefix)

    for queue in legacy_queues(LEGACY_PREFIX) + legacy_queues(""):
        for pattern in (access.configure, access.write, access.read):
            assert not allows(pattern, queue), (pattern, queue)
    assert allows(access.read, Names().queue(DELIVERY_ORDER_EVENTS))


def test_the_orders_service_never_has_the_legacy_queues() -> None:
    access = broker_access(ORDERS, "", LEGACY_PREFIX)

    for queue in legacy_queues(LEGACY_PREFIX):
        assert not allows(access.configure, queue)
        assert not allows(access.read, queue)


def sample() -> tuple[BrokerAccess, BrokerUser]:
    return broker_access(DELIVERY, "staging.", LEGACY_PREFIX), BrokerUser("delivery/eu", PASSWORD, "/")


def test_the_management_api_calls_create_the_user_then_set_its_rights() -> None:
    access, user = sample()

    created, permissions, topic = management_api_calls(access, user)

    assert (created.method, created.path) == ("PUT", "/api/users/delivery%2Feu")
    assert created.body == {"password": PASSWORD, "tags": ""}
    assert (permissions.method, permissions.path) == ("PUT", "/api/permissions/%2F/delivery%2Feu")
    assert permissions.body == {"configure": access.configure, "write": access.write, "read": access.read}
    assert (topic.method, topic.path) == ("PUT", "/api/topic-permissions/%2F/delivery%2Feu")
    assert topic.body == {
        "exchange": "staging.deliveryhub.events",
        "write": access.topic.write,
        "read": access.topic.read,
    }
    assert PASSWORD not in repr((created, permissions, topic, user))


def test_the_rabbitmqctl_arguments_name_the_user_after_a_double_dash() -> None:
    access, user = sample()

    commands = rabbitmqctl_commands(access, user)

    assert commands.add_user == ("add_user", "--", "delivery/eu", PASSWORD)
    assert commands.change_password == ("change_password", "--", "delivery/eu", PASSWORD)
    assert commands.set_permissions == (
        "set_permissions",
        "-p",
        "/",
        "--",
        "delivery/eu",
        access.configure,
        access.write,
        access.read,
    )
    assert commands.set_topic_permissions == (
        "set_topic_permissions",
        "-p",
        "/",
        "--",
        "delivery/eu",
        "staging.deliveryhub.events",
        access.topic.write,
        access.topic.read,
    )
    assert PASSWORD not in repr(commands)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://orders:pw@rabbitmq:5672/", BrokerUser("orders", "pw", "/")),
        ("amqp://orders:pw@rabbitmq", BrokerUser("orders", "pw", "/")),
        ("amqps://orders:pw@rabbitmq:5671/%2F", BrokerUser("orders", "pw", "/")),
        ("amqp://orders:pw@rabbitmq/shop", BrokerUser("orders", "pw", "shop")),
        ("amqp://a%40b:%2Dp%3Aw%2F@rabbitmq/", BrokerUser("a@b", "-p:w/", "/")),
    ],
)
def test_a_user_is_read_from_the_url_the_service_connects_with(url: str, expected: BrokerUser) -> None:
    user = BrokerUser.from_amqp_url(url)

    assert (user.name, user.password, user.vhost) == (expected.name, expected.password, expected.vhost)


@pytest.mark.parametrize(
    "url",
    ["amqp://rabbitmq:5672/", "amqp://orders@rabbitmq/", "http://orders:pw@rabbitmq/", "amqp://-x:pw@h/"],
)
def test_a_url_without_a_usable_user_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"AMQP URL|user name") as refused:
        BrokerUser.from_amqp_url(url)
    assert "pw" not in str(refused.value)


def job_environment(**changes: str) -> dict[str, str]:
    environment = {
        MANAGEMENT_URL_VARIABLE: "http://rabbitmq:15672",
        ADMIN_USER_VARIABLE: "deliveryhub",
        ADMIN_PASSWORD_VARIABLE: "admin-" + PASSWORD,
        ORDERS.amqp_url_variable: "amqp://orders:orders-pw@rabbitmq:5672/",
        DELIVERY.amqp_url_variable: "amqp://delivery:delivery-pw@rabbitmq:5672/",
    }
    environment.update(changes)
    return environment


def test_the_job_reads_each_services_user_from_its_url() -> None:
    job = AccessJob.from_environment(
        job_environment(BROKER_PREFIX="staging.", **{LEGACY_PREFIX_VARIABLE: ""})
    )

    assert [(role, user.name, user.password) for role, user in job.users] == [
        (ORDERS, "orders", "orders-pw"),
        (DELIVERY, "delivery", "delivery-pw"),
    ]
    assert job.broker_prefix == "staging."
    assert job.legacy_prefix is None
    assert PASSWORD not in repr(job)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({ADMIN_PASSWORD_VARIABLE: ""}, f"set {ADMIN_PASSWORD_VARIABLE}"),
        ({DELIVERY.amqp_url_variable: ""}, f"set {DELIVERY.amqp_url_variable}"),
        (
            {DELIVERY.amqp_url_variable: "amqp://orders:other@rabbitmq/"},
            "each service needs a RabbitMQ user of its own",
        ),
        (
            {ORDERS.amqp_url_variable: f"amqp://deliveryhub:{quote(PASSWORD, safe='')}@rabbitmq/"},
            "cannot be a service's user",
        ),
        (
            {ORDERS.amqp_url_variable: f"amqp://rabbitmq/{PASSWORD}"},
            "ORDERS_AMQP_URL: an AMQP URL with a user",
        ),
        ({WAIT_VARIABLE: "soon"}, f"{WAIT_VARIABLE} is not a number"),
    ],
)
def test_the_job_refuses_what_would_leave_a_service_without_a_user_of_its_own(
    changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as refused:
        AccessJob.from_environment(job_environment(**changes))
    assert PASSWORD not in str(refused.value)


def test_the_job_reads_the_passwords_from_files_as_the_services_do(tmp_path: Path) -> None:
    """As compose runs it: each URL names a user, its password is in a file of the keys job's."""
    files = {}
    for variable, password in (
        (ADMIN_PASSWORD_FILE_VARIABLE, "admin-" + PASSWORD),
        (ORDERS.amqp_password_file_variable, "orders-" + PASSWORD),
        (DELIVERY.amqp_password_file_variable, "delivery-" + PASSWORD),
    ):
        path = tmp_path / variable.lower()
        path.write_text(password + "\n")
        files[variable] = str(path)
    environment = job_environment(
        **{
            ADMIN_PASSWORD_VARIABLE: "",
            ORDERS.amqp_url_variable: "amqp://orders@rabbitmq:5672/",
            DELIVERY.amqp_url_variable: "amqp://delivery@rabbitmq:5672/shop",
        },
        **files,
    )

    job = AccessJob.from_environment(environment)

    assert job.admin_password == "admin-" + PASSWORD
    assert [(user.name, user.password, user.vhost) for _, user in job.users] == [
        ("orders", "orders-" + PASSWORD, "/"),
        ("delivery", "delivery-" + PASSWORD, "shop"),
    ]
    # A file wins over a password in the environment.
    assert AccessJob.from_environment({**environment, ADMIN_PASSWORD_VARIABLE: "other"}).admin_password == (
        "admin-" + PASSWORD
    )


@pytest.mark.parametrize("variable", [ADMIN_PASSWORD_FILE_VARIABLE, ORDERS.amqp_password_file_variable])
def test_a_password_file_the_job_cannot_read_is_named(variable: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"^{variable}: cannot read"):
        AccessJob.from_environment(job_environment(**{variable: str(tmp_path / "missing")}))


def test_the_job_gives_up_at_its_deadline_when_the_management_api_never_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = job_environment(
        **{MANAGEMENT_URL_VARIABLE: f"http://127.0.0.1:{port}", WAIT_VARIABLE: "0.5"}
    )

    with pytest.raises(SystemExit, match=r"did not answer within 0\.5s") as stopped:
        main(environment)

    printed = capsys.readouterr()
    assert PASSWORD not in str(stopped.value) + printed.out + printed.err
