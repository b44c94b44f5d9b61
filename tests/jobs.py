"""Task functions used by the tests.  They live in an importable module so
that every backend, including those that pickle the callable by reference
(coldoc, celery), can run them."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import socket
import threading
import time


def add(a, b=0):
    return a + b


def identity(x):
    return x


def getpid():
    return os.getpid()


class JobError(Exception):
    """A plain exception raised by a task on purpose."""


def fail(*args):
    raise JobError(*args)


def fail_with_value_error(message):
    raise ValueError(message)


class UnpicklableError(Exception):
    """Pickles fine by type, but carries a lock, which cannot be pickled."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class UnrebuildableError(Exception):
    """Pickles, but cannot be rebuilt: __init__ wants two arguments and the
    pickle carries the one passed to Exception."""

    def __init__(self, a, b):
        super().__init__(f'{a}-{b}')


def raise_unpicklable(message):
    raise UnpicklableError(message)


def raise_unrebuildable(a, b):
    raise UnrebuildableError(a, b)


def return_generator():
    return (i for i in range(3))


def big_bytes(size):
    return b'x' * size


def exit_with(code):
    os._exit(code)


def segfault():
    faulthandler.disable()  # keep the test output free of the crash report
    ctypes.string_at(0)


def nested(make_fork, depth, leaf=None):
    """Run a chain of tasks ``depth`` deep and return the list of depths that
    ran; at the bottom return ``leaf`` or, if it is an exception, raise it."""
    if depth <= 1:
        if isinstance(leaf, BaseException):
            raise leaf
        return [depth]
    f = make_fork()
    f.run(nested, make_fork, depth - 1, leaf)
    return f.wait() + [depth]


def fan_out(make_fork, n):
    """Run ``n`` child tasks at once from inside a task and sum them."""
    forks = [make_fork() for _ in range(n)]
    for i, f in enumerate(forks):
        f.run(add, i, 1)
    return sum(f.wait() for f in forks)


def rendezvous(address, value=None, ignore_sigterm=False, spawn_grandchild=False):
    """Tell the test at ``address`` (an AF_UNIX socket it listens on) this
    process's pid, block until the test says go, then return ``value``.

    With ``spawn_grandchild`` the pid of a forked grandchild (which blocks for
    ever) is sent as well, as ``"pid grandchild_pid"``."""
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    message = str(os.getpid())
    if spawn_grandchild:
        grandchild = os.fork()
        if grandchild == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            while True:
                signal.pause()
        message += f' {grandchild}'
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode() + b'\n')
        sock.recv(16)  # 'go', or EOF when the test drops the connection
    return value


def slow_cpu(seconds):
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += 1
    return n


def rendezvous_then_big(address, size):
    """Meet the test, then return ``size`` bytes."""
    rendezvous(address)
    return b'y' * size


def append_line(path, text):
    """Append ``text`` to the file at ``path`` (O_APPEND: safe between processes)."""
    with open(path, 'a', encoding='utf-8') as stream:
        stream.write(f'{text}\n')
    return text


def read_fifo(path):
    """Block until something is written to the FIFO at ``path``."""
    with open(path, encoding='utf-8') as stream:
        return stream.readline()


#: A module that exists only in the process running the task: made there, at
#: run time, like a module on the worker's path alone, or the worker's
#: ``__main__``.  The process waiting for the task cannot import it.
WORKER_ONLY_MODULE = 'coldoc_tasks_tests_worker_only'


def _worker_only_module():
    import sys
    import types

    module = sys.modules.get(WORKER_ONLY_MODULE)
    if module is None:
        module = types.ModuleType(WORKER_ONLY_MODULE)
        exec('class WorkerOnlyError(Exception):\n    pass\n\nclass WorkerOnlyValue:\n    pass\n', module.__dict__)
        sys.modules[WORKER_ONLY_MODULE] = module
    return module


def raise_worker_only(message):
    """Raise an exception whose class the waiting process cannot import."""
    raise _worker_only_module().WorkerOnlyError(message)


def return_worker_only():
    """Return an object whose class the waiting process cannot import."""
    return _worker_only_module().WorkerOnlyValue()


class BigError(Exception):
    """A short message, but a big pickle: it carries ``size`` bytes."""

    def __init__(self, message, size):
        super().__init__(message, size)
        self.payload = b'z' * size

    def __str__(self):
        return self.args[0]


