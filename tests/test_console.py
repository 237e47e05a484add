"""The operator's console (issue 12, first part): sign-in, the session cookie, CSRF on every form, the
Content-Security-Policy, and the workers page, over HTTP and in real Chromium."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.requests import Request

from api.console.session import SESSION_COOKIE, open_session, read_session
from api.console.web import CONTENT_SECURITY_POLICY
from api.db.models import ConnectionTest, Trigger
from api.db.session import sync_url
from tests import secret_scan, services
from tests.browser import offline_page
from tests.stack import Stack, stack_settings
from tests.test_triggers import start_triggerer

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


def _write(database_url: str, *rows: object) -> None:
    """Rows a request cannot make on demand, written behind the API's back."""
    engine = create_engine(sync_url(database_url), connect_args={"timeout": 30})
    with Session(engine) as db, db.begin():
        db.add_all(rows)
    engine.dispose()


async def _seed(database_url: str, *rows: object) -> None:
    # In a thread: the API serves from this event loop, and a write it has begun must be able to end
    # while this one waits for SQLite's lock.
    await asyncio.to_thread(_write, database_url, *rows)


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
    await page.get_by_label("Database").fill(pg.database or "")
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
    await expect(page.locator("[data-field=worker]")).not_to_have_text(
        "\N{EN DASH}"
    )  # the worker that ran it
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

    # Both in the history, newest first; filtered by state, the failed one alone.
    await page.get_by_role("link", name="Tests", exact=True).click()
    rows = page.get_by_role("row").filter(has=page.locator("td"))
    await expect(rows).to_have_count(2, timeout=PAGE_TIMEOUT_MS)
    await expect(rows.first).to_contain_text("failed")
    await expect(rows.last).to_contain_text("warehouse")
    await page.get_by_label("State").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1, timeout=PAGE_TIMEOUT_MS)
    await expect(rows.first).to_contain_text("unsaved")
    await page.get_by_label("State").select_option("any")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(2, timeout=PAGE_TIMEOUT_MS)
    offline.assert_stayed_home()


async def test_a_queue_with_tests_waiting_and_no_live_worker_is_flagged(stack, database_url: str) -> None:
    # A test left pending on a queue whose workers are gone (the API refuses new tests there).
    await _seed(
        database_url,
        ConnectionTest(id=str(uuid.uuid4()), state="pending", queue="orphaned", timeout=30, conn_type="tcp"),
    )
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        await _signed_in(client, stack.secrets.admin_token)
        workers = await client.get("/ui/workers")
    assert workers.status_code == 200 and 'class="alert"' in workers.text, workers.text
    alert = workers.text.split('class="alert"', 1)[1].split("</div>", 1)[0]
    assert (
        "Work waiting with no live worker" in alert and "<strong>orphaned</strong>: 1 test waiting" in alert
    )


async def test_a_worker_credential_added_and_revoked_from_the_console(
    stack, browser: Browser, tmp_path: Path
) -> None:
    offline = await offline_page(browser)
    page = offline.page
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)
    await page.get_by_role("link", name="Workers").click()
    await page.get_by_label("Name").fill("edge-console")
    await page.get_by_label("Queues (comma-separated)").fill("net-console, net-console-b")
    await page.get_by_role("button", name="Add worker").click()

    # Its environment, this once: the credential and the two queues' keys.
    env = page.get_by_label("Environment of edge-console")
    await expect(env).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    text = await env.input_value()
    token = re.search(r"^AIRLOCK_WORKER_TOKEN='(aw1\.edge-console\.[^']+)'$", text, re.MULTILINE)
    assert token and "AIRLOCK_QUEUES='net-console,net-console-b'" in text, text
    secret_scan.register(token.group(1), secret_scan.TOKEN)
    async with stack.client() as api:
        listed = (await api.get("/api/v2/workers")).json()["workers"]
    assert [w["queues"] for w in listed if w["name"] == "edge-console"] == [["net-console", "net-console-b"]]
    # Saved as a file, from the page: the same lines, for `airlock worker --env-file`.
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download edge-console.env").click()
    saved = await downloading.value
    assert saved.suggested_filename == "edge-console.env"
    assert Path(await saved.path()).read_text() == text

    # Never again: the workers page lists it without its credential.
    await page.get_by_role("link", name="Back to the workers").click()
    row = page.get_by_role("row", name=re.compile("edge-console"))
    await expect(row).to_contain_text("active", timeout=PAGE_TIMEOUT_MS)
    assert token.group(1) not in await page.content()

    # Revoke, after saying yes to the question.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.get_by_role("button", name="Revoke edge-console").click()
    await expect(row).to_contain_text("revoked", timeout=PAGE_TIMEOUT_MS)
    async with stack.client() as api:
        listed = (await api.get("/api/v2/workers")).json()["workers"]
    assert [w["revoked_at"] is not None for w in listed if w["name"] == "edge-console"] == [True]
    await _screenshot(page, tmp_path / "workers-revoked.png")
    offline.assert_stayed_home()


