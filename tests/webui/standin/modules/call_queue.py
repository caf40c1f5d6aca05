"""Stand-in for modules/call_queue.py (A1111 v1.10.1).

``queue_lock`` (a ``threading.RLock`` here; the real one is a FIFO lock), ``wrap_queued_call(func)``
(runs under the lock), ``wrap_gradio_gpu_call(func, extra_outputs=None)`` (under the lock, with
``shared.state.begin(job=...)``/``end()``; a first argument ``"task(...)"`` is taken as the job id) and
``wrap_gradio_call(func, extra_outputs=None, add_stats=False)`` (resets the state flags afterwards).
Simplified: no progress API, no timing/VRAM stats appended to the HTML output, exceptions propagate.
"""

import threading
from functools import wraps

from modules import shared

queue_lock = threading.RLock()


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            return func(*args, **kwargs)
    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    @wraps(func)
    def f(*args, **kwargs):
        id_task = args[0] if args and type(args[0]) == str and args[0].startswith("task(") and args[0].endswith(")") else None
        with queue_lock:
            shared.state.begin(job=id_task)
            try:
                res = func(*args, **kwargs)
            finally:
                shared.state.end()
        return res

    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            shared.state.skipped = False
            shared.state.interrupted = False
            shared.state.stopping_generation = False
            shared.state.job_count = 0
            shared.state.job = ""
    return f
