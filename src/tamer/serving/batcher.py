"""Dynamic batching: inputs from concurrent requests wait in a bounded asyncio queue and run through the model
together, up to `max_batch_size` inputs or `max_wait_ms` after the first one arrived, whichever comes first; when
the last batch held a single input, the next runs at once with what is queued (nobody to wait for at light load).
The model code is one function `run(group, inputs) -> outputs` whether batching is on (max_batch_size > 1) or off
(1): a batch is only a longer list. A full queue refuses new inputs at once (503) instead of queueing latency."""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Any, Callable


class QueueFull(Exception):
    """The batcher holds `max_queue` inputs already."""


@dataclass
class _Item:
    group: Any  # inputs of one group (the model version they started with) run together
    value: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Forms batches from a queue and runs them, one at a time, on one model thread (torch uses the cores)."""

    def __init__(self, run: Callable[[Any, list[Any]], list[Any]], max_batch_size: int = 32, max_wait_ms: float = 5.0,
                 max_queue: int = 256, on_batch: Callable[[int], None] | None = None,
                 executor: concurrent.futures.Executor | None = None, on_depth: Callable[[int], None] | None = None):
        """`on_batch(size)` is called as each batch starts, `on_depth(depth)` whenever inputs join or leave."""
        self.run, self.max_batch_size, self.max_wait = run, max_batch_size, max_wait_ms / 1000.0
        self.max_queue, self.on_batch, self.on_depth = max_queue, on_batch, on_depth
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tamer-model")
        self.queue: asyncio.Queue[_Item] | None = None
        self.flushing = False  # draining: run what is queued now, wait for no one
        self.last_size = 0  # inputs in the last batch formed
        self.pending: list[_Item] = []  # taken from the queue, not yet answered
        self._task: asyncio.Task | None = None

    def depth(self) -> int:
        """Inputs waiting and running now."""
        return (self.queue.qsize() if self.queue else 0) + len(self.pending)

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def submit(self, group: Any, values: list[Any]) -> list[Any]:
        """Queue `values` (all of one request) and wait for their outputs; QueueFull when they do not fit."""
        if self.depth() + len(values) > self.max_queue:
            raise QueueFull(f"{self.depth()} inputs are queued and the limit is {self.max_queue}")
        loop = asyncio.get_running_loop()
        items = [_Item(group, v, loop.create_future()) for v in values]
        for item in items:
            self.queue.put_nowait(item)
        self._moved()
        return list(await asyncio.gather(*(i.future for i in items)))

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run other model work (a generation step) on the model thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def flush(self) -> None:
        """Stop waiting for fuller batches (shutdown has begun). Safe to call from a signal handler."""
        self.flushing = True
        if self.queue is not None:
            asyncio.get_event_loop().call_soon_threadsafe(self.queue.put_nowait, None)  # wakes a waiting batch

    async def _loop(self) -> None:
        while True:
            first = await self.queue.get()
            if first is None:
                continue
            batch = self.pending = [first]  # counted in depth() while it fills
            # wait for company only when the last batch had some: a server whose inputs come one at a time (a lone
            # client, light load) answers at once, and under load the queue fills while a batch runs anyway
            deadline = first.enqueued + (self.max_wait if self.last_size > 1 else 0.0)
            while len(batch) < self.max_batch_size:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.flushing:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except asyncio.TimeoutError:
                        break
                if item is not None:
                    batch.append(item)
            self.last_size = len(batch)
            try:
                for group in {id(i.group): i.group for i in batch}.values():
                    await self._run_group(group, [i for i in batch if i.group is group])
            finally:
                self.pending = []
                self._moved()

    def _moved(self) -> None:
        if self.on_depth:
            self.on_depth(self.depth())

    async def _run_group(self, group: Any, items: list[_Item]) -> None:
        if self.on_batch:
            self.on_batch(len(items))
        try:
            outputs = await self.call(self.run, group, [i.value for i in items])
        except Exception as exc:
            if len(items) == 1:
                _settle(items[0].future, exc=exc)
                return
            for item in items:  # one input that breaks the batch fails alone
                await self._run_group(group, [item])
            return
        for item, out in zip(items, outputs):
            _settle(item.future, out)

    async def drain(self, timeout: float) -> bool:
        """Wait until every accepted input is answered (True) or `timeout` seconds pass (False)."""
        end = time.monotonic() + timeout
        while self.depth() and time.monotonic() < end:
            await asyncio.sleep(0.01)
        return not self.depth()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False)


def _settle(future: asyncio.Future, value: Any = None, exc: BaseException | None = None) -> None:
    if future.done():  # its request went away (client disconnected)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(value)
