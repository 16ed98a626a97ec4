"""A TCP forwarder: listen on one address, relay every connection to another (stdlib only).

Why: a lab host reaches its sidecars on 127.0.0.1 (they share its network namespace). When two
hosts must see the SAME emulated AWS (a backup made on host A restored on host B after A is gone),
the moto server lives in a lab container of its own and each host's `moto` sidecar runs this
forwarder on 127.0.0.1:5050 instead of a private moto. The deploy sees no difference.

The sidecar runs the source of this module with `python3 -c` (the moto image has python3), so
no image changes: `python3 -c "$SOURCE" LISTEN_HOST:PORT TARGET_HOST:PORT`.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # pass a half-close on, the other direction may still be talking
    except (ConnectionError, OSError):
        writer.close()


async def _relay(client_r, client_w, target: tuple[str, int]) -> None:
    try:
        upstream_r, upstream_w = await asyncio.wait_for(asyncio.open_connection(*target), timeout=10)
    except (TimeoutError, OSError):
        client_w.close()  # the client sees a closed connection, as with a dead server
        return
    await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
    for w in (client_w, upstream_w):
        w.close()


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host, int(port)


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> asyncio.AbstractServer:
    return await asyncio.start_server(lambda r, w: _relay(r, w, target), *listen)


def main(argv: list[str]) -> None:
    listen, target = address(argv[0]), address(argv[1])

    async def run():
        server = await serve(listen, target)
        print(f"forwarding {argv[0]} -> {argv[1]}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main(sys.argv[1:])
