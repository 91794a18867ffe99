"""The read routes' answers, shared for a moment: many readers asking the same thing at once cost one read.

A page polls its jobs and reloads its lists; fifty pages open are fifty times the same questions.
An answer is computed once (concurrent askers wait for that one computation) and served, as JSON
bytes, to whoever asks the same within FRESH_S of when its computation began: never older than
that plus the time the computation took. Only callers that passed authentication reach it (it is
used inside the routes), and every caller is allowed the same data. An error is never kept.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

from pydantic_core import to_json

__all__ = ["FRESH_S", "MAX_ANSWERS", "ReadCache"]

FRESH_S = 0.5  # how long an answer is shared: a page polling every 500 ms sees a change at most one poll late
MAX_ANSWERS = 512  # answers kept at once (the least recently asked go first)


class ReadCache:
    def __init__(self, fresh_s: float = FRESH_S, max_answers: int = MAX_ANSWERS) -> None:
        self.fresh_s, self.max_answers = fresh_s, max_answers
        self._answers: OrderedDict[Hashable, tuple[float, asyncio.Future]] = OrderedDict()

    async def answer(self, key: Hashable, compute: Callable[[], Awaitable[object]]) -> bytes:
        """The JSON of `await compute()`, shared with every asker of `key` while it is fresh."""
        now = time.monotonic()
        kept = self._answers.get(key)
        if kept is not None and now - kept[0] <= self.fresh_s:
            self._answers.move_to_end(key)
            return await asyncio.shield(kept[1])  # one asker giving up does not cancel the others' answer
        future = asyncio.get_running_loop().create_future()
        self._keep(key, now, future)
        try:
            body = to_json(await compute())
        except BaseException as error:
            self._forget(key, future)
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
                future.exception()  # retrieved: whoever waited has it; nobody else needs a warning
            raise
        future.set_result(body)
        return body

    def _keep(self, key: Hashable, at: float, future: asyncio.Future) -> None:
        self._answers[key] = (at, future)
        self._answers.move_to_end(key)
        while len(self._answers) > self.max_answers:
            self._answers.popitem(last=False)

    def _forget(self, key: Hashable, future: asyncio.Future) -> None:
        kept = self._answers.get(key)
        if kept is not None and kept[1] is future:
            del self._answers[key]
