"""A small TCP proxy for tests, on its own event loop in a daemon thread so that blocking test code
never stalls it.

Without ``server_ssl`` it is a plain L4 round-robin (TLS passes through to the backends); with it, it
terminates TLS and pipes the decrypted bytes to a plaintext backend. gRPC fits the second mode: the
context advertises ALPN ``h2`` and the backend (the Temporal dev server) speaks h2c with prior
knowledge, so a byte pipe is enough."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 64 * 1024
# Short: a dead backend or a stuck handshake should fail a test quickly, not hang it.
_CONNECT_TIMEOUT = 3.0
_HANDSHAKE_TIMEOUT = 10.0
_LINGER = 2.0


def _key(backend: tuple[str, int]) -> str:
    return f"{backend[0]}:{backend[1]}"


class Proxy:
    """Round-robin TCP proxy; ``connections`` counts the connections each backend ("host:port") got,
    ``handshake_errors`` holds why each refused TLS handshake failed."""

    def __init__(
        self,
        backends: list[tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        server_ssl: ssl.SSLContext | None = None,
    ) -> None:
        if not backends:
            raise ValueError("a proxy needs at least one backend")
        self.backends = list(backends)
        self.host = host
        self.port = port
        self.server_ssl = server_ssl
        self.connections: dict[str, int] = {_key(b): 0 for b in self.backends}
        self.handshake_errors: list[str] = []
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("proxy already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"proxy-{self.host}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._server = self._call(asyncio.start_server(self._handle, self.host, self.port))
        except BaseException:
            self._shutdown_loop()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every live connection; idempotent."""
        if self._loop is None:
            return
        try:
            self._call(self._close())
        finally:
            self._shutdown_loop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client: _Plain | _ServerTLS = _Plain(reader, writer)
        upstream: _Plain | None = None
        aborting = False
        try:
            if self.server_ssl is not None:
                tls = _ServerTLS(self.server_ssl, reader, writer)
                try:
                    await asyncio.wait_for(tls.handshake(), _HANDSHAKE_TIMEOUT)
                except Exception as exc:  # whatever a client sends, the proxy keeps serving
                    # Recorded before the alert goes out: a test that sees its client refused finds
                    # the proxy's side of the story already here.
                    self.handshake_errors.append(f"{type(exc).__name__}: {exc}")
                    log.info("proxy %s: TLS handshake refused: %s", self.address, exc)
                    await tls.refuse()
                    return
                client = tls
            opened = await self._open_backend()
            if opened is None:
                log.warning("proxy %s: no backend reachable, closing the connection", self.address)
                return
            upstream = _Plain(*opened)
            await asyncio.gather(_pump(client, upstream), _pump(upstream, client))
        except asyncio.CancelledError:
            # Only stop() cancels these tasks. Not re-raised: on Python 3.11 asyncio's own done-callback
            # for a stream handler logs a cancelled task as an error ("Exception in callback").
            aborting = True
        finally:
            for side in (client, upstream):
                if side is None:
                    continue
                if aborting:
                    # stop(): a peer that stopped reading must not hold the proxy up.
                    side.abort()
                else:
                    side.writer.close()
            self._tasks.discard(task)

    async def _open_backend(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend that accepts a connection, starting after the last one used."""
        for attempt in range(len(self.backends)):
            index = (self._next + attempt) % len(self.backends)
            host, port = self.backends[index]
            try:
                opened = await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                log.info("proxy %s: backend %s:%s down: %s", self.address, host, port, exc)
                continue
            self._next = index + 1
            self.connections[_key((host, port))] += 1
            return opened
        return None


class _Plain:
    """One side of a connection, in the clear."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        return await self.reader.read(_CHUNK)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def write_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    def abort(self) -> None:
        self.writer.transport.abort()


class _ServerTLS(_Plain):
    """Server-side TLS over a plain stream, on memory BIOs.

    Not asyncio's own TLS (start_server(ssl=...) or start_tls): when it refuses a handshake it drops
    the connection without sending the alert, so a client would see an EOF where a real TLS server
    (Temporal's, say) tells it why, e.g. "certificate required"."""

    def __init__(
        self, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    async def handshake(self) -> None:
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
            else:
                await self._flush()  # the last flight and, in TLS 1.3, the session tickets
                return

    async def read(self) -> bytes:
        while True:
            try:
                data = self._tls.read(_CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a TCP close without one: either way the client is done sending.
                return b""
            await self._flush()
            return data

    async def write(self, data: bytes) -> None:
        self._tls.write(data)
        await self._flush()

    async def write_eof(self) -> None:
        # close_notify: in TLS 1.3 it closes only this direction, like a TCP half-close.
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        await self._flush()

    async def refuse(self) -> None:
        """After a failed handshake: send the alert that says why, then close gently.

        Closing with unread bytes makes the kernel answer with a reset, which can throw away the
        alert before the client reads it: it would report "broken pipe" instead of why it was
        refused. So: half-close, and drain what the client still sends, for a while."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            await self._flush()
            if self.writer.can_write_eof():
                self.writer.write_eof()
            async with asyncio.timeout(_LINGER):
                while await self.reader.read(_CHUNK):
                    pass

    async def _feed(self) -> None:
        if data := await self.reader.read(_CHUNK):
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def _flush(self) -> None:
        # No await between taking the bytes and writing them: records stay in order even when both
        # directions flush at once.
        if data := self._outgoing.read():
            self.writer.write(data)
            await self.writer.drain()


async def _pump(source: _Plain, sink: _Plain) -> None:
    """Copy until EOF, then pass the EOF on (a half-close)."""
    try:
        while data := await source.read():
            await sink.write(data)
        await sink.write_eof()
    except OSError:
        # A reset (or a TLS error, an OSError too) on either side ends both directions: the other
        # pump might otherwise wait forever on a peer that has nothing more to say.
        source.abort()
        sink.abort()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.tlsproxy --listen HOST:PORT [--listen ...] --backend HOST:PORT --cert F --key F
    [--client-ca F]``: a TLS-terminating proxy (ALPN h2) as a process of its own, e.g. inside a network
    namespace. Prints ``listening on ...`` once every listener is bound; on SIGTERM or SIGINT, prints
    one ``stats`` JSON line (backend connections, refused handshakes) and exits 0."""
    import argparse
    import json
    import signal
    import sys

    def address(value: str) -> tuple[str, int]:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
        return host.strip("[]"), int(port)

    parser = argparse.ArgumentParser(prog="python -m tests.tlsproxy", description=main.__doc__)
    parser.add_argument("--listen", type=address, action="append", required=True)
    parser.add_argument("--backend", type=address, action="append", required=True)
    parser.add_argument("--cert", required=True, help="PEM: the server certificate and its chain")
    parser.add_argument("--key", required=True, help="PEM: its private key")
    parser.add_argument("--client-ca", help="PEM: clients must present a certificate this CA signed")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=args.client_ca)
    context.set_alpn_protocols(["h2"])

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    proxies: list[Proxy] = []
    try:
        for host, port in args.listen:
            proxies.append(Proxy(args.backend, host=host, port=port, server_ssl=context).start())
        print("listening on " + " ".join(p.address for p in proxies), flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        for proxy in proxies:
            proxy.stop()
        stats = {
            p.address: {"connections": p.connections, "handshake_errors": p.handshake_errors} for p in proxies
        }
        print("stats " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
