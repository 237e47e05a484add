"""The operator's console (issue 12, first part): sign-in, the session cookie, CSRF on every form, the
Content-Security-Policy, and the workers page, over HTTP and in real Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy.engine import make_url

from api.console.web import CONTENT_SECURITY_POLICY
from tests import secret_scan, services
from tests.browser import offline_page

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAGE_TIMEOUT_MS = 20_000


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


async def _screenshot(page: Page, path: Path) -> None:
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a page that rendered, not a blank one


def _csrf(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def _signed_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/ui/login")
    return await client.post("/ui/login", data={"csrf": _csrf(form), "token": token})


async def test_pages_need_a_session_and_root_leads_to_the_console(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        root = await client.get("/")
        assert root.status_code == 303 and root.headers["location"] == "/ui"
        for path in ("/ui", "/ui/", "/ui/workers", "/ui/connections", "/ui/connections/new", "/ui/tests/x"):
            page = await client.get(path, follow_redirects=True)
            assert page.url.path == "/ui/login", path
        # No session: a form post is refused before anything is read.
        for path in ("/ui/logout", "/ui/connections/new", "/ui/connections/c/test"):
            assert (await client.post(path, data={"csrf": "x"})).headers["location"] == "/ui/login"
        assert (await client.get("/ui/tests/x/state")).headers["location"] == "/ui/login"


async def test_sign_in_sets_a_strict_httponly_cookie_and_sign_out_ends_it(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        answer = await _signed_in(client, stack.secrets.admin_token)
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/connections"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("airlock_console="))
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/ui"} <= flags
        assert "secure" not in flags  # plain HTTP here; over HTTPS the cookie is Secure
        assert stack.secrets.admin_token not in cookie

        workers = await client.get("/ui/workers")
        assert workers.status_code == 200 and "<h1>Workers</h1>" in workers.text
        assert workers.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert workers.headers["cache-control"] == "no-store"

        # Sign-out is a form post: without the session's CSRF token it does nothing.
        assert (await client.post("/ui/logout", data={"csrf": "forged"})).status_code == 403
        assert (await client.post("/ui/logout")).status_code == 403
        assert (await client.get("/ui/workers")).status_code == 200
        out = await client.post("/ui/logout", data={"csrf": _csrf(workers)})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert (await client.get("/ui/workers")).headers["location"] == "/ui/login"


async def test_a_wrong_token_or_a_missing_csrf_token_signs_nobody_in(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        wrong = await _signed_in(client, "not-the-token")
        assert wrong.status_code == 401 and "That is not the API token." in wrong.text
        assert "not-the-token" not in wrong.text
        assert wrong.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

        # The right token without the form's CSRF token (a cross-site form post): refused.
        await client.get("/ui/login")
        forged = await client.post("/ui/login", data={"token": stack.secrets.admin_token})
        assert forged.status_code == 403
        bare = httpx.AsyncClient(base_url=stack.api.url)
        async with bare:
            cross_site = await bare.post("/ui/login", data={"csrf": "x", "token": stack.secrets.admin_token})
        assert cross_site.status_code == 403
        for answer in (wrong, forged, cross_site):
            assert not any(c.startswith("airlock_console=") for c in answer.headers.get_list("set-cookie"))


async def test_a_forged_or_stale_session_cookie_is_refused(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        client.cookies.set("airlock_console", "eyJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.", path="/ui")
        assert (await client.get("/ui/workers")).status_code == 303
    # An API token is not a console session either.
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        client.cookies.set("airlock_console", stack.secrets.admin_token, path="/ui")
        assert (await client.get("/ui/workers")).status_code == 303


async def test_the_workers_page_shows_live_workers_and_credentials_in_chromium(
    stack, browser: Browser, tmp_path: Path
) -> None:
    queue = await stack.serve_queue("console")
    offline = await offline_page(browser)
    page = offline.page
    await page.goto(f"{stack.api.url}/")
    # Keyboard alone: the token field has the focus, Enter submits.
    await expect(page.get_by_label("API token")).to_be_focused(timeout=PAGE_TIMEOUT_MS)
    await page.keyboard.type(stack.secrets.admin_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Connections")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    await page.get_by_role("link", name="Workers").click()
    await expect(page.get_by_role("heading", name="Workers", exact=True)).to_be_visible(
        timeout=PAGE_TIMEOUT_MS
    )
    await expect(page.get_by_role("heading", name=queue)).to_be_visible()
    credentials = page.get_by_role("table").last
    await expect(credentials).to_contain_text("console-0")
    await expect(credentials).to_contain_text("active")

    html = await page.content()
    assert not secret_scan.SESSION.scan(html, "console: /ui/workers")
    await _screenshot(page, tmp_path / "workers.png")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API token")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    await page.goto(f"{stack.api.url}/ui/workers")
    await expect(page.get_by_label("API token")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    offline.assert_stayed_home()


async def _sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/ui/login")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Connections")).to_be_visible(timeout=PAGE_TIMEOUT_MS)


async def test_a_connection_made_and_tested_from_the_form_shows_its_test_live(
    stack, browser: Browser, tmp_path: Path
) -> None:
    queue = await stack.serve_queue("console")
    pg = make_url(services.postgres_url())
    offline = await offline_page(browser)
    page = offline.page
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)

    # A new PostgreSQL connection, saved from the form (the password field stays empty on screen).
    await page.get_by_role("link", name="New connection").click()
    await page.get_by_label("Connection id").fill("warehouse")
    await page.get_by_label("Type").select_option("postgres")
    await page.get_by_label("Host").fill(pg.host or "127.0.0.1")
    await page.get_by_label("Port").fill(str(pg.port))
    await page.get_by_label("Schema / database").fill(pg.database or "")
    await page.get_by_label("Login").fill(pg.username or "")
    password = secret_scan.password()
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Test on queue").select_option(queue)
    await page.get_by_role("button", name="Save").click()
    row = page.get_by_role("row", name=re.compile("warehouse"))
    await expect(row).to_contain_text("never tested", timeout=PAGE_TIMEOUT_MS)
    await _screenshot(page, tmp_path / "connections.png")

    # Test it from its row: the test page follows it to success, without a reload.
    await row.get_by_label("Queue for warehouse").select_option(queue)
    await row.get_by_role("button", name="Test warehouse").click()
    state = page.locator("[data-field=state]")
    await expect(state).to_have_text("success", timeout=PAGE_TIMEOUT_MS)
    await expect(page.locator("[data-field=worker]")).not_to_have_text("–")  # the worker that ran it
    await expect(page.locator("[data-field=message]")).not_to_be_empty()
    await _screenshot(page, tmp_path / "test.png")
    assert not secret_scan.SESSION.scan(await page.content(), "console: a test page")

    # Unsaved fields with a role the server refuses: failed, with the driver's message.
    await page.get_by_role("link", name="Connections", exact=True).click()
    await page.get_by_role("link", name="New connection").click()
    await page.get_by_label("Type").select_option("postgres")
    await page.get_by_label("Host").fill(pg.host or "127.0.0.1")
    await page.get_by_label("Port").fill(str(pg.port))
    await page.get_by_label("Login").fill("airlock_nobody")
    await page.get_by_label("Password").fill(secret_scan.password())
    await page.get_by_label("Test on queue").select_option(queue)
    await page.get_by_role("button", name="Test").click()
    await expect(state).to_have_text("failed", timeout=PAGE_TIMEOUT_MS)
    await expect(page.locator("[data-field=message]")).to_contain_text("airlock_nobody")
    assert not secret_scan.SESSION.scan(await page.content(), "console: a failed test page")
    offline.assert_stayed_home()