async def test_a_test_page_links_its_workflow_in_the_temporal_ui(make_stack, database_url: str) -> None:
    stack = await make_stack(temporal_ui_url="http://127.0.0.1:8233/")
    test_id = str(uuid.uuid4())
    await _seed(
        database_url, ConnectionTest(id=test_id, state="success", queue="q", timeout=30, conn_type="tcp")
    )
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        await _signed_in(client, stack.secrets.admin_token)
        shown = await client.get(f"/ui/tests/{test_id}")
        missing = await client.get(f"/ui/tests/{uuid.uuid4()}")
    link = f'href="http://127.0.0.1:8233/namespaces/default/workflows/connection-test-{test_id}"'
    assert shown.status_code == 200 and link in shown.text
    assert missing.status_code == 404 and "Not found" in missing.text


async def test_over_https_the_session_cookie_is_secure(make_stack) -> None:
    stack = await make_stack(tls=True)
    assert stack.api.url.startswith("https://") and stack.tls is not None
    async with httpx.AsyncClient(base_url=stack.api.url, verify=stack.tls.client_context()) as client:
        answer = await _signed_in(client, stack.secrets.admin_token)
        assert answer.status_code == 303, answer.text
        cookies = [c for c in answer.headers.get_list("set-cookie") if c.startswith("airlock_console=")]
        assert cookies and "secure" in {part.strip().lower() for part in cookies[0].split(";")}
        assert (await client.get("/ui/connections")).status_code == 200


async def _saved_postgres(stack: Stack, connection_id: str, **fields: object) -> None:
    """A connection to the shared PostgreSQL, saved through the API; ``fields`` override its own."""
    pg = make_url(services.postgres_url())
    own = {
        "conn_type": "postgres",
        "host": pg.host,
        "port": pg.port,
        "login": pg.username,
        "schema": pg.database,
    }
    async with stack.client() as api:
        created = await api.post(
            "/api/v2/connections", json={"connection_id": connection_id, **own, **fields}
        )
        assert created.status_code == 201, created.text


