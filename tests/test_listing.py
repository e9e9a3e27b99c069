"""Listing: newest first, the status filter, and paging with X-Total-Count and Link."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from httpx import URL, AsyncClient

from tests.conftest import auth


async def make_tasks(client: AsyncClient, user: str, count: int) -> list[dict[str, object]]:
    tasks = []
    for number in range(count):
        response = await client.post(
            "/api/tasks", json={"title": f"task {number}"}, headers=auth(user)
        )
        tasks.append(response.json())
    return tasks


def links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>;\s*rel="(\w+)"', header)}


async def test_empty_list(client: AsyncClient, user: str) -> None:
    response = await client.get("/api/tasks", headers=auth(user))
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"
    assert "link" not in response.headers


async def test_newest_first_with_id_breaking_ties(client: AsyncClient, user: str) -> None:
    created = await make_tasks(client, user, 5)
    listed = (await client.get("/api/tasks", headers=auth(user))).json()
    assert [task["id"] for task in listed] == [task["id"] for task in reversed(created)]
    keys = [(task["created_at"], task["id"]) for task in listed]
    assert keys == sorted(keys, reverse=True)


async def test_status_filter(client: AsyncClient, user: str) -> None:
    tasks = await make_tasks(client, user, 5)
    done_ids = {tasks[1]["id"], tasks[3]["id"]}
    for task_id in done_ids:
        await client.patch(f"/api/tasks/{task_id}/complete", headers=auth(user))

    async def ids(status: str | None) -> tuple[set[object], str]:
        params = {"status": status} if status else {}
        response = await client.get("/api/tasks", params=params, headers=auth(user))
        assert response.status_code == 200
        return {task["id"] for task in response.json()}, response.headers["x-total-count"]

    all_ids = {task["id"] for task in tasks}
    assert await ids(None) == (all_ids, "5")
    assert await ids("all") == (all_ids, "5")
    assert await ids("completed") == (done_ids, "2")
    assert await ids("pending") == (all_ids - done_ids, "3")


async def counts(client: AsyncClient, user: str) -> dict[str, tuple[int, int]]:
    """Per status: X-Total-Count, and how many tasks the full listing really holds."""
    result = {}
    for status in ("all", "pending", "completed"):
        response = await client.get(
            "/api/tasks", params={"status": status, "limit": 1000}, headers=auth(user)
        )
        result[status] = (int(response.headers["x-total-count"]), len(response.json()))
    return result


async def test_totals_stay_exact_through_every_kind_of_write(
    client: AsyncClient, user: str
) -> None:
    """The totals are kept by the database as tasks change; each kind of write must move them
    exactly as the rows move, and another user's writes not at all."""
    other = user + "-other"
    mine = await make_tasks(client, user, 6)
    await make_tasks(client, other, 2)
    ids = [task["id"] for task in mine]
    writes = [
        ("PATCH", f"/api/tasks/{ids[0]}/complete", None),  # toggle: done
        ("PATCH", f"/api/tasks/{ids[1]}/complete", None),  # toggle: done
        ("PATCH", f"/api/tasks/{ids[1]}/complete", None),  # toggle back: pending
        ("PATCH", f"/api/tasks/{ids[2]}/complete", {"completed": True}),
        ("PATCH", f"/api/tasks/{ids[2]}/complete", {"completed": True}),  # no change
        ("PATCH", f"/api/tasks/{ids[3]}/complete", {"completed": False}),  # no change
        ("PUT", f"/api/tasks/{ids[4]}", {"completed": True, "title": "done by PUT"}),
        ("PUT", f"/api/tasks/{ids[5]}", {"title": "renamed only"}),
        ("DELETE", f"/api/tasks/{ids[0]}", None),  # a completed one
        ("DELETE", f"/api/tasks/{ids[5]}", None),  # a pending one
        ("DELETE", f"/api/tasks/{ids[5]}", None),  # already gone: 404, nothing moves
    ]
    for method, path, body in writes:
        response = await client.request(method, path, json=body, headers=auth(user))
        assert response.status_code in (200, 204, 404), (method, path, response.text)
        totals = await counts(client, user)
        assert all(total == listed for total, listed in totals.values()), (method, path, totals)
    assert await counts(client, user) == {"all": (4, 4), "pending": (2, 2), "completed": (2, 2)}
    assert await counts(client, other) == {"all": (2, 2), "pending": (2, 2), "completed": (0, 0)}


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": ""},
        {"status": "ALL"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"offset": "x"},
        {"offset": "99999999999999999999999999"},
    ],
)
async def test_invalid_list_parameters_are_422(
    client: AsyncClient, user: str, params: dict[str, str]
) -> None:
    response = await client.get("/api/tasks", params=params, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


async def test_a_repeated_parameter_takes_its_last_value(
    client: AsyncClient, user: str, create_task
) -> None:
    for n in range(3):
        await create_task(user, f"Task {n}")
    response = await client.get("/api/tasks?limit=1&offset=0&limit=2", headers=auth(user))
    assert response.status_code == 200, response.text
    assert len(response.json()) == 2
    refused = await client.get("/api/tasks?limit=2&limit=0", headers=auth(user))
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_paging_headers_walk_every_task_once(client: AsyncClient, user: str) -> None:
    created = await make_tasks(client, user, 7)
    seen: list[object] = []
    url: str | None = "/api/tasks?limit=3"
    pages = 0
    while url:
        response = await client.get(url, headers=auth(user))
        assert response.status_code == 200
        assert response.headers["x-total-count"] == "7"
        seen += [task["id"] for task in response.json()]
        url = links(response.headers.get("link", "")).get("next")
        pages += 1
    assert pages == 3
    assert seen == [task["id"] for task in reversed(created)]


async def test_link_header_has_next_and_prev(
    client: AsyncClient, user: str, tasks_path: Callable[[str], str]
) -> None:
    await make_tasks(client, user, 5)
    response = await client.get(
        "/api/tasks", params={"limit": 2, "offset": 2, "status": "pending"}, headers=auth(user)
    )
    found = links(response.headers["link"])
    assert set(found) == {"next", "prev"}
    assert "offset=4" in found["next"]
    assert "limit=2" in found["next"]
    assert "offset=0" in found["prev"]
    assert "status=pending" in found["next"]
    # The links lead back to the paths the request was made to (the guide's, or not).
    assert {URL(url).path for url in found.values()} == {tasks_path(user)}

    last = await client.get("/api/tasks", params={"limit": 2, "offset": 4}, headers=auth(user))
    assert len(last.json()) == 1
    assert set(links(last.headers["link"])) == {"prev"}

    first = await client.get("/api/tasks", params={"limit": 2}, headers=auth(user))
    assert set(links(first.headers["link"])) == {"next"}

    whole = await client.get("/api/tasks", params={"limit": 5}, headers=auth(user))
    assert "link" not in whole.headers


async def test_offset_past_the_end_is_an_empty_page_with_the_total(
    client: AsyncClient, user: str
) -> None:
    await make_tasks(client, user, 3)
    response = await client.get("/api/tasks", params={"offset": 10}, headers=auth(user))
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "3"
    prev = links(response.headers["link"])["prev"]
    assert "offset=0" in prev


async def test_default_page_is_100(client: AsyncClient, user: str) -> None:
    await make_tasks(client, user, 101)
    response = await client.get("/api/tasks", headers=auth(user))
    assert len(response.json()) == 100
    assert response.headers["x-total-count"] == "101"
    assert "next" in links(response.headers["link"])
