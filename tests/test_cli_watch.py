"""``coldoc status --watch``, and what ``stop`` and ``daemon`` say while
they wait, run as users run them (on a pipe and on a pseudo-terminal)
against real servers."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time

import pytest

from coldoc_tasks.coldoc.fork import bind_fork_class
from coldoc_tasks.coldoc_tasks import tasks_daemon_start
from coldoc_tasks.terminal import CLEAR_SCREEN
from tests import jobs
from tests.fixtures_coldoc import ROOT
from tests.helpers import wait_process_gone
from tests.test_cli import CLI


class Output:
    """What a process writes on a descriptor (a pipe, or a pseudo-terminal's
    master side), read as it comes; every wait is bounded."""

    def __init__(self, fd: int):
        self.fd = fd
        self.text = ''

    def read_until(self, wanted: str, timeout: float = 30.0, start: int = 0) -> int:
        """Read until ``wanted`` appears after offset ``start``; its offset."""
        deadline = time.monotonic() + timeout
        while wanted not in self.text[start:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                raise AssertionError(f'{wanted!r} did not come within {timeout} s; came:\n{self.text[-3000:]}')
            if not self._read():
                raise AssertionError(f'the output ended before {wanted!r}; came:\n{self.text[-3000:]}')
        return self.text.index(wanted, start)

    def read_to_end(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))[0] and self._read():
            pass
        return self.text

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: a pseudo-terminal whose other side is closed
            return False
        self.text += chunk.decode('utf-8', 'replace')
        return bool(chunk)


def start_cli(*args: str, tty: str = '') -> tuple[subprocess.Popen, Output, Output]:
    """Run ``coldoc_tasks_cli ARGS``; ``tty`` names the streams ('stdout',
    'stderr') that go to a pseudo-terminal; return it and its outputs."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 50, 200, 0, 0))  # rows, columns
    pipes = {}
    streams = {}
    for name in ('stdout', 'stderr'):
        if name in tty:
            streams[name] = slave
        else:
            pipes[name] = os.pipe()
            streams[name] = pipes[name][1]
    process = subprocess.Popen([CLI, *args], stdin=subprocess.DEVNULL, **streams)
    os.close(slave)
    for _, w in pipes.values():
        os.close(w)
    outputs = [Output(master if name in tty else pipes[name][0]) for name in ('stdout', 'stderr')]
    if not tty:
        os.close(master)
    return process, outputs[0], outputs[1]


def finish(process: subprocess.Popen, *outputs: Output, timeout: float = 30.0) -> int:
    for output in outputs:
        output.read_to_end(timeout)
    try:
        return process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for fd in {output.fd for output in outputs}:
            os.close(fd)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_watch_on_a_pipe_shows_progress_as_it_changes(coldoc_server, rendezvous, signum):
    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.report_twice, rendezvous.address)
    first, _ = rendezvous.accept()
    watch, out, err = start_cli('coldoc', 'status', coldoc_server.infofile, '--watch', '--interval', '0.2')
    try:
        at = out.read_until('progress: 1/4 (25%) a quarter')
        rendezvous.release(first)
        second, _ = rendezvous.accept()
        later = out.read_until('progress: 3/4 (75%) three quarters', start=at)
        # one status after another, a blank line between them
        assert out.text[:later].count(f'coldoc task server pid {coldoc_server.pid}') >= 2
        assert '\n\n\ncoldoc task server pid' not in out.text and '\n\ncoldoc task server pid' in out.text
        watch.send_signal(signum)
        assert finish(watch, out, err) == 0
        assert err.text == '', err.text
        assert '\033' not in out.text
        rendezvous.release(second)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert f.wait(timeout=60) == 'reported'


def test_watch_on_a_terminal_redraws_in_place(coldoc_server, rendezvous):
    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.report_then_rendezvous, rendezvous.address, 1, 4, 'a quarter')
    conn, _ = rendezvous.accept()
    watch, out, err = start_cli('coldoc', 'status', coldoc_server.infofile, '--watch', '--interval', '0.2',
                                tty='stdout')
    try:
        assert out.read_until(CLEAR_SCREEN) == 0  # the screen is cleared first
        at = out.read_until('progress: 1/4 (25%) a quarter')
        out.read_until('\033[H', start=at)  # then redrawn from the top, in place
        assert out.text.count(CLEAR_SCREEN) == 1
        watch.send_signal(signal.SIGTERM)
        assert finish(watch, out, err) == 0
        assert err.text == '' and 'Traceback' not in out.text
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        rendezvous.release(conn)
    assert f.wait(timeout=60) == 1


