"""Webhook POSTs from a process of their own, so they never queue for ingest's GIL.

Ingest keeps a core busy decoding readings; an HTTP request made from a thread beside
it waits for the GIL at every socket operation (up to the 5 ms switch interval each
time), which turned a 3 ms POST into 30 ms and more.  :class:`ProcessClient` stands in
for the ``httpx.Client`` the dispatcher posts with: each ``post()`` is one message to a
child process, where an asyncio loop sends it with aiohttp (many at once) and sends
back the status code and headers, or the name and text of the httpx exception httpx
would have raised, which ``post()`` raises.  aiohttp, not ``httpx.AsyncClient``: a POST
costs the child about 0.35 ms against 1.6 ms (measured on the same box), and it is on
every order's path from the reorder decision to the supplier.  Everything else about an
attempt (claim, signing, verdict, record) stays in the dispatcher.

A child that dies is started again by the next ``post()``; the request that was in
flight fails as a transport error, so the dispatcher retries it like any network error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import httpx

log = logging.getLogger(__name__)

# A request whose answer has not come back this long after its own timeout allowed
# (four phases) failed: the child is stuck or gone.
ANSWER_MARGIN_S = 10.0
# How long close() waits for the child to exit before ending it: the dispatcher has
# already given its sends in flight their time (dispatch.STOP_SENDS_S), and a stop must
# end the server within seconds.
CLOSE_S = 0.5
# Of a receiver's answer only the status and headers matter; at most this much of its
# body is read (a longer one closes the connection instead of keeping it for reuse).
ANSWER_BODY_MAX = 64 * 1024


_Answer = Future[tuple[int, list[tuple[str, str]]]]


class _Child:
    """One sender process, its pipe and the requests it has in hand."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child_main, args=(theirs,), name="jitstock-sender", daemon=True
        )
        self.proc.start()
        theirs.close()
        self.waiting: dict[int, _Answer] = {}


class ProcessClient:
    """The part of ``httpx.Client`` the dispatcher uses, served by a child process."""

    def __init__(self, timeout: float) -> None:
        self.timeout = httpx.Timeout(timeout)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # one writer on the pipe; starts and restarts
        self._child: _Child | None = None
        self._closed = False

    def start(self) -> None:
        """Start the child process (post() also starts it when needed)."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> _Child:
        if self._closed:
            raise httpx.TransportError("webhook sender closed")
        child = self._child
        if child is not None and child.proc.is_alive():
            return child
        child = self._child = _Child()
        threading.Thread(
            target=self._read,
            args=(child,),
            name="jitstock-sender-answers",
            daemon=True,
        ).start()
        return child

    def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: dict[str, str],
        timeout: float | httpx.Timeout | None = None,
    ) -> httpx.Response:
        """POST in the child; the response (status and headers) or the httpx exception."""
        return self.begin_post(url, content=content, headers=headers, timeout=timeout)()

    def begin_post(
        self,
        url: str,
        *,
        content: bytes,
        headers: dict[str, str],
        timeout: float | httpx.Timeout | None = None,
    ) -> Callable[[], httpx.Response]:
        """Hand the request to the child now; the function returned waits for its answer
        (the response, or the httpx exception raised again).

        The dispatcher calls this on the thread that committed the order, so the request
        leaves at once instead of after a sender thread's wait for the GIL."""
        t = timeout if timeout is not None else self.timeout
        seconds = (
            max(x for x in (t.connect, t.read, t.write, t.pool) if x is not None)
            if isinstance(t, httpx.Timeout)
            else float(t)
        )
        answer: _Answer = Future()
        with self._lock:
            child = self._ensure_started()
            rid = next(self._ids)
            child.waiting[rid] = answer
            try:
                child.conn.send((rid, url, content, headers, seconds))
            except (OSError, EOFError) as exc:
                child.waiting.pop(rid, None)
                raise httpx.TransportError(
                    f"webhook sender unreachable: {exc}"
                ) from exc

        def wait() -> httpx.Response:
            try:
                status, resp_headers = answer.result(
                    timeout=4 * seconds + ANSWER_MARGIN_S
                )
            except TimeoutError as exc:
                with self._lock:
                    child.waiting.pop(rid, None)
                raise httpx.TransportError("webhook sender did not answer") from exc
            return httpx.Response(status, headers=resp_headers)

        return wait

    def _read(self, child: _Child) -> None:
        """Complete each request's future as its answer arrives."""
        while True:
            try:
                rid, ok, value = child.conn.recv()
            except (OSError, EOFError):
                break
            with self._lock:
                fut = child.waiting.pop(rid, None)
            if fut is None:
                continue
            if ok:
                fut.set_result(value)
                continue
            name, text = value
            cls = getattr(httpx, name, None)
            if not (isinstance(cls, type) and issubclass(cls, httpx.HTTPError)):
                cls = httpx.TransportError
            fut.set_exception(cls(text))
        # the child is gone: what it had in hand failed like a dropped connection
        with self._lock:
            lost, child.waiting = list(child.waiting.values()), {}
        for fut in lost:
            fut.set_exception(httpx.TransportError("webhook sender process ended"))

    def close(self) -> None:
        """Stop the child after what it is sending (bounded by CLOSE_S)."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        try:
            child.conn.send(None)
        except (OSError, EOFError):
            pass
        child.proc.join(CLOSE_S)
        if child.proc.is_alive():
            child.proc.terminate()
            child.proc.join(CLOSE_S)
        child.conn.close()


def _child_main(conn: Connection) -> None:
    """The child process: POST what arrives on the pipe, many at once, answer each.

    A terminal's Ctrl-C reaches the whole foreground process group, this child too: it
    ignores it and is ended by its parent (``close()``, or the pipe's end when the
    parent is gone), so the sends of a stopping server are not cut short under it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_serve(conn))
    except KeyboardInterrupt:
        pass


