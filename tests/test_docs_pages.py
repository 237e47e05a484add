"""/docs and /redoc in a real browser with no way off the machine: Airlock is meant for isolated
networks, so its API documentation must render from what the installation serves, not from a CDN.

Headless Chromium (Debian's, never a browser download) is driven by Playwright; every request that is
not to loopback is aborted and recorded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

from airlock.version import EXECUTION_API_VERSIONS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CSP_BLOCK = re.compile(r"'([^']+)' violates the following Content Security Policy directive")
RENDER_TIMEOUT_MS = 20_000


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # tests/preflight.py installs Debian's chromium; a machine without it cannot run this test.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class OfflinePage:
    """A browser page that can reach loopback only; whatever tried to leave is in ``left``. Script
    errors and console errors are kept too: a page that renders half is not a page that works."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.left: list[str] = []
        self.loaded: list[str] = []
        self.errors: list[str] = []
        self.blocked: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"script error: {error}"))
        page.on("console", self.console)

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        # The pages' Content-Security-Policy stops the browser from even trying to reach another host:
        # such a block is the policy working, as long as what it blocked is not on this machine.
        refused = CSP_BLOCK.search(message.text)
        if refused and urlsplit(refused.group(1)).hostname not in LOOPBACK:
            self.blocked.append(refused.group(1))
        else:
            self.errors.append(message.text)

    def assert_stayed_home(self) -> None:
        assert self.left == [], f"requests left loopback: {self.left}"
        assert self.errors == [], self.errors

    async def guard(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            self.loaded.append(url)
            await route.continue_()
        else:
            self.left.append(url)
            await route.abort("internetdisconnected")


async def offline_page(browser: Browser) -> OfflinePage:
    context = await browser.new_context()
    page = await context.new_page()
    offline = OfflinePage(page)
    await context.route("**/*", offline.guard)
    return offline


async def test_swagger_ui_and_redoc_render_without_internet(stack, browser: Browser) -> None:
    offline = await offline_page(browser)
    page = offline.page

    await page.goto(f"{stack.api.url}/docs")
    operation = page.locator(".opblock-summary-path", has_text="/api/v2/connections").first
    await operation.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert await page.locator(".opblock").count() >= 10  # every operation of the public API is listed
    assert "Airlock API" in await page.locator(".info .title").first.inner_text()

    await page.goto(f"{stack.api.url}/redoc")
    title = page.locator("h1", has_text="Airlock API").first
    await title.wait_for(timeout=RENDER_TIMEOUT_MS)
    assert await page.get_by_text("/api/v2/connections/test", exact=False).count() > 0

    offline.assert_stayed_home()
    assert any("/static/docs/" in url for url in offline.loaded), offline.loaded


async def test_execution_api_docs_render_without_internet(stack, browser: Browser) -> None:
    offline = await offline_page(browser)
    page = offline.page

    # The Execution API's own page lists its versions; each opens its Swagger UI and its ReDoc.
    await page.goto(f"{stack.api.url}/execution/docs")
    for version in EXECUTION_API_VERSIONS:
        await page.locator(f"a[href*='version={version}']").first.wait_for(timeout=RENDER_TIMEOUT_MS)
    newest = EXECUTION_API_VERSIONS[-1]
    await page.locator(f"a[href*='version={newest}']").first.click()
    operation = page.locator(".opblock-summary-path", has_text="/triggers/{trigger_id}/event").first
    await operation.wait_for(timeout=RENDER_TIMEOUT_MS)

    await page.goto(f"{stack.api.url}/execution/redoc?version={newest}")
    await page.locator("h1", has_text="Airlock Execution API").first.wait_for(timeout=RENDER_TIMEOUT_MS)

    offline.assert_stayed_home()


async def test_docs_assets_are_served_from_the_installation(stack) -> None:
    """The pages name no host but this one, and their assets answer without a token."""
    async with httpx.AsyncClient(base_url=stack.api.url) as client:
        for path in (
            "/docs",
            "/redoc",
            "/execution/docs",
            f"/execution/docs?version={EXECUTION_API_VERSIONS[-1]}",
        ):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert "https://" not in page.text and "http://" not in page.text, (path, page.text)
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"):
            response = await client.get(f"/static/docs/{asset}")
            assert response.status_code == 200 and len(response.content) > 1000, asset
        assert (await client.get("/static/docs/../../pyproject.toml")).status_code == 404
