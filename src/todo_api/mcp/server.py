"""/mcp: the task tools over MCP's Streamable HTTP transport, built on the official MCP SDK.

Stateless and answered in JSON: each POST carries one whole exchange, nothing is kept between
requests, and any worker or replica answers any call. The SDK's low-level server is used
rather than MCPServer (its FastMCP) because MCPServer derives each tool's schema and argument
checks from a Python signature; here the domain's input models are what validate the arguments
and describe them, as they do for the REST API, so there is one declaration of every field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from todo_api import __version__
from todo_api.auth import TokenVerifier
from todo_api.database import DATABASE_ERRORS, is_unavailable
from todo_api.mcp.auth import (
    MCP_PATH,
    METADATA_PATH,
    BearerAuth,
    caller,
    protected_resource_endpoint,
)
from todo_api.mcp.tools import TOOLS, USER_ID, ToolFailure
from todo_api.tasks.repository import TaskRepository

logger = logging.getLogger("todo_api.mcp")

INSTRUCTIONS = (
    "The signed-in user's task list: add, list, complete, update and delete their tasks. "
    "Find a task's id with list_tasks before acting on an existing task."
)
DATABASE_UNAVAILABLE = "The task database is unavailable right now; retry in a few seconds."
INTERNAL_ERROR = "Internal server error; the call did not complete."


class TaskToolsServer:
    """The MCP endpoint of one app: its routes, and the session manager its lifespan runs."""

    def __init__(
        self,
        verifier: TokenVerifier,
        tasks_of: Callable[[str], TaskRepository],
        *,
        authorization_server: str | None,
    ) -> None:
        self._tasks_of = tasks_of
        self._authorization_server = authorization_server
        self._tools = ListToolsResult(
            tools=[
                Tool(
                    name=tool.name,
                    description=tool.description,
                    input_schema=tool.input_schema(),
                    output_schema=tool.output_schema(),
                    annotations=tool.annotations,
                )
                for tool in TOOLS.values()
            ]
        )
        server: Server[Any] = Server(
            "todo-api",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._sessions = StreamableHTTPSessionManager(
            server,
            json_response=True,
            stateless=True,
            # DNS-rebinding protection guards servers that trust whoever can reach them; every
            # call here carries a bearer token, and a fixed host list would refuse real hosts.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._endpoint = BearerAuth(
            self._sessions.handle_request,
            verifier,
            authorization_server=authorization_server,
        )

    def routes(self) -> list[BaseRoute]:
        # POST only: a stateless server has nothing to send on a GET stream, which the SDK
        # would otherwise hold open, and no session for a DELETE to end.
        mcp = Route(MCP_PATH, self._endpoint, methods=["POST"], include_in_schema=False)
        routes: list[BaseRoute] = [mcp]
        if self._authorization_server is not None:
            document = protected_resource_endpoint(self._authorization_server)
            # RFC 9728 places it at the root, and also under the resource's path, where MCP
            # clients look first.
            for path in (METADATA_PATH, f"{METADATA_PATH}{MCP_PATH}"):
                routes.append(Route(path, document, methods=["GET"], include_in_schema=False))
        return routes

    def running(self) -> AbstractAsyncContextManager[None]:
        """The session manager's task group, for the app's lifespan to hold open."""
        return self._sessions.run()

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], _params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return self._tools

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        """Every outcome is a tool result: a failure the agent can act on has `isError` set,
        never a protocol error."""
        arguments = params.arguments or {}
        try:
            tool = TOOLS.get(params.name)
            if tool is None:
                raise ToolFailure(f"Unknown tool {params.name!r}; the tools are {', '.join(TOOLS)}")
            user_id = caller(ctx.request).user_id
            if arguments.get(USER_ID) not in (None, user_id):
                raise ToolFailure(
                    "user_id is not the signed-in user's id; leave it out: the tools always act "
                    "for the user the access token names"
                )
            result = await tool.call(self._tasks_of, user_id, arguments)
        except ToolFailure as failure:
            return _failed(str(failure))
        except DATABASE_ERRORS as error:
            if not is_unavailable(error):
                logger.exception("Tool %s failed", params.name)
                return _failed(INTERNAL_ERROR)
            logger.warning("Database unavailable in tool %s: %r", params.name, error)
            return _failed(DATABASE_UNAVAILABLE)
        except Exception:
            logger.exception("Tool %s failed", params.name)
            return _failed(INTERNAL_ERROR)
        return _succeeded(result)


def _succeeded(result: BaseModel) -> CallToolResult:
    structured = result.model_dump(mode="json", exclude_unset=True)
    # The same JSON as text too, for clients that read only the content blocks.
    text = json.dumps(structured, ensure_ascii=False)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured
    )


def _failed(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
