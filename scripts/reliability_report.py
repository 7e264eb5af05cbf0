"""Write docs/reliability.md from the figures the last run of the fault scenarios left behind.

    uv run pytest tests/faults -q                    # writes test-results/reliability.json
    uv run python scripts/reliability_report.py      # turns it into docs/reliability.md

Every test the document names as the proof of a guarantee is looked up in the test files; a name
that is not found there stops the script, so the document cannot cite a test that does not exist.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "test-results" / "reliability.json"
OUTPUT = ROOT / "docs" / "reliability.md"
FAULTS = "tests/faults"

# The scenarios in the order the issue lists them; any other one follows.
SCENARIO_ORDER = (
    "broker_cut_while_orders_are_placed_and_paid",
    "database_cut_while_messages_are_consumed",
    "database_not_accepting_connections",
    "database_connection_limit_reached",
    "database_becomes_read_only",
    "database_server_restarts",
    "delivery_killed_with_sigkill_mid_stream_and_restarted",
    "delivery_stopped_with_sigterm_mid_stream_and_restarted",
    "relay_killed_between_the_confirm_and_the_mark",
    "two_replicas_of_each_service",
    "hostile_messages_are_dead_lettered_while_good_ones_flow",
)


@dataclass(frozen=True)
class Guarantee:
    says: str
    # (file, test function) pairs; the function may sit in a test class.
    proved_by: tuple[tuple[str, str], ...]
    # A folder every test of which proves it too, listed as found when the document is written.
    folder: str | None = None


KIT = "tests/integration/kit"
DELIVERY = "tests/integration/delivery"
ORDERS = "tests/integration/orders"

GUARANTEES = (
    Guarantee(
        "A 2xx write and its event commit in one transaction; a rolled-back write emits nothing.",
        (
            (f"{KIT}/test_outbox_relay.py", "test_a_rolled_back_write_emits_nothing"),
            (f"{ORDERS}/test_api.py", "test_exactly_one_outbox_row_holds_the_order_created_event"),
            (f"{ORDERS}/test_api.py", "test_a_rolled_back_request_writes_no_outbox_row"),
            (f"{ORDERS}/test_api.py", "test_an_invalid_order_is_refused_and_nothing_is_written"),
            (f"{FAULTS}/test_broker_cut.py", "test_broker_cut_while_orders_are_placed_and_paid"),
        ),
    ),
    Guarantee(
        "Every outbox row is eventually published, at least once; it is marked published only after "
        "the broker confirms it; an unroutable message is an error, not a silent drop.",
        (
            (
                f"{KIT}/test_outbox_relay.py",
                "test_an_outbox_row_is_published_as_a_cloud_event_routed_by_its_short_type",
            ),
            (f"{KIT}/test_outbox_relay.py", "test_waiting_rows_are_published_in_the_order_they_were_written"),
            (f"{KIT}/test_outbox_relay.py", "test_an_unroutable_event_stays_in_the_outbox_with_its_error"),
            (
                f"{KIT}/test_outbox_relay.py",
                "test_a_retried_unroutable_event_is_published_once_a_queue_is_bound",
            ),
            (
                f"{KIT}/test_outbox_relay.py",
                "test_a_crash_between_publish_and_mark_publishes_the_event_again_with_the_same_id",
            ),
            (f"{KIT}/test_outbox_relay.py", "test_two_relays_never_publish_the_same_claimed_row"),
            (f"{FAULTS}/test_relay_crash.py", "test_relay_killed_between_the_confirm_and_the_mark"),
            (f"{FAULTS}/test_replicas.py", "test_two_replicas_of_each_service"),
        ),
    ),
    Guarantee(
        "A consumer's side effects happen once per event id (inbox row in the same transaction) and it "
        "acks only after commit.",
        (
            (f"{KIT}/test_inbox_consumer.py", "test_an_event_delivered_twice_is_applied_once"),
            (
                f"{KIT}/test_inbox_consumer.py",
                "test_a_handler_that_can_never_succeed_is_dead_lettered_and_leaves_nothing_behind",
            ),
            (f"{DELIVERY}/test_consumers.py", "test_the_same_event_delivered_twice_is_applied_once"),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_a_relay_crash_between_publish_and_mark_still_makes_exactly_one_delivery",
            ),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_paid_before_created_ends_activated_with_the_right_address_and_date",
            ),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_a_stale_created_after_canceled_leaves_the_delivery_canceled",
            ),
            (f"{ORDERS}/test_consumers.py", "test_the_same_event_twice_is_applied_once"),
            (f"{DELIVERY}/test_dead_letters.py", "test_replaying_an_event_that_was_applied_changes_nothing"),
            (f"{FAULTS}/test_relay_crash.py", "test_relay_killed_between_the_confirm_and_the_mark"),
            (f"{FAULTS}/test_service_kill.py", "test_delivery_killed_with_sigkill_mid_stream_and_restarted"),
            (f"{FAULTS}/test_replicas.py", "test_two_replicas_of_each_service"),
        ),
    ),
    Guarantee(
        "Every message is settled, whatever its bytes: a message that can never succeed (malformed, unknown "
        "type, failing validation, a foreign source, values no database takes) goes to the dead-letter "
        "queue at once with the reason; one that fails for a passing cause is retried with growing delay, "
        "then dead-lettered. Nothing is dropped silently, nothing is held unsettled; dead letters can be "
        "listed and replayed.",
        (
            (
                f"{KIT}/test_inbox_consumer.py",
                "test_a_malformed_message_is_dead_lettered_at_once_with_its_reason",
            ),
            (f"{KIT}/test_inbox_consumer.py", "test_a_passing_failure_is_retried_until_the_event_applies"),
            (f"{KIT}/test_retries.py", "test_a_passing_failure_waits_each_delay_in_turn_then_applies_once"),
            (
                f"{KIT}/test_retries.py",
                "test_after_the_last_delay_the_message_is_dead_lettered_with_its_story",
            ),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_a_malformed_message_goes_to_the_dead_letter_queue_with_its_reason",
            ),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_a_malformed_legacy_message_goes_to_its_dead_letter_queue",
            ),
            (
                f"{ORDERS}/test_consumers.py",
                "test_an_event_for_an_unknown_order_is_dead_lettered_with_its_reason",
            ),
            (f"{DELIVERY}/test_dead_letters.py", "test_list_shows_dead_letters_without_consuming_them"),
            (f"{DELIVERY}/test_dead_letters.py", "test_listing_again_and_again_never_uses_a_dead_letter_up"),
            (f"{DELIVERY}/test_dead_letters.py", "test_replaying_an_event_that_was_applied_changes_nothing"),
            (f"{DELIVERY}/test_dead_letters.py", "test_purge_asks_first_and_deletes_only_when_told_yes"),
            ("tests/unit/kit/test_failures.py", "test_a_database_error_is_judged_by_its_sqlstate"),
            ("tests/unit/kit/test_consumer.py", "test_values_past_the_apis_bounds_are_malformed"),
            ("tests/unit/kit/test_consumer.py", "test_an_order_event_from_another_source_is_foreign"),
            (f"{FAULTS}/test_poison.py", "test_hostile_messages_are_dead_lettered_while_good_ones_flow"),
        ),
    ),
    Guarantee(
        "Broker down: writes still succeed (the outbox buffers); on reconnect the backlog drains by itself. "
        "Database down or refusing (dropped lines, restarts, connection limits, read-only, not accepting "
        "connections): the API answers 503 fast; consumers pause, do not ack, do not dead-letter, and "
        "resume by themselves. This holds on RabbitMQ 3.x and 4.x.",
        (
            (
                f"{DELIVERY}/test_api.py",
                "test_with_the_broker_down_a_write_succeeds_and_its_event_waits_in_the_outbox",
            ),
            (f"{DELIVERY}/test_api.py", "test_with_the_database_down_the_api_answers_503_fast"),
            (
                f"{DELIVERY}/test_consumers.py",
                "test_with_the_database_down_an_event_is_neither_acked_nor_dead_lettered",
            ),
            (f"{KIT}/test_outbox_relay.py", "test_events_wait_in_the_outbox_while_the_broker_is_away"),
            (f"{DELIVERY}/test_readiness.py", "test_readiness_fails_while_the_broker_is_cut_and_recovers"),
            (f"{DELIVERY}/test_readiness.py", "test_readiness_fails_while_the_database_is_cut_and_recovers"),
            (f"{FAULTS}/test_broker_cut.py", "test_broker_cut_while_orders_are_placed_and_paid"),
            (f"{FAULTS}/test_database_cut.py", "test_database_cut_while_messages_are_consumed"),
            (f"{KIT}/test_outages.py", "test_an_outage_pauses_the_consumer_and_no_message_is_counted_away"),
            (f"{FAULTS}/test_database_refusals.py", "test_database_not_accepting_connections"),
            (f"{FAULTS}/test_database_refusals.py", "test_database_connection_limit_reached"),
            (f"{FAULTS}/test_database_refusals.py", "test_database_becomes_read_only"),
            (f"{FAULTS}/test_database_refusals.py", "test_database_server_restarts"),
        ),
    ),
    Guarantee(
        "SIGTERM: in-flight requests and messages finish or are returned to the queue; nothing is lost.",
        (
            (f"{KIT}/test_inbox_consumer.py", "test_stopping_lets_the_message_in_hand_finish_and_acks_it"),
            (f"{FAULTS}/test_service_kill.py", "test_delivery_stopped_with_sigterm_mid_stream_and_restarted"),
            (f"{FAULTS}/test_service_kill.py", "test_delivery_killed_with_sigkill_mid_stream_and_restarted"),
        ),
    ),
    Guarantee(
        "Every route checks the caller's role and, for one object, that it is theirs; input models forbid "
        "unknown fields; bodies, lists and rates are bounded.",
        (
            (f"{DELIVERY}/test_api.py", "test_a_caller_without_a_valid_token_is_401"),
            (f"{DELIVERY}/test_api.py", "test_a_customer_is_forbidden_everywhere"),
            (f"{DELIVERY}/test_api.py", "test_a_courier_sees_and_finishes_only_their_own_deliveries"),
            (f"{DELIVERY}/test_api.py", "test_a_body_over_the_limit_is_413"),
            (f"{DELIVERY}/test_api.py", "test_list_parameters_out_of_bounds_are_refused"),
            (f"{ORDERS}/test_api.py", "test_another_customers_order_does_not_exist_for_them"),
            (f"{ORDERS}/test_api.py", "test_a_manager_sees_and_cancels_any_order_but_cannot_place_or_pay"),
            (f"{ORDERS}/test_api.py", "test_out_of_range_list_parameters_are_refused"),
            ("tests/integration/web/test_access.py", "test_a_page_of_another_role_is_refused_with_403"),
            (f"{FAULTS}/test_poison.py", "test_hostile_messages_are_dead_lettered_while_good_ones_flow"),
        ),
        folder="tests/security",
    ),
)

# What the scenarios found in the code, and how it was fixed.
FIXES = (
    (
        "packages/kit/src/deliveryhub_kit/consumer/runner.py, failures.py; deliveryhub_contracts/events.py",
        "Whatever a message's bytes raise while it is read or applied ends the message: any exception "
        "is judged (outage, retry, poison) and the message settled accordingly.",
        "An `order.created` whose `version` had 5,000 digits made `json.loads` raise a plain ValueError "
        "that nothing caught: the delivery consumer dead-lettered none of the 2,100 bad messages sent to "
        "the exchange and stopped consuming, while the legacy queues' 770 went through.",
    ),
    (
        "packages/kit/src/deliveryhub_kit/failures.py, db.py",
        'Failures are judged by the database\'s SQLSTATE class: a server that answers "not now" (55000, '
        "53300, 57P0x, 25006, 53xxx) is an outage like a dropped line; the pool drops its connections "
        "after a shutdown, restart or read-only answer.",
        "A database refusing connections (ALLOW_CONNECTIONS false) made every event a dead letter as "
        "`DBAPIError`: the outage rule knew only a lost TCP connection.",
    ),
    (
        "packages/kit/src/deliveryhub_kit/consumer/runner.py, topology.py, rabbitmq.py",
        "Through an outage a consumer holds what it has and returns nothing (given back once if it "
        "lasts), returns are `basic.nack`, and every quorum queue declares its delivery limit.",
        "Returning the messages in hand every 0.5 to 15 s while the database was away counted each return "
        "on a quorum queue: on RabbitMQ 4 a long outage would have become dead letters; a test queue "
        "with a limit of 3 shows nothing is counted away now.",
    ),
    (
        "packages/kit/src/deliveryhub_kit/amqp_properties.py",
        "Message properties pamqp cannot read (a timestamp header past the year 9999, a message id or "
        "header name that is not UTF-8) are read as integers or with replacement characters.",
        "Such a message, which RabbitMQ passes on, made aio-pika close the consumer's whole connection "
        "at every delivery: the consumer never got past it (2,113 of 3,150 dead letters, then nothing).",
    ),
    (
        "packages/kit/src/deliveryhub_kit/dead_letters.py, topology.py",
        "The dead-letter queues have no delivery limit, and listing reads a body that is not JSON.",
        "`dead-letters list` crashed on the 5,000-digit dead letter, and on RabbitMQ 4 each listing "
        "counted a delivery of every dead letter: after 20 listings a quorum queue drops them.",
    ),
    (
        "packages/kit/src/deliveryhub_kit/consumer/runner.py",
        "The pause before a message is returned to the queue while the database is away now grows with "
        "how long the outage has lasted (at least 0.5 s, at most 15 s), not with a counter that every "
        "message in hand bumped.",
        "With 32 messages prefetched, one outage pushed the counter to the 15 s cap within milliseconds: "
        "a 3 s database cut held consumption for 13.3 s after the database was back. Now the same cut "
        "resumes within about 2 s, still without a hot requeue loop.",
    ),
    (
        "packages/kit/src/deliveryhub_kit/consumer/runner.py, settings.py; both services' consumers.py",
        "A consumer dead-letters a message larger than `MAX_MESSAGE_BYTES` (default 1 MiB, the same "
        "as the largest request body) at once, unread, as `MessageTooLarge`.",
        "A 5 MB `order.created` that was otherwise valid was applied: a delivery with a 5 MB address "
        "appeared for an order nobody placed. Bodies are bounded on HTTP; now on the broker too.",
    ),
)


def test_names(path: Path) -> dict[str, str]:
    """Each test function of a file, by name, with its node id within the file (Class::name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            found[node.name] = node.name
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test_"):
                    found[item.name] = f"{node.name}::{item.name}"
    return found


def node_id(file: str, function: str) -> str | None:
    path = ROOT / file
    if not path.is_file():
        return None
    within = test_names(path).get(function)
    return f"{file}::{within}" if within else None


def tests_in(folder: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}::{within}"
        for path in sorted((ROOT / folder).glob("test_*.py"))
        for within in test_names(path).values()
    ]


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def seconds(value: object) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "—"


