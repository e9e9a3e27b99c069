"""Versions as ETags: If-None-Match on reads, If-Match on writes (both path prefixes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import auth, new_user

Create = Callable[..., Any]


def tag(task: dict[str, Any]) -> str:
    return f'"{task["version"]}"'


async def test_every_response_carrying_a_task_has_its_version_as_etag(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    created = await client.post("/api/tasks", json={"title": "tagged"}, headers=auth(user))
    assert created.headers["etag"] == '"1"'
    path = f"/api/tasks/{created.json()['id']}"
    assert (await client.get(path, headers=auth(user))).headers["etag"] == '"1"'
    updated = await client.put(path, json={"title": "again"}, headers=auth(user))
    assert updated.headers["etag"] == '"2"' == tag(updated.json())
    toggled = await client.patch(f"{path}/complete", headers=auth(user))
    assert toggled.headers["etag"] == '"3"' == tag(toggled.json())


async def test_if_none_match_with_the_current_version_is_304_without_a_body(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}"
    for current in ('"1"', 'W/"1"', '"7", "1"', "*"):
        response = await client.get(path, headers=auth(user) | {"If-None-Match": current})
        assert response.status_code == 304, current
        assert response.content == b""
        assert response.headers["etag"] == '"1"'
    await client.put(path, json={"title": "changed"}, headers=auth(user))
    response = await client.get(path, headers=auth(user) | {"If-None-Match": '"1"'})
    assert response.status_code == 200
    assert response.json()["title"] == "changed"
    assert response.headers["etag"] == '"2"'


async def test_if_match_applies_a_write_only_at_that_version(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user, "first")
    path = f"/api/tasks/{task['id']}"
    saved = await client.put(
        path, json={"title": "mine"}, headers=auth(user) | {"If-Match": tag(task)}
    )
    assert saved.status_code == 200
    # Another device still holds version 1: its write is refused and changes nothing.
    for method, url, body in (
        ("PUT", path, {"title": "theirs"}),
        ("PATCH", f"{path}/complete", None),
        ("DELETE", path, None),
    ):
        stale = await client.request(
            method, url, json=body, headers=auth(user) | {"If-Match": tag(task)}
        )
        assert stale.status_code == 412, method
        assert "If-Match" in stale.json()["detail"]
    current = (await client.get(path, headers=auth(user))).json()
    assert current == saved.json()
    # At the current version each write goes through.
    toggled = await client.patch(f"{path}/complete", headers=auth(user) | {"If-Match": '"2"'})
    assert toggled.status_code == 200
    assert toggled.json()["completed"] is True
    assert (await client.delete(path, headers=auth(user) | {"If-Match": '"3"'})).status_code == 204


async def test_if_match_star_a_weak_tag_and_several_tags(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}"
    star = await client.put(path, json={"title": "any"}, headers=auth(user) | {"If-Match": "*"})
    assert star.status_code == 200
    weak = await client.put(path, json={"title": "w"}, headers=auth(user) | {"If-Match": 'W/"2"'})
    assert weak.status_code == 412  # If-Match compares strongly
    several = await client.put(
        path, json={"title": "s"}, headers=auth(user) | {"If-Match": '"9", "2", "x"'}
    )
    assert several.status_code == 200
    assert several.headers["etag"] == '"3"'


async def test_a_missing_or_foreign_task_is_404_whatever_the_preconditions(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    foreign = await create_task(new_user())
    for task_id in (foreign["id"], 2**62):
        path = f"/api/tasks/{task_id}"
        for precondition in ({"If-Match": '"1"'}, {"If-Match": "*"}, {"If-Match": '"5"'}):
            headers = auth(user) | precondition
            assert (await client.put(path, json={"title": "x"}, headers=headers)).status_code == 404
            assert (await client.patch(f"{path}/complete", headers=headers)).status_code == 404
            assert (await client.delete(path, headers=headers)).status_code == 404
        response = await client.get(path, headers=auth(user) | {"If-None-Match": "*"})
        assert response.status_code == 404
    assert (
        await client.get(f"/api/tasks/{foreign['id']}", headers=auth(foreign["user_id"]))
    ).json() == foreign


@pytest.mark.parametrize("value", ["1", '"1', "W/1", '"a"b"', ",", '"1" "2"'])
async def test_a_malformed_precondition_is_400_naming_the_header(
    client: AsyncClient, user: str, create_task: Create, value: str
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}"
    written = await client.put(path, json={"title": "x"}, headers=auth(user) | {"If-Match": value})
    assert written.status_code == 400
    assert "If-Match" in written.json()["detail"]
    read = await client.get(path, headers=auth(user) | {"If-None-Match": value})
    assert read.status_code == 400
    assert "If-None-Match" in read.json()["detail"]
    assert (await client.get(path, headers=auth(user))).json() == task


async def test_racing_conditional_writes_from_one_version_let_exactly_one_through(
    client: AsyncClient, user: str, create_task: Create
) -> None:
    task = await create_task(user)
    path = f"/api/tasks/{task['id']}"
    responses = await asyncio.gather(
        *(
            client.put(
                path, json={"title": f"writer {n}"}, headers=auth(user) | {"If-Match": '"1"'}
            )
            for n in range(10)
        ),
        *(
            client.patch(f"{path}/complete", headers=auth(user) | {"If-Match": '"1"'})
            for _ in range(5)
        ),
    )
    assert sorted(response.status_code for response in responses) == [200] + [412] * 14
    final = (await client.get(path, headers=auth(user))).json()
    assert final["version"] == 2
