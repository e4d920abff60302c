"""The console in a real Chromium against the real platform: sign in, create, build, preview, save, agree
with the API, conflicts, roles, CSRF, escaping, and axe-core on every page.

Set ``FLAGSTREAM_SCREENSHOTS=docs/ui`` to also write screenshots of the main pages (``make screenshots``).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import FilePayload, Page, expect

from events.deadletters.models import NewDeadLetter
from events.deadletters.store import DeadLetterStore
from tests.browser.conftest import AXE
from tests.integration.platform import Platform
from tests.unit.api.route_roles import route_roles

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ENV = "production"
USERS: list[dict[str, Any]] = [
    {
        "targetingKey": f"user-{i}",
        "country": ["US", "CA", "FR", "DE"][i % 4],
        "plan": ["pro", "free"][i % 2 == 0],
        "beta": i % 3 == 0,
    }
    for i in range(20)
]


SHOWCASE: dict[str, Any] = {
    "enabled": True,
    "off_variation": "off",
    "targets": [{"variation": "on", "values": ["qa-1", "qa-2"]}],
    "rules": [
        {
            "id": "north-america",
            "description": "US and Canada, not test accounts",
            "when": {
                "all": [
                    {"attribute": "country", "op": "in", "values": ["US", "CA"]},
                    {
                        "not": {
                            "any": [
                                {"attribute": "plan", "op": "eq", "values": ["free"]},
                                {"attribute": "beta", "op": "eq", "values": [True]},
                            ]
                        }
                    },
                ]
            },
            "serve": {
                "rollout": [{"variation": "on", "weight": 25000}, {"variation": "off", "weight": 75000}]
            },
        },
    ],
    "default": {"variation": "off"},
    "reason": "launch plan",
}


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _signed_in(browser: Any, base_url: str, secret: str, width: int = 1280) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    context.set_default_timeout(5000)
    page = await context.new_page()
    await page.goto("/ui/flags")
    await expect(page).to_have_url(re.compile(r"/ui/signin"))
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(re.compile(r"/ui/flags"))
    try:
        yield page
    finally:
        await context.close()


@pytest.fixture(scope="module")
async def writer(browser: Any, base_url: str, platform: Platform) -> AsyncIterator[Page]:
    async for page in _signed_in(browser, base_url, platform.keys["admin"]):
        yield page


async def _create_flag(page: Page, key: str, name: str = "") -> None:
    await page.goto("/ui/flags")
    await page.get_by_role("link", name="New flag").click()
    await page.get_by_label("Key").fill(key)
    if name:
        await page.get_by_label("Name").fill(name)
    await page.get_by_label("Reason").fill("browser test")
    await page.get_by_role("button", name="Create flag").click()
    await expect(page).to_have_url(re.compile(rf"/ui/flags/{re.escape(key)}/env/"))


async def _preview_rows(page: Page, count: int) -> dict[str, tuple[str, str]]:
    rows = page.locator("#preview-table tbody tr")
    await expect(rows).to_have_count(count)
    found: dict[str, tuple[str, str]] = {}
    for i in range(count):
        cells = await rows.nth(i).locator("td").all_inner_texts()
        found[cells[0]] = (cells[1], cells[3])
    return found


async def test_build_nested_rule__preview_and_save__api_agrees(writer: Page, platform: Platform) -> None:
    page, key = writer, _key("checkout")
    await _create_flag(page, key, "New checkout")
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_label("Targeting on").check()
    await page.get_by_role("button", name="Add rule").click()
    rule = page.locator("li.rule").first
    await rule.get_by_label("Attribute", exact=True).fill("country")
    await rule.get_by_label("Attribute", exact=True).blur()
    await rule.get_by_label("Operator", exact=True).select_option("in")
    await rule.get_by_label("Values (comma-separated)", exact=True).fill("US, CA")
    await rule.get_by_role("button", name="Add group").click()
    nested = rule.locator("fieldset.group fieldset.group")
    await nested.get_by_label("Attribute", exact=True).fill("plan")
    await nested.get_by_label("Attribute", exact=True).blur()
    await nested.get_by_label("Values (comma-separated)", exact=True).fill("pro")
    await nested.get_by_role("button", name="Add condition").click()
    await nested.get_by_label("Attribute", exact=True).nth(1).fill("beta")
    await nested.get_by_label("Attribute", exact=True).nth(1).blur()
    await nested.get_by_label("Type", exact=True).nth(1).select_option("boolean")
    await nested.get_by_label("Values (comma-separated)", exact=True).nth(1).fill("true")
    await nested.get_by_role("button", name="Negate group (NOT)").click()
    await page.get_by_role("button", name="Add a default").click()
    await page.locator('[data-path="default.variation"]').select_option("off")
    await page.get_by_label("Test users").fill(json.dumps(USERS))
    shown = await _preview_rows(page, 20)
    # the builder's rule: country in (US, CA) and not (plan == pro or beta == true)
    for user in USERS:
        matched = user["country"] in ("US", "CA") and not (user["plan"] == "pro" or user["beta"])
        assert shown[str(user["targetingKey"])] == (("on", "rule-1") if matched else ("off", "—")), user
    await page.get_by_label("Reason for this change").fill("launch to North America")
    await page.get_by_role("button", name=f"Save {ENV}").click()
    await expect(page.locator("#status")).to_contain_text("Saved: version")
    version = int(await page.locator("#flag-version").inner_text())
    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()
    assert stored["version"] == version
    assert (
        stored["flag"]["environments"][ENV]["rules"][0]["when"]["all"][1]["not"]["any"][1]["attribute"]
        == "beta"
    )
    for user in USERS:
        answer = await platform.request(
            "POST",
            "/api/v1/evaluate",
            role="reader",
            json={"environment": ENV, "context": user, "flags": [key]},
        )
        result = answer.json()["results"][key]
        assert (result["variation"], result.get("rule_id") or "—") == shown[str(user["targetingKey"])], user


async def test_invalid_field__message_at_the_field_before_saving(writer: Page) -> None:
    page, key = writer, _key("regex")
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_role("button", name="Add rule").click()
    rule = page.locator("li.rule").first
    await rule.get_by_label("Type", exact=True).select_option("number")
    await rule.get_by_label("Attribute", exact=True).fill("age")
    await rule.get_by_label("Operator", exact=True).select_option("gt")
    await rule.get_by_label("Value", exact=True).fill("not-a-number")
    await expect(rule.locator('[data-path="rules[0].when.all[0]"] .err')).to_contain_text("need numbers")
    await expect(page.locator("#save")).to_be_enabled()
    await rule.get_by_label("Type", exact=True).select_option("string")
    await rule.get_by_label("Operator", exact=True).select_option("matches")
    await rule.get_by_label("Regular expression", exact=True).fill("([a-z")
    await expect(rule.get_by_text("Not a valid regular expression")).to_be_visible()


async def test_lost_race__shown_as_changed_by_someone_meanwhile(writer: Page, platform: Platform) -> None:
    page, key = writer, _key("race")
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await expect(page.locator("#builder h3").first).to_be_visible()
    other = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/{ENV}",
        role="writer",
        json={"enabled": True, "default": {"variation": "on"}, "reason": "someone else"},
    )
    assert other.status_code == 200, other.text
    await page.get_by_role("button", name="Add a default").click()
    await page.get_by_role("button", name=f"Save {ENV}").click()
    conflict = page.locator(".conflict")
    await expect(conflict).to_contain_text("Changed by test-writer meanwhile")
    await expect(conflict).to_contain_text("someone else")
    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()
    assert stored["version"] == 2  # the other change stands; the console's edit was not written
    assert stored["flag"]["environments"][ENV]["default"]["variation"] == "on"


async def test_reader__sees_no_edit_controls(
    browser: Any, base_url: str, writer: Page, platform: Platform
) -> None:
    key = _key("readonly")
    await _create_flag(writer, key)
    async for page in _signed_in(browser, base_url, platform.keys["reader"]):
        await expect(page.get_by_role("link", name="New flag")).to_have_count(0)
        await page.goto(f"/ui/flags/{key}/env/{ENV}")
        await expect(page.locator("#builder h3").first).to_be_visible()
        await expect(page.locator("main button")).to_have_count(0)
        await expect(
            page.locator("#builder input:not([disabled]), #builder select:not([disabled])")
        ).to_have_count(0)
        response = await page.request.post(
            f"/ui/flags/{key}/env/{ENV}/toggle",
            form={"enabled": "on", "expected_version": "1", "csrf_token": await _csrf(page)},
        )
        assert response.status == 403


async def _csrf(page: Page) -> str:
    return str(await page.locator('meta[name="csrf-token"]').get_attribute("content"))


async def test_change_without_csrf_token__refused(writer: Page, platform: Platform) -> None:
    key = _key("csrf")
    await _create_flag(writer, key)
    created = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json={"default": {"variation": "on"}}
    )
    assert created.status_code == 200, created.text
    form: dict[str, str | float | bool] = {"enabled": "on", "expected_version": "2", "reason": "no token"}
    refused = await writer.request.post(f"/ui/flags/{key}/env/{ENV}/toggle", form=form, max_redirects=0)
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"
    wrong = await writer.request.post(
        f"/ui/flags/{key}/env/{ENV}/toggle", form={**form, "csrf_token": "x" * 43}, max_redirects=0
    )
    assert wrong.status == 403
    assert (await platform.request("GET", f"/api/v1/flags/{key}")).json()["version"] == 2
    accepted = await writer.request.post(
        f"/ui/flags/{key}/env/{ENV}/toggle", form={**form, "csrf_token": await _csrf(writer)}, max_redirects=0
    )
    assert accepted.status == 303
    assert (await platform.request("GET", f"/api/v1/flags/{key}")).json()["version"] == 3


async def test_flag_named_script__renders_as_text(writer: Page) -> None:
    key, name = _key("xss"), "<script>alert(1)</script>"
    dialogs: list[str] = []
    writer.on("dialog", lambda d: dialogs.append(d.message))
    await _create_flag(writer, key, name)
    await expect(writer.get_by_role("heading", level=1)).to_have_text(f"Flag {name}")
    await writer.goto(f"/ui/flags?q={key}")
    await expect(writer.get_by_role("link", name=name)).to_be_visible()
    assert dialogs == []
    assert await writer.locator("script:not([src]):not([type='application/json'])").count() == 0


async def test_history__timeline_rollback_and_as_of(writer: Page, platform: Platform) -> None:
    page, key = writer, _key("history")
    await _create_flag(page, key)
    configured = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json={"default": {"variation": "on"}}
    )
    assert configured.status_code == 200, configured.text
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_label("Reason", exact=True).fill("first launch")
    await page.get_by_role("button", name="Turn on").click()
    await expect(page.locator("#state-h")).to_contain_text("On")
    await page.goto(f"/ui/flags/{key}/history?env={ENV}")
    await expect(page.locator(".timeline > li")).to_have_count(3)
    await expect(page.locator(".timeline > li").first).to_contain_text("first launch")
    await expect(page.locator(".timeline .diff").first).to_contain_text("enabled")
    await page.get_by_label("Reason", exact=True).first.fill("too early")
    await page.get_by_role("button", name="Undo version 3").click()
    await expect(page.locator(".timeline > li")).to_have_count(4)
    await expect(page.locator(".timeline > li").first).to_contain_text("too early")
    state = (await platform.request("GET", f"/api/v1/flags/{key}")).json()
    assert state["version"] == 4
    assert state["flag"]["environments"][ENV]["enabled"] is False


async def test_rule_warnings__unreachable_rule_shown_live(writer: Page) -> None:
    page, key = writer, _key("warn")
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_role("button", name="Add rule").click()
    await page.get_by_role("button", name="Remove condition").click()
    await expect(page.locator("#warnings")).to_have_text("")
    await page.get_by_role("button", name="Add rule").click()
    second = page.locator("li.rule").nth(1)
    await second.get_by_label("Attribute", exact=True).fill("country")
    await second.get_by_label("Values (comma-separated)").fill("US")
    await expect(page.locator("#warnings")).to_contain_text("rules[1]")


async def test_rules__reordered_by_keyboard(writer: Page) -> None:
    page, key = writer, _key("order")
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_role("button", name="Add rule").click()
    await page.get_by_role("button", name="Add rule").click()
    down = page.get_by_role("button", name="Move rule rule-1 down")
    await down.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator('[data-path="rules[0].id"]')).to_have_value("rule-2")
    await expect(page.locator('[data-path="rules[1].id"]')).to_have_value("rule-1")
    await expect(page.get_by_role("button", name="Move rule rule-1 up")).to_be_focused()


async def test_segments_and_keys__admin_creates_both(writer: Page, platform: Platform) -> None:
    segment = _key("beta")
    await writer.goto("/ui/segments")
    await writer.get_by_label("Key", exact=True).fill(segment)
    await writer.get_by_label("Included user keys (one per line)").fill("user-1\nuser-2")
    await writer.get_by_role("button", name="Create segment").click()
    await expect(writer).to_have_url(re.compile(rf"/ui/segments/{segment}$"))
    await writer.get_by_label("Condition (JSON").fill('{"attribute": "plan", "op": "gt", "values": ["x"]}')
    await writer.get_by_role("button", name="Save segment").click()
    await expect(writer.locator(".err").first).to_contain_text("when")
    stored = (await platform.request("GET", f"/api/v1/segments/{segment}")).json()
    assert stored["segment"]["included"] == ["user-1", "user-2"] and stored["version"] == 1
    await writer.goto("/ui/keys")
    await writer.get_by_label("Principal (who the key acts as)").fill("console-made")
    await writer.get_by_label("Role", exact=True).select_option("reader")
    await writer.get_by_role("button", name="Create key").click()
    secret = await writer.get_by_label("Secret").input_value()
    answer = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200
    await writer.goto("/ui/keys")
    await expect(writer.get_by_label("Secret")).to_have_count(0)
    await expect(writer.locator("tbody")).to_contain_text("console-made")


async def test_as_of__what_a_user_saw_before_a_change(writer: Page, platform: Platform) -> None:
    key = _key("asof")
    await _create_flag(writer, key)
    before = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/{ENV}?wait=projected",
        json={"enabled": True, "default": {"variation": "on"}},
    )
    assert before.status_code == 200
    page = await platform.request("GET", f"/api/v1/flags/{key}/history")
    instant = page.json()["entries"][-1]["occurred_at"]
    after = await platform.request(
        "PUT",
        f"/api/v1/flags/{key}/environments/{ENV}?wait=projected",
        json={"enabled": True, "default": {"variation": "off"}},
    )
    assert after.status_code == 200
    await writer.goto(f"/ui/flags/{key}/history?env={ENV}&at={quote(instant)}&user=user-7")
    await expect(writer.locator("#asof-result")).to_contain_text("got on")


async def test_axe__no_serious_or_critical_violation_on_any_page(
    browser: Any, base_url: str, writer: Page, platform: Platform
) -> None:
    key = _key("axe")
    await _create_flag(writer, key, "New checkout")
    configured = await platform.request(
        "PUT", f"/api/v1/flags/{key}/environments/{ENV}?wait=projected", json=SHOWCASE, role="writer"
    )
    assert configured.status_code == 200, configured.text
    anonymous = await browser.new_context(base_url=base_url)
    pages = [
        ("signin", None, "/ui/signin"),
        ("flags", writer, "/ui/flags"),
        ("new-flag", writer, "/ui/flags/new"),
        ("flag", writer, f"/ui/flags/{key}/env/{ENV}"),
        ("history", writer, f"/ui/flags/{key}/history?env={ENV}"),
        ("incidents", writer, "/ui/incidents"),
        ("dead-letters", writer, "/ui/dead-letters"),
        ("segments", writer, "/ui/segments"),
        ("keys", writer, "/ui/keys"),
    ]
    shots = os.environ.get("FLAGSTREAM_SCREENSHOTS")
    problems: dict[str, list[str]] = {}
    for name, signed_in, path in pages:
        page = signed_in or await anonymous.new_page()
        await page.goto(path)
        if name == "flag":
            await page.get_by_label("Test users").fill(json.dumps(USERS[:5]))
            await expect(page.locator("#preview-table tbody tr")).to_have_count(5)
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        bad = [
            f"{v['id']}: {v['help']}" for v in result["violations"] if v["impact"] in ("serious", "critical")
        ]
        if bad:
            problems[name] = bad
        width = await page.evaluate("document.documentElement.scrollWidth")
        await page.set_viewport_size({"width": 375, "height": 800})
        narrow = await page.evaluate("document.documentElement.scrollWidth")
        await page.set_viewport_size({"width": 1280, "height": 900})
        assert narrow <= 375 + 1, f"{name} scrolls sideways at 375 px ({narrow} px wide; {width} at 1280)"
        if shots:
            os.makedirs(shots, exist_ok=True)
            await page.screenshot(path=os.path.join(shots, f"{name}.png"), full_page=True)
    await anonymous.close()
    assert problems == {}


async def test_dead_letter__inspected_and_purged_with_a_reason(writer: Page, platform: Platform) -> None:
    letter = await DeadLetterStore(platform.container.pool).park(
        NewDeadLetter(
            stage="projector",
            flag_key="ghost-flag",
            error_class="MalformedEvent",
            error_message="cannot apply <b>this</b>",
            version=1,
            event_body='{"type": "Broken"}',
        )
    )
    await writer.goto("/ui/dead-letters")
    await writer.get_by_role("link", name=f"#{letter.id}").click()
    await expect(writer.locator("main")).to_contain_text("cannot apply <b>this</b>")
    await expect(writer.locator("pre.code")).to_contain_text('"type": "Broken"')
    await writer.get_by_label("Reason (required)").fill("poison from a test")
    await writer.get_by_role("button", name="Purge").click()
    await expect(writer.locator("main")).to_contain_text("purged by test-admin")
    stored = (await platform.request("GET", f"/api/v1/dead-letters/{letter.id}", role="ops")).json()
    assert stored["status"] == "purged"


_PATH_VALUES = {"key": "no-such-flag", "env": "production", "letter_id": "999999", "key_id": "no-such-key"}


async def _session_client(platform: Platform, role: str | None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=platform.app), base_url="http://flagstream.test"
    )
    if role is not None:
        signed = await client.post("/ui/signin", data={"api_key": platform.keys[role], "next": "/ui/flags"})
        assert signed.status_code == 303 and "fs_console" in client.cookies
    return client


async def test_every_console_route_x_every_role__allowed_or_403(platform: Platform) -> None:
    routes = [r for r in route_roles(platform.app) if r.path.startswith("/ui") and r.roles is not None]
    assert len(routes) >= 25
    roles = sorted(platform.keys)
    wrong: list[str] = []
    for role in [*roles, None]:
        client = await _session_client(platform, role)
        try:
            for route in routes:
                path = route.path.format(**_PATH_VALUES)
                answer = await client.request(route.method, path)
                code = (
                    answer.json().get("error", {}).get("code")
                    if answer.headers.get("content-type", "").startswith("application/json")
                    else None
                )
                if role is None:
                    expected_ok = answer.status_code in (303, 401)
                elif role in (route.roles or frozenset()):
                    expected_ok = (
                        not (answer.status_code == 403 and code == "forbidden") and answer.status_code < 500
                    )
                else:
                    expected_ok = answer.status_code == 403 and code == "forbidden"
                if not expected_ok:
                    wrong.append(f"{role} {route.method} {path}: {answer.status_code} {code}")
        finally:
            await client.aclose()
    assert wrong == []


async def _two_rules(page: Page, key: str) -> None:
    """A flag whose builder has rule-1 (country = US) then rule-2 (country = FR), both serving 'on'."""
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_label("Targeting on").check()
    for country in ("US", "FR"):
        await page.get_by_role("button", name="Add rule").click()
        rule = page.locator("li.rule").last
        await rule.get_by_label("Attribute", exact=True).fill("country")
        await rule.get_by_label("Values (comma-separated)", exact=True).fill(country)
    await page.get_by_role("button", name="Add a default").click()
    await page.locator('[data-path="default.variation"]').select_option("off")


async def _save_and_read_rule_ids(page: Page, platform: Platform, key: str) -> list[str]:
    await page.get_by_label("Reason for this change").fill("reorder")
    await page.get_by_role("button", name=f"Save {ENV}").click()
    await expect(page.locator("#status")).to_contain_text("Saved: version")
    stored = (await platform.request("GET", f"/api/v1/flags/{key}")).json()
    return [r["id"] for r in stored["flag"]["environments"][ENV]["rules"]]


async def test_rules__second_dragged_above_first__saved_in_the_new_order(
    writer: Page, platform: Platform
) -> None:
    page, key = writer, _key("drag")
    await _two_rules(page, key)
    size = page.viewport_size
    await page.set_viewport_size({"width": 1280, "height": 1600})  # both rules on screen: no scroll mid-drag
    try:
        await page.locator("li.rule").nth(1).locator(".handle").drag_to(page.locator("li.rule").nth(0))
    finally:
        if size is not None:
            await page.set_viewport_size(size)

    await expect(page.locator('[data-path="rules[0].id"]')).to_have_value("rule-2")
    await expect(page.locator('[data-path="rules[1].id"]')).to_have_value("rule-1")
    await expect(page.locator("li.rule").nth(0).get_by_label("Values (comma-separated)")).to_have_value("FR")
    # only the handle drags: text in a rule's inputs can still be selected with the mouse
    await expect(page.locator("li.rule").first).not_to_have_attribute("draggable", "true")
    assert await _save_and_read_rule_ids(page, platform, key) == ["rule-2", "rule-1"]


async def test_rules__moved_by_keyboard__saved_in_the_new_order(writer: Page, platform: Platform) -> None:
    page, key = writer, _key("kbd")
    await _two_rules(page, key)

    await page.get_by_role("button", name="Move rule rule-2 up").focus()
    await page.keyboard.press("Enter")

    await expect(page.get_by_role("button", name="Move rule rule-2 down")).to_be_focused()
    assert await _save_and_read_rule_ids(page, platform, key) == ["rule-2", "rule-1"]


async def _preview_with_file(page: Page, key: str, name: str, mime: str, content: str, count: int) -> Any:
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_label("Targeting on").check()
    await page.get_by_role("button", name="Add rule").click()
    rule = page.locator("li.rule").first
    await rule.get_by_label("Attribute", exact=True).fill("country")
    await rule.get_by_label("Values (comma-separated)", exact=True).fill("US")
    await page.get_by_role("button", name="Add a default").click()
    await page.locator('[data-path="default.variation"]').select_option("off")
    await page.get_by_label("Or upload a file (JSON or CSV)").set_input_files(
        files=[FilePayload(name=name, mimeType=mime, buffer=content.encode("utf-8"))]
    )
    return await _preview_rows(page, count)


async def test_preview__users_uploaded_as_csv__each_users_result(writer: Page) -> None:
    csv = (
        "\ufefftargetingKey,country,city,age\r\n"  # a byte-order mark and CRLF, as spreadsheets write
        "u-1,US,Boston,30\r\n"
        'u-2,FR,"Paris, France",41\r\n'  # a quoted cell with a comma
        '"u-3",US,"Says ""hi""",\r\n'
    )

    shown = await _preview_with_file(writer, _key("csv"), "users.csv", "text/csv", csv, 3)

    assert shown == {"u-1": ("on", "rule-1"), "u-2": ("off", "—"), "u-3": ("on", "rule-1")}


