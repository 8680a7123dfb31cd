"""logutils: one-line logfmt rendering, log(), and the task's log context."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import threading
import time
import unittest
from typing import Any, Coroutine

import aiotask_context

from addrservice.utils import logutils
from addrservice.utils.logutils import format_logfmt
from tests.support import parse_logfmt

# Values that try to end the line or smuggle in a key of their own.
HOSTILE = {
    'double quote': 'say "hi"',
    'quoted fake field': '" admin=true x="',
    'backslash': 'C:\\dir\\',
    'backslash before quote': 'a\\" admin=true',
    'newline': 'a\nadmin=true',
    'carriage return': 'a\radmin=true',
    'tab': 'a\tb',
    'other C0 controls': '\x00\x07\x08\x0b\x0c\x1b\x1f',
    'DEL': 'a\x7fb',
    'C1 controls': '\x80\x85\x9f',
    'file, group, record separators': 'a\x1cb\x1dc\x1ed',
    'line and paragraph separators': 'a\u2028b\u2029c',
}


class FormatLogfmtTest(unittest.TestCase):
    def test_strings_are_quoted(self) -> None:
        """Plain string values are written in double quotes, in order."""
        self.assertEqual(
            format_logfmt({'message': 'RESPONSE', 'method': 'GET',
                           'path': '/addresses/a b'}),
            'message="RESPONSE" method="GET" path="/addresses/a b"',
        )

    def test_numbers_are_bare(self) -> None:
        """Ints and floats are written without quotes."""
        self.assertEqual(
            format_logfmt({'status': 200, 'time_ms': 1.25, 'n': -3}),
            'status=200 time_ms=1.25 n=-3',
        )

    def test_bools_are_true_false(self) -> None:
        """Booleans are written as bare true and false."""
        self.assertEqual(format_logfmt({'ok': True, 'retry': False}),
                         'ok=true retry=false')

    def test_none_is_an_empty_value(self) -> None:
        """None is written as the key and an equals sign, nothing after."""
        self.assertEqual(format_logfmt({'reason': None, 'status': 204}),
                         'reason= status=204')

    def test_other_objects_use_str(self) -> None:
        """Values of other types are written as their quoted str()."""
        self.assertEqual(format_logfmt({'kind': KeyError('x')}),
                         "kind=\"'x'\"")

    def test_non_ascii_text_is_kept(self) -> None:
        """Printable non-ASCII text is written as it is."""
        self.assertEqual(format_logfmt({'name': 'José ✓ 😀'}),
                         'name="José ✓ 😀"')

    def test_empty_fields(self) -> None:
        """No fields give an empty line, not an exception."""
        self.assertEqual(format_logfmt({}), '')

    def test_double_quote_is_escaped(self) -> None:
        """An embedded double quote is written as backslash-quote."""
        self.assertEqual(format_logfmt({'q': 'say "hi"'}),
                         'q="say \\"hi\\""')
        self.assertEqual(format_logfmt({'q': '" admin=true x="'}),
                         'q="\\" admin=true x=\\""')

    def test_backslash_is_escaped(self) -> None:
        """A backslash is doubled, so it cannot escape the closing quote."""
        self.assertEqual(format_logfmt({'p': 'C:\\dir\\'}),
                         'p="C:\\\\dir\\\\"')
        self.assertEqual(format_logfmt({'p': 'a\\"'}), 'p="a\\\\\\""')

    def test_newline_return_tab_are_escaped(self) -> None:
        """Newline, carriage return and tab become \\n, \\r and \\t."""
        self.assertEqual(format_logfmt({'v': 'a\nb\rc\td'}),
                         'v="a\\nb\\rc\\td"')

    def test_other_c0_controls_are_escaped(self) -> None:
        """Other C0 controls are written as \\u00XX escapes."""
        self.assertEqual(format_logfmt({'v': '\x00\x07\x0b\x0c\x1b\x1f'}),
                         'v="\\u0000\\u0007\\u000b\\u000c\\u001b\\u001f"')

    def test_del_and_c1_controls_are_escaped(self) -> None:
        """DEL and the C1 controls, NEL (\\x85) among them, are escaped."""
        self.assertEqual(format_logfmt({'v': '\x7f\x80\x85\x9f\xa0'}),
                         'v="\\u007f\\u0080\\u0085\\u009f\xa0"')

    def test_splitlines_separators_are_escaped(self) -> None:
        """\\x1c-\\x1e, \\u2028 and \\u2029, which split lines, are escaped."""
        self.assertEqual(
            format_logfmt({'v': '\x1c\x1d\x1e\u2028\u2029'}),
            'v="\\u001c\\u001d\\u001e\\u2028\\u2029"',
        )

    def test_hostile_values_stay_on_one_line(self) -> None:
        """No hostile value, nor all of them at once, splits the line."""
        cases = {**HOSTILE, 'all at once': ''.join(HOSTILE.values())}
        for case, value in cases.items():
            with self.subTest(case):
                line = format_logfmt({'message': 'REQUEST', 'user': value,
                                      'status': 200})
                self.assertEqual(len(line.splitlines()), 1)
                self.assertTrue(line.endswith(' status=200'))

    def test_hostile_values_keep_their_keys(self) -> None:
        """A strict logfmt reader finds exactly the original keys, values."""
        for case, value in HOSTILE.items():
            with self.subTest(case):
                line = format_logfmt({'message': 'REQUEST', 'user': value,
                                      'status': 200})
                fields = parse_logfmt(line)
                self.assertEqual(sorted(fields),
                                 ['message', 'status', 'user'], line)
                self.assertEqual(fields['user'], value)

    def test_value_cannot_forge_a_key(self) -> None:
        """A value ending in a backslash cannot make the next value a key."""
        line = format_logfmt({'user': 'x\\', 'note': ' admin=true'})
        self.assertEqual(line, 'user="x\\\\" note=" admin=true"')
        self.assertEqual(parse_logfmt(line),
                         {'user': 'x\\', 'note': ' admin=true'})

    def test_non_identifier_keys_are_sanitised(self) -> None:
        """Characters outside [A-Za-z0-9_.-] in a key become underscores."""
        line = format_logfmt({'bad key': 1, 'a=b': 2, 'x"y': 3, 'n\nl': 4,
                              '': 5, 'ok.key-1_x': 6})
        self.assertEqual(line, 'bad_key=1 a_b=2 x_y=3 n_l=4 _=5 ok.key-1_x=6')
        self.assertEqual(
            sorted(parse_logfmt(line)),
            ['_', 'a_b', 'bad_key', 'n_l', 'ok.key-1_x', 'x_y'],
        )

    def test_keys_start_like_identifiers(self) -> None:
        """A key that starts with a digit or dot gets a leading underscore."""
        self.assertEqual(format_logfmt({'1abc': 1, '.x': 2}),
                         '_1abc=1 _.x=2')

    def test_exc_info_becomes_one_line_trace(self) -> None:
        """exc_info is rendered as an escaped one-line trace field."""
        try:
            raise ValueError('bad "input"\nsecond line')
        except ValueError:
            exc_info = sys.exc_info()
        line = format_logfmt({'message': 'ERROR', 'exc_info': exc_info})
        self.assertEqual(len(line.splitlines()), 1)
        self.assertTrue(line.startswith(
            'message="ERROR" trace="Traceback (most recent call last):\\n'
            '  File \\"'), line)
        self.assertIn(', in test_exc_info_becomes_one_line_trace\\n', line)
        self.assertTrue(line.endswith(
            'ValueError: bad \\"input\\"\\nsecond line\\n"'), line)
        self.assertNotIn('exc_info=', line)

    def test_logging_keywords_are_not_fields(self) -> None:
        """A falsy exc_info, stack_info and extra are left out of the line."""
        self.assertEqual(
            format_logfmt({'message': 'X', 'exc_info': None,
                           'stack_info': True, 'extra': {'a': 1}}),
            'message="X"',
        )


class _Unprintable:
    """A value that fails the test if anything formats it."""

    def __str__(self) -> str:
        raise AssertionError('a disabled log call formatted its fields')


class LogTest(unittest.TestCase):
    def setUp(self) -> None:
        self.logger = logging.getLogger('addrservice.test.logutils')
        logutils.clear_log_context()
        self.addCleanup(logutils.clear_log_context)

    def test_fields_only_by_default(self) -> None:
        """Without include_context, only the keyword fields are logged."""
        logutils.set_log_context(request_id='r1')
        with self.assertLogs(self.logger, logging.INFO) as cm:
            logutils.log(self.logger, logging.INFO, message='HELLO', n=1)
        self.assertEqual(cm.records[0].getMessage(), 'message="HELLO" n=1')
        self.assertEqual(cm.records[0].levelno, logging.INFO)

    def test_context_then_keywords(self) -> None:
        """include_context puts the context first; keywords override it."""
        logutils.set_log_context(request_id='r1', status=0)
        with self.assertLogs(self.logger, logging.DEBUG) as cm:
            logutils.log(self.logger, logging.WARNING, include_context=True,
                         message='RESPONSE', status=200)
        self.assertEqual(cm.records[0].getMessage(),
                         'request_id="r1" status=200 message="RESPONSE"')
        self.assertEqual(logutils.get_log_context(),
                         {'request_id': 'r1', 'status': 0})

    def test_disabled_level_formats_nothing(self) -> None:
        """Below the logger's level, log() neither formats nor emits."""
        logutils.set_log_context(secret=_Unprintable())
        with self.assertNoLogs(self.logger, logging.INFO):
            logutils.log(self.logger, logging.DEBUG, include_context=True,
                         value=_Unprintable())

    def test_record_names_the_caller(self) -> None:
        """The record's file, line and function are the caller's."""
        with self.assertLogs(self.logger, logging.INFO) as cm:
            frame = inspect.currentframe()
            assert frame is not None
            line = frame.f_lineno + 1
            logutils.log(self.logger, logging.INFO, message='HERE')
        record = cm.records[0]
        self.assertEqual(record.filename, 'logutils_test.py')
        self.assertEqual(record.funcName, 'test_record_names_the_caller')
        self.assertEqual(record.lineno, line)


