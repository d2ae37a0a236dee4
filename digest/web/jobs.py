"""Work the web app does after its answer has gone: one thread, outside every request.

The subscribe form must answer a new address, a subscribed one and a bounced one by the same
path in the same time, or its timing tells who is on the list. So the answer only validates
and queues; the look-up, the write and the email happen here. Not in a Starlette background
task: that runs inside the request's cycle, and on a kept-alive connection the next request
waits for it, which would leak the previous address's state into the next answer's timing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Jobs:
    """A bounded queue and one worker thread, started on first use; ``join`` waits until idle."""

    def __init__(self, *, limit: int = 10_000, name: str = "digest-web-jobs") -> None:
        self._queue: queue.Queue[Job | None] = queue.Queue(limit)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.name = name
        self.dropped = 0

    def put(self, job: Job) -> bool:
        """Queue ``job``; False (logged) when the queue is full, which only a flood reaches."""
        self._start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.error(
                "the web job queue is full (%d waiting); a subscribe request was dropped", self._queue.qsize()
            )
            return False
        return True

    def join(self) -> None:
        """Wait until every queued job has run (tests, and shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                job()
            except Exception:  # one bad job must not stop the ones after it
                log.exception("a web background job failed")
            finally:
                self._queue.task_done()
