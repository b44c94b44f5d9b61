"""The status page in a real headless browser (Debian's chromium, driven
by selenium through Debian's chromedriver), against a real task server and
a real ``coldoc web`` process: a running task's progress bar advances, the
page's button terminates it, the page says when the server goes and comes
back, and a request without the token is refused; the page updates its
rows in place (an unfolded traceback stays open, a button stays the same
element).

Without chromium, chromedriver or selenium the test is skipped, saying
why (under CI=true it fails).  Screenshots go to ``$COLDOC_TASKS_SCREENSHOTS``
if set (``docs/img`` for the README), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

from coldoc_tasks.coldoc_tasks import bind_fork_class, shutdown, tasks_daemon_start
from coldoc_tasks.exceptions import ColdocTasksProcessLookupError
from tests import jobs
from tests.conftest import skip_or_fail
from tests.fixtures_coldoc import ROOT
from tests.helpers_web import start_web

pytestmark = pytest.mark.timeout(240)

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
#: Seconds the browser is given to show what the test waits for.
SHOW_TIMEOUT = 30


@pytest.fixture
def browser():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        skip_or_fail(f'no {" nor ".join(missing)} (Debian: apt-get install chromium chromium-driver)')
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail('selenium is not installed (pip install selenium, or the dev extra)')
    profile = tempfile.mkdtemp(prefix='ct-chromium-')
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync',
                 '--disable-dev-shm-usage', f'--user-data-dir={profile}', '--window-size=1280,1100'):
        options.add_argument(flag)
    os.environ.setdefault('SE_OFFLINE', 'true')  # selenium must never download a driver or a browser
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver, name: str, tmp_path: pathlib.Path) -> None:
    directory = pathlib.Path(os.environ.get('COLDOC_TASKS_SCREENSHOTS') or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(directory / name))


def _until(browser, condition, what):
    """Wait until ``condition()`` holds, tried again while elements come and go."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, SHOW_TIMEOUT, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        lambda driver: condition(), message=f'the page did not show {what} within {SHOW_TIMEOUT} s')


def _updates(browser) -> int:
    """How many statuses the page has applied (it counts them)."""
    return int(browser.find_element('css selector', 'body').get_attribute('data-updates') or 0)


def test_the_page_updates_its_rows_in_place(browser, coldoc_server, rendezvous):
    from selenium.webdriver.common.by import By

    fork_class = bind_fork_class(coldoc_server.infofile)
    failed = fork_class()
    failed.run(jobs.fail_with_value_error, 'a failure to unfold')
    failed.wait(timeout=30, raise_exception=False)
    task = fork_class()
    task.run(jobs.rendezvous, rendezvous.address)
    conn, _ = rendezvous.accept()
    page = start_web(coldoc_server.infofile)
    try:
        browser.get(page.url)
        failure = f'#failures tr[data-task-id="{failed.task_id}"]'
        running = f'#tasks tr[data-task-id="{task.task_id}"]'
        details = _until(browser, lambda: browser.find_element(By.CSS_SELECTOR, f'{failure} details'), 'a failure')
        button = _until(browser, lambda: browser.find_element(By.CSS_SELECTOR, f'{running} button.terminate'),
                        'the button')
        elapsed = browser.find_element(By.CSS_SELECTOR, f'{running} td.elapsed')
        details.find_element(By.TAG_NAME, 'summary').click()
        assert details.get_attribute('open') is not None
        # several statuses applied: the running task's elapsed time changed, in the same cell
        before, seen = _updates(browser), elapsed.text
        _until(browser, lambda: _updates(browser) >= before + 3, 'three more updates')
        _until(browser, lambda: elapsed.text != seen, 'the elapsed time change')
        # the very same elements (a replaced one would be stale, and differ from a fresh look)
        assert details.get_attribute('open') is not None
        assert details.find_element(By.CSS_SELECTOR, 'pre.traceback').is_displayed()
        assert 'a failure to unfold' in details.find_element(By.CSS_SELECTOR, 'pre.traceback').text
        assert browser.find_element(By.CSS_SELECTOR, f'{failure} details') == details
        assert browser.find_element(By.CSS_SELECTOR, f'{running} button.terminate') == button
        assert browser.find_element(By.CSS_SELECTOR, f'{running} td.elapsed') == elapsed
        # folded by the user, it stays folded
        details.find_element(By.TAG_NAME, 'summary').click()
        before = _updates(browser)
        _until(browser, lambda: _updates(browser) >= before + 2, 'two more updates')
        assert details.get_attribute('open') is None and not details.find_element(By.TAG_NAME, 'pre').is_displayed()
        # the button, found before all these updates, still terminates the task
        button.click()
        with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
            task.wait(timeout=SHOW_TIMEOUT)
        _until(browser, lambda: browser.find_elements(By.CSS_SELECTOR, running) == [], 'the row gone')
        _until(browser, lambda: browser.find_element(By.CSS_SELECTOR, '#tasks td.empty').text
               == 'no task is running or queued', 'the empty table')
        assert browser.find_element(By.CSS_SELECTOR, f'{failure} details') == details
    finally:
        conn.close()
        assert page.stop() == 0


