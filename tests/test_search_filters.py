"""Listing with search, filters and sorting; GET /api/tags. Every answer is checked against the
same selection made in Python over the tasks the test created."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import auth, new_user

NOW = datetime.now(UTC).replace(microsecond=0)


def at(hours: float) -> str:
    return (NOW + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


# title, description, priority, tags, due in hours from now (None: no due date), completed
SPECS: list[tuple[str, str | None, str, list[str], float | None, bool]] = [
    ("Buy milk", "from the shop", "low", ["home", "errand"], -5, False),
    ("buy bread", None, "high", ["home"], -1, True),
    ("Über den Fluss", "Straße entlang", "medium", ["trip"], 24, False),
    ("Report", "quarterly REPORT 100%", "high", ["work"], 48, False),
    ("report_draft", "under_score", "high", ["work", "home"], None, False),
    ("Zebra", "STRASSE", "low", [], None, True),
    ("apple", "Buy apples", "medium", ["errand"], 2, False),
    ("Apple", None, "medium", ["errand"], 2, False),
]


async def seed(client: AsyncClient, user: str) -> list[dict[str, Any]]:
    created = []
    for title, description, priority, tags, due, done in SPECS:
        body: dict[str, Any] = {"title": title, "description": description}
        body |= {"priority": priority, "tags": tags}
        if due is not None:
            body["due_at"] = at(due)
        response = await client.post("/api/tasks", json=body, headers=auth(user))
        assert response.status_code == 201, response.text
        task = response.json()
        if done:
            task = (
                await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth(user))
            ).json()
        created.append(task)
    return created


@pytest.fixture
async def seeded(client: AsyncClient, user: str) -> list[dict[str, Any]]:
    tasks = await seed(client, user)
    # Another user's equal tasks must never show up, in any list, search or count.
    await seed(client, new_user())
    return tasks


async def listing(client: AsyncClient, user: str, **params: Any) -> tuple[list[Any], int]:
    response = await client.get("/api/tasks", params=params, headers=auth(user))
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()], int(response.headers["x-total-count"])


def ids(tasks: list[dict[str, Any]], keep: Any) -> set[int]:
    return {task["id"] for task in tasks if keep(task)}


def due(task: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(task["due_at"]) if task["due_at"] else None


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"q": "buy"}, lambda t: "buy" in (t["title"] + (t["description"] or "")).lower()),
        ({"q": "BUY  Milk"}, lambda t: t["title"] == "Buy milk"),
        ({"q": "über"}, lambda t: t["title"] == "Über den Fluss"),
        ({"q": "ÜBER"}, lambda t: t["title"] == "Über den Fluss"),
        # casefold: ß is ss, so "strasse" finds "Straße" and "STRASSE" alike.
        ({"q": "strasse"}, lambda t: t["title"] in ("Über den Fluss", "Zebra")),
        ({"q": "STRAßE"}, lambda t: t["title"] in ("Über den Fluss", "Zebra")),
        ({"q": "100%"}, lambda t: t["title"] == "Report"),
        ({"q": "_"}, lambda t: t["title"] == "report_draft"),
        ({"q": "report fluss"}, lambda t: False),
        ({"q": "   "}, lambda t: True),
        ({"priority": "high"}, lambda t: t["priority"] == "high"),
        ({"priority": "LOW,medium"}, lambda t: t["priority"] in ("low", "medium")),
        ({"tag": "home"}, lambda t: "home" in t["tags"]),
        ({"tag": "Home,WORK"}, lambda t: {"home", "work"} <= set(t["tags"])),
        ({"tag": ["home", "errand"]}, lambda t: {"home", "errand"} <= set(t["tags"])),
        ({"tag": "nothing"}, lambda t: False),
        ({"has_due": "true"}, lambda t: t["due_at"] is not None),
        ({"has_due": "false"}, lambda t: t["due_at"] is None),
        ({"overdue": "true"}, lambda t: not t["completed"] and due(t) and due(t) < NOW),
        ({"overdue": "false"}, lambda t: t["completed"] or not due(t) or due(t) >= NOW),
        ({"due_after": at(0)}, lambda t: due(t) and due(t) >= NOW),
        ({"due_before": at(2)}, lambda t: due(t) and due(t) < NOW + timedelta(hours=2)),
        (
            {"due_after": at(-1), "due_before": at(24)},
            lambda t: due(t) and NOW - timedelta(hours=1) <= due(t) < NOW + timedelta(hours=24),
        ),
        (
            {"status": "pending", "tag": "home"},
            lambda t: not t["completed"] and "home" in t["tags"],
        ),
        (
            {"status": "completed", "q": "b", "priority": "high,low"},
            lambda t: (
                t["completed"] and t["priority"] in ("high", "low") and "b" in t["title"].lower()
            ),
        ),
        (
            {"tag": "errand", "priority": "medium", "sort": "due_at", "has_due": "true"},
            lambda t: "errand" in t["tags"] and t["priority"] == "medium" and t["due_at"],
        ),
    ],
)
async def test_filters_alone_and_combined(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]], params: dict[str, Any], keep: Any
) -> None:
    listed, total = await listing(client, user, **params)
    expected = ids(seeded, keep)
    assert set(listed) == expected
    assert len(listed) == total == len(expected)


def ordered(tasks: list[dict[str, Any]], sort: str) -> list[int]:
    """The contract's order, worked out here: ties by id descending, no due date last."""
    key = sort.removeprefix("-")
    descending = sort.startswith("-")
    rank = {"low": 1, "medium": 2, "high": 3}

    def value(task: dict[str, Any]) -> Any:
        if key == "priority":
            return rank[task["priority"]]
        if key == "title":
            return task["title"].casefold()
        return task[key]

    with_value = [task for task in tasks if value(task) is not None]
    without = [task for task in tasks if value(task) is None]
    # Sorting is stable, also with reverse=True: ties keep the id-descending order.
    result = sorted(sorted(with_value, key=lambda task: -task["id"]), key=value, reverse=descending)
    last = sorted(without, key=lambda task: -task["id"])
    return [task["id"] for task in result + last]