def _run(
    coro: Coroutine[Any, Any, Any], factory: bool = True
) -> Any:
    """Run coro on a new loop, with or without our task factory."""
    loop = asyncio.new_event_loop()
    if factory:
        loop.set_task_factory(logutils.task_factory)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class _Recorder(logging.Handler):
    """Keeps each line it handles, with the thread that handled it."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(),
                           threading.current_thread().name))


class HandledTest(unittest.TestCase):
    def setUp(self) -> None:
        self.parent = logging.getLogger('addrservice.test.handled')
        self.child = logging.getLogger('addrservice.test.handled.child')
        for logger in (self.parent, self.child):
            logger.setLevel(logging.DEBUG)
            self.addCleanup(setattr, logger, 'handlers', [])
        self.parent.propagate = False
        self.addCleanup(setattr, self.parent, 'propagate', True)

    def test_a_line_no_handler_takes_is_not_formatted(self) -> None:
        """With every handler at INFO, a DEBUG line is not even built."""
        info = _Recorder(logging.INFO)
        self.parent.handlers = [info]
        built: list[str] = []

        class Spy:
            def __str__(self) -> str:
                built.append('built')
                return 'spy'

        logutils.log(self.child, logging.DEBUG, value=Spy())
        self.assertEqual((built, info.lines), ([], []))
        self.assertFalse(logutils.handled(self.child, logging.DEBUG))
        self.assertTrue(logutils.handled(self.child, logging.INFO))
        self.parent.handlers = [info, _Recorder(logging.DEBUG)]
        self.assertTrue(logutils.handled(self.child, logging.DEBUG))
        logutils.log(self.child, logging.DEBUG, value=Spy())
        self.assertEqual(built, ['built'])

    def test_the_logger_level_still_counts(self) -> None:
        self.parent.handlers = [_Recorder()]
        self.child.setLevel(logging.WARNING)
        self.assertFalse(logutils.handled(self.child, logging.INFO))


class HandlerThreadTest(unittest.TestCase):
    def setUp(self) -> None:
        self.logger = logging.getLogger('addrservice.test.handler-thread')
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.everything = _Recorder()
        self.warnings = _Recorder(logging.WARNING)
        self.logger.handlers = [self.everything, self.warnings]
        self.addCleanup(setattr, self.logger, 'handlers', [])

    def test_lines_are_handled_in_the_thread_in_order(self) -> None:
        """While it runs, every line reaches its handlers, in order and
        by their levels, from the log thread; stop() writes them all and
        puts the handlers back."""
        log_thread = logutils.HandlerThread()
        log_thread.start()
        self.assertNotIn(self.everything, self.logger.handlers)
        for i in range(100):
            self.logger.log(logging.WARNING if i % 10 == 0
                            else logging.INFO, 'line %d', i)
        log_thread.stop()
        self.assertEqual(self.logger.handlers,
                         [self.everything, self.warnings])
        self.assertEqual([line for line, _ in self.everything.lines],
                         [f'line {i}' for i in range(100)])
        self.assertEqual([line for line, _ in self.warnings.lines],
                         [f'line {i}' for i in range(0, 100, 10)])
        self.assertEqual({thread for _, thread in self.everything.lines},
                         {'addrservice-log'})

    def test_a_full_queue_makes_logging_wait(self) -> None:
        """Lines logged faster than a slow handler writes them wait for
        room: no more than the capacity is ever queued, and none is
        lost or reordered."""
        log_thread = logutils.HandlerThread(capacity=5)
        seen: list[int] = []

        class Slow(_Recorder):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(log_thread.queued)
                time.sleep(0.002)
                super().emit(record)

        slow = Slow()
        self.logger.handlers = [slow]
        log_thread.start()
        for i in range(60):
            self.logger.info('line %d', i)
        log_thread.stop()
        self.assertLessEqual(max(seen), 5)
        self.assertEqual([line for line, _ in slow.lines],
                         [f'line {i}' for i in range(60)])

    def test_stop_without_start(self) -> None:
        logutils.HandlerThread().stop()
        self.assertEqual(self.logger.handlers,
                         [self.everything, self.warnings])


class TaskContextTest(unittest.TestCase):
    def test_set_get_clear_in_a_task(self) -> None:
        """In a task, set adds keys, get gives its dict, clear empties it."""
        async def main() -> tuple[Any, ...]:
            logutils.set_log_context(request_id='r1')
            logutils.set_log_context(method='GET', request_id='r2')
            seen = dict(logutils.get_log_context())
            same = logutils.get_log_context() is \
                getattr(asyncio.current_task(), 'context')
            logutils.clear_log_context()
            return seen, same, logutils.get_log_context()

        self.assertEqual(_run(main()),
                         ({'request_id': 'r2', 'method': 'GET'}, True, {}))

    def test_child_task_shares_parent_dict(self) -> None:
        """A task created inside a task shares its parent's context dict."""
        async def child() -> dict[str, Any]:
            seen = dict(logutils.get_log_context())
            logutils.set_log_context(from_child=True)
            return seen

        async def parent() -> tuple[Any, ...]:
            logutils.set_log_context(request_id='r1')
            task = asyncio.create_task(child())
            seen_by_child = await task
            shared = getattr(task, 'context') is logutils.get_log_context()
            return seen_by_child, shared, logutils.get_log_context()

        self.assertEqual(_run(parent()), (
            {'request_id': 'r1'}, True,
            {'request_id': 'r1', 'from_child': True},
        ))

    def test_top_level_tasks_have_their_own_dicts(self) -> None:
        """Tasks started outside any task do not see each other's context."""
        async def request(rid: str) -> dict[str, Any]:
            logutils.set_log_context(request_id=rid)
            await asyncio.sleep(0)
            return logutils.get_log_context()

        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        loop.set_task_factory(logutils.task_factory)
        tasks = [loop.create_task(request(rid)) for rid in ('a', 'b')]
        self.assertEqual(loop.run_until_complete(asyncio.gather(*tasks)),
                         [{'request_id': 'a'}, {'request_id': 'b'}])

    def test_loop_without_task_factory(self) -> None:
        """Without a task factory, the first get attaches a dict lazily."""
        async def main() -> tuple[Any, ...]:
            task = asyncio.current_task()
            before = hasattr(task, 'context')
            logutils.set_log_context(request_id='r1')
            seen = dict(logutils.get_log_context())
            attached = getattr(task, 'context') is logutils.get_log_context()
            logutils.clear_log_context()
            return before, seen, attached, logutils.get_log_context()

        self.assertEqual(_run(main(), factory=False),
                         (False, {'request_id': 'r1'}, True, {}))

    def test_outside_any_loop(self) -> None:
        """With no running loop, set, get and clear use a context apart."""
        logutils.clear_log_context()
        self.addCleanup(logutils.clear_log_context)
        logutils.set_log_context(phase='startup')
        self.assertEqual(logutils.get_log_context(), {'phase': 'startup'})

        async def in_task() -> dict[str, Any]:
            return dict(logutils.get_log_context())

        self.assertEqual(_run(in_task()), {})
        logutils.clear_log_context()
        self.assertEqual(logutils.get_log_context(), {})


