// acmeq fleet view: live updates on top of pages that work without
// JavaScript. Everything shown comes from the server already escaped
// (rendered by html/template) or is set with textContent.
(function () {
  'use strict';
  var status = document.getElementById('live-status');
  function setStatus(on, text) {
    if (!status) { return; }
    status.hidden = false;
    status.className = 'live-status ' + (on ? 'on' : 'off');
    status.textContent = text;
  }

  // replace fetches the page again with partial=1 and swaps the element
  // with the same id for the fresh one.
  function replacer(el) {
    var busy = false, again = false;
    function run() {
      if (busy) { again = true; return; }
      busy = true;
      var u = new URL(window.location.href);
      u.searchParams.set('partial', '1');
      fetch(u.toString(), { credentials: 'same-origin', headers: { 'Accept': 'text/html' } })
        .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.text(); })
        .then(function (html) {
          var t = document.createElement('template');
          t.innerHTML = html;
          var fresh = t.content.getElementById(el.id);
          if (fresh) { el.replaceWith(fresh); el = fresh; }
        })
        .catch(function () { setStatus(false, 'refresh failed'); })
        .then(function () { busy = false; if (again) { again = false; run(); } });
    }
    return { run: run, version: function () { return el.getAttribute('data-version'); } };
  }

  // The certificate list: the server says when the index changed.
  var live = document.querySelector('[data-live]');
  if (live && window.EventSource) {
    var r = replacer(live);
    var es = new EventSource(live.getAttribute('data-live'));
    es.onopen = function () { setStatus(true, 'live'); };
    es.onerror = function () { setStatus(false, 'reconnecting'); };
    es.addEventListener('changed', function (e) {
      if (e.data !== r.version()) { r.run(); }
    });
  }

  // Pages refreshed on a period (the scheduler).
  var periodic = document.querySelector('[data-refresh]');
  if (periodic) {
    var p = replacer(periodic);
    var ms = parseInt(periodic.getAttribute('data-refresh'), 10) || 2000;
    setStatus(true, 'refreshing every ' + ms / 1000 + 's');
    window.setInterval(p.run, ms);
  }

  // The events page: rows added at the top as events are recorded.
  var table = document.querySelector('[data-events]');
  if (table && window.EventSource) {
    var body = table.tBodies[0];
    var src = new EventSource(table.getAttribute('data-events'));
    src.onopen = function () { setStatus(true, 'live'); };
    src.onerror = function () { setStatus(false, 'reconnecting'); };
    src.addEventListener('event', function (e) {
      var ev;
      try { ev = JSON.parse(e.data); } catch (err) { return; }
      var tr = document.createElement('tr');
      tr.className = 'fresh ev-' + String(ev.type || '').toLowerCase();
      function cell(text, cls) {
        var td = document.createElement('td');
        if (cls) { td.className = cls; }
        td.textContent = text || '';
        tr.appendChild(td);
        return td;
      }
      cell(ev.time).title = ev.age || '';
      cell(ev.type);
      cell(ev.reason);
      var obj = cell('');
      if (ev.namespace) {
        var ns = document.createElement('span');
        ns.className = 'muted';
        ns.textContent = ev.namespace + '/';
        obj.appendChild(ns);
      }
      var name = document.createElement(ev.link ? 'a' : 'span');
      if (ev.link && ev.link.charAt(0) === '/') { name.href = ev.link; }
      name.textContent = ev.object;
      obj.appendChild(name);
      cell(ev.message, 'msg');
      body.insertBefore(tr, body.firstChild);
      while (body.rows.length > 500) { body.deleteRow(body.rows.length - 1); }
    });
  }
})();
