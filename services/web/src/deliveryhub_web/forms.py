"""Forms as the console takes them: only with this browser's CSRF token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from deliveryhub_web.cookies import csrf_binding
from deliveryhub_web.runtime import WebRuntime

CSRF_FIELD = "csrf_token"


class CsrfRejected(Exception):
    """A form came without this browser's token."""


class CheckedForm:
    """A submitted form whose CSRF token has been checked."""

    def __init__(self, data: FormData) -> None:
        self._data = data

    def text(self, name: str) -> str:
        value = self._data.get(name)
        return value if isinstance(value, str) else ""

    def list(self, name: str) -> list[str]:
        return [value for value in self._data.getlist(name) if isinstance(value, str)]


async def _checked_form(request: Request) -> CheckedForm:
    data = await request.form(max_files=0, max_fields=1000)
    runtime: WebRuntime = request.app.state.runtime
    assert runtime.csrf is not None
    token = data.get(CSRF_FIELD)
    if not runtime.csrf.is_valid(csrf_binding(request), token if isinstance(token, str) else None):
        raise CsrfRejected
    return CheckedForm(data)


Form = Annotated[CheckedForm, Depends(_checked_form)]
