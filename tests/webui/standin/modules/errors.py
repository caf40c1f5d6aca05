"""Stand-in for modules/errors.py (A1111 v1.10.1).

Same functions and printing convention: ``report(message, *, exc_info=False)`` prints each line of the
message prefixed with ``*** `` to stderr (plus the indented current traceback and ``---`` when
exc_info), ``display(e, task, *, full_traceback=False)`` prints ``"{task or 'error'}: {ExcType}"`` and
the exception's traceback, ``print_error_explanation(message)`` frames the message with ``=`` lines.
None of them raise.

Added for tests: ``reported`` lists every call as ``(kind, text, exception_or_None)`` where kind is
'report', 'display' or 'explanation'; ``reset()`` clears it and ``exception_records``.
Simplified: no special hint for the SD2-config shape error.
"""

import sys
import textwrap
import traceback

exception_records = []
reported = []


def reset():
    exception_records.clear()
    reported.clear()


def format_traceback(tb):
    return [[f"{frame.filename}, line {frame.lineno}, {frame.name}", frame.line] for frame in traceback.extract_tb(tb)]


def format_exception(e, tb):
    return {"exception": str(e), "traceback": format_traceback(tb)}


def get_exceptions():
    return list(reversed(exception_records))


def record_exception():
    _, e, tb = sys.exc_info()
    if e is None:
        return
    if exception_records and exception_records[-1] == e:
        return
    exception_records.append(format_exception(e, tb))
    del exception_records[:-5]


def report(message: str, *, exc_info: bool = False) -> None:
    record_exception()
    reported.append(("report", message, sys.exc_info()[1] if exc_info else None))
    for line in message.splitlines():
        print("***", line, file=sys.stderr)
    if exc_info:
        print(textwrap.indent(traceback.format_exc(), "    "), file=sys.stderr)
        print("---", file=sys.stderr)


def print_error_explanation(message):
    record_exception()
    reported.append(("explanation", message, None))
    lines = message.strip().split("\n")
    width = max(len(x) for x in lines)
    print("=" * width, file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)
    print("=" * width, file=sys.stderr)


def display(e: Exception, task, *, full_traceback=False):
    record_exception()
    reported.append(("display", task, e))
    print(f"{task or 'error'}: {type(e).__name__}", file=sys.stderr)
    te = traceback.TracebackException.from_exception(e)
    if full_traceback:
        te.stack = traceback.StackSummary(traceback.extract_stack()[:-2] + te.stack)
    print(*te.format(), sep="", file=sys.stderr)


already_displayed = {}


def display_once(e: Exception, task):
    if task in already_displayed:
        return
    display(e, task)
    already_displayed[task] = 1


def run(code, task):
    try:
        code()
    except Exception as e:
        display(e, task)
