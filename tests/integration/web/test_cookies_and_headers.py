"""What the console tells browsers to keep: `__Host-` cookies, and HTTPS only once it is on HTTPS."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from deliveryhub_kit.identity import Role
from tests.support.web import RunningWeb, StartWeb

pytestmark = pytest.mark.integration


def cookies_set(response: httpx.Response) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            found[name] = {key: str(value) for key, value in morsel.items() if value}
    return found


def plain_http(web: RunningWeb) -> httpx.AsyncClient:
    """A browser reaching the console over plain HTTP."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=web.app), base_url="http://testserver")


async def test_every_cookie_over_https_is_a_host_cookie(web: RunningWeb) -> None:
    browser = await web.browser()
    user = await web.add_user(Role.CUSTOMER)

    set_by_pages = cookies_set(await browser.get("/login")) | cookies_set(await browser.sign_in(user.email))

    assert set(set_by_pages) == {"__Host-dh_visitor", "__Host-dh_session"}
    for name, attributes in set_by_pages.items():
        assert attributes.get("secure"), name
        assert attributes.get("path") == "/", name
        assert "domain" not in attributes, name
    # The cookies are read back under those names: the session opens the customer's page.
    assert await browser.where_home_is() == "/orders"


async def test_https_is_insisted_on_only_where_the_console_is_served_over_it(web: RunningWeb) -> None:
    secure = await (await web.browser()).get("/login")
    async with plain_http(web) as http:
        plain = await http.get("/login")

    assert secure.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in plain.headers


async def test_behind_plain_http_the_cookies_keep_their_plain_names(start_web: StartWeb) -> None:
    web = await start_web(cookie_secure=False)
    async with plain_http(web) as http:
        response = await http.get("/login")

    assert set(cookies_set(response)) == {"dh_visitor"}
    assert "secure" not in cookies_set(response)["dh_visitor"]
