"""What `deliveryhub up` prints once the system answers, in either mode."""

from __future__ import annotations

from pathlib import Path

from deliveryhub_web.service import DEMO_ACCOUNTS
from deliveryhub_web.settings import WebSettings

DEMO_PASSWORD = WebSettings.model_fields["demo_password"].default


def print_welcome(bases: dict[str, str], *, legacy_prefix: str, embedded_in: Path | None = None) -> None:
    """Where everything is, the demo accounts, and how to stop."""
    print("\nDelivery Hub is up:")
    print(f"  console   {bases['web']}")
    for name in ("orders", "delivery"):
        print(f"  {name:9} {bases[name]}   (API docs: {bases[name]}/docs)")
    if legacy_prefix:
        print(f"  legacy    queues {legacy_prefix}order_created_queue, {legacy_prefix}order_paid_queue")
    if embedded_in is not None:
        print(
            f"  embedded  one process; SQLite files and the in-process broker's messages in "
            f"{embedded_in}/ (kept; --reset starts clean)"
        )
    print(f"\nDemo accounts (password: {DEMO_PASSWORD}):")
    for account in DEMO_ACCOUNTS:
        print(f"  {account.role.value:9} {account.email}")
    print("\nTry it:  deliveryhub demo            (the whole story over HTTP)")
    print("         deliveryhub token --role manager")
    print("Press Ctrl-C to stop.", flush=True)
