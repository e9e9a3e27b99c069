"""The task tools for AI agents: an MCP server at /mcp, on the REST API's domain and tokens."""

from todo_api.mcp.server import TaskToolsServer

__all__ = ["TaskToolsServer"]
