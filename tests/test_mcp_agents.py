"""The task tools through the OpenAI Agents SDK's MCP client, as a Phase III chatbot uses them.

No model is involved: the test lists and calls the tools exactly as the SDK does for an agent,
with the user's token in the connection's headers, against the real `todo-api serve`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from agents.mcp import MCPServerStreamableHttp, MCPUtil
from mcp_types import CallToolResult, TextContent

from tests.conftest import SECRET, auth, new_user
from tests.mcp_client import TOOLS
from tests.server import Server, running_server, service_environment


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = service_environment(DATABASE_URL=database_url, BETTER_AUTH_SECRET=SECRET)
    with running_server(tmp_path_factory.mktemp("agents"), env) as running:
        yield running


def agents_server(server: Server, user: str) -> MCPServerStreamableHttp:
    return MCPServerStreamableHttp(
        params={"url": f"{server.url}/mcp", "headers": auth(user)},
        name="tasks",
        use_structured_content=True,
    )


def result_of(called: CallToolResult) -> Any:
    [block] = called.content
    assert isinstance(block, TextContent)
    return block.text if called.is_error else json.loads(block.text)


async def test_the_agents_sdk_lists_and_calls_every_tool(server: Server) -> None:
    user = new_user()
    async with agents_server(server, user) as tasks:
        tools = {tool.name: tool for tool in await tasks.list_tools()}
        assert set(tools) == TOOLS
        # What the SDK hands the model: a function tool per MCP tool, with the input schema.
        for tool in tools.values():
            function = MCPUtil.to_function_tool(tool, tasks, convert_schemas_to_strict=False)
            assert function.name == tool.name
            assert "user_id" in function.params_json_schema["properties"]

        created = result_of(await tasks.call_tool("add_task", {"title": "Weekly review"}))
        task_id = created["task_id"]
        assert created == {"task_id": task_id, "status": "created", "title": "Weekly review"}
        listed = result_of(await tasks.call_tool("list_tasks", {"status": "pending"}))
        assert [task["id"] for task in listed["tasks"]] == [task_id]
        renamed = await tasks.call_tool("update_task", {"task_id": task_id, "title": "Review"})
        assert result_of(renamed)["title"] == "Review"
        done = result_of(
            await tasks.call_tool("complete_task", {"task_id": task_id, "user_id": user})
        )
        assert done["status"] == "completed"

        refused = await tasks.call_tool("delete_task", {"task_id": task_id, "user_id": "someone"})
        assert refused.is_error
        assert "user_id" in result_of(refused)
        gone = result_of(await tasks.call_tool("delete_task", {"task_id": task_id}))
        assert gone == {"task_id": task_id, "status": "deleted", "title": "Review"}
        missing = await tasks.call_tool("complete_task", {"task_id": task_id})
        assert missing.is_error
        assert result_of(missing) == f"Task {task_id} not found"


async def test_the_agents_sdk_sees_only_its_users_tasks(server: Server) -> None:
    owner = new_user()
    async with httpx.AsyncClient(base_url=server.url, headers=auth(owner)) as api:
        theirs = (await api.post("/api/tasks", json={"title": "Theirs"})).json()
        async with agents_server(server, new_user()) as tasks:
            assert result_of(await tasks.call_tool("list_tasks", {}))["tasks"] == []
            arguments = {"task_id": theirs["id"], "title": "Mine"}
            assert (await tasks.call_tool("update_task", arguments)).is_error
        assert (await api.get(f"/api/tasks/{theirs['id']}")).json() == theirs