async def _serve(conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    incoming: asyncio.Queue[Any] = asyncio.Queue()

    def readable() -> None:
        try:
            while conn.poll():
                incoming.put_nowait(conn.recv())
        except (OSError, EOFError):
            incoming.put_nowait(None)

    loop.add_reader(conn.fileno(), readable)
    tasks: set[asyncio.Task[None]] = set()
    # as the httpx client of JITSTOCK_WEBHOOK_SENDER=thread: HTTP(S)_PROXY / NO_PROXY
    # honoured, certificates checked against certifi's CAs or SSL_CERT_FILE / SSL_CERT_DIR
    connector = aiohttp.TCPConnector(ssl=httpx.create_ssl_context(trust_env=True))
    async with aiohttp.ClientSession(
        connector=connector, trust_env=True, auto_decompress=False
    ) as client:
        while True:
            item = await incoming.get()
            if item is None:
                break
            task = loop.create_task(_post(client, conn, *item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        loop.remove_reader(conn.fileno())
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_S)


async def _post(
    client: aiohttp.ClientSession,
    conn: Connection,
    rid: int,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> None:
    answer: tuple[int, bool, Any]
    try:
        answer = (rid, True, await _request(client, url, body, headers, timeout_s))
    except Exception as exc:  # a bug must not end the sender; the dispatcher retries
        answer = (rid, False, _as_httpx_error(exc))
    try:
        conn.send(answer)
    except (OSError, EOFError):
        pass


async def _request(
    client: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
) -> tuple[int, list[tuple[str, str]]]:
    """One POST: its status and headers (a redirect is an answer, not followed; at most
    ANSWER_BODY_MAX bytes of the body are read, so the connection can be reused)."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
    )
    async with client.post(
        url, data=body, headers=headers, timeout=timeout, allow_redirects=False
    ) as resp:
        status, answer_headers = resp.status, list(resp.headers.items())
        # the receiver's answer body is never used: drain a little of it so the
        # connection stays open for the next order, and drop it if there is more
        try:
            await asyncio.wait_for(_drain(resp.content), timeout=min(timeout_s, 1.0))
        except (TimeoutError, aiohttp.ClientError):
            pass  # the answer is in: a body that trickles or breaks off changes nothing
        if not resp.content.at_eof():
            resp.close()
    return status, answer_headers


async def _drain(body: aiohttp.StreamReader) -> None:
    got = 0
    while not body.at_eof() and got <= ANSWER_BODY_MAX:
        chunk = await body.read(ANSWER_BODY_MAX)
        if not chunk:
            return
        got += len(chunk)


def _as_httpx_error(exc: BaseException) -> tuple[str, str]:
    """The httpx exception class name (raised again in the server process) and text
    for what aiohttp raised, so an attempt's verdict and ``last_error`` read the same
    whichever client sent it.  A URL the request refuses is not repeated in the text:
    it may carry a token (``last_error`` is shown to people; the dispatcher names the
    URL itself, redacted)."""
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return "UnsupportedProtocol", "the URL's scheme is not http or https"
    if isinstance(exc, aiohttp.InvalidURL):
        return "UnsupportedProtocol", "the URL is malformed"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout", text
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return "ReadTimeout", text
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError", text
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientResponseError)):
        return "RemoteProtocolError", text
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "ReadError", text
    return "TransportError", f"{type(exc).__name__}: {text}"
