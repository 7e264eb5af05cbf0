"""The console's guards without I/O: signed values, CSRF tokens, flash cookies, the sign-in rate limit."""

from __future__ import annotations

import base64
import gc
import json
import tracemalloc

import pytest

from deliveryhub_web.security import (
    Csrf,
    Flash,
    FlashCodec,
    RateLimiter,
    Signer,
    SignInGuard,
)

SECRET = "a-secret-of-the-console-that-is-long-enough"  # noqa: S105 (made up for the tests)
OTHER_SECRET = "another-secret-of-another-console-entirely"  # noqa: S105


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tampered(text: str) -> str:
    """The same text with one character changed, as a curious user would edit it."""
    position = len(text) // 2
    replacement = "A" if text[position] != "A" else "B"
    return text[:position] + replacement + text[position + 1 :]


# Values a browser or an attacker may send instead of a signed one.
GARBAGE = [
    "",
    ".",
    "no-signature-at-all",
    "value.",
    ".digest-without-value",
    "value.not-the-digest",
    "value.дайджест-не-ascii",
    "значение.é",
    "\x00\x01.\x02",
    "a" * 5000,
]


def test_a_signed_value_comes_back_unchanged() -> None:
    signer = Signer(SECRET, "flash")

    assert signer.unsign(signer.sign("order 42: paid")) == "order 42: paid"


def test_a_value_with_dots_comes_back_unchanged() -> None:
    signer = Signer(SECRET, "flash")

    assert signer.unsign(signer.sign("a.b.c")) == "a.b.c"


@pytest.mark.parametrize("part", ["value", "digest"])
def test_a_tampered_signed_value_is_refused(part: str) -> None:
    signer = Signer(SECRET, "flash")
    value, _, digest = signer.sign("customer-1").rpartition(".")
    forged = f"{tampered(value)}.{digest}" if part == "value" else f"{value}.{tampered(digest)}"

    assert signer.unsign(forged) is None


def test_a_value_signed_for_one_purpose_is_refused_for_another() -> None:
    signed = Signer(SECRET, "flash").sign("customer-1")

    assert Signer(SECRET, "csrf").unsign(signed) is None


def test_a_value_signed_with_another_secret_is_refused() -> None:
    signed = Signer(OTHER_SECRET, "flash").sign("customer-1")

    assert Signer(SECRET, "flash").unsign(signed) is None


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_instead_of_a_signed_value_is_refused(garbage: str) -> None:
    assert Signer(SECRET, "flash").unsign(garbage) is None


def test_a_csrf_token_is_accepted_for_its_own_binding() -> None:
    csrf = Csrf(SECRET)

    assert csrf.is_valid("session-of-anna", csrf.token_for("session-of-anna"))


def test_a_csrf_token_is_the_same_for_a_binding_each_time_it_is_asked() -> None:
    assert Csrf(SECRET).token_for("visitor-1") == Csrf(SECRET).token_for("visitor-1")


def test_a_csrf_token_for_one_binding_is_refused_for_another() -> None:
    csrf = Csrf(SECRET)

    assert not csrf.is_valid("session-of-boris", csrf.token_for("session-of-anna"))
    assert not csrf.is_valid("visitor-2", csrf.token_for("visitor-1"))


def test_a_csrf_token_made_with_another_secret_is_refused() -> None:
    assert not Csrf(SECRET).is_valid("session-of-anna", Csrf(OTHER_SECRET).token_for("session-of-anna"))


def test_a_tampered_csrf_token_is_refused() -> None:
    csrf = Csrf(SECRET)

    assert not csrf.is_valid("session-of-anna", tampered(csrf.token_for("session-of-anna")))


def test_a_signed_flash_is_no_csrf_token() -> None:
    """Two purposes under one secret: a value one of them signs is worthless to the other."""
    csrf = Csrf(SECRET)
    flash_digest = Signer(SECRET, "flash").digest("session-of-anna")

    assert not csrf.is_valid("session-of-anna", flash_digest)


TOKEN_OF_BINDING = Csrf(SECRET).token_for("binding")


@pytest.mark.parametrize(
    ("binding", "token"),
    [
        (None, TOKEN_OF_BINDING),
        ("", TOKEN_OF_BINDING),
        ("binding", None),
        ("binding", ""),
        (None, None),
        ("", ""),
    ],
)
def test_a_missing_binding_or_token_is_refused(binding: str | None, token: str | None) -> None:
    assert not Csrf(SECRET).is_valid(binding, token)


