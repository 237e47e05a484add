"""/docs and /redoc in a real browser with no way off the machine: Airlock is meant for isolated
networks, so its API documentation must render from what the installation serves, not from a CDN.

Headless Chromium (Debian's, never a browser download) is driven by Playwright; every request that is
not to loopback is aborted and recorded.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser

from airlock.version import EXECUTION_API_VERSIONS
from tests.browser import offline_page

RENDER_TIMEOUT_MS = 20_000


@pytest.fixture
async def stack(make_stack):
    return await make_stack()


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
