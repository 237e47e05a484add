"""A real browser for the tests: Debian's headless Chromium driven by Playwright (never a browser
download; tests/preflight.py installs the package), and pages that cannot leave the machine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CSP_BLOCK = re.compile(r"'([^']+)' violates the following Content Security Policy directive")


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


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (make test does)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