def figure(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def ordered(scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    """By scenario in the order above (others after), and by broker within a scenario."""

    def place(record: dict[str, Any]) -> tuple[int, str, str]:
        name = record["scenario"]
        rank = SCENARIO_ORDER.index(name) if name in SCENARIO_ORDER else len(SCENARIO_ORDER)
        return rank, name, record.get("broker", "")

    return sorted(scenarios.values(), key=place)


def render(document: dict[str, Any]) -> tuple[str, list[str]]:
    """The Markdown, and the cited tests that could not be found."""
    runs: dict[str, dict[str, Any]] = document["runs"]
    records = ordered(document["scenarios"])
    held = sum(record["result"] == "held" for record in records)
    total = sum(record.get("duration_seconds") or 0 for record in records)
    stale = [
        f"{record['scenario']} on {record.get('broker', '?')}"
        for record in records
        if record.get("run_id") != runs.get(record.get("broker", ""), {}).get("run_id")
    ]
    invariant: list[str] = next((record["invariant"] for record in records if record.get("invariant")), [])

    lines = [
        "# Reliability",
        "",
        "What happens to Delivery Hub when its broker or database goes away, when its processes are",
        "killed, when it runs twice, and when it is fed poison, as measured by `tests/faults`. Each scenario",
        "runs the real services (in the test process, or as uvicorn processes started the way",
        "`deliveryhub up` starts them) on the real PostgreSQL and RabbitMQ, on databases and broker names",
        "of its own. Every line from a service to a server passes through a small TCP proxy",
        "(`tests/support/proxy.py`) that the scenario cuts, mends, or freezes at a chosen AMQP frame, so the",
        "shared servers themselves are never stopped.",
        "",
        "This file is generated: `uv run pytest tests/faults -q` records each scenario's figures in",
        "`test-results/reliability.json`, and `uv run python scripts/reliability_report.py` writes this file",
        "from them. Do not edit it by hand.",
        "",
        "## The runs",
        "",
        "Every scenario runs on each RabbitMQ series the system supports: the machine's 3.x and a 4.x",
        "beside it (`scripts/rabbitmq4.sh`).",
        "",
        *[
            f"- On {broker}: run `{run['run_id']}`, started {run['run_started_at']} on commit "
            f"`{run['commit']}` (with the working tree's changes), Python {run['python']}, "
            f"{run['cpus']} CPUs."
            for broker, run in sorted(runs.items())
        ],
        f"- {held} of {len(records)} scenario runs held; together they took {total:.0f} s, setup included.",
    ]
    if stale:
        lines.append(f"- Not from this run (kept from an earlier one): {', '.join(stale)}.")
    lines += [
        "",
        "## Scenarios",
        "",
        "| Scenario | Broker | What was broken | For how long | Orders | What was checked | Result "
        "| Converged in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        checked = "; ".join([*record["checked"], "the invariant"])
        result = "held" if record["result"] == "held" else f"**{record['result'].upper()}**"
        lines.append(
            f"| {cell(record['title'] or record['scenario'])} | {cell(record.get('broker') or '—')} "
            f"| {cell(record['fault'])} | {seconds(record['fault_seconds'])} | {record['orders']} "
            f"| {cell(checked)} | {result} | {seconds(record['converge_seconds'])} |"
        )
    lines += [
        "",
        "*For how long*: from the fault's start until it was mended or the service was back (for the",
        "replicas, how long the load ran; poison messages have no duration). *Converged in*: from the",
        "later of the fault's end and the last write until the invariant held, polled with a deadline,",
        "never waited for with a fixed sleep.",
        "",
        "### The invariant every scenario ends with",
        "",
        "For the N orders the scenario placed:",
        "",
        *[f"{number}. {what[:1].upper()}{what[1:]}." for number, what in enumerate(invariant, start=1)],
        "",
        "### Figures",
        "",
    ]
    for record in records:
        lines += [
            f"**{record['title'] or record['scenario']}** on {record.get('broker') or '—'} "
            f"(`{record['test']}`, {seconds(record.get('duration_seconds'))})",
            "",
        ]
        lines += [f"- {name}: {figure(value)}" for name, value in record["figures"].items()]
        if record.get("failure"):
            lines.append(f"- failure: {record['failure']}")
        lines.append("")

    missing: list[str] = []
    lines += ["## The guarantees and the tests that prove them", ""]
    lines += [
        "The guarantees are those of the design; each test named here breaks or probes what it says.",
        "",
    ]
    for number, guarantee in enumerate(GUARANTEES, start=1):
        lines += [f"### {number}. {guarantee.says}", ""]
        for file, function in guarantee.proved_by:
            found = node_id(file, function)
            if found is None:
                missing.append(f"{file}::{function}")
            lines.append(f"- `{found or f'{file}::{function}'}`")
        if guarantee.folder is not None:
            in_folder = tests_in(guarantee.folder)
            lines += [f"- `{test}`" for test in in_folder] or [
                f"- `{guarantee.folder}/` (no tests there yet)"
            ]
        lines.append("")

    lines += ["## What the scenarios found and how it was fixed", ""]
    lines += ["| File | Fix | Why |", "|---|---|---|"]
    lines += [f"| {cell(file)} | {cell(what)} | {cell(why)} |" for file, what, why in FIXES]
    lines.append("")
    return "\n".join(lines), missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the figures of the last run")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write the Markdown")
    options = parser.parse_args(argv)
    if not options.results.is_file():
        print(f"no results at {options.results}: run `uv run pytest tests/faults` first", file=sys.stderr)
        return 2
    document = json.loads(options.results.read_text(encoding="utf-8"))
    markdown, missing = render(document)
    if missing:
        print("these cited tests do not exist:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(markdown, encoding="utf-8")
    print(
        f"wrote {options.output.relative_to(ROOT) if options.output.is_relative_to(ROOT) else options.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