async def test_a_saved_connection_edited_keeping_its_password_tested_and_deleted(
    stack, browser: Browser
) -> None:
    queue = await stack.serve_queue("console")
    password = secret_scan.password()
    await _saved_postgres(stack, "ledger", password=password)
    offline = await offline_page(browser)
    page = offline.page
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)

    # The edit form: the saved password is kept unless replaced, and never on the page.
    await page.get_by_role("link", name="ledger", exact=True).click()
    await expect(page.get_by_label("Keep the saved one")).to_be_checked(timeout=PAGE_TIMEOUT_MS)
    await expect(page.get_by_label("New password")).to_have_value("")
    assert password not in await page.content()
    await page.get_by_label("Description").fill("finance")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name="Connections")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    async with stack.client() as api:
        saved = (await api.get("/api/v2/connections/ledger")).json()
    assert saved["description"] == "finance" and saved["has_password"] is True

    # Tested from the form with the kept password: the server supplies it.
    await page.get_by_role("link", name="ledger", exact=True).click()
    await page.get_by_label("Test on queue").select_option(queue)
    await page.get_by_role("button", name="Test").click()
    await expect(page.locator("[data-field=state]")).to_have_text("success", timeout=PAGE_TIMEOUT_MS)

    # Deleted, after saying yes.
    await page.get_by_role("link", name="Back to the connections").click()
    await page.get_by_role("link", name="ledger", exact=True).click()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Delete ledger").click()
    await expect(page.get_by_text("No connection is saved yet.")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    async with stack.client() as api:
        assert (await api.get("/api/v2/connections/ledger")).status_code == 404
    offline.assert_stayed_home()


async def test_a_triggers_log_follows_live_and_it_is_cancelled_from_its_page(
    stack, browser: Browser, tmp_path: Path
) -> None:
    queue = await start_triggerer(stack)
    marker = tmp_path / "cleanup"
    async with stack.client() as api:
        created = await api.post(
            "/api/v2/triggers",
            json={
                "classpath": "tests.trigger_classes.TickingTrigger",
                "kwargs": {"marker": str(marker)},
                "queue": queue,
            },
        )
        assert created.status_code in (200, 201, 202), created.text
        trigger_id = created.json()["id"]
    offline = await offline_page(browser)
    page = offline.page
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)
    await page.get_by_role("link", name="Triggers", exact=True).click()
    await page.get_by_label("Queue").fill(queue)
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_role("link", name=trigger_id).click()
    await expect(page.locator("[data-field=state]")).to_have_text("running", timeout=PAGE_TIMEOUT_MS)

    # Lines the triggerer ships after the page loaded appear on it, without a reload.
    lines = page.locator("ol.log li")
    await expect(lines.filter(has_text="tick 1").first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    shown = await lines.count()
    await page.wait_for_function(
        "n => document.querySelectorAll('ol.log li').length >= n + 3", arg=shown, timeout=PAGE_TIMEOUT_MS
    )
    await _screenshot(page, tmp_path / "trigger.png")

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.get_by_role("button", name="Cancel the trigger").click()
    await expect(page.locator("[data-field=state]")).to_have_text("cancelled", timeout=PAGE_TIMEOUT_MS)
    for _ in range(100):  # the triggerer runs the trigger's cleanup
        if marker.exists():
            break
        await asyncio.sleep(0.1)
    assert marker.read_text() == "cleaned up"
    assert not secret_scan.SESSION.scan(await page.content(), "console: a trigger page")
    offline.assert_stayed_home()


async def test_connections_found_by_a_part_of_their_id_or_host_and_by_type(stack) -> None:
    rows = (
        {"connection_id": "alpha-db", "conn_type": "postgres", "host": "db1.example"},
        {"connection_id": "beta", "conn_type": "redis", "host": "cache.EXAMPLE"},
        {"connection_id": "x_y", "conn_type": "tcp", "host": "h"},
    )
    async with stack.client() as api:
        for row in rows:
            assert (await api.post("/api/v2/connections", json=row)).status_code == 201

        async def found(**params: str) -> list[str]:
            listed = (await api.get("/api/v2/connections", params=params)).json()
            return [c["connection_id"] for c in listed["connections"]]

        assert await found(search="example") == ["alpha-db", "beta"]
        assert await found(search="_") == ["x_y"]  # LIKE's wildcard matches itself
        assert await found(search="%") == []
        assert await found(conn_type="redis") == ["beta"]
        assert await found(search="a", conn_type="postgres") == ["alpha-db"]
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        await _signed_in(client, stack.secrets.admin_token)
        page = await client.get("/ui/connections", params={"search": "EXAMPLE", "conn_type": "redis"})
    assert page.status_code == 200
    assert "/ui/connections/beta/edit" in page.text and "alpha-db" not in page.text


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
    .map(e => e.outerHTML)"""


# What a keyboard user hears for the focused control: its label, its aria-label, or its text.
FOCUSED = """() => { const e = document.activeElement;
    return (e.labels && e.labels.length ? e.labels[0].textContent : e.getAttribute('aria-label') || e.textContent).trim() }"""


async def _tab_to(page: Page, name: str) -> None:
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate(FOCUSED) == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_the_form_shows_the_fields_a_type_uses_and_an_edit_is_saved_when_its_test_succeeds(
    stack, browser: Browser
) -> None:
    queue = await stack.serve_queue("console")
    pg = make_url(services.postgres_url())
    api_token = secret_scan.password()
    await _saved_postgres(
        stack, "ledger", login="airlock_nobody", extra={"sslmode": "disable", "api_token": api_token}
    )
    offline = await offline_page(browser)
    page = offline.page
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)

    # Each conn type's fields, under its labels; a field the type does not use is hidden.
    await page.get_by_role("link", name="New connection").click()
    await expect(page.get_by_label("Type")).to_have_value("postgres")
    await expect(page.get_by_label("Database")).to_be_visible()
    await expect(page.get_by_label("Extra (JSON object)")).to_have_attribute(
        "placeholder", re.compile("sslmode")
    )
    await page.get_by_label("Type").select_option("sqlite")
    await expect(page.get_by_label("Database file (on the worker)")).to_be_visible()
    for hidden in ("#port", "#schema", "#login", "#password", "#extra"):
        await expect(page.locator(hidden)).to_be_hidden()
    await page.get_by_label("Type").select_option("tcp")
    await expect(page.get_by_label("Port")).to_be_visible()
    await expect(page.locator("#login")).to_be_hidden()

    # Extra that is not a JSON object: said on the page, and what was typed is still there.
    await page.get_by_label("Type").select_option("postgres")
    await page.get_by_label("Connection id").fill("broken")
    await page.get_by_label("Host").fill("db.example.internal")
    await page.get_by_label("Extra (JSON object)").fill("{sslmode: require}")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("extra is not valid JSON")
    await expect(page.get_by_label("Host")).to_have_value("db.example.internal")
    # The browser logs the page's 422 as a console error: the one error this flow expects.
    assert offline.errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    offline.errors.clear()

    # The edit form: extra's secret shown masked; the login mended, tested, and saved on success.
    await page.goto(f"{stack.api.url}/ui/connections/ledger/edit")
    extra = page.get_by_label("Extra (JSON object)")
    await expect(extra).to_have_value(re.compile(r'"api_token": "\*\*\*"'))
    assert api_token not in await page.content()
    await page.get_by_label("Login").fill(pg.username or "")
    await page.get_by_label("Test on queue").select_option(queue)
    await page.get_by_label("Save the changes if the test succeeds").check()
    await page.get_by_role("button", name="Test").click()
    await expect(page.locator("[data-field=state]")).to_have_text("success", timeout=PAGE_TIMEOUT_MS)
    async with stack.client() as api:
        for _ in range(50):
            saved = (await api.get("/api/v2/connections/ledger")).json()
            if saved["login"] == pg.username:
                break
            await asyncio.sleep(0.1)
        assert saved["login"] == pg.username
        assert (await api.get("/api/v2/connections/broken")).status_code == 404
    assert saved["extra"] == {"sslmode": "disable", "api_token": "***"}
    offline.assert_stayed_home()


async def test_every_form_control_of_every_page_is_labelled_and_the_keyboard_reaches_test(
    stack, browser: Browser, database_url: str
) -> None:
    test_id, trigger_id = str(uuid.uuid4()), str(uuid.uuid4())
    await _seed(
        database_url,
        ConnectionTest(id=test_id, state="failed", queue="q", timeout=30, conn_type="tcp"),
        Trigger(id=trigger_id, classpath="airlock.triggers.HttpTrigger", queue="q", state="failed"),
    )
    async with stack.client() as api:
        await api.post("/api/v2/connections", json={"connection_id": "c1", "conn_type": "tcp", "host": "h"})
    offline = await offline_page(browser)
    page = offline.page
    await page.goto(f"{stack.api.url}/ui/login")
    assert await page.evaluate(UNLABELLED) == []
    await _sign_in(page, stack.api.url, stack.secrets.admin_token)
    for path in (
        "/ui/connections",
        "/ui/connections/new",
        "/ui/connections/c1/edit",
        "/ui/tests",
        f"/ui/tests/{test_id}",
        "/ui/triggers",
        f"/ui/triggers/{trigger_id}",
        "/ui/workers",
    ):
        await page.goto(f"{stack.api.url}{path}")
        await expect(page.locator("h1")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        assert await page.evaluate(UNLABELLED) == [], path

    # The keyboard alone reaches a row's Test button and presses it.
    await page.goto(f"{stack.api.url}/ui/connections")
    await _tab_to(page, "Test c1")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Connection test")).to_be_visible(timeout=PAGE_TIMEOUT_MS)

    # A connection made with the keyboard alone: the type chosen by typing its name, and Tab passing
    # over the fields that type does not use.
    await page.goto(f"{stack.api.url}/ui/connections/new")
    await _tab_to(page, "Connection id")
    await page.keyboard.type("kbd")
    await page.keyboard.press("Tab")
    await page.keyboard.type("sqlite")
    await page.keyboard.press("Tab")
    assert await page.evaluate(FOCUSED) == "Database file (on the worker)"
    await page.keyboard.type("/var/lib/app/app.db")
    visited = []
    for _ in range(5):
        await page.keyboard.press("Tab")
        visited.append(await page.evaluate(FOCUSED))
    assert visited == ["Description", "Test on queue", "Save it if the test succeeds", "Test", "Save"]
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("row", name=re.compile("kbd"))).to_contain_text(
        "sqlite", timeout=PAGE_TIMEOUT_MS
    )

    # Then deleted with it: its link, the Delete button, Enter (and yes to the question).
    await _tab_to(page, "kbd")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Connection kbd")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    await _tab_to(page, "Delete kbd")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("row", name=re.compile("kbd"))).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    async with stack.client() as api:
        assert (await api.get("/api/v2/connections/kbd")).status_code == 404
    offline.assert_stayed_home()
    assert offline.blocked == []  # nothing the Content-Security-Policy had to stop


def test_rotating_the_admin_token_ends_every_console_session(dev_secrets) -> None:
    settings = stack_settings(dev_secrets, "127.0.0.1:7233", "sqlite://")
    cookie, session = open_session(settings)

    def request_with(value: str) -> Request:
        return Request({"type": "http", "headers": [(b"cookie", f"{SESSION_COOKIE}={value}".encode())]})

    assert read_session(settings, request_with(cookie)) == session
    rotated = settings.model_copy(update={"admin_token": secret_scan.SESSION.new(secret_scan.TOKEN)})
    assert read_session(rotated, request_with(cookie)) is None
    other_secret = settings.model_copy(update={"jwt_secret": "another-jwt-secret-of-enough-length-000"})
    assert read_session(other_secret, request_with(cookie)) is None


async def test_a_worker_name_taken_already_is_an_error_on_the_page(stack) -> None:
    await stack.provision("taken", ["q1"])
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        await _signed_in(client, stack.secrets.admin_token)
        csrf = _csrf(await client.get("/ui/workers"))
        # provision() names workers uniquely: find the name it gave.
        async with stack.client() as api:
            name = next(w["name"] for w in (await api.get("/api/v2/workers")).json()["workers"])
        again = await client.post("/ui/workers", data={"csrf": csrf, "name": name, "queues": "q2"})
        invalid = await client.post("/ui/workers", data={"csrf": csrf, "name": "Not A Name", "queues": ""})
    assert again.status_code == 409 and "exists already" in again.text, again.text
    assert invalid.status_code == 422 and "name" in invalid.text