@pytest.mark.parametrize("garbage", GARBAGE)
def test_a_garbage_csrf_token_is_refused(garbage: str) -> None:
    assert not Csrf(SECRET).is_valid("session-of-anna", garbage)


@pytest.mark.parametrize(
    "flash",
    [
        Flash("Order placed.", "success", "0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d"),
        Flash("Not possible now: этот заказ уже оплачен."),
        Flash('Quotes " and ; and = and \\ survive', "error", None),
    ],
)
def test_a_flash_message_survives_the_cookie(flash: Flash) -> None:
    codec = FlashCodec(SECRET)

    assert codec.decode(codec.encode(flash)) == flash


def test_a_flash_cookie_is_plain_ascii_that_a_cookie_can_hold() -> None:
    cookie = FlashCodec(SECRET).encode(Flash("Заказ оплачен.", "success", "order-1"))

    assert cookie.isascii()
    assert not any(character in cookie for character in ' ;,"\\')


def test_a_tampered_flash_cookie_shows_nothing() -> None:
    codec = FlashCodec(SECRET)

    assert codec.decode(tampered(codec.encode(Flash("Paid.", "success", "order-1")))) is None


def test_a_flash_cookie_of_another_secret_shows_nothing() -> None:
    cookie = FlashCodec(OTHER_SECRET).encode(Flash("Courier appointed.", "success"))

    assert FlashCodec(SECRET).decode(cookie) is None


def test_a_flash_cookie_whose_message_was_swapped_shows_nothing() -> None:
    codec = FlashCodec(SECRET)
    _, _, digest = codec.encode(Flash("Not possible now.", "error")).rpartition(".")
    swapped = base64.urlsafe_b64encode(json.dumps({"m": "Paid.", "k": "success", "t": None}).encode())

    assert codec.decode(f"{swapped.decode()}.{digest}") is None


def test_the_refusals_of_a_bulk_action_survive_the_cookie_each_reason_written_once() -> None:
    codec = FlashCodec(SECRET)
    reason = "Not possible now: a courier can be appointed only to an activated delivery; this is canceled."
    refusals = {f"{number:08d}-0000-4000-8000-000000000000": reason for number in range(20)}
    flash = Flash("0 of 20 appointed. 20 refused: see why next to each.", "error", None, refusals)

    cookie = codec.encode(flash)

    assert codec.decode(cookie) == flash
    assert len(cookie) < 2000


def test_refusals_too_many_for_a_cookie_leave_the_message_alone() -> None:
    codec = FlashCodec(SECRET)
    refusals = {f"{number:036d}": f"reason number {number} " * 5 for number in range(100)}

    cookie = codec.encode(Flash("0 of 100 appointed.", "error", None, refusals))

    assert len(cookie) < 4000
    assert codec.decode(cookie) == Flash("0 of 100 appointed.", "error", None, {})


@pytest.mark.parametrize("garbage", [None, *GARBAGE])
def test_a_garbage_flash_cookie_shows_nothing(garbage: str | None) -> None:
    assert FlashCodec(SECRET).decode(garbage) is None


@pytest.mark.parametrize("inside", [b"not json", b"[1, 2]", b'{"m": "no kind"}', b'"a string"', b"\xff\xfe"])
def test_a_signed_cookie_that_is_no_flash_shows_nothing(inside: bytes) -> None:
    """Even a correctly signed value is shown only if it is the shape the console writes."""
    signed = Signer(SECRET, "flash").sign(base64.urlsafe_b64encode(inside).decode())

    assert FlashCodec(SECRET).decode(signed) is None


def test_the_attempts_within_the_limit_pass() -> None:
    limiter = RateLimiter(3, 60, clock=Clock())

    assert [limiter.attempt("email:anna@example.com") for _ in range(3)] == [None, None, None]


def test_the_attempt_after_the_limit_is_refused_with_the_seconds_to_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(3, 60, clock=clock)
    for _ in range(3):
        assert limiter.attempt("email:anna@example.com") is None
        clock.advance(5)

    assert limiter.attempt("email:anna@example.com") == pytest.approx(45)


def test_the_window_slides_one_attempt_at_a_time() -> None:
    clock = Clock()
    limiter = RateLimiter(3, 60, clock=clock)
    for _ in range(3):  # at 0, 10 and 20 seconds
        assert limiter.attempt("anna") is None
        clock.advance(10)

    clock.advance(29)  # 59 seconds after the first attempt
    assert limiter.attempt("anna") == pytest.approx(1)
    clock.advance(1)  # the first attempt has left the window
    assert limiter.attempt("anna") is None
    assert limiter.attempt("anna") == pytest.approx(10)  # the one at 10 seconds is next to leave
    clock.advance(10)
    assert limiter.attempt("anna") is None


