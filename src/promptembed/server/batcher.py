"""Dynamic batching: concurrent requests gathered into shared embedding calls (pure asyncio)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from promptembed.engine.embedder import Kind

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """What the server needs from an embedder (``PromptEmbedder`` fits)."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> np.ndarray:
        """Embed texts in order, shape ``(n, dimension)``."""
        ...


class QueueFullError(Exception):
    """The batcher holds ``max_queued_inputs`` texts already: retry later."""


class ShuttingDownError(Exception):
    """The batcher is closing and accepts no new work."""


# -- dynamic batching ---------------------------------------------------------------------


@dataclass
class _Work:
    texts: list[str]
    kind: Kind
    future: asyncio.Future[tuple[np.ndarray, int]]


@dataclass
class BatchStats:
    """Counters of the batcher (shown by ``/health``)."""

    requests: int = 0
    batches: int = 0
    batched_inputs: int = 0
    largest_batch: int = 0
    recent: deque[int] = field(default_factory=lambda: deque(maxlen=256))


class DynamicBatcher:
    """Gathers concurrent requests into shared batches for one embedder.

    One asyncio task collects queued requests (whole requests, up to
    ``max_batch_inputs`` texts, waiting at most ``max_batch_wait_ms`` for more) and runs
    each batch on a single dedicated thread, so the event loop never embeds. The number
    of accepted, unanswered texts is bounded by ``max_queued_inputs``.

    Args:
        embedder: Anything with ``embed(texts, kind=...)`` and ``dimension``.
        max_queued_inputs: Bound on accepted and unanswered texts.
        max_batch_inputs: Max texts per embedding call (a larger request runs alone).
        max_batch_wait_ms: Wait for more requests before running a batch that is not full.
        count_tokens: ``texts -> token counts`` run on the model thread, or None for 0s.

    Example:
        >>> async def main(embedder):  # doctest: +SKIP
        ...     batcher = DynamicBatcher(embedder)
        ...     batcher.start()
        ...     vectors, tokens = await batcher.submit(["a text"], "document")
        ...     await batcher.close()

    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_queued_inputs: int = 8192,
        max_batch_inputs: int = 256,
        max_batch_wait_ms: float = 5.0,
        count_tokens: Callable[[list[str]], int] | None = None,
    ) -> None:
        self.embedder = embedder
        self.max_queued_inputs = max_queued_inputs
        self.max_batch_inputs = max_batch_inputs
        self.max_batch_wait = max_batch_wait_ms / 1000
        self.count_tokens = count_tokens
        self.stats = BatchStats()
        self._pending: deque[_Work] = deque()
        self._queued_inputs = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._running: list[_Work] = []
        self._expired = False
        self._expiry: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptembed-embed")

    @property
    def queued_inputs(self) -> int:
        """Texts accepted and not yet answered."""
        return self._queued_inputs

    def start(self) -> None:
        """Start the batcher task on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="promptembed-batch")

    async def submit(self, texts: list[str], kind: Kind) -> tuple[np.ndarray, int]:
        """Queue texts and wait for ``(vectors, token_count)``.

        Raises:
            QueueFullError: If accepting them would exceed ``max_queued_inputs``.
            ShuttingDownError: If the batcher is closing.

        """
        if self._closing or self._task is None or self._wakeup is None:
            raise ShuttingDownError("the server is shutting down")
        if self._task.done():  # pragma: no cover - the batcher task never ends by itself
            raise ShuttingDownError("the batcher has stopped")
        if self._queued_inputs + len(texts) > self.max_queued_inputs:
            raise QueueFullError(
                f"the server queue is full ({self._queued_inputs} of {self.max_queued_inputs} "
                f"inputs waiting); retry later"
            )
        future: asyncio.Future[tuple[np.ndarray, int]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Work(texts, kind, future))
        self._queued_inputs += len(texts)
        self.stats.requests += 1
        self._wakeup.set()
        try:
            # Shielded: a cancelled request must not cancel a batch it shares.
            return await asyncio.shield(future)
        finally:
            if not future.done():
                future.cancel()

    def begin_shutdown(self, grace_s: float) -> None:
        """Refuse new work; what is not answered within ``grace_s`` gets ShuttingDownError.

        Queued requests keep being served until then; at the deadline every request still
        queued or in the running batch is answered at once (the server turns that into a
        503 with ``Retry-After``), and a running batch is abandoned to its thread.
        """
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._expiry is None:
            self._expiry = asyncio.get_running_loop().call_later(grace_s, self._expire)

    def _expire(self) -> None:
        self._expired = True
        error = ShuttingDownError(
            "the server is shutting down and could not finish this request within its "
            "grace period; retry it"
        )
        for work in [*self._running, *self._pending]:
            if not work.future.done():
                work.future.set_exception(error)
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()  # stop waiting on the model thread

    async def close(self) -> None:
        """Stop accepting work, finish everything queued (or expire it), stop the thread."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await asyncio.wait({self._task})  # returns even when the task was cancelled
        if self._expiry is not None:
            self._expiry.cancel()
        # An expired batch may still be running: leave it to its thread, do not wait.
        self._executor.shutdown(wait=not self._expired, cancel_futures=True)

    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = loop.time() + self.max_batch_wait
            while not self._closing and self._pending_inputs() < self.max_batch_inputs:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:  # not the builtin on Python 3.10
                    break
            batch = self._take()
            await self._execute(batch, loop)

    def _pending_inputs(self) -> int:
        return sum(len(w.texts) for w in self._pending)

    def _take(self) -> list[_Work]:
        batch: list[_Work] = []
        size = 0
        while self._pending:
            work = self._pending[0]
            if batch and size + len(work.texts) > self.max_batch_inputs:
                break
            self._pending.popleft()
            if work.future.done():  # the client went away before its turn
                self._queued_inputs -= len(work.texts)
                continue
            batch.append(work)
            size += len(work.texts)
        return batch

    async def _execute(self, batch: list[_Work], loop: asyncio.AbstractEventLoop) -> None:
        if not batch:
            return
        size = sum(len(w.texts) for w in batch)
        self._running = batch
        try:
            results = await loop.run_in_executor(self._executor, self._answer, batch)
            for work, result in zip(batch, results):
                if work.future.done():
                    continue
                if isinstance(result, BaseException):
                    work.future.set_exception(result)
                else:
                    work.future.set_result(result)
        finally:
            self._running = []
            self._queued_inputs -= size
            self.stats.batches += 1
            self.stats.batched_inputs += size
            self.stats.largest_batch = max(self.stats.largest_batch, size)
            self.stats.recent.append(size)

    def _answer(self, batch: list[_Work]) -> list[tuple[np.ndarray, int] | Exception]:
        """Runs on the model thread: the batch's results, or each request's own error.

        When a shared batch fails, its requests are run one by one, so that one request's
        bad text (or vector) fails that request only.
        """
        try:
            return list(self._embed_batch(batch))
        except Exception as error:
            if len(batch) == 1:
                logger.warning("a request of %d inputs failed: %s", len(batch[0].texts), error)
                return [error]
            logger.warning("a batch of %d requests failed (%s); retrying each", len(batch), error)
        out: list[tuple[np.ndarray, int] | Exception] = []
        for work in batch:
            try:
                out += self._embed_batch([work])
            except Exception as error:
                logger.warning(
                    "embedding a request of %d inputs failed: %s", len(work.texts), error
                )
                out.append(error)
        return out

    def _embed_batch(self, batch: list[_Work]) -> list[tuple[np.ndarray, int]]:
        """Runs on the model thread: one ``embed`` call per template route."""
        results: list[tuple[np.ndarray, int] | None] = [None] * len(batch)
        for kind in ("document", "query"):
            members = [i for i, w in enumerate(batch) if w.kind == kind]
            if not members:
                continue
            texts = [t for i in members for t in batch[i].texts]
            vectors = self.embedder.embed(texts, kind=kind)
            start = 0
            for i in members:
                n = len(batch[i].texts)
                tokens = self.count_tokens(batch[i].texts) if self.count_tokens else 0
                results[i] = (vectors[start : start + n], tokens)
                start += n
        return [r for r in results if r is not None]