def test_watch_says_once_that_the_server_went_and_shows_the_next_one(make_server):
    server = make_server()
    watch, out, err = start_cli('coldoc', 'status', server.infofile, '--watch', '--interval', '0.2')
    try:
        out.read_until(f'coldoc task server pid {server.pid}')
        stop = subprocess.run([CLI, 'coldoc', 'stop', server.infofile], capture_output=True, text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
        err.read_until('asking again every 0.2 s')
        seen = len(out.text)
        # a new server on the same infofile: the watch shows it
        pid = tasks_daemon_start(server.infofile, logfile=server.logfile, pythonpath=[str(ROOT)], timeout=30)
        server.pid = pid  # so that the fixture stops this one
        out.read_until(f'coldoc task server pid {pid}', start=seen)
        watch.send_signal(signal.SIGTERM)
        assert finish(watch, out, err) == 0
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert err.text.count('no answer from the task server') == 1, err.text
    assert err.text.startswith(f'coldoc_tasks_cli: no answer from the task server of {server.infofile}: ')
    assert 'Traceback' not in err.text


def test_watch_cannot_be_json():
    watch = subprocess.run([CLI, 'coldoc', 'status', 'x', '--watch', '--json'], capture_output=True, text=True,
                           timeout=60)
    assert watch.returncode == 2 and 'not allowed with argument' in watch.stderr, watch.stderr
    watch = subprocess.run([CLI, 'coldoc', 'status', 'x', '--watch', '--interval', '0'], capture_output=True,
                           text=True, timeout=60)
    assert watch.returncode == 2 and 'the interval must be a number of seconds from 0.1' in watch.stderr


def test_stop_says_on_a_terminal_what_it_waits_for(make_server, rendezvous):
    server = make_server()
    f = bind_fork_class(server.infofile)()
    f.run(jobs.rendezvous, rendezvous.address, 'finished')
    conn, _ = rendezvous.accept()
    stop, out, err = start_cli('coldoc', 'stop', server.infofile, '--grace', '30', tty='stderr')
    try:
        err.read_until(f'waiting for the task server (pid {server.pid}) to finish 1 running task (grace 30 s)...')
        assert stop.poll() is None  # it does wait for the task
        rendezvous.release(conn)
        assert finish(stop, out, err) == 0
    finally:
        if stop.poll() is None:
            stop.kill()
            stop.wait()
    assert out.text == f'coldoc task server (pid {server.pid}) stopped\n'
    assert err.text.endswith('\r\033[K'), repr(err.text)  # the note is erased once the wait is over
    assert f.wait(timeout=30) == 'finished'
    assert wait_process_gone(server.pid)


def test_stop_and_daemon_say_nothing_more_on_a_pipe(make_server):
    server = make_server()
    stop = subprocess.run([CLI, 'coldoc', 'stop', server.infofile], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and stop.stderr == '', stop.stderr
    daemon = subprocess.run([CLI, 'coldoc', 'daemon', server.infofile, '--logfile', server.logfile],
                            capture_output=True, text=True, timeout=60)
    assert daemon.returncode == 0 and daemon.stderr == '', daemon.stderr
    server.pid = int(daemon.stdout.split('(pid ')[1].split(')')[0])


def test_daemon_says_on_a_terminal_that_it_waits(make_server):
    server = make_server()
    stop = subprocess.run([CLI, 'coldoc', 'stop', server.infofile], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    daemon, out, err = start_cli('coldoc', 'daemon', server.infofile, '--logfile', server.logfile, tty='stderr')
    assert finish(daemon, out, err) == 0, out.text + err.text
    server.pid = int(out.text.split('(pid ')[1].split(')')[0])
    assert out.text == f'coldoc task server started (pid {server.pid})\n'
    assert err.text == (f'\r\033[Kwaiting for the task server of {server.infofile} to be ready (up to 30 s)...'
                        '\r\033[K'), repr(err.text)


def test_watch_ends_quietly_when_its_reader_goes(coldoc_server):
    watch, out, err = start_cli('coldoc', 'status', coldoc_server.infofile, '--watch', '--interval', '0.1')
    try:
        out.read_until('results held:')
        os.close(out.fd)  # as `status --watch | head` does once it has its lines
        assert watch.wait(timeout=30) == 0
        assert err.read_to_end() == '', err.text
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
        os.close(err.fd)