_PROBE: contextvars.ContextVar[str] = contextvars.ContextVar(
    'probe', default='default context'
)


async def _probe() -> str:
    return _PROBE.get()


def _context_with_probe() -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(_PROBE.set, 'given context')
    return context


class TaskFactoryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)

    def test_called_with_loop_and_coro(self) -> None:
        """task_factory(loop, coro) gives a Task with an empty context dict."""
        task = logutils.task_factory(self.loop, _probe())
        self.assertIsInstance(task, asyncio.Task)
        self.assertEqual(getattr(task, 'context'), {})
        self.assertEqual(self.loop.run_until_complete(task),
                         'default context')

    def test_called_with_context_keyword(self) -> None:
        """task_factory(loop, coro, context=ctx) runs the task in ctx."""
        task = logutils.task_factory(self.loop, _probe(),
                                     context=_context_with_probe())
        self.assertEqual(getattr(task, 'context'), {})
        self.assertEqual(self.loop.run_until_complete(task), 'given context')

    def test_called_with_name_keyword(self) -> None:
        """task_factory(loop, coro, name='x') names the task 'x'."""
        task = logutils.task_factory(self.loop, _probe(), name='x')
        self.assertEqual(task.get_name(), 'x')
        self.assertEqual(getattr(task, 'context'), {})
        self.loop.run_until_complete(task)

    def test_create_task_with_context(self) -> None:
        """loop.create_task(coro, context=ctx) works with the factory set."""
        self.loop.set_task_factory(logutils.task_factory)
        task = self.loop.create_task(_probe(), context=_context_with_probe())
        self.assertEqual(getattr(task, 'context'), {})
        self.assertEqual(self.loop.run_until_complete(task), 'given context')

    def test_create_task_with_name(self) -> None:
        """loop.create_task(coro, name='n') works with the factory set."""
        self.loop.set_task_factory(logutils.task_factory)
        task = self.loop.create_task(_probe(), name='n')
        self.assertEqual(task.get_name(), 'n')
        self.assertEqual(getattr(task, 'context'), {})
        self.loop.run_until_complete(task)

    def test_aiotask_context_factory_rejects_context(self) -> None:
        """aiotask-context's own factory raises TypeError for context=."""
        coro = _probe()
        self.addCleanup(coro.close)
        with self.assertRaises(TypeError):
            aiotask_context.task_factory(self.loop, coro,
                                         context=_context_with_probe())


if __name__ == '__main__':
    unittest.main()
