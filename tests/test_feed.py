"""The change feed: snapshots, changes after a cursor, merging, tombstones, refused cursors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from httpx import AsyncClient

from tests.conftest import auth, new_user

Copy = dict[int, dict[str, Any]]


async def read_feed(
    client: AsyncClient, user: str, since: str | None = None, limit: int = 100
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        params["since"] = since
    response = await client.get("/api/tasks/changes", params=params, headers=auth(user))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def sync(
    client: AsyncClient, user: str, copy: Copy, since: str | None = None, limit: int = 100
) -> tuple[str, list[dict[str, Any]]]:
    """Apply every page to `copy` until nothing more waits; the final cursor and the items."""
    items: list[dict[str, Any]] = []
    while True:
        page = await read_feed(client, user, since, limit)
        assert len(page["changes"]) <= limit
        for item in page["changes"]:
            apply(copy, item)
        items += page["changes"]
        since = page["cursor"]
        if not page["has_more"]:
            return since, items


def apply(copy: Copy, item: dict[str, Any]) -> None:
    if item["op"] == "upsert":
        copy[item["task"]["id"]] = item["task"]
    elif item["op"] == "delete":
        copy.pop(item["id"], None)


async def all_tasks(client: AsyncClient, user: str) -> Copy:
    response = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(user))
    return {task["id"]: task for task in response.json()}


async def test_without_a_cursor_every_task_comes_as_an_upsert_page_by_page(
    client: AsyncClient, user: str, create_task: Callable[..., Any]
) -> None:
    created = [await create_task(user, f"task {n}") for n in range(7)]
    await client.delete(f"/api/tasks/{created[0]['id']}", headers=auth(user))
    copy: Copy = {}
    _, items = await sync(client, user, copy, limit=3)
    # Tasks deleted before the snapshot are not news to a client starting from nothing.
    assert {item["op"] for item in items} == {"upsert"}
    assert len(items) == 6
    assert copy == await all_tasks(client, user)


async def test_changes_after_a_cursor_come_once_in_order_merged_per_task(
    client: AsyncClient, user: str, create_task: Callable[..., Any]
) -> None:
    kept, changed, gone = [await create_task(user, name) for name in ("kept", "changed", "gone")]
    copy: Copy = {}
    cursor, _ = await sync(client, user, copy)
    assert (await read_feed(client, user, cursor))["changes"] == []

    await client.put(f"/api/tasks/{changed['id']}", json={"title": "v2"}, headers=auth(user))
    created = await create_task(user, "new")
    await client.delete(f"/api/tasks/{gone['id']}", headers=auth(user))
    await client.put(f"/api/tasks/{changed['id']}", json={"title": "v3"}, headers=auth(user))
    short_lived = await create_task(user, "short-lived")
    await client.delete(f"/api/tasks/{short_lived['id']}", headers=auth(user))

    page = await read_feed(client, user, cursor)
    assert page["has_more"] is False
    ops = [(item["op"], item.get("id") or item["task"]["id"]) for item in page["changes"]]
    # In the order of each task's latest change; a task changed twice comes once, as it is now;
    # one created and deleted after the cursor comes only as its deletion.
    assert ops == [
        ("upsert", created["id"]),
        ("delete", gone["id"]),
        ("upsert", changed["id"]),
        ("delete", short_lived["id"]),
    ]
    assert page["changes"][2]["task"]["title"] == "v3"
    for item in page["changes"]:
        apply(copy, item)
    assert copy == await all_tasks(client, user)
    assert kept["id"] in copy
    # Read again from the new cursor: nothing is repeated.
    assert (await read_feed(client, user, page["cursor"]))["changes"] == []


async def test_a_paged_snapshot_continues_with_what_changed_while_it_was_read(
    client: AsyncClient, user: str, create_task: Callable[..., Any]
) -> None:
    tasks = [await create_task(user, f"task {n}") for n in range(6)]
    copy: Copy = {}
    first = await read_feed(client, user, limit=2)
    for item in first["changes"]:
        apply(copy, item)
    assert first["has_more"] is True
    # Meanwhile: a task already read changes, one not yet read is deleted, one is created.
    read_id = first["changes"][0]["task"]["id"]
    unread_id = next(task["id"] for task in tasks if task["id"] not in copy)
    await client.put(f"/api/tasks/{read_id}", json={"title": "changed"}, headers=auth(user))
    await client.delete(f"/api/tasks/{unread_id}", headers=auth(user))
    await create_task(user, "created meanwhile")
    await sync(client, user, copy, first["cursor"], limit=2)
    assert copy == await all_tasks(client, user)
    assert copy[read_id]["title"] == "changed"


async def test_the_feed_shows_only_the_callers_changes(
    client: AsyncClient, create_task: Callable[..., Any]
) -> None:
    alice, bob = new_user(), new_user()
    cursor = (await read_feed(client, bob))["cursor"]
    await create_task(alice, "alice's")
    assert (await read_feed(client, bob, cursor))["changes"] == []
    alice_page = await read_feed(client, alice)
    assert [item["task"]["title"] for item in alice_page["changes"]] == ["alice's"]
    # Alice's cursor means nothing in Bob's feed.
    response = await client.get(
        "/api/tasks/changes", params={"since": alice_page["cursor"]}, headers=auth(bob)
    )
    assert response.status_code == 410


async def test_malformed_forged_and_unknown_cursors_are_gone(
    client: AsyncClient, user: str, create_task: Callable[..., Any]
) -> None:
    await create_task(user)
    cursor = (await read_feed(client, user))["cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[7] ^= 1  # another position, same signature
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for since in ("", "not-a-cursor", "%%%", cursor[:-2], forged, cursor + "AA", "é"):
        response = await client.get(
            "/api/tasks/changes", params={"since": since}, headers=auth(user)
        )
        assert response.status_code == 410, since
        assert "without `since`" in response.json()["detail"]


async def test_limit_is_validated(client: AsyncClient, user: str) -> None:
    for limit in ("0", "1001", "x"):
        response = await client.get(
            "/api/tasks/changes", params={"limit": limit}, headers=auth(user)
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_the_feed_needs_a_token(client: AsyncClient) -> None:
    response = await client.get("/api/tasks/changes")
    assert response.status_code == 401


async def test_other_methods_on_the_feed_are_not_allowed(client: AsyncClient, user: str) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/api/tasks/changes", headers=auth(user))
        assert response.status_code == 405
        assert response.headers["allow"] == "GET"
