'use strict';
// The live status page: asks api/status every second and updates the tables in place.
// Rows are keyed (a task's id, a worker's pid, a queue's name): a row is made once, its cells
// change only where their text changed, and it goes when its key does.  So a button the user is
// clicking, or a traceback they unfolded, is never replaced under them.
// Every text from the server goes in with textContent, never as HTML.
(function () {
  const INTERVAL = 1000;
  const token = new URLSearchParams(window.location.search).get('token') || '';
  const csrfMeta = document.querySelector('meta[name="coldoc-csrf"]');
  const csrf = csrfMeta ? csrfMeta.content : '';  // in a Django site: its CSRF token
  const terminating = new Set();  // the tasks whose terminate button was pressed
  const signatures = new WeakMap();  // a cell: the signature of what it shows
  let updates = 0;  // the statuses applied (document.body.dataset.updates)

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

  function setText(node, text) {
    text = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== text) node.textContent = text;
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

  // A cell: its class, a signature of what it shows, and how to draw it.  draw(td, made) is
  // called when the cell is made (made true) and whenever its signature changes.
  function text(value, cls) {
    const shown = value === undefined || value === null ? '' : String(value);
    return {cls: cls || '', sig: shown, draw: function (td) { setText(td, shown); }};
  }

  function sync(tableId, keyName, items, keyOf, cellsOf, emptyText, columns) {
    const body = document.querySelector('#' + tableId + ' tbody');
    const rows = new Map();
    Array.from(body.rows).forEach(function (tr) {
      if (tr.dataset[keyName] === undefined) tr.remove(); else rows.set(tr.dataset[keyName], tr);
    });
    let previous = null;
    items.forEach(function (item) {
      const key = String(keyOf(item));
      const cells = cellsOf(item);
      let tr = rows.get(key);
      const made = tr === undefined;
      if (made) {
        tr = el('tr');
        tr.dataset[keyName] = key;
        cells.forEach(function () { tr.appendChild(el('td')); });
      }
      rows.delete(key);
      cells.forEach(function (cell, i) {
        const td = tr.cells[i];
        if (td.className !== cell.cls) td.className = cell.cls;
        if (made || signatures.get(td) !== cell.sig) {
          signatures.set(td, cell.sig);
          cell.draw(td, made);
        }
      });
      const place = previous ? previous.nextSibling : body.firstChild;
      if (place !== tr) body.insertBefore(tr, place);  // (moves an existing row: it stays the same)
      previous = tr;
    });
    rows.forEach(function (tr) { tr.remove(); });
    if (!items.length && !body.rows.length) {
      const td = el('td', emptyText, 'empty');
      td.colSpan = columns;
      body.appendChild(el('tr')).appendChild(td);
    }
  }

  function progressCell(report) {
    return {cls: 'progress', sig: JSON.stringify(report || null), draw: function (td) {
      td.replaceChildren();  // a bar and its texts: nothing to click
      if (!report) { td.textContent = '-'; return; }
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
    }};
  }

  function stateCell(state) {
    return text(state, 'state state-' + state);
  }

  function terminateCell(task) {
    const busy = terminating.has(task.id) || Boolean(task.terminating);
    return {cls: '', sig: String(busy), draw: function (td, made) {
      if (made) {
        const button = el('button', null, 'terminate');
        button.type = 'button';
        button.addEventListener('click', function () { terminate(task.id, button); });
        td.appendChild(button);
      }
      const button = td.firstChild;
      button.disabled = busy;
      setText(button, busy ? 'terminating…' : 'terminate');
    }};
  }

  function errorCell(task) {
    const error = task.error || {};
    const summary = error.type ? error.type + ': ' + error.message : (error.message || '');
    const traceback = error.traceback || '';
    return {cls: 'error', sig: JSON.stringify([summary, traceback]), draw: function (td) {
      let details = td.querySelector('details');
      if (!traceback) { if (details) details.remove(); setText(td, summary); return; }
      if (!details) {
        td.replaceChildren();
        details = td.appendChild(el('details'));
        details.appendChild(el('summary'));
        details.appendChild(el('pre', null, 'traceback'));
      }
      setText(details.firstChild, summary);  // the <details> itself, open or not, stays
      setText(details.lastChild, traceback);
    }};
  }

  function counters(s) {
    const list = document.getElementById('counters');
    const pairs = Object.keys(s.counters).sort().map(function (name) {
      return [name.replace(/_/g, ' '), s.counters[name]];
    }).concat([['results held', s.results_held]]);
    while (list.children.length > pairs.length) list.lastChild.remove();
    pairs.forEach(function (pair, i) {
      let div = list.children[i];
      if (!div) {
        div = list.appendChild(el('div'));
        div.appendChild(el('dt'));
        div.appendChild(el('dd'));
      }
      setText(div.firstChild, pair[0]);
      setText(div.lastChild, pair[1]);
    });
  }

  function render(data) {
    const banner = document.getElementById('banner');
    setText(document.getElementById('updated'), new Date().toLocaleTimeString());
    if (!data.available) {
      setText(banner, 'The task server does not answer: ' + data.error);
      banner.hidden = false;
      document.body.dataset.server = 'down';
      return;
    }
    banner.hidden = true;
    document.body.dataset.server = 'up';
    const s = data.server;
    setText(document.getElementById('summary'), 'pid ' + s.pid + ' · version ' + s.version + ' · up ' +
      seconds(s.uptime) + ' · ' + s.clients + ' client connection(s) · memory ' + bytes(s.rss) +
      (s.stopping ? ' · stopping' : ''));

    sync('queues', 'queue', s.queues, function (q) { return q.name; }, function (q) {
      return [text(q.name), text(q.mode), text(q.concurrency, 'n'), text(q.running, 'n'), text(q.queued, 'n'),
        text(q.lent_slots, 'n'), text(q.idle_workers, 'n')];
    }, 'no queue', 7);

    terminating.forEach(function (id) {  // forget the tasks that went
      if (!s.tasks.some(function (t) { return t.id === id; })) terminating.delete(id);
    });
    sync('tasks', 'taskId', s.tasks, function (t) { return t.id; }, function (t) {
      return [text(t.id, 'id'), text(t.function), text(t.queue), stateCell(t.terminating ? 'terminating' : t.state),
        progressCell(t.progress), text(seconds(t.runtime), 'n elapsed'), text(t.worker_pid || '-', 'n'),
        terminateCell(t)];
    }, 'no task is running or queued', 8);
    const shownQueued = s.tasks.filter(function (t) { return t.state === 'queued'; }).length;
    const more = document.getElementById('more-queued');
    more.hidden = s.tasks_queued <= shownQueued;
    setText(more, s.tasks_queued + ' tasks are queued in all; the first ' + shownQueued + ' are shown.');

    sync('workers', 'pid', s.worker_processes || [], function (w) { return w.pid; }, function (w) {
      return [text(w.pid, 'n'), text(w.queue), text(w.state), text(w.task ? w.function + ' (' + w.task + ')' : '-'),
        text(w.tasks_done, 'n'), text(seconds(w.age), 'n'), text(bytes(w.rss), 'n')];
    }, 'no worker process', 7);

    sync('failures', 'taskId', s.recent_failures || [], function (t) { return t.id; }, function (t) {
      return [text(when(t.finished)), text(t.id, 'id'), text(t.function), stateCell(t.state), errorCell(t)];
    }, 'no failure', 5);

    sync('recent', 'taskId', s.recent_tasks || [], function (t) { return t.id; }, function (t) {
      return [text(when(t.finished)), text(t.id, 'id'), text(t.function), text(t.queue), stateCell(t.state),
        text(seconds(t.runtime), 'n')];
    }, 'no task has ended yet', 6);

    counters(s);
  }

  function unreachable(why) {
    const banner = document.getElementById('banner');
    setText(banner, 'The status page does not answer: ' + why);
    banner.hidden = false;
    document.body.dataset.server = 'unreachable';
  }

  function applied() {
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  function refresh() {
    fetch('api/status', {headers: headers(), cache: 'no-store', credentials: 'same-origin'})
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.json();
      })
      .then(render)
      .then(applied, function (error) { unreachable(error.message); })
      .finally(function () { window.setTimeout(refresh, INTERVAL); });
  }

  function terminate(taskId, button) {
    terminating.add(taskId);
    button.disabled = true;
    button.textContent = 'terminating…';
    const note = document.getElementById('action');
    function failed(why) {
      terminating.delete(taskId);
      button.disabled = false;
      button.textContent = 'terminate';
      note.hidden = false;
      note.textContent = 'terminate ' + taskId + ' failed: ' + why;
    }
    fetch('api/terminate', {method: 'POST', cache: 'no-store', credentials: 'same-origin',
      headers: headers({'Content-Type': 'application/json'}), body: JSON.stringify({task_id: taskId})})
      .then(function (response) {
        return response.json().then(function (answer) { return [response.ok, answer]; });
      })
      .then(function (result) {
        if (!result[0]) { failed(result[1].error); return; }
        note.hidden = false;
        note.textContent = 'task ' + taskId + ': ' + result[1].state;
      }, function (error) { failed(error.message); });
  }

  if (token) {
    ['json-link', 'metrics-link'].forEach(function (id) {
      const link = document.getElementById(id);
      link.href = link.getAttribute('href') + '?token=' + encodeURIComponent(token);
    });
  }
  refresh();
})();
