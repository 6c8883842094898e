"""The load generator's HTTP: one keep-alive HTTP/1.1 connection per client, spoken over
asyncio streams, so that sending an attempt costs the load generator little CPU.

httpx's ``AsyncClient`` used about as much CPU per attempt as the server (1.9–2.7 ms on the
2-core machine): on one core it could not send more than a few hundred attempts a second,
far from the 2,000/s the target asks for. This client sends the same requests (a JSON POST
on a connection of its own) for a tenth of that; ``--client httpx`` still uses httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx


class HttpError(Exception):
    """The connection failed or the server's answer could not be read."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client(Protocol):
    async def post_json(self, path: str, body: dict[str, object]) -> Answer: ...

    async def close(self) -> None: ...


class RawClient:
    """One HTTP/1.1 keep-alive connection: a POST at a time, reconnecting after a failure."""

    def __init__(self, base_url: str, timeout: float) -> None:
        url = urlsplit(base_url)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._authority = url.netloc.encode()
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict[str, object]) -> Answer:
        payload = json.dumps(body, ensure_ascii=False).encode()
        head = (
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: " + self._authority
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n"
        )  # fmt: skip
        try:
            async with asyncio.timeout(self._timeout):
                return await self._exchange(head + payload)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError) as exc:  # fmt: skip
            await self.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def _exchange(self, request: bytes) -> Answer:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunks()
        else:
            content = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Answer(status, content)

    async def _chunks(self) -> bytes:
        assert self._reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await self._reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers
                return b"".join(parts)
            parts.append((await self._reader.readexactly(size + 2))[:-2])

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxClient:
    """The same over httpx's ``AsyncClient`` (one connection), as the bench used to send."""

    def __init__(self, base_url: str, timeout: float) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def post_json(self, path: str, body: dict[str, object]) -> Answer:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc
        return Answer(response.status_code, response.content)

    async def close(self) -> None:
        await self._client.aclose()


CLIENTS: dict[str, Callable[[str, float], Client]] = {"raw": RawClient, "httpx": HttpxClient}


def describe(kind: str) -> str:
    if kind == "httpx":
        return f"httpx {httpx.__version__} AsyncClient (asyncio), one connection per client"
    return (
        "HTTP/1.1 over asyncio streams (bench/booking/client.py), one keep-alive connection "
        "per client"
    )