async def test_preview__users_uploaded_as_json__each_users_result(writer: Page) -> None:
    users = [{"targetingKey": f"j-{i}", "country": ["US", "DE"][i % 2]} for i in range(6)]

    shown = await _preview_with_file(
        writer, _key("json"), "users.json", "application/json", json.dumps(users, indent=2), 6
    )

    assert shown == {f"j-{i}": (("on", "rule-1") if i % 2 == 0 else ("off", "—")) for i in range(6)}


async def test_preview__unreadable_file__error_shown_at_the_users(writer: Page) -> None:
    page, key = writer, _key("badfile")
    await _create_flag(page, key)
    await page.goto(f"/ui/flags/{key}/env/{ENV}")
    await page.get_by_label("Or upload a file (JSON or CSV)").set_input_files(
        files=[FilePayload(name="users.json", mimeType="application/json", buffer=b"[1, 2]")]
    )
    await expect(page.locator("#users-error")).to_contain_text("Cannot read the users")
    await expect(page.get_by_label("Test users")).to_have_attribute("aria-invalid", "true")


async def test_keys__created_secret_shown_once__reload_neither_resubmits_nor_shows_it(
    writer: Page, platform: Platform
) -> None:
    principal = _key("prg")
    await writer.goto("/ui/keys")
    await writer.get_by_label("Principal (who the key acts as)").fill(principal)
    await writer.get_by_label("Role", exact=True).select_option("reader")
    await writer.get_by_role("button", name="Create key").click()

    await expect(writer).to_have_url(re.compile(r"/ui/keys$"))
    secret = await writer.get_by_label("Secret").input_value()
    answer = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200

    await writer.reload()

    await expect(writer.locator("h1")).to_have_text("API keys")
    await expect(writer.get_by_label("Secret")).to_have_count(0)
    assert secret not in await writer.content()
    listed = (await platform.request("GET", "/api/v1/keys")).json()["items"]
    assert [k["principal"] for k in listed].count(principal) == 1


async def test_keys__rotated_in_console__new_secret_once_old_valid_until_shown(
    writer: Page, platform: Platform
) -> None:
    created = (
        await platform.request("POST", "/api/v1/keys", json={"principal": _key("rot"), "role": "reader"})
    ).json()
    await writer.goto("/ui/keys")
    await writer.get_by_role(
        "button", name=f"Rotate the key of {created['principal']} ({created['id']})"
    ).click()

    await expect(writer).to_have_url(re.compile(r"/ui/keys$"))
    await expect(writer.locator("#replaced-note")).to_contain_text(created["id"])
    secret = await writer.get_by_label("Secret").input_value()
    for key in (secret, created["secret"]):  # the new one, and the old one in its grace period
        answer = await platform.client.get("/api/v1/flags", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
    await writer.reload()
    await expect(writer.get_by_label("Secret")).to_have_count(0)
    listed = (await platform.request("GET", "/api/v1/keys")).json()["items"]
    assert [k["principal"] for k in listed].count(created["principal"]) == 2
