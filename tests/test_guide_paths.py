"""The guide's `/api/{user_id}/tasks...` paths: the caller's own id in the path, or `403`.

Every test that uses the `client` fixture already runs on these paths too (conftest's
GuidePathsTransport); these tests cover what only they have: a path naming someone else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.conftest import auth, client_for, new_user, token_for

FOREIGN_REQUESTS = [
    ("GET", "", None),
    ("POST", "", {"title": "planted"}),
    ("GET", "/{id}", None),
    ("PUT", "/{id}", {"title": "hijacked"}),
    ("PATCH", "/{id}/complete", None),
    ("PATCH", "/{id}/complete", {"completed": True}),
    ("DELETE", "/{id}", None),
]


@pytest.fixture
async def api(app: FastAPI) -> Any:
    async with client_for(app) as http:
        yield http


@pytest.mark.parametrize(("method", "suffix", "body"), FOREIGN_REQUESTS)
async def test_a_path_naming_another_user_is_403_and_touches_nothing(
    api: AsyncClient, method: str, suffix: str, body: object
) -> None:
    owner, intruder = new_user(), new_user()
    created = await api.post(f"/api/{owner}/tasks", json={"title": "Private"}, headers=auth(owner))
    assert created.status_code == 201
    task = created.json()
    path = f"/api/{owner}/tasks" + suffix.format(id=task["id"])

    response = await api.request(method, path, json=body, headers=auth(intruder))

    assert response.status_code == 403, response.text
    assert "not the signed-in user" in response.json()["detail"]
    assert "Private" not in response.text
    # Nothing was read or written: the owner's task is as it was, the intruder has no task.
    assert (await api.get(f"/api/tasks/{task['id']}", headers=auth(owner))).json() == task
    assert (await api.get("/api/tasks", headers=auth(owner))).headers["x-total-count"] == "1"
    assert (await api.get("/api/tasks", headers=auth(intruder))).headers["x-total-count"] == "0"


async def test_the_path_user_must_match_exactly(api: AsyncClient) -> None:
    user = new_user()
    for lookalike in (user.upper(), f"{user} ", f"{user}x", user[:-1]):
        response = await api.get(f"/api/{lookalike}/tasks", headers=auth(user))
        assert response.status_code == 403, lookalike


async def test_a_bad_token_is_401_before_the_path_is_judged(api: AsyncClient) -> None:
    owner = new_user()
    no_token = await api.get(f"/api/{owner}/tasks")
    assert no_token.status_code == 401
    assert no_token.headers["www-authenticate"] == "Bearer"
    expired = await api.get("/api/someone-else/tasks", headers=auth(owner, exp=1, iat=None))
    assert expired.status_code == 401


async def test_a_user_id_with_reserved_characters_works_percent_encoded(api: AsyncClient) -> None:
    user = f"{new_user()}@example.com|oauth 2:ü"
    token = {"Authorization": f"Bearer {token_for(user)}"}
    base = f"/api/{quote(user, safe='')}/tasks"

    created = await api.post(base, json={"title": "Mine"}, headers=token)

    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{base}/{created.json()['id']}"
    assert (await api.get(created.headers["location"], headers=token)).json() == created.json()


async def test_a_user_id_with_a_slash_cannot_use_the_guide_paths(api: AsyncClient) -> None:
    # Once decoded, its slash cannot be told from the path's own: such a user calls /api/tasks.
    user = f"{new_user()}/x"
    token = {"Authorization": f"Bearer {token_for(user)}"}
    response = await api.get(f"/api/{quote(user, safe='')}/tasks", headers=token)
    assert response.status_code == 404
    assert (await api.get("/api/tasks", headers=token)).status_code == 200


async def test_openapi_documents_both_sets_of_paths(api: AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    for plain, guide in [
        ("/api/tasks", "/api/{user_id}/tasks"),
        ("/api/tasks/{task_id}", "/api/{user_id}/tasks/{task_id}"),
        ("/api/tasks/{task_id}/complete", "/api/{user_id}/tasks/{task_id}/complete"),
    ]:
        assert set(paths[plain]) == set(paths[guide])
        for method, operation in paths[guide].items():
            parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
            assert parameters["user_id"]["in"] == "path", method
            assert parameters["user_id"]["required"] is True
            assert "403" in operation["responses"]
            assert "403" not in paths[plain][method]["responses"]
            assert operation["security"] == paths[plain][method]["security"]