def test_the_page_in_a_browser(browser, coldoc_server, rendezvous, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Every look at the page is a condition, tried again until it holds
    # (a row that ended goes, and a fresh look finds its successor).
    def until(condition, what):
        return WebDriverWait(browser, SHOW_TIMEOUT, poll_frequency=0.1,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
            lambda driver: condition(), message=f'the page did not show {what} within {SHOW_TIMEOUT} s')

    def text_of(selector):
        return browser.find_element(By.CSS_SELECTOR, selector).text

    def click(selector):
        browser.find_element(By.CSS_SELECTOR, selector).click()
        return True

    def progress_value(task_id):
        bars = browser.find_elements(By.CSS_SELECTOR, f'#tasks tr[data-task-id="{task_id}"] progress')
        return bars[0].get_attribute('value') if bars else None

    def ended_state(task_id):
        cells = browser.find_elements(By.CSS_SELECTOR, f'#recent tr[data-task-id="{task_id}"] td.state')
        return cells[0].text if cells else None

    fork_class = bind_fork_class(coldoc_server.infofile)
    # something in every table: a task that ended well, one that failed, one that runs
    done = fork_class()
    done.run(jobs.add, 40, 2)
    assert done.wait(timeout=30) == 42
    failed = fork_class()
    failed.run(jobs.fail_with_value_error, 'the input was not a number')
    failed.wait(timeout=30, raise_exception=False)
    task = fork_class()
    task.run(jobs.report_in_steps, rendezvous.address, 4)
    first, _ = rendezvous.accept()

    page = start_web(coldoc_server.infofile)
    try:
        browser.get(page.url)
        until(lambda: progress_value(task.task_id) == '1', 'the first step of the task')
        until(lambda: text_of(f'#tasks tr[data-task-id="{task.task_id}"] td.state') == 'running', 'it running')
        rendezvous.release(first)
        second, _ = rendezvous.accept()
        until(lambda: progress_value(task.task_id) == '2', 'the progress bar advance to the second step')
        until(lambda: 'step 2 of 4' in text_of('#tasks') and '2/4 (50%)' in text_of('#tasks'), 'the step')
        # the failure, its traceback on demand
        failure = f'#failures tr[data-task-id="{failed.task_id}"]'
        until(lambda: 'ValueError: the input was not a number' in text_of(failure), 'the failure')
        until(lambda: not browser.find_element(By.CSS_SELECTOR, f'{failure} pre.traceback').is_displayed(),
              'the traceback folded')
        until(lambda: ended_state(done.task_id) == 'done', 'the task that ended well')
        until(lambda: task.task_id in text_of('#workers') and 'MB' in text_of('#workers'), 'the worker')
        # (the traceback folded: its file names are this machine's)
        _screenshot(browser, 'status-page.png', tmp_path)
        until(lambda: click(f'{failure} summary'), 'the fold of the traceback')
        until(lambda: browser.find_element(By.CSS_SELECTOR, f'{failure} pre.traceback').is_displayed(),
              'the traceback')
        until(lambda: 'raise ValueError(message)' in text_of(f'{failure} pre.traceback'), 'the traceback text')

        # the page's button terminates it; the waiter is told; the page says so
        until(lambda: click(f'#tasks tr[data-task-id="{task.task_id}"] button.terminate'), 'the button')
        with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
            task.wait(timeout=SHOW_TIMEOUT)
        until(lambda: ended_state(task.task_id) == 'terminated', 'the task as terminated')
        until(lambda: browser.find_elements(By.CSS_SELECTOR, f'#tasks tr[data-task-id="{task.task_id}"]') == [],
              'no running task')
        until(lambda: 'terminated' in text_of('#failures'), 'the terminated task among the failures')
        second.close()

        # the server goes: the page says so; it comes back: the page shows it again
        banner = browser.find_element(By.ID, 'banner')
        assert not banner.is_displayed()
        shutdown(coldoc_server.infofile, grace=0, timeout=30)
        until(lambda: banner.is_displayed() and 'does not answer' in banner.text, 'that the server is down')
        browser.save_screenshot(str(tmp_path / 'server-down.png'))  # (its message names this machine's socket)
        coldoc_server.pid = tasks_daemon_start(coldoc_server.infofile, logfile=coldoc_server.logfile,
                                               pythonpath=[str(ROOT)], timeout=30)
        until(lambda: not banner.is_displayed(), 'the server back')
        until(lambda: f'pid {coldoc_server.pid}' in text_of('#summary'), 'the new server')

        # without the token: refused
        browser.get(page.base)
        assert 'needs its token' in browser.find_element(By.TAG_NAME, 'body').text
        code, _, _ = page.request('', token=None)
        assert code == 403
    finally:
        assert page.stop() == 0


#: What a task's name, error, progress message or a queue's name may hold:
#: were it inserted as HTML, an element would appear (CSP would stop the
#: handler, not the element).
HOSTILE = '<img/src=x/onerror=document.body.dataset.pwned=1><b>bold</b>'


def test_what_tasks_send_is_shown_as_text(browser, make_server, rendezvous):
    from selenium.webdriver.common.by import By

    server = make_server(queues=('default:2:reuse', f'{HOSTILE}:1:reuse'))
    fork_class = bind_fork_class(server.infofile)
    failed = fork_class()
    failed.run(jobs.Named(HOSTILE), f'{HOSTILE}<script>document.body.dataset.pwned=2</script>')
    failed.wait(timeout=30, raise_exception=False)
    running = fork_class(queue=HOSTILE)
    running.run(jobs.report_then_rendezvous, rendezvous.address, 1, 2, HOSTILE)
    conn, _ = rendezvous.accept()
    page = start_web(server.infofile)
    try:
        browser.get(page.url)
        failure = f'#failures tr[data-task-id="{failed.task_id}"]'
        _until(browser, lambda: HOSTILE in browser.find_element(By.CSS_SELECTOR, f'{failure} summary').text,
               'the error as text')
        browser.find_element(By.CSS_SELECTOR, f'{failure} summary').click()
        _until(browser, lambda: '<script>' in browser.find_element(By.CSS_SELECTOR, f'{failure} pre').text,
               'the traceback as text')
        tasks = f'#tasks tr[data-task-id="{running.task_id}"]'
        _until(browser, lambda: HOSTILE in browser.find_element(By.CSS_SELECTOR, f'{tasks} .pmessage').text,
               'the progress message as text')
        assert browser.find_elements(By.CSS_SELECTOR, f'{tasks} td')[2].text == HOSTILE  # its queue
        assert HOSTILE in browser.find_element(By.CSS_SELECTOR, '#queues').text
        assert browser.find_elements(By.CSS_SELECTOR, f'{failure} td')[2].text == f'tests.jobs.{HOSTILE}'
        assert HOSTILE in browser.find_element(By.CSS_SELECTOR, '#workers').text
        for tag in ('main img', 'main b', 'main script'):
            assert browser.find_elements(By.CSS_SELECTOR, tag) == [], tag
        assert browser.find_element(By.TAG_NAME, 'body').get_attribute('data-pwned') is None
    finally:
        rendezvous.release(conn)
        assert page.stop() == 0
