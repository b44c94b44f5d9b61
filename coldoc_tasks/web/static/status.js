'use strict';
// The live status page: asks api/status every second and redraws the tables.
// Every text from the server goes in with textContent, never as HTML.
(function () {
  const INTERVAL = 1000;
  const token = new URLSearchParams(window.location.search).get('token') || '';
  const csrfMeta = document.querySelector('meta[name="coldoc-csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : '';  // in a Django site: its CSRF token
  const openDetails = new Set();  // the failures whose traceback is unfolded
  const terminating = new Set();  // the tasks whose terminate button was pressed

  function headers(extra) {
    const h = Object.assign({'Accept': 'application/json'}, extra || {});
    if (token) h['X-Coldoc-Token'] = token;
    if (csrf) h['X-CSRFToken'] = csrf;
    return h;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return '-';
    if (value < 60) return value.toFixed(1) + ' s';
    const m = Math.floor(value / 60), s = Math.floor(value % 60);
    if (m < 60) return m + ' min ' + String(s).padStart(2, '0') + ' s';
    return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min';
  }

  function bytes(value) {
    if (value === null || value === undefined) return '-';
    return (value / 1048576).toFixed(1) + ' MB';
  }

  function when(timestamp) {
    if (!timestamp) return '-';
    return new Date(timestamp * 1000).toLocaleTimeString();
  }

  function fill(tableId, rows, columns, emptyText) {
    const body = document.querySelector('#' + tableId + ' tbody');
    const fresh = document.createElement('tbody');
    if (!rows.length) {
      const tr = el('tr');
      const td = el('td', emptyText, 'empty');
      td.colSpan = columns;
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    rows.forEach(function (tr) { fresh.appendChild(tr); });
    body.replaceWith(fresh);
  }

  function row(cells, id) {
    const tr = el('tr');
    if (id) tr.dataset.taskId = id;
    cells.forEach(function (cell) { tr.appendChild(cell); });
    return tr;
  }

  function progressCell(report) {
    const td = el('td', null, 'progress');
    if (!report) { td.textContent = '-'; return td; }
    if (report.total) {
      const bar = el('progress');
      bar.max = report.total;
      bar.value = Math.min(report.done, report.total);
      td.appendChild(bar);
      td.appendChild(el('span', report.done + '/' + report.total + ' (' +
        Math.round(100 * report.done / report.total) + '%)', 'ptext'));
    } else {
      td.appendChild(el('span', String(report.done), 'ptext'));
    }
    if (report.message) td.appendChild(el('span', report.message, 'ptext pmessage'));
    return td;
  }

  function stateCell(state) {
    return el('td', state, 'state state-' + state);
  }

  function terminateCell(task) {
    const td = el('td');
    const button = el('button', terminating.has(task.id) || task.terminating ? 'terminating…' : 'terminate',
      'terminate');
    button.disabled = terminating.has(task.id) || Boolean(task.terminating);
    button.addEventListener('click', function () { terminate(task.id, button); });
    td.appendChild(button);
    return td;
  }

  function errorCell(task) {
    const td = el('td', null, 'error');
    const error = task.error || {};
    const text = error.type ? error.type + ': ' + error.message : (error.message || '');
    if (!error.traceback) { td.textContent = text; return td; }
    const details = el('details');
    details.open = openDetails.has(task.id);
    details.addEventListener('toggle', function () {
      if (details.open) openDetails.add(task.id); else openDetails.delete(task.id);
    });
    details.appendChild(el('summary', text));
    details.appendChild(el('pre', error.traceback, 'traceback'));
    td.appendChild(details);
    return td;
  }

  function render(data) {
    const banner = document.getElementById('banner');
    document.getElementById('updated').textContent = new Date().toLocaleTimeString();
    if (!data.available) {
      banner.textContent = 'The task server does not answer: ' + data.error;
      banner.hidden = false;
      document.body.dataset.server = 'down';
      return;
    }
    banner.hidden = true;
    document.body.dataset.server = 'up';
    const s = data.server;
    document.getElementById('summary').textContent = 'pid ' + s.pid + ' · version ' + s.version + ' · up ' +
      seconds(s.uptime) + ' · ' + s.clients + ' client connection(s) · memory ' + bytes(s.rss) +
      (s.stopping ? ' · stopping' : '');

    fill('queues', s.queues.map(function (q) {
      return row([el('td', q.name), el('td', q.mode), el('td', q.concurrency, 'n'), el('td', q.running, 'n'),
        el('td', q.queued, 'n'), el('td', q.lent_slots, 'n'), el('td', q.idle_workers, 'n')]);
    }), 7, 'no queue');

    fill('tasks', s.tasks.map(function (t) {
      return row([el('td', t.id, 'id'), el('td', t.function), el('td', t.queue),
        stateCell(t.terminating ? 'terminating' : t.state), progressCell(t.progress),
        el('td', seconds(t.runtime), 'n elapsed'), el('td', t.worker_pid || '-', 'n'), terminateCell(t)], t.id);
    }), 8, 'no task is running or queued');
    const shownQueued = s.tasks.filter(function (t) { return t.state === 'queued'; }).length;
    const more = document.getElementById('more-queued');
    more.hidden = s.tasks_queued <= shownQueued;
    more.textContent = s.tasks_queued + ' tasks are queued in all; the first ' + shownQueued + ' are shown.';

    fill('workers', (s.worker_processes || []).map(function (w) {
      return row([el('td', w.pid, 'n'), el('td', w.queue), el('td', w.state),
        el('td', w.task ? w.function + ' (' + w.task + ')' : '-'), el('td', w.tasks_done, 'n'),
        el('td', seconds(w.age), 'n'), el('td', bytes(w.rss), 'n')]);
    }), 7, 'no worker process');

    fill('failures', (s.recent_failures || []).map(function (t) {
      return row([el('td', when(t.finished)), el('td', t.id, 'id'), el('td', t.function), stateCell(t.state),
        errorCell(t)], t.id);
    }), 5, 'no failure');

    fill('recent', (s.recent_tasks || []).map(function (t) {
      return row([el('td', when(t.finished)), el('td', t.id, 'id'), el('td', t.function), el('td', t.queue),
        stateCell(t.state), el('td', seconds(t.runtime), 'n')], t.id);
    }), 6, 'no task has ended yet');

    const counters = document.getElementById('counters');
    const list = document.createElement('dl');
    list.id = 'counters';
    Object.keys(s.counters).sort().forEach(function (name) {
      const pair = el('div');
      pair.appendChild(el('dt', name.replace(/_/g, ' ')));
      pair.appendChild(el('dd', s.counters[name]));
      list.appendChild(pair);
    });
    const held = el('div');
    held.appendChild(el('dt', 'results held'));
    held.appendChild(el('dd', s.results_held));
    list.appendChild(held);
    counters.replaceWith(list);
  }

  function unreachable(why) {
    const banner = document.getElementById('banner');
    banner.textContent = 'The status page does not answer: ' + why;
    banner.hidden = false;
    document.body.dataset.server = 'unreachable';
  }

  function refresh() {
    fetch('api/status', {headers: headers(), cache: 'no-store', credentials: 'same-origin'})
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(render, function (error) { unreachable(error.message); })
      .finally(function () { window.setTimeout(refresh, INTERVAL); });
  }

  function terminate(taskId, button) {
    terminating.add(taskId);
    button.disabled = true;
    button.textContent = 'terminating…';
    const note = document.getElementById('action');
    fetch('api/terminate', {method: 'POST', cache: 'no-store', credentials: 'same-origin',
      headers: headers({'Content-Type': 'application/json'}), body: JSON.stringify({task_id: taskId})})
      .then(function (response) {
        return response.json().then(function (answer) { return [response.ok, answer]; });
      })
      .then(function (result) {
        note.hidden = false;
        note.textContent = result[0] ? 'task ' + taskId + ': ' + result[1].state
          : 'terminate ' + taskId + ' failed: ' + result[1].error;
        if (!result[0]) terminating.delete(taskId);
      }, function (error) {
        terminating.delete(taskId);
        note.hidden = false;
        note.textContent = 'terminate ' + taskId + ' failed: ' + error.message;
      });
  }

  if (token) {
    ['json-link', 'metrics-link'].forEach(function (id) {
      const link = document.getElementById(id);
      link.href = link.getAttribute('href') + '?token=' + encodeURIComponent(token);
    });
  }
  refresh();
})();
