"""Canonical logfmt log lines whose context rides in the asyncio task.

Context is kept in the current task's `context` dict, as aiotask-context
does. `task_factory` installs it on a loop; a loop without it still works,
as the first `get_log_context()` in a task gives that task a dict.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import re
import sys
import threading
import time
import traceback
from typing import Any, Coroutine, Generator, Mapping, TypeVar

import aiotask_context
import logfmt

_C = TypeVar('_C')

# Keys of a line are fixed identifiers chosen by the code, never input.
_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]*\Z')

# Keys seen to match _KEY: the same few keys make every line.
_SAFE_KEYS: set[str] = set()

# Backslash, C0/C1 controls, DEL, and everything str.splitlines() breaks
# on; logfmt itself escapes only the double quote.
_UNSAFE = re.compile('[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]')
_SHORT_ESCAPES = {'\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}

# Logging outside any task (start-up, shutdown) has a context of its own.
_outside_task: contextvars.ContextVar[dict[str, Any]] = (
    contextvars.ContextVar('addrservice_log_context')
)


def task_factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
    /,
    **task_kwargs: Any,
) -> asyncio.Task[Any]:
    """aiotask-context's task factory, taking the keywords asyncio passes.

    aiotask-context 0.6.1 accepts only `(loop, coro)`, but Python passes
    `context=` (3.11) and `name=` (3.13.3 and later) to task factories.
    A new task shares its parent task's context dict, as there.
    """
    task = asyncio.Task(coro, loop=loop, **task_kwargs)
    parent = _current_task()
    _attach(task, aiotask_context.dict_context_factory(
        getattr(parent, 'context', None)
    ))
    return task


def get_log_context() -> dict[str, Any]:
    """The current task's log context (created on first use)."""
    task = _current_task()
    if task is None:
        return _context_outside_task()
    context: dict[str, Any] | None = getattr(task, 'context', None)
    if context is None:
        context = _attach(task, {})
    return context


def set_log_context(**kwargs: Any) -> None:
    get_log_context().update(kwargs)


def clear_log_context() -> None:
    get_log_context().clear()


def log(
    logger: logging.Logger,
    level: int,
    include_context: bool = False,
    **kwargs: Any,
) -> None:
    """Log one logfmt line of `kwargs`, after the task's context if asked.

    `exc_info=(type, value, traceback)` becomes a one-line `trace` field.
    """
    if not handled(logger, level):
        return
    fields = {**get_log_context(), **kwargs} if include_context else kwargs
    # The record names the caller (file, line, function), not this helper,
    # as `logger.log(..., stacklevel=2)` would, without its walk over the
    # stack: this runs on every request.
    caller = sys._getframe(1)
    logger.handle(logger.makeRecord(
        logger.name, level, caller.f_code.co_filename, caller.f_lineno,
        format_logfmt(fields), (), None, caller.f_code.co_name,
    ))


def handled(logger: logging.Logger, level: int) -> bool:
    """Whether a line at `level` would reach any handler: the logger lets
    it through, and some handler where it goes takes that level. A line
    that none would write is not even formatted (DEBUG lines, with every
    handler at INFO)."""
    if not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        if any(level >= handler.level for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return level >= logging.lastResort.level if logging.lastResort \
        else False


def format_logfmt(fields: Mapping[str, Any]) -> str:
    """Render fields as one logfmt line that no value can break or forge."""
    info = {
        _safe_key(key): _safe_value(value)
        for key, value in fields.items()
        if key not in ('exc_info', 'stack_info', 'extra')
    }
    exc_info = fields.get('exc_info')
    if exc_info:
        info['trace'] = _safe_value(''.join(traceback.format_exception(
            *exc_info
        )))
    return next(logfmt.format(info), '')


def _safe_key(key: str) -> str:
    if key in _SAFE_KEYS or _KEY.match(key):
        _SAFE_KEYS.add(key)
        return key
    key = re.sub(r'[^A-Za-z0-9_.-]', '_', key)
    return key if _KEY.match(key) else '_' + key


def _safe_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _UNSAFE.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or f'\\u{ord(char):04x}'


def _attach(task: asyncio.Task[Any], context: _C) -> _C:
    # aiotask-context keeps the dict as an attribute of the task itself.
    setattr(task, 'context', context)
    return context


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


def _context_outside_task() -> dict[str, Any]:
    context = _outside_task.get(None)
    if context is None:
        context = {}
        _outside_task.set(context)
    return context


# Lines that may wait for the log thread. A server that logs faster than its
# handlers write waits when this many are queued, rather than queueing
# without end (memory) and losing more lines if it is killed.
MAX_QUEUED_LINES = 1000
_FULL_WAIT_S = 0.0005


class HandlerThread:
    """Runs the handlers of every configured logger in a thread of their
    own: logging a line then only puts its record on a queue, and the
    event loop does not wait for formatting or for a disk, unless
    `capacity` lines are waiting already.

    `start()` moves each logger's handlers behind the queue; `stop()`
    writes what is queued and puts them back.
    """

    def __init__(self, capacity: int = MAX_QUEUED_LINES) -> None:
        self._queue: queue.SimpleQueue[
            tuple[logging.LogRecord, list[logging.Handler]] | None
        ] = queue.SimpleQueue()
        self._capacity = capacity
        self._moved: dict[logging.Logger, list[logging.Handler]] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for logger in _configured_loggers():
            self._moved[logger] = handlers = list(logger.handlers)
            logger.handlers = [_Enqueue(self, handlers)]
        self._thread = threading.Thread(
            target=self._run, name='addrservice-log', daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        for logger, handlers in self._moved.items():
            logger.handlers = handlers
        self._moved.clear()

    @property
    def queued(self) -> int:
        """Lines waiting to be handled."""
        return self._queue.qsize()

    def put(
        self, record: logging.LogRecord, handlers: list[logging.Handler]
    ) -> None:
        """Queue `record` for `handlers`, once there is room."""
        while self._queue.qsize() >= self._capacity \
                and self._thread is not None and self._thread.is_alive():
            time.sleep(_FULL_WAIT_S)
        self._queue.put((record, handlers))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            record, handlers = item
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)


class _Enqueue(logging.Handler):
    def __init__(
        self, log_thread: HandlerThread, handlers: list[logging.Handler]
    ) -> None:
        super().__init__(min((h.level for h in handlers), default=0))
        self._log_thread = log_thread
        self._handlers = handlers

    def emit(self, record: logging.LogRecord) -> None:
        self._log_thread.put(record, self._handlers)


def _configured_loggers() -> list[logging.Logger]:
    named = list(logging.root.manager.loggerDict.values())
    return [logger for logger in [logging.root, *named]
            if isinstance(logger, logging.Logger) and logger.handlers]
