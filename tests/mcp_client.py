"""The MCP SDK's own Streamable HTTP client, connected to /mcp with a user's bearer token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

TOOLS = {"add_task", "list_tasks", "complete_task", "update_task", "delete_task"}


@asynccontextmanager
async def mcp_client(
    base_url: str, token: str, *, mode: str = "legacy", transport: Any = None
) -> AsyncIterator[Client]:
    """`mode="legacy"` opens with the initialize handshake (what most agents do); `"auto"`
    discovers the newest protocol revision first."""
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, transport=transport) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> CallToolResult:
    return await client.call_tool(tool, arguments)


async def succeeded(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The structured result of a call that must succeed; its text block carries the same JSON."""
    result = await call(client, tool, **arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


async def failed(client: Client, tool: str, **arguments: Any) -> str:
    """The message of a call that must come back as a tool error (isError), not a protocol one."""
    result = await call(client, tool, **arguments)
    assert result.is_error, result
    assert result.structured_content is None
    return text_of(result)


def text_of(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text