def test_refused_attempts_do_not_extend_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 60, clock=clock)
    limiter.attempt("anna")
    limiter.attempt("anna")
    for _ in range(10):
        clock.advance(5)
        assert limiter.attempt("anna") is not None

    clock.advance(10)  # 60 seconds after the two counted attempts

    assert limiter.attempt("anna") is None


def test_each_key_has_its_own_limit() -> None:
    limiter = RateLimiter(2, 60, clock=Clock())
    limiter.attempt("email:anna@example.com")
    limiter.attempt("email:anna@example.com")

    assert limiter.attempt("email:anna@example.com") is not None
    assert limiter.attempt("email:boris@example.com") is None


def test_past_its_cap_the_limiter_forgets_the_key_unused_longest() -> None:
    clock = Clock()
    limiter = RateLimiter(1, 60, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        limiter.attempt(key)
        clock.advance(1)
    limiter.attempt("a")  # refused: "a" has been seen most recently now, "b" is the idlest

    limiter.attempt("d")

    assert len(limiter) == 3
    assert limiter.attempt("b") is None  # forgotten, so counted afresh
    assert limiter.attempt("a") is not None


def test_a_key_is_kept_as_a_small_digest_whatever_its_length() -> None:
    limiter = RateLimiter(5, 60, clock=Clock())
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for number in range(50):
            limiter.attempt(f"{number}:" + "x" * 1_000_000)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(limiter) == 50
    assert held - before < 100_000, f"{held - before} bytes held for 50 keys"


# Two failures per account and address a minute; 15 minutes for the backstop, which one address
# alone (30 failures in that time) never reaches.
BACKSTOP, BACKSTOP_WINDOW = 31, 900


def guard_of(clock: Clock) -> SignInGuard:
    return SignInGuard(2, 60, account_attempts=BACKSTOP, account_window_seconds=BACKSTOP_WINDOW, clock=clock)


def test_a_sign_in_is_counted_per_address_first_and_a_refused_one_nowhere_else() -> None:
    guard = guard_of(Clock())  # 8 attempts per address, 2 failures per account there
    for number in range(8):
        assert guard.before(f"user{number}@example.com", "10.0.0.1") is None

    assert guard.before("anna@example.com", "10.0.0.1") is not None
    assert len(guard.account_at_address) == 0
    assert len(guard.account) == 0


def test_failures_at_one_address_do_not_lock_the_account_at_another() -> None:
    guard = guard_of(Clock())
    for _ in range(2):
        assert guard.before("manager@example.com", "203.0.113.9") is None
        guard.failed("manager@example.com", "203.0.113.9")

    assert guard.before("manager@example.com", "203.0.113.9") is not None
    assert guard.before("manager@example.com", "198.51.100.4") is None


def test_a_success_clears_the_failures_at_that_address_and_successes_never_count() -> None:
    guard = guard_of(Clock())
    guard.before("anna@example.com", "10.0.0.1")
    guard.failed("anna@example.com", "10.0.0.1")
    guard.before("anna@example.com", "10.0.0.1")
    guard.succeeded("anna@example.com", "10.0.0.1")
    for _ in range(5):
        assert guard.before("anna@example.com", "10.0.0.1") is None
        guard.succeeded("anna@example.com", "10.0.0.1")
    guard.failed("anna@example.com", "10.0.0.1")

    assert guard.before("anna@example.com", "10.0.0.1") is None


def test_failures_spread_over_many_addresses_meet_the_slower_backstop() -> None:
    clock = Clock()
    guard = guard_of(clock)
    for number in range(BACKSTOP):
        address = f"10.0.{number // 2}.1"  # two failures from each, as many as one address may make
        assert guard.before("manager@example.com", address) is None
        guard.failed("manager@example.com", address)

    wait = guard.before("manager@example.com", "192.0.2.77")
    assert wait is not None
    assert wait > 60  # longer than one window: the backstop's own
    clock.advance(BACKSTOP_WINDOW)
    assert guard.before("manager@example.com", "192.0.2.77") is None


def test_one_address_alone_never_reaches_the_backstop() -> None:
    clock = Clock()
    guard = guard_of(clock)
    for _ in range(BACKSTOP * 2):
        while guard.before("manager@example.com", "203.0.113.9") is not None:
            clock.advance(1)
        guard.failed("manager@example.com", "203.0.113.9")

    assert guard.before("manager@example.com", "198.51.100.4") is None
