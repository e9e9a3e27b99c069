"""/mcp: the task tools, driven by the MCP SDK's own client against the real `todo-api serve`.

The server runs as production runs it, with both token kinds on: HS256 with the shared secret,
and Better Auth's JWT plugin (EdDSA, verified with the JWKS of a stand-in issuer over HTTP).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
from fastapi import FastAPI
from mcp.shared.exceptions import MCPError

from tests.conftest import SECRET, auth, make_settings, new_user, token_for
from tests.issuer import JwksIssuer, SigningKey, generate_private_key
from tests.mcp_client import TOOLS, failed, mcp_client, succeeded
from tests.server import Server, free_port, running_server, service_environment
from tests.test_server import log_lines_with
from todo_api.http.app import create_app


@pytest.fixture(scope="module")
def issuer() -> Iterator[JwksIssuer]:
    running = JwksIssuer()
    running.publish(SigningKey("EdDSA", generate_private_key("EdDSA")))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(
    database_url: str, issuer: JwksIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = service_environment(
        DATABASE_URL=database_url,
        BETTER_AUTH_SECRET=SECRET,
        BETTER_AUTH_URL=issuer.url,
        LOG_JSON="true",
    )
    with running_server(tmp_path_factory.mktemp("mcp"), env) as running:
        yield running


def rest(server: Server, user: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=auth(user))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_initialize_and_list_the_tools_with_their_schemas(server: Server, mode: str) -> None:
    async with mcp_client(server.url, token_for(new_user()), mode=mode) as client:
        assert client.session.server_info is not None
        assert client.session.server_info.name == "todo-api"
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(listed) == TOOLS
    for tool in listed.values():
        assert "Example" in (tool.description or "")
        assert tool.input_schema["type"] == "object"
        assert tool.input_schema["properties"]["user_id"]["type"] == "string"
        assert "user_id" not in tool.input_schema.get("required", [])
        assert tool.output_schema is not None
        assert tool.output_schema["type"] == "object"
    # The arguments are the domain's own input models: the REST API's TaskCreate and TaskUpdate.
    add = listed["add_task"].input_schema
    assert add["required"] == ["title"]
    fields = {"title", "description", "priority", "tags", "due_at", "remind_at", "recurrence"}
    assert set(add["properties"]) == fields | {"timezone", "user_id"}
    assert add["properties"]["due_at"]["anyOf"][0]["format"] == "date-time"
    assert add["properties"]["title"]["maxLength"] == 200
    assert add["additionalProperties"] is False
    update = listed["update_task"].input_schema
    assert update["required"] == ["task_id"]
    assert set(update["properties"]) == fields | {"task_id", "completed", "timezone", "user_id"}
    assert listed["complete_task"].input_schema["required"] == ["task_id"]
    filters = {"status", "q", "priority", "tag", "due_after", "due_before", "overdue", "has_due"}
    assert set(listed["list_tasks"].input_schema["properties"]) == filters | {
        "sort",
        "limit",
        "offset",
        "user_id",
    }
    assert listed["list_tasks"].annotations is not None
    assert listed["list_tasks"].annotations.read_only_hint is True
    assert listed["delete_task"].annotations is not None
    assert listed["delete_task"].annotations.destructive_hint is True
    receipt = listed["add_task"].output_schema
    assert receipt is not None
    assert set(receipt["properties"]) == {"task_id", "status", "title", "next_task_id"}
    assert set(receipt["required"]) == {"task_id", "status", "title"}
    # Written for a model: the formats, each with an example.
    for name in ("add_task", "list_tasks"):
        description = listed[name].description or ""
        assert "RFC 3339" in description
        assert "2026-01-09T17:00:00+01:00" in description
        assert '"high"' in description
    assert "FREQ=WEEKLY;BYDAY=FR" in (listed["add_task"].description or "")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_every_tool_over_the_sdk_client(server: Server, mode: str) -> None:
    user = new_user()
    async with mcp_client(server.url, token_for(user), mode=mode) as client:
        created = await succeeded(
            client, "add_task", title="  Buy milk  ", description="Oat, 2 litres"
        )
        task_id = created["task_id"]
        assert created == {"task_id": task_id, "status": "created", "title": "Buy milk"}
        other = (await succeeded(client, "add_task", title="Call mum"))["task_id"]

        page = await succeeded(client, "list_tasks")
        assert page["total"] == 2
        assert [task["id"] for task in page["tasks"]] == [other, task_id]

        updated = await succeeded(
            client, "update_task", task_id=task_id, title="Buy oat milk", description=None
        )
        assert updated == {"task_id": task_id, "status": "updated", "title": "Buy oat milk"}

        completed = await succeeded(client, "complete_task", task_id=task_id)
        assert completed == {"task_id": task_id, "status": "completed", "title": "Buy oat milk"}
        # Completing sets completed; it is not a toggle.
        assert (await succeeded(client, "complete_task", task_id=task_id))["status"] == "completed"

        pending = await succeeded(client, "list_tasks", status="pending")
        assert [task["id"] for task in pending["tasks"]] == [other]
        done = await succeeded(client, "list_tasks", status="completed", limit=1)
        assert [task["id"] for task in done["tasks"]] == [task_id]

        deleted = await succeeded(client, "delete_task", task_id=other)
        assert deleted == {"task_id": other, "status": "deleted", "title": "Call mum"}
        assert await failed(client, "delete_task", task_id=other) == f"Task {other} not found"

    with rest(server, user) as api:
        task = api.get(f"/api/tasks/{task_id}").json()
        assert task["title"] == "Buy oat milk"
        assert task["description"] is None
        assert task["completed"] is True
        assert api.get(f"/api/tasks/{other}").status_code == 404


async def test_list_tasks_returns_the_tasks_as_the_rest_list_does(server: Server) -> None:
    user = new_user()
    with rest(server, user) as api:
        for title, priority, tags in [
            ("Plan the week", "high", ["work"]),
            ("Plan a trip", "low", ["home", "travel"]),
            ("Water plants", "medium", ["home"]),
            ("Plan the party", "medium", ["home"]),
        ]:
            body = {"title": title, "priority": priority, "tags": tags}
            assert api.post("/api/tasks", json=body).status_code == 201
        for query, arguments in [
            ({"limit": 2, "offset": 1}, {"limit": 2, "offset": 1}),
            ({"q": "plan", "sort": "-priority"}, {"q": "plan", "sort": "-priority"}),
            (
                {"tag": "home", "priority": "low,medium"},
                {"tag": ["home"], "priority": ["low", "medium"]},
            ),
            ({"sort": "title", "has_due": "false"}, {"sort": "title", "has_due": False}),
        ]:
            listed = api.get("/api/tasks", params=query)
            async with mcp_client(server.url, token_for(user)) as client:
                page = await succeeded(client, "list_tasks", **arguments)
            assert page["tasks"] == listed.json(), query
            assert page["total"] == int(listed.headers["x-total-count"]), query
    titles = [task["title"] for task in page["tasks"]]
    assert titles == ["Plan a trip", "Plan the party", "Plan the week", "Water plants"]


async def test_the_organizing_fields_and_filters_through_the_tools(server: Server) -> None:
    user = new_user()
    async with mcp_client(server.url, token_for(user)) as client:
        review = await succeeded(
            client,
            "add_task",
            title="Weekly review",
            priority="HIGH",
            tags=["Work", "planning", "work"],
            due_at="2099-01-02T17:00:00+01:00",
            remind_at="2099-01-02T15:30:00Z",
            recurrence="RRULE:FREQ=WEEKLY;BYDAY=FR",
            timezone="Europe/Berlin",
        )
        errand = await succeeded(
            client, "add_task", title="Buy stamps", due_at="2020-01-01T09:00:00Z"
        )
        await succeeded(client, "add_task", title="Someday", priority="low")

        overdue = await succeeded(client, "list_tasks", overdue=True)
        assert [task["id"] for task in overdue["tasks"]] == [errand["task_id"]]
        by_due = await succeeded(client, "list_tasks", has_due=True, sort="due_at")
        assert [task["id"] for task in by_due["tasks"]] == [errand["task_id"], review["task_id"]]
        window = await succeeded(
            client,
            "list_tasks",
            due_after="2099-01-01T00:00:00Z",
            due_before="2099-02-01T00:00:00+01:00",
        )
        [task] = window["tasks"]
        assert task["priority"] == "high"
        assert task["tags"] == ["planning", "work"]
        assert task["due_at"] == "2099-01-02T16:00:00Z"
        assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=FR"
        assert task["timezone"] == "Europe/Berlin"
        assert (await succeeded(client, "list_tasks", tag=["work"], priority=["high"]))[
            "total"
        ] == 1

        # Completing the recurring task schedules the next one, a week later, as REST does.
        completed = await succeeded(client, "complete_task", task_id=review["task_id"])
        next_id = completed["next_task_id"]
        assert completed == {
            "task_id": review["task_id"],
            "status": "completed",
            "title": "Weekly review",
            "next_task_id": next_id,
        }
        # Completing it again creates nothing more.
        assert "next_task_id" not in await succeeded(
            client, "complete_task", task_id=review["task_id"]
        )

        changed = await succeeded(
            client, "update_task", task_id=errand["task_id"], tags=[], due_at=None, priority="high"
        )
        assert changed["status"] == "updated"

    with rest(server, user) as api:
        following = api.get(f"/api/tasks/{next_id}").json()
        assert following["due_at"] == "2099-01-09T16:00:00Z"
        assert following["remind_at"] == "2099-01-09T15:30:00Z"
        assert following["completed"] is False
        assert api.get(f"/api/tasks/{review['task_id']}").json()["completed_at"] is not None
        stamps = api.get(f"/api/tasks/{errand['task_id']}").json()
        assert (stamps["tags"], stamps["due_at"], stamps["priority"]) == ([], None, "high")
        assert len(api.get("/api/tasks").json()) == 4


async def test_a_task_made_by_a_tool_is_the_rest_apis_and_back(server: Server) -> None:
    user = new_user()
    async with mcp_client(server.url, token_for(user)) as client:
        by_tool = (await succeeded(client, "add_task", title="From the agent"))["task_id"]
        with rest(server, user) as api:
            assert api.get(f"/api/tasks/{by_tool}").json()["title"] == "From the agent"
            by_api = api.post("/api/tasks", json={"title": "From the app"}).json()["id"]
        assert (await succeeded(client, "complete_task", task_id=by_api))["title"] == "From the app"
    with rest(server, user) as api:
        assert api.get(f"/api/tasks/{by_api}").json()["completed"] is True


async def test_invalid_arguments_are_tool_errors_naming_the_argument(server: Server) -> None:
    user = new_user()
    async with mcp_client(server.url, token_for(user)) as client:
        assert await failed(client, "add_task", title="   ") == (
            "Invalid arguments: title: String should have at least 1 character"
        )
        assert "title: Field required" in await failed(client, "add_task")
        assert "title: Input should be a valid string" in await failed(client, "add_task", title=5)
        assert "description: String should have at most 2000 characters" in await failed(
            client, "add_task", title="x", description="d" * 2001
        )
        assert "due_date: Extra inputs are not permitted" in await failed(
            client, "add_task", title="x", due_date="tomorrow"
        )
        assert "task_id: Field required" in await failed(client, "complete_task")
        assert "task_id: Input should be a valid integer" in await failed(
            client, "complete_task", task_id="seven"
        )
        assert "task_id: Input should be greater than or equal to 1" in await failed(
            client, "delete_task", task_id=0
        )
        both = await failed(client, "update_task", task_id=-1, completed="yes")
        assert "task_id:" in both
        assert "completed: Input should be a valid boolean" in both
        assert "status: Input should be 'all', 'pending' or 'completed'" in await failed(
            client, "list_tasks", status="overdue"
        )
        assert "limit: Input should be less than or equal to 1000" in await failed(
            client, "list_tasks", limit=1001
        )
        assert "due_at: Must be an RFC 3339 date-time with an offset" in await failed(
            client, "add_task", title="x", due_at="2026-01-09T16:00:00"
        )
        assert "priority: Must be 'low', 'medium' or 'high'" in await failed(
            client, "add_task", title="x", priority="urgent"
        )
        assert "tags: Input should be a valid list" in await failed(
            client, "add_task", title="x", tags=None
        )
        assert "timezone: Must be an IANA time zone name" in await failed(
            client, "add_task", title="x", timezone="Mars/Olympus"
        )
        assert await failed(client, "add_task", title="x", recurrence="FREQ=DAILY") == (
            "Invalid arguments: recurrence: A recurring task needs a due_at"
        )
        assert "recurrence: Invalid recurrence rule" in await failed(
            client, "add_task", title="x", recurrence="FREQ=HOURLY", due_at="2026-01-09T16:00:00Z"
        )
        assert "sort: Must be one of" in await failed(client, "list_tasks", sort="newest")
        assert "overdue: Must be 'true' or 'false'" in await failed(client, "list_tasks", overdue=1)
        # A filter the list does not know is refused, never silently ignored.
        assert "search: Extra inputs are not permitted" in await failed(
            client, "list_tasks", search="milk"
        )
        assert "Unknown tool 'add_tasks'" in await failed(client, "add_tasks", title="x")
        # Nothing was written by any of them.
        assert (await succeeded(client, "list_tasks"))["total"] == 0


async def test_another_users_task_reads_exactly_like_a_missing_one(server: Server) -> None:
    owner, intruder = new_user(), new_user()
    with rest(server, owner) as api:
        theirs = api.post("/api/tasks", json={"title": "Private"}).json()
    missing = theirs["id"] + 1_000_000
    async with mcp_client(server.url, token_for(intruder)) as client:
        for task_id in (theirs["id"], missing):
            expected = f"Task {task_id} not found"
            assert await failed(client, "complete_task", task_id=task_id) == expected
            assert await failed(client, "update_task", task_id=task_id, title="Mine") == expected
            assert await failed(client, "delete_task", task_id=task_id) == expected
        assert (await succeeded(client, "list_tasks"))["tasks"] == []
    with rest(server, owner) as api:
        assert api.get(f"/api/tasks/{theirs['id']}").json() == theirs


async def test_user_id_argument_must_be_the_token_subject(server: Server) -> None:
    user, victim = new_user(), new_user()
    async with mcp_client(server.url, token_for(user)) as client:
        mine = await succeeded(client, "add_task", title="Mine", user_id=user)
        for tool, arguments in [
            ("add_task", {"title": "Planted"}),
            ("list_tasks", {}),
            ("complete_task", {"task_id": mine["task_id"]}),
            ("update_task", {"task_id": mine["task_id"], "title": "Changed"}),
            ("delete_task", {"task_id": mine["task_id"]}),
        ]:
            message = await failed(client, tool, **arguments, user_id=victim)
            assert message.startswith("user_id is not the signed-in user's id")
        page = await succeeded(client, "list_tasks", user_id=user)
    assert [task["title"] for task in page["tasks"]] == ["Mine"]
    assert page["tasks"][0]["completed"] is False
    with rest(server, victim) as api:
        assert api.get("/api/tasks").json() == []


async def test_two_users_tokens_see_only_their_own_tasks(
    server: Server, issuer: JwksIssuer
) -> None:
    """One user signs in with Better Auth's JWT plugin (EdDSA), the other with HS256."""
    alice, bob = new_user(), new_user()
    alice_token = issuer.token(issuer.keys[0], alice)
    async with (
        mcp_client(server.url, alice_token) as as_alice,
        mcp_client(server.url, token_for(bob)) as as_bob,
    ):
        for title in ("a1", "a2"):
            await succeeded(as_alice, "add_task", title=title)
        bobs = (await succeeded(as_bob, "add_task", title="b1"))["task_id"]
        alices = await succeeded(as_alice, "list_tasks")
        assert [task["title"] for task in alices["tasks"]] == ["a2", "a1"]
        assert {task["user_id"] for task in alices["tasks"]} == {alice}
        assert (await succeeded(as_bob, "list_tasks"))["total"] == 1
        assert await failed(as_alice, "delete_task", task_id=bobs) == f"Task {bobs} not found"


