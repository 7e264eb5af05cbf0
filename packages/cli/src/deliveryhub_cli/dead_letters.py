"""`deliveryhub dead-letters list|replay|purge`: the operator's view of the dead-letter queues."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import aio_pika

from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS
from deliveryhub_kit.dead_letters import DeadLetter, DeadLetterBox, dead_letter_queues


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _table(letters: list[DeadLetter]) -> str:
    rows = [("QUEUE", "ID", "TYPE", "SUBJECT", "REASON", "TRIES", "AGE")]
    for letter in letters:
        reason = f"{letter.error_class}: {letter.reason}"
        rows.append(
            (
                letter.queue,
                letter.message_id,
                letter.type,
                letter.subject,
                reason if len(reason) <= 70 else reason[:67] + "...",
                str(letter.attempts),
                _age(letter.age_seconds),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def run_dead_letters(
    *,
    action: str,
    amqp_url: str,
    broker_prefix: str,
    legacy_prefix: str,
    queue: str | None,
    message_id: str | None = None,
    everything: bool = False,
    assume_yes: bool = False,
    ask: Callable[[str], str] = input,
) -> int:
    queues = (
        [queue]
        if queue
        else dead_letter_queues(broker_prefix, [DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS], legacy_prefix)
    )
    if action == "replay" and not (message_id or everything):
        print("deliveryhub dead-letters replay: say which, with --id ID or --all", file=sys.stderr)
        return 2
    if action == "purge" and not assume_yes:
        answer = ask(f"Delete every dead letter in {', '.join(queues)}? Type 'yes' to confirm: ")
        if answer.strip().lower() != "yes":
            print("nothing deleted")
            return 1
    return asyncio.run(_run(action, amqp_url, queues, message_id))


async def _run(action: str, amqp_url: str, queues: list[str], message_id: str | None) -> int:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        box = DeadLetterBox(connection)
        if action == "list":
            letters = await box.browse(queues)
            print(_table(letters) if letters else "no dead letters")
            return 0
        if action == "replay":
            count = await box.replay(queues, {message_id} if message_id else None)
            print(f"replayed {count} dead letter{'s' if count != 1 else ''}")
            return 0 if count or not message_id else 1
        count = await box.purge(queues)
        print(f"deleted {count} dead letter{'s' if count != 1 else ''}")
        return 0