def raise_big(message, size):
    raise BigError(message, size)


def raise_long_message(size):
    """Raise an exception whose message is ``size`` characters long."""
    raise ValueError('start ' + 'm' * size + ' end')


def record_pid(path):
    """Write this process's pid to ``path`` (a new file); return the pid."""
    with open(path, 'x', encoding='ascii') as stream:
        stream.write(str(os.getpid()))
    return os.getpid()


def announce_huge_frame():
    """Write, to every socket of this process, a frame header announcing 2 GB:
    what a task that bypasses its worker's limits could send the server."""
    import struct

    for name in os.listdir('/proc/self/fd'):
        try:
            if os.readlink(f'/proc/self/fd/{name}').startswith('socket:'):
                os.write(int(name), struct.pack('!II', 2, 2**31) + b'[]')
        except OSError:
            pass
    return 'sent'


def report_then_rendezvous(address, done, total, message):
    """Report ``done`` out of ``total``, meet the test at ``address``, then
    report the end and return ``done``."""
    from coldoc_tasks import progress

    progress(done, total, message, stage='first')
    rendezvous(address)
    progress(total, total, 'finished', stage='last')
    return done


def report_many(count):
    """Report progress ``count`` times in a tight loop; return the seconds it took."""
    from coldoc_tasks import progress

    start = time.perf_counter()
    for i in range(count):
        progress(i + 1, count, 'step')
    return time.perf_counter() - start


def report_bad(what):
    """Call progress() with a bad argument: ``what`` names which."""
    from coldoc_tasks import progress

    bad = {'done': lambda: progress(-1), 'total': lambda: progress(1, float('nan')),
           'message': lambda: progress(1, 2, b'bytes'), 'metadata': lambda: progress(1, when=object())}
    bad[what]()
    return 'reported'


def report_twice(address):
    """Report a quarter, meet the test at ``address``, report three
    quarters, meet it again, then return 'reported'."""
    from coldoc_tasks import progress

    progress(1, 4, 'a quarter')
    rendezvous(address)
    progress(3, 4, 'three quarters')
    rendezvous(address)
    return 'reported'


#: What hold_memory keeps alive in its worker, as a leaking task would.
HELD_MEMORY: list = []


def hold_memory(megabytes):
    """Allocate ``megabytes`` MB, touch every page, keep them in this process
    (a module-level list) and return the process id."""
    HELD_MEMORY.append(bytearray(b'\1' * (megabytes * 2**20)))
    return os.getpid()


def nested_pids(make_fork, depth):
    """Run a chain of tasks ``depth`` deep; return the pid of each level's
    process, from the top."""
    if depth <= 1:
        return [os.getpid()]
    f = make_fork()
    f.run(nested_pids, make_fork, depth - 1)
    return [os.getpid()] + f.wait()


def report_in_steps(address, steps):
    """Report step 1 of ``steps``, meet the test at ``address``, report
    step 2, meet it again, and so on; after the last meeting, return
    ``steps``.  A test sees the progress advance one step per release."""
    from coldoc_tasks import progress

    for step in range(1, steps + 1):
        progress(step, steps, f'step {step} of {steps}')
        rendezvous(address)
    return steps


def record_run(directory, name, value=None, release=None):
    """Record this run as a line in ``directory/name`` (one per run), then,
    if ``release`` is given, block until that file exists; return ``value``."""
    append_line(os.path.join(directory, name), os.getpid())
    while release is not None and not os.path.exists(release):
        time.sleep(0.02)
    return value


def record_run_block_first(directory, name, value=None):
    """Record this run; the first run blocks for ever (to be killed), a
    later one returns ``value``."""
    path = os.path.join(directory, name)
    append_line(path, os.getpid())
    with open(path, encoding='utf-8') as stream:
        first = len(stream.readlines()) == 1
    while first:
        time.sleep(0.05)
    return value


def record_time(path):
    """Write the time this task started at (``time.time()``) to ``path``, and return it."""
    import time

    started = time.time()
    with open(path, 'w', encoding='utf-8') as stream:
        stream.write(repr(started))
    return started


class Named:
    """A task whose name, as the server's status shows it, is ``name`` (any
    text: the status page must show it as text); it fails with ``message``."""

    def __init__(self, name):
        self.__qualname__ = name

    def __call__(self, message):
        raise ValueError(message)
