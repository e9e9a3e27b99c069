"""Reading server-sent events from a real server's response, as a browser's EventSource does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str = "message"
    data: str = ""
    id: str | None = None

    def item(self) -> dict[str, Any]:
        item: dict[str, Any] = json.loads(self.data)
        return item


class EventReader:
    """Parses the stream in a task of its own, so that waiting for an event can time out
    without breaking the stream."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._parse())

    async def _parse(self) -> None:
        event, has_fields = Event(), False
        try:
            async for line in self.response.aiter_lines():
                if not line:
                    if has_fields:
                        await self._events.put(event)
                    event, has_fields = Event(), False
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    has_fields = True
                    if name == "event":
                        event.event = value
                    elif name == "data":
                        event.data = value if not event.data else f"{event.data}\n{value}"
                    elif name == "id":
                        event.id = value
        except httpx.HTTPError:
            pass
        finally:
            await self._events.put(None)

    async def next(self, within: float) -> Event:
        """The next event; TimeoutError if none comes in time, EOFError if the stream ended."""
        event = await asyncio.wait_for(self._events.get(), within)
        if event is None:
            self._events.put_nowait(None)
            raise EOFError("the stream ended")
        return event

    async def nothing_within(self, seconds: float) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False

    async def ended_within(self, seconds: float) -> bool:
        try:
            while True:
                await self.next(seconds)
        except EOFError:
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, path: str = "/api/tasks/stream", **options: Any
) -> AsyncIterator[EventReader]:
    async with client.stream("GET", path, **options) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = EventReader(response)
        try:
            yield reader
        finally:
            await reader.aclose()