@pytest.mark.parametrize(
    "sort",
    [
        f"{sign}{key}"
        for key in ("created_at", "updated_at", "due_at", "priority", "title")
        for sign in ("", "-")
    ],
)
async def test_each_sort_in_both_directions(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]], sort: str
) -> None:
    current = {task["id"]: task for task in seeded}
    for task_id in list(current):  # completion moved updated_at: read each task as it is now
        current[task_id] = (await client.get(f"/api/tasks/{task_id}", headers=auth(user))).json()
    listed, _ = await listing(client, user, sort=sort)
    assert listed == ordered(list(current.values()), sort)


@pytest.mark.parametrize(("alias", "sort"), [("created", "-created_at"), ("due_date", "due_at")])
async def test_the_guides_sort_aliases(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]], alias: str, sort: str
) -> None:
    assert await listing(client, user, sort=alias) == await listing(client, user, sort=sort)


async def test_default_order_is_newest_first(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    listed, _ = await listing(client, user)
    assert listed == [task["id"] for task in reversed(seeded)]
    assert (await listing(client, user, q=""))[0] == listed


def links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>;\s*rel="(\w+)"', header)}


async def test_paging_a_sorted_filtered_list_shows_each_task_once(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    params = {"sort": "-priority", "tag": "errand", "limit": 1}
    whole, total = await listing(client, user, sort="-priority", tag="errand")
    url: str | None = "/api/tasks"
    first = True
    seen: list[int] = []
    while url:
        response = await client.get(url, params=params if first else None, headers=auth(user))
        first = False
        assert int(response.headers["x-total-count"]) == total
        seen += [task["id"] for task in response.json()]
        url = links(response.headers.get("link", "")).get("next")
        if url:
            assert "sort=-priority" in url
            assert "tag=errand" in url
    assert seen == whole
    assert len(seen) == total == 3


async def test_link_keeps_every_parameter(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    query = "q=b&tag=home&tag=home&priority=low,high&sort=-due_at&has_due=true&limit=1"
    response = await client.get(f"/api/tasks?{query}&colour=red", headers=auth(user))
    assert response.headers["x-total-count"] == "2"
    next_page = links(response.headers["link"])["next"]
    for part in ("q=b", "tag=home&tag=home", "priority=low%2Chigh", "sort=-due_at", "colour=red"):
        assert part in next_page, next_page
    assert "offset=1" in next_page
    following = await client.get(next_page, headers=auth(user))
    assert set(links(following.headers["link"])) == {"prev"}
    assert len(following.json()) == 1


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"q": "x" * 201}, "q"),
        ({"q": "nul\u0000"}, "q"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": "high,none"}, "priority"),
        ({"tag": ",".join(f"t{n}" for n in range(21))}, "tag"),
        ({"tag": "nul\u0000"}, "tag"),
        ({"tag": "x" * 51}, "tag"),
        ({"due_after": "2026-01-01"}, "due_after"),
        ({"due_before": "2026-01-01T00:00:00"}, "due_before"),
        ({"overdue": "yes"}, "overdue"),
        ({"overdue": "1"}, "overdue"),
        ({"has_due": "True"}, "has_due"),
        ({"sort": "colour"}, "sort"),
        ({"sort": "+title"}, "sort"),
        ({"sort": "-created"}, "sort"),
        ({"status": "done"}, "status"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
async def test_invalid_parameters_are_422_naming_them(
    client: AsyncClient, user: str, params: dict[str, str], name: str
) -> None:
    response = await client.get("/api/tasks", params=params, headers=auth(user))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["query", name]


async def test_unknown_parameters_are_ignored(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    plain = await listing(client, user)
    assert await listing(client, user, search="milk", sort_by="title", completed="true") == plain


async def test_tags_count_the_callers_tasks_by_name(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    response = await client.get("/api/tags", headers=auth(user))
    assert response.status_code == 200
    assert response.json() == [
        {"name": "errand", "count": 3},
        {"name": "home", "count": 3},
        {"name": "trip", "count": 1},
        {"name": "work", "count": 2},
    ]
    # Following every write: a change of tags, a delete.
    first = seeded[0]
    await client.put(f"/api/tasks/{first['id']}", json={"tags": ["trip"]}, headers=auth(user))
    await client.delete(f"/api/tasks/{seeded[3]['id']}", headers=auth(user))
    counts = {
        tag["name"]: tag["count"]
        for tag in (await client.get("/api/tags", headers=auth(user))).json()
    }
    assert counts == {"errand": 2, "home": 2, "trip": 2, "work": 1}


async def test_a_user_without_tags_has_none(client: AsyncClient, user: str, create_task) -> None:
    await create_task(new_user(), tags=["secret"])
    await create_task(user)
    response = await client.get("/api/tags", headers=auth(user))
    assert response.json() == []
    assert (await client.get("/api/tags")).status_code == 401


def matches(task: dict[str, Any], params: dict[str, Any]) -> bool:
    """The contract's selection, worked out here, for the parameters the tests below send."""
    tags = {tag for value in [params.get("tag", "")] for tag in value.split(",") if tag}
    priorities = [p for p in params.get("priority", "").split(",") if p]
    words = params.get("q", "").casefold().split()
    text = (task["title"] + "\n" + (task["description"] or "")).casefold()
    status = params.get("status", "all")
    return (
        tags <= set(task["tags"])
        and (not priorities or task["priority"] in priorities)
        and all(word in text for word in words)
        and (status == "all" or task["completed"] == (status == "completed"))
        and (
            "has_due" not in params or (task["due_at"] is not None) == (params["has_due"] == "true")
        )
        and (
            "due_after" not in params
            or bool(due(task) and due(task) >= NOW + timedelta(hours=params["due_after"]))
        )
        and (
            "due_before" not in params
            or bool(due(task) and due(task) < NOW + timedelta(hours=params["due_before"]))
        )
    )


async def expected(client: AsyncClient, user: str, params: dict[str, Any], sort: str) -> list[int]:
    """What a list must answer: the selection and order made here over every task as it is."""
    response = await client.get("/api/tasks", params={"limit": 1000}, headers=auth(user))
    return ordered([task for task in response.json() if matches(task, params)], sort)


def sent(params: dict[str, Any]) -> dict[str, Any]:
    """The query parameters for `params`, due bounds given in hours from now."""
    return {name: at(value) if name.startswith("due_") else value for name, value in params.items()}


TAG_LISTS: list[dict[str, Any]] = [
    {"tag": "home"},
    {"tag": "errand", "priority": "medium,low"},
    {"tag": "home,errand"},
    {"tag": "errand,home,work"},
    {"tag": "home", "has_due": "true"},
    {"tag": "errand", "has_due": "false"},
    {"tag": "home", "priority": "high", "due_after": -2, "due_before": 50},
    # Filters on columns the tag rows do not carry.
    {"tag": "home", "status": "pending"},
    {"tag": "errand", "q": "apple"},
]
SORTS = [
    f"{sign}{key}"
    for key in ("created_at", "updated_at", "due_at", "priority", "title")
    for sign in ("", "-")
]


@pytest.mark.parametrize("sort", SORTS)
async def test_tag_filters_in_every_order(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]], sort: str
) -> None:
    for params in TAG_LISTS:
        listed, total = await listing(client, user, sort=sort, **sent(params))
        assert listed == await expected(client, user, params, sort), params
        assert total == len(listed)


async def test_tag_filters_follow_every_change_of_a_task(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]]
) -> None:
    """Tag filters combined with priority and due dates answer from the tag rows, which must
    follow each change of those: an update, a completion's next occurrence, a change of tags."""

    async def check() -> None:
        for params in TAG_LISTS:
            for sort in ("due_at", "-priority", "-created_at"):
                listed, total = await listing(client, user, sort=sort, **sent(params))
                assert listed == await expected(client, user, params, sort), (params, sort)
                assert total == len(listed)

    body = {"title": "Water plants", "tags": ["home"], "priority": "low", "due_at": at(3)}
    created = await client.post(
        "/api/tasks", json=body | {"recurrence": "FREQ=DAILY"}, headers=auth(user)
    )
    task_id = created.json()["id"]
    await check()
    changes: list[dict[str, Any]] = [
        {"priority": "high", "due_at": at(40)},
        {"priority": "HIGH"},  # the same value: nothing moves
        {"tags": ["home", "errand"], "priority": "medium"},
    ]
    for change in changes:
        response = await client.put(f"/api/tasks/{task_id}", json=change, headers=auth(user))
        assert response.status_code == 200, response.text
        await check()
    completed = await client.patch(f"/api/tasks/{task_id}/complete", headers=auth(user))
    assert "next-occurrence" in completed.headers["link"]
    await check()
    cleared = {"recurrence": None, "due_at": None, "priority": "low"}
    response = await client.put(f"/api/tasks/{task_id}", json=cleared, headers=auth(user))
    assert response.status_code == 200, response.text
    await check()


@pytest.mark.parametrize(
    "params",
    [
        {"q": "buy"},
        {"tag": "home"},
        {"tag": "home,errand"},
        {"tag": "home", "status": "pending"},
        {"priority": "high"},
        {"tag": "nothing"},
        {"q": "nothing"},
    ],
)
async def test_a_filtered_page_past_the_end_carries_the_total(
    client: AsyncClient, user: str, seeded: list[dict[str, Any]], params: dict[str, str]
) -> None:
    whole, total = await listing(client, user, **params)
    assert total == len(whole)
    for offset in (len(whole) or 1, 50):
        response = await client.get(
            "/api/tasks", params=params | {"offset": offset}, headers=auth(user)
        )
        assert response.json() == []
        assert response.headers["x-total-count"] == str(total)
        assert "prev" in links(response.headers["link"])