def mcp_post(server: Server, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    accept = {"Accept": "application/json, text/event-stream"}
    return httpx.post(f"{server.url}/mcp", json=body, headers=accept | (headers or {}))


def test_without_a_valid_token_it_is_401_pointing_at_the_resource_metadata(
    server: Server, issuer: JwksIssuer
) -> None:
    metadata = f'resource_metadata="{server.url}/.well-known/oauth-protected-resource"'
    missing = mcp_post(server)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == f"Bearer {metadata}"
    assert missing.json() == {
        "error": "invalid_token",
        "error_description": "Missing Authorization header; send 'Authorization: Bearer <token>'",
    }
    for headers, reason in [
        (auth(new_user(), exp=1), "Token has expired"),
        ({"Authorization": "Bearer not-a-jwt"}, "Token is malformed"),
        ({"Authorization": f"Bearer {token_for('x', secret='another-' * 8)}"}, "signature"),
        ({"Authorization": f"Bearer {issuer.token(issuer.keys[0], 'x', aud='other')}"}, "aud"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "Malformed Authorization header"),
    ]:
        refused = mcp_post(server, headers)
        assert refused.status_code == 401, refused.text
        challenge = refused.headers["www-authenticate"]
        assert challenge == f'Bearer error="invalid_token", {metadata}'
        assert refused.json()["error"] == "invalid_token"
        assert reason in refused.json()["error_description"]


async def test_the_sdk_client_is_refused_without_a_valid_token(server: Server) -> None:
    with pytest.RaisesGroup(MCPError, flatten_subgroups=True):
        async with mcp_client(server.url, token_for(new_user(), exp=1)) as client:
            await client.list_tools()


def test_the_protected_resource_document_names_better_auth(
    server: Server, issuer: JwksIssuer
) -> None:
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        response = httpx.get(f"{server.url}{path}")
        assert response.status_code == 200
        document = response.json()
        assert document["resource"] == f"{server.url}/mcp"
        assert document["authorization_servers"] == [issuer.url]
        assert document["bearer_methods_supported"] == ["header"]


async def test_the_request_log_names_the_user_of_an_mcp_call(server: Server) -> None:
    user = new_user()
    async with mcp_client(server.url, token_for(user)) as client:
        await succeeded(client, "add_task", title="Logged")
    lines = [line for line in log_lines_with(server.log, user) if line.get("path") == "/mcp"]
    assert lines, server.log.read_text()[-2000:]
    assert {line["status"] for line in lines} <= {200, 202}
    assert all(line["request_id"] != "-" for line in lines)


def test_rest_and_docs_are_unchanged_by_the_mcp_mount(server: Server) -> None:
    with rest(server, new_user()) as api:
        assert api.get("/api/tasks").status_code == 200
        paths = api.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/mcp", "/.well-known")) for path in paths)


# --- In process: the same client over ASGI, for what needs an app built for the case -----------


@asynccontextmanager
async def serving(application: FastAPI) -> AsyncIterator[httpx2.ASGITransport]:
    """The app with its lifespan running (the MCP session manager lives there)."""
    async with application.router.lifespan_context(application):
        yield httpx2.ASGITransport(app=application)


async def test_without_better_auth_the_401_is_a_plain_bearer_challenge(
    app: FastAPI, database_url: str
) -> None:
    """Only HS256 configured: no authorization server to point clients at."""
    application = create_app(make_settings(database_url))  # `app` has migrated the database
    async with (
        serving(application) as transport,
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/.well-known/oauth-protected-resource")).status_code == 404
        async with mcp_client("http://testserver", token_for(new_user()), transport=transport) as c:
            assert (await succeeded(c, "add_task", title="In process"))["status"] == "created"
        # Stateless: no event stream to hold open, no session to end.
        headers = auth(new_user()) | {"Accept": "application/json, text/event-stream"}
        for method in ("GET", "DELETE"):
            refused = await asyncio.wait_for(http.request(method, "/mcp", headers=headers), 5)
            assert refused.status_code == 405
            assert refused.headers["allow"] == "POST"


async def test_a_database_outage_is_a_tool_error_saying_to_retry() -> None:
    application = create_app(
        make_settings(
            f"postgresql://postgres@127.0.0.1:{free_port()}/test", db_pool_timeout_seconds=1
        )
    )
    async with (
        serving(application) as transport,
        mcp_client("http://testserver", token_for(new_user()), transport=transport) as client,
    ):
        started = time.monotonic()
        for tool, arguments in [("list_tasks", {}), ("add_task", {"title": "x"})]:
            message = await failed(client, tool, **arguments)
            assert message == "The task database is unavailable right now; retry in a few seconds."
        # Arguments are checked first: a wrong one is named whether or not the database answers.
        assert "title" in await failed(client, "add_task", title="")
        assert time.monotonic() - started < 10


async def test_before_the_database_is_migrated_the_tools_say_to_retry(tmp_path: Path) -> None:
    """Started while its SQLite folder is missing: the app serves, and waits to migrate."""
    database = tmp_path / "later" / "tasks.db"
    application = create_app(
        make_settings(f"sqlite+aiosqlite:///{database}"), migrate_on_startup=True
    )
    async with (
        serving(application) as transport,
        mcp_client("http://testserver", token_for(new_user()), transport=transport) as client,
    ):
        assert "retry" in await failed(client, "complete_task", task_id=1)
