// callcat dashboard: plain JavaScript, no build step, no dependencies.
//
// It reads only callcat's own API: /v1/calls for lists and details,
// /v1/stream (lifecycle of every call) and /v1/calls/{id}/stream (one
// transcript) as Server-Sent Events, and /v1/health for the health panel.
// When the server requires an API token, the page prompts for one, keeps it in
// sessionStorage (this tab only) and sends it as "Authorization: Bearer".
// EventSource cannot send headers, so each stream is opened with a
// short-lived ticket from POST /v1/stream-tickets.
'use strict';

(() => {
  const TOKEN_KEY = 'callcat.apiToken';
  const SHOW_NUMBERS_KEY = 'callcat.showNumbers';
  const ENDED_KEEP = 50;
  const HEALTH_POLL_MS = 5000;
  const ANALYSIS_POLL_MS = 3000;
  const ANALYSIS_POLL_FOR_MS = 5 * 60 * 1000;
  const RETRY_MAX_MS = 15000;
  const FOLLOW_SLACK_PX = 40;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const LIVE_STATUSES = new Set(['registered', 'ongoing']);

  const $ = (id) => document.getElementById(id);

  // el builds an element: el('td', {className: 'num', text: '3'}, child…).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === 'text') node.textContent = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  // ---- State ----

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    authRequired: false,
    started: false,
    live: new Map(), // call id → call, from the lifecycle stream
    ended: [], // ended calls, newest first, at most ENDED_KEEP
    liveRows: new Map(), // call id → <tr>
    endedRows: new Map(),
    filterStatus: '',
    search: '',
    showNumbers: sessionStorage.getItem(SHOW_NUMBERS_KEY) === '1',
    lifecycle: null, // Stream
    call: null, // the open call view
    health: null, // the health panel's poller
    renderPending: false,
  };

  class AuthError extends Error {}

  // ---- API ----

  // api fetches path with the token. A 401 shows the token form and throws
  // AuthError; other failures throw Error with the server's message.
  async function api(path, init) {
    const opts = Object.assign({cache: 'no-store'}, init || {});
    const headers = new Headers(opts.headers || {});
    if (state.token) headers.set('Authorization', 'Bearer ' + state.token);
    opts.headers = headers;

    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      requireToken(state.token ? 'The server rejected the token.' : '');
      throw new AuthError('unauthorized');
    }
    if (!resp.ok) {
      let msg = resp.status + ' ' + resp.statusText;
      try {
        msg = (await resp.json()).error || msg;
      } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return resp;
  }

  async function apiJSON(path, init) {
    return (await api(path, init)).json();
  }

  // Stream is an EventSource that reopens itself. Within a connection the
  // browser reconnects on its own and sends Last-Event-ID. When the browser
  // gives up (the server responded with an error, for example 401 for an
  // expired ticket), Stream requests a new ticket and reopens with ?after= the last
  // id it saw. With resume set it drops events it already has, so a line
  // is never applied twice.
  class Stream {
    constructor(path, callID, handlers, resume) {
      this.path = path;
      this.callID = callID;
      this.handlers = handlers;
      this.resume = resume;
      this.lastID = 0;
      this.es = null;
      this.closed = false;
      this.failures = 0;
      this.retryTimer = 0;
      this.onstate = () => {};
      this.opens = 0;
    }

    async open() {
      if (this.closed) return;
      let ticket;
      try {
        const body = this.callID ? JSON.stringify({call_id: this.callID}) : '';
        const t = await apiJSON('/v1/stream-tickets', {
          method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body,
        });
        ticket = t.ticket;
      } catch (err) {
        if (!(err instanceof AuthError)) this.retry();
        return;
      }
      if (this.closed) return;

      const query = new URLSearchParams({ticket});
      if (this.resume && this.lastID > 0) query.set('after', String(this.lastID));
      const es = new EventSource(this.path + '?' + query.toString());
      this.es = es;

      es.onopen = () => {
        this.failures = 0;
        this.opens++;
        this.onstate('live');
      };
      es.onerror = () => {
        if (this.closed || es !== this.es) return;
        if (es.readyState === EventSource.CLOSED) {
          this.onstate('reconnecting');
          this.retry();
        } else {
          this.onstate('reconnecting');
        }
      };
      for (const [name, fn] of Object.entries(this.handlers)) {
        es.addEventListener(name, (ev) => this.dispatch(fn, ev));
      }
    }

    dispatch(fn, ev) {
      if (this.closed) return;
      if (this.resume && ev.lastEventId !== '') {
        const id = Number(ev.lastEventId);
        if (id <= this.lastID) return; // replayed after a reconnect
        this.lastID = id;
      }
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      fn(data);
    }

    retry() {
      if (this.es) this.es.close();
      this.es = null;
      const delay = Math.min(RETRY_MAX_MS, 1000 * 2 ** Math.min(this.failures, 4));
      this.failures++;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.open(), delay);
    }

    close() {
      this.closed = true;
      clearTimeout(this.retryTimer);
      if (this.es) this.es.close();
      this.es = null;
    }
  }

  // ---- Formatting ----

  // maskPhone hides the middle of a number: +15550142310 → +1555•••2310.
  // The server masks numbers in its logs the same way.
  function maskPhone(number) {
    if (!number) return '';
    let plus = '';
    let body = number;
    if (body[0] === '+') {
      plus = '+';
      body = body.slice(1);
    }
    const chars = Array.from(body);
    if (chars.length >= 11) return plus + chars.slice(0, 4).join('') + '•••' + chars.slice(-4).join('');
    if (chars.length >= 5) return '•••' + chars.slice(-2).join('');
    return '•••';
  }

  function phone(number) {
    if (!number) return '—';
    return state.showNumbers ? number : maskPhone(number);
  }

  function duration(ms) {
    if (ms == null || ms < 0) return '—';
    const total = Math.floor(ms / 1000);
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
  }

  function elapsed(call) {
    if (call.start_timestamp == null) return call.status === 'registered' ? 'dialing' : '—';
    const end = call.end_timestamp != null ? call.end_timestamp : Date.now();
    return duration(end - call.start_timestamp);
  }

  function clock(ms) {
    if (ms == null) return '—';
    return new Date(ms).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
  }

  function bytes(n) {
    if (n == null) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = Math.abs(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    const sign = n < 0 ? '-' : '';
    return sign + (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + ' ' + units[i];
  }

  function perHour(n) {
    if (n == null) return '—';
    return (n >= 0 ? '+' : '') + bytes(n) + '/h';
  }

  function rate(n) {
    if (n == null || !isFinite(n)) return '—';
    return n >= 10 ? n.toFixed(0) : n.toFixed(2);
  }

  function statusLabel(status) {
    return (status || 'unknown').replace('_', ' ');
  }

  function roleLabel(role) {
    switch (role) {
      case 'agent': return 'Agent';
      case 'user': return 'User';
      case 'transfer_target': return 'Transfer target';
      default: return role || 'Unknown';
    }
  }

  function badge(status) {
    return el('span', {className: 'badge', text: statusLabel(status), dataset: {status: status || ''}});
  }

  function isLive(call) {
    return LIVE_STATUSES.has(call.status);
  }

  // ---- Token ----

  function requireToken(message) {
    state.authRequired = true;
    stopStreams();
    $('token-error').textContent = message || '';
    show('token-view');
    $('token-input').focus();
  }

  function setToken(token) {
    state.token = token;
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('forget-token').hidden = !token;
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) return;
    setToken(token);
    $('token-input').value = '';
    try {
      await api('/v1/calls?status=live&limit=1');
    } catch (err) {
      if (!(err instanceof AuthError)) $('token-error').textContent = err.message;
      return;
    }
    state.authRequired = false;
    start();
  }

  function forgetToken() {
    setToken('');
    requireToken('');
  }

  // ---- Views and routing ----

  const views = ['token-view', 'calls-view', 'call-view', 'health-view'];

  function show(id) {
    for (const v of views) $(v).hidden = v !== id;
    setCurrent($('nav-calls'), id === 'calls-view' || id === 'call-view');
    setCurrent($('nav-health'), id === 'health-view');
  }

  function setCurrent(link, on) {
    if (on) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }

  function route() {
    if (state.authRequired) return;
    const hash = location.hash || '#/';
    const callMatch = /^#\/calls\/(.+)$/.exec(hash);

    if (!callMatch) closeCall();
    if (hash !== '#/health') stopHealth();

    if (callMatch) {
      const id = decodeURIComponent(callMatch[1]);
      show('call-view');
      if (!state.call || state.call.id !== id) openCall(id);
    } else if (hash === '#/health') {
      show('health-view');
      startHealth();
    } else {
      show('calls-view');
      scheduleRender();
    }
  }

  function openCallRoute(id) {
    location.hash = '#/calls/' + encodeURIComponent(id);
  }

  // ---- Lifecycle stream and lists ----

  function setConn(s) {
    const conn = $('conn');
    conn.dataset.state = s;
    conn.textContent = {live: 'live', reconnecting: 'reconnecting…', offline: 'offline'}[s] || s;
  }

  function startLifecycle() {
    const stream = new Stream('/v1/stream', '', {
      snapshot: (d) => {
        state.live = new Map(d.calls.map((c) => [c.call_id, c]));
        loadEnded();
        scheduleRender();
      },
      call: (c) => upsertCall(c),
      ended: (c) => upsertCall(c),
      analysis: (c) => {
        upsertCall(c);
        if (state.call && state.call.id === c.call_id) showAnalysis(state.call, c.call_analysis);
      },
    }, false);
    stream.onstate = setConn;
    state.lifecycle = stream;
    stream.open();
  }

  function upsertCall(c) {
    if (isLive(c)) {
      state.live.set(c.call_id, c);
    } else {
      state.live.delete(c.call_id);
      const i = state.ended.findIndex((e) => e.call_id === c.call_id);
      if (i >= 0) {
        state.ended[i] = Object.assign({}, state.ended[i], c);
      } else {
        state.ended.unshift(c);
        state.ended.length = Math.min(state.ended.length, ENDED_KEEP);
      }
    }
    if (state.call && state.call.id === c.call_id) updateCallFacts(state.call, c);
    scheduleRender();
  }

  async function loadEnded() {
    try {
      const page = await apiJSON('/v1/calls?status=ended&limit=' + ENDED_KEEP);
      const known = new Map(state.ended.map((c) => [c.call_id, c]));
      state.ended = page.calls.map((c) => Object.assign({}, known.get(c.call_id), c));
      scheduleRender();
    } catch (_) {
      // The next snapshot retries.
    }
  }

  function matches(call) {
    if (state.filterStatus && call.status !== state.filterStatus) return false;
    const q = state.search.trim().toLowerCase();
    if (!q) return true;
    if (call.call_id.toLowerCase().includes(q)) return true;
    const digits = q.replace(/[^0-9]/g, '');
    for (const n of [call.from_number, call.to_number]) {
      if (!n) continue;
      if (n.toLowerCase().includes(q)) return true;
      if (digits && n.replace(/[^0-9]/g, '').includes(digits)) return true;
    }
    return false;
  }

  function scheduleRender() {
    if (state.renderPending) return;
    state.renderPending = true;
    requestAnimationFrame(() => {
      state.renderPending = false;
      renderLists();
    });
  }

  function renderLists() {
    const live = [...state.live.values()].filter(matches).sort((a, b) => startedAt(b) - startedAt(a));
    syncRows($('live-rows'), state.liveRows, live, fillLiveRow);
    $('live-empty').hidden = live.length > 0;
    $('live-count').textContent = `(${state.live.size})`;

    const ended = state.ended.filter(matches).sort((a, b) => endedAt(b) - endedAt(a));
    syncRows($('ended-rows'), state.endedRows, ended, fillEndedRow);
    $('ended-empty').hidden = ended.length > 0;
  }

  // Calls without a start time (still dialing) sort first among live calls,
  // and calls without an end time first among ended ones.
  function startedAt(c) {
    return c.start_timestamp != null ? c.start_timestamp : Number.MAX_SAFE_INTEGER;
  }

  function endedAt(c) {
    return c.end_timestamp != null ? c.end_timestamp : Number.MAX_SAFE_INTEGER;
  }

  // syncRows updates tbody in place so the focused row keeps its focus.
  // Each cell carries its column's name, which the phone layout shows.
  function syncRows(tbody, rows, calls, fill) {
    const labels = Array.from(tbody.parentElement.tHead.rows[0].cells, (th) => th.textContent);
    const seen = new Set();
    let prev = null;
    for (const c of calls) {
      let tr = rows.get(c.call_id);
      if (!tr) {
        tr = el('tr', {tabIndex: 0, dataset: {callId: c.call_id}});
        for (const label of labels) tr.append(el('td', {dataset: {label}}));
        rows.set(c.call_id, tr);
      }
      fill(tr, c);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
      seen.add(c.call_id);
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        rows.delete(id);
      }
    }
  }

  function setCell(td, text, className) {
    if (td.textContent !== text) td.textContent = text;
    if (className !== undefined && td.className !== className) td.className = className;
  }

  function setBadgeCell(td, status) {
    const b = td.firstChild;
    if (b && b.dataset && b.dataset.status === status) return;
    td.replaceChildren(badge(status));
  }

  function fillLiveRow(tr, c) {
    const td = tr.children;
    setCell(td[0], c.call_id, 'id opt');
    setBadgeCell(td[1], c.status);
    setCell(td[2], c.direction || c.call_type || '—', 'opt');
    setCell(td[3], phone(c.from_number));
    setCell(td[4], phone(c.to_number));
    setCell(td[5], c.agent_id || '—', 'opt');
    setCell(td[6], elapsed(c), 'num elapsed');
    setCell(td[7], String(c.utterance_count), 'num');
    tr.dataset.start = c.start_timestamp != null ? String(c.start_timestamp) : '';
    tr.setAttribute('aria-label', `Open call ${c.call_id}, ${statusLabel(c.status)}, ${c.utterance_count} utterances`);
  }

  function fillEndedRow(tr, c) {
    const td = tr.children;
    const a = c.call_analysis || null;
    setCell(td[0], c.call_id, 'id opt');
    setBadgeCell(td[1], c.status);
    setCell(td[2], phone(c.from_number), 'opt');
    setCell(td[3], phone(c.to_number), 'opt');
    setCell(td[4], clock(c.end_timestamp));
    setCell(td[5], duration(c.duration_ms), 'num opt');
    setCell(td[6], c.disconnection_reason || '—', 'reason');
    if (a && typeof a.call_successful === 'boolean') {
      setCell(td[7], a.call_successful ? 'yes' : 'no', a.call_successful ? 'yes' : 'no');
    } else {
      setCell(td[7], a ? '—' : 'pending', 'muted');
    }
    setCell(td[8], a && a.user_sentiment ? a.user_sentiment : (a ? '—' : 'pending'), a ? '' : 'muted');
    tr.setAttribute('aria-label', `Open call ${c.call_id}, ${statusLabel(c.status)}, ${c.disconnection_reason || 'no reason given'}`);
  }

  function onRowActivate(ev) {
    const tr = ev.target.closest('tr[data-call-id]');
    if (!tr) return;
    if (ev.type === 'keydown' && ev.key !== 'Enter' && ev.key !== ' ') return;
    ev.preventDefault();
    openCallRoute(tr.dataset.callId);
  }

  // tick moves the elapsed times of live calls forward once a second.
  function tick() {
    for (const [id, tr] of state.liveRows) {
      const c = state.live.get(id);
      if (c) setCell(tr.children[6], elapsed(c));
    }
    const cv = state.call;
    if (cv && cv.call) $('call-elapsed').textContent = elapsed(cv.call);
  }

  // ---- Call view ----

  function openCall(id) {
    closeCall();
    const cv = {
      id,
      call: null,
      lines: new Map(), // utterance index → <li>
      latest: -1,
      ended: false,
      follow: true,
      stream: null,
      analysisTimer: 0,
      analysisUntil: 0,
      hasAnalysis: false,
    };
    state.call = cv;

    $('call-id').textContent = id;
    $('call-status').replaceChildren();
    for (const f of ['direction', 'from', 'to', 'agent', 'started', 'elapsed', 'reason']) $('call-' + f).textContent = '—';
    $('transcript').replaceChildren();
    $('transcript-empty').hidden = false;
    $('jump-live').hidden = true;
    const analysis = $('analysis');
    analysis.dataset.state = 'waiting';
    analysis.replaceChildren(el('p', {className: 'muted', text: 'Arrives after the call ends.'}));
    const enc = encodeURIComponent(id);
    $('download-text').href = `/v1/calls/${enc}/transcript?format=text`;
    $('download-text').download = `${id}.txt`;
    $('download-json').href = `/v1/calls/${enc}/transcript?format=json`;
    $('download-json').download = `${id}.json`;
    document.body.dataset.callStreamOpens = '0';

    apiJSON(`/v1/calls/${enc}`).then((c) => {
      if (state.call !== cv) return;
      updateCallFacts(cv, c);
      if (c.call_analysis) showAnalysis(cv, c.call_analysis);
    }).catch((err) => {
      if (state.call === cv && !(err instanceof AuthError)) {
        $('call-status').replaceChildren(el('span', {className: 'error', text: err.message}));
      }
    });

    const stream = new Stream(`/v1/calls/${enc}/stream`, id, {
      utterance: (d) => upsertLine(cv, d),
      truncate: (d) => truncateLines(cv, d.utterance_count),
      status: (d) => updateCallFacts(cv, {status: d.status}),
      ended: (d) => endCall(cv, d),
    }, true);
    stream.onstate = (s) => {
      if (s === 'live') document.body.dataset.callStreamOpens = String(stream.opens);
      // A call that ended before the stream saw its ended event has nothing
      // more to send; stop the browser from reconnecting forever.
      if (s === 'reconnecting' && cv.call && !isLive(cv.call)) stream.close();
    };
    cv.stream = stream;
    stream.open();
  }

  function closeCall() {
    const cv = state.call;
    if (!cv) return;
    if (cv.stream) cv.stream.close();
    clearTimeout(cv.analysisTimer);
    state.call = null;
  }

  // statusRank orders statuses so that a late response never moves a call
  // back, as the server's own merge does.
  function statusRank(status) {
    if (status === 'registered') return 1;
    if (status === 'ongoing') return 2;
    return status ? 3 : 0;
  }

  function updateCallFacts(cv, c) {
    if (cv.call && c.status && statusRank(c.status) < statusRank(cv.call.status)) {
      c = Object.assign({}, c);
      delete c.status;
    }
    cv.call = Object.assign({}, cv.call, c);
    const call = cv.call;
    $('call-status').replaceChildren(badge(call.status));
    $('call-direction').textContent = call.direction || call.call_type || '—';
    $('call-from').textContent = phone(call.from_number);
    $('call-to').textContent = phone(call.to_number);
    $('call-agent').textContent = call.agent_id || '—';
    $('call-started').textContent = clock(call.start_timestamp);
    $('call-elapsed-label').textContent = isLive(call) ? 'Elapsed' : 'Duration';
    $('call-elapsed').textContent = elapsed(call);
    $('call-reason').textContent = call.disconnection_reason || '—';
    if (!isLive(call) && call.status) {
      cv.ended = true;
      markLatest(cv);
    }
  }

  function upsertLine(cv, d) {
    let li = cv.lines.get(d.index);
    if (!li) {
      li = el('li', {className: 'utt', dataset: {index: String(d.index)}},
        el('span', {className: 'who'}), el('p', {className: 'said'}));
      // Lines arrive in index order; an earlier index goes before the first
      // later one.
      let before = null;
      for (const [i, other] of cv.lines) {
        if (i > d.index && (before === null || i < Number(before.dataset.index))) before = other;
      }
      $('transcript').insertBefore(li, before);
      cv.lines.set(d.index, li);
    }
    li.className = 'utt role-' + d.role;
    li.dataset.role = d.role;
    li.firstChild.textContent = roleLabel(d.role);
    li.lastChild.textContent = d.content;
    $('transcript-empty').hidden = true;
    if (d.index > cv.latest) cv.latest = d.index;
    markLatest(cv);
    keepFollowing(cv);
  }

  function truncateLines(cv, count) {
    for (const [i, li] of cv.lines) {
      if (i >= count) {
        li.remove();
        cv.lines.delete(i);
      }
    }
    cv.latest = count - 1;
    $('transcript-empty').hidden = cv.lines.size > 0;
    markLatest(cv);
  }

  // markLatest shows the last utterance of a live call as in progress.
  function markLatest(cv) {
    for (const [i, li] of cv.lines) li.classList.toggle('in-progress', !cv.ended && i === cv.latest);
  }

  function endCall(cv, d) {
    cv.ended = true;
    cv.stream.close();
    updateCallFacts(cv, {status: d.status, disconnection_reason: d.disconnection_reason || null});
    markLatest(cv);
    // Refresh the times and duration, then wait for the post-call analysis.
    cv.analysisUntil = Date.now() + ANALYSIS_POLL_FOR_MS;
    pollAnalysis(cv);
  }

  async function pollAnalysis(cv) {
    if (state.call !== cv || cv.hasAnalysis) return;
    try {
      const c = await apiJSON(`/v1/calls/${encodeURIComponent(cv.id)}`);
      if (state.call !== cv) return;
      updateCallFacts(cv, c);
      if (c.call_analysis) {
        showAnalysis(cv, c.call_analysis);
        return;
      }
    } catch (err) {
      if (err instanceof AuthError) return;
    }
    if (Date.now() < cv.analysisUntil) {
      cv.analysisTimer = setTimeout(() => pollAnalysis(cv), ANALYSIS_POLL_MS);
    } else {
      $('analysis').replaceChildren(el('p', {className: 'muted', text: 'No analysis arrived within 5 minutes of the end.'}));
    }
  }

  function showAnalysis(cv, a) {
    if (!a || typeof a !== 'object') return;
    cv.hasAnalysis = true;
    clearTimeout(cv.analysisTimer);
    const dl = el('dl');
    const add = (label, value, className) => {
      if (value === undefined || value === null || value === '') return;
      dl.append(el('dt', {text: label}), el('dd', {text: String(value), className: className || ''}));
    };
    add('Summary', a.call_summary);
    if (typeof a.call_successful === 'boolean') {
      add('Successful', a.call_successful ? 'yes' : 'no', a.call_successful ? 'yes' : 'no');
    }
    add('User sentiment', a.user_sentiment);
    if (typeof a.in_voicemail === 'boolean') add('Voicemail', a.in_voicemail ? 'yes' : 'no');
    if (a.custom_analysis_data && typeof a.custom_analysis_data === 'object') {
      for (const [k, v] of Object.entries(a.custom_analysis_data)) {
        add(k, typeof v === 'object' ? JSON.stringify(v) : v);
      }
    }
    const box = $('analysis');
    box.dataset.state = 'ready';
    box.replaceChildren(dl.children.length ? dl : el('p', {className: 'muted', text: 'The analysis is empty.'}));
  }

  // Auto-scroll follows new lines until the reader scrolls up; the jump
  // button brings them back.
  function atBottom(node) {
    return node.scrollHeight - node.scrollTop - node.clientHeight < FOLLOW_SLACK_PX;
  }

  function keepFollowing(cv) {
    const t = $('transcript');
    if (cv.follow) t.scrollTop = t.scrollHeight;
    else $('jump-live').hidden = false;
  }

  function onTranscriptScroll() {
    const cv = state.call;
    if (!cv) return;
    cv.follow = atBottom($('transcript'));
    if (cv.follow) $('jump-live').hidden = true;
  }

  function jumpToLive() {
    const cv = state.call;
    if (!cv) return;
    cv.follow = true;
    const t = $('transcript');
    t.scrollTop = t.scrollHeight;
    $('jump-live').hidden = true;
    t.focus();
  }

  // Download links fetch with the token, because a plain link cannot send
  // the Authorization header.
  async function download(ev) {
    ev.preventDefault();
    const a = ev.currentTarget;
    try {
      const blob = await (await api(a.getAttribute('href'))).blob();
      const url = URL.createObjectURL(blob);
      const tmp = el('a', {href: url, download: a.download});
      document.body.append(tmp);
      tmp.click();
      tmp.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      if (!(err instanceof AuthError)) alert('Download failed: ' + err.message);
    }
  }

  // ---- Health panel ----

  function startHealth() {
    if (state.health) return;
    const h = {timer: 0, prev: null, stopped: false};
    state.health = h;
    const poll = async () => {
      try {
        const cur = await apiJSON('/v1/health');
        if (h.stopped) return;
        renderHealth(cur, h.prev);
        h.prev = cur;
      } catch (err) {
        if (err instanceof AuthError) return;
        $('verdict').textContent = 'Health unavailable: ' + err.message;
      }
      if (!h.stopped) h.timer = setTimeout(poll, HEALTH_POLL_MS);
    };
    poll();
  }

  function stopHealth() {
    if (!state.health) return;
    state.health.stopped = true;
    clearTimeout(state.health.timer);
    state.health = null;
  }

  function perSecond(cur, prev, field) {
    if (!prev || cur[field] == null || prev[field] == null) return null;
    const dt = (Date.parse(cur.time) - Date.parse(prev.time)) / 1000;
    if (dt <= 0) return null;
    return Math.max(0, cur[field] - prev[field]) / dt;
  }

  function renderHealth(cur, prev) {
    const count = (v) => (v == null ? '—' : String(Math.round(v)));
    $('tile-tracked').textContent = count(cur.tracked_calls);
    $('tile-sse').textContent = count(cur.sse_subscribers);
    $('tile-provider').textContent = rate(perSecond(cur, prev, 'provider_requests_total'));
    $('tile-provider-errors').textContent = rate(perSecond(cur, prev, 'provider_errors_total'));
    $('tile-webhooks').textContent = rate(perSecond(cur, prev, 'webhooks_total'));

    const m = cur.memory;
    const v = $('verdict');
    if (!m) {
      v.dataset.verdict = 'unknown';
      v.textContent = 'Memory sampling is off on this server.';
      return;
    }
    const last = m.samples.length ? m.samples[m.samples.length - 1] : null;
    $('tile-goroutines').textContent = last ? String(last.goroutines) : '—';
    v.dataset.verdict = m.verdict;
    v.textContent = verdictText(m);

    // The live heap is 0 until the first garbage collection ends: unknown,
    // not empty.
    drawChart($('chart-heap'), 'Live heap', m.samples, (s) => s.live_heap_bytes || null, bytes);
    drawChart($('chart-rss'), 'RSS', m.samples, (s) => s.rss_bytes, bytes);
    drawChart($('chart-goroutines'), 'Goroutines', m.samples, (s) => s.goroutines, (n) => String(Math.round(n)));
  }

  function verdictText(m) {
    // The slope covers the window, or all samples while they span less.
    const n = m.samples.length;
    const sampled = n > 1 ? (Date.parse(m.samples[n - 1].time) - Date.parse(m.samples[0].time)) / 1000 : 0;
    const span = minutes(Math.min(m.window_seconds, sampled));
    const whole = minutes(m.window_seconds);
    const limit = bytes(m.max_bytes_per_hour) + '/h';
    const heap = perHour(m.live_heap_bytes_per_hour);
    const rss = perHour(m.rss_bytes_per_hour);
    switch (m.verdict) {
      case 'flat':
        return `Flat: live heap ${heap} and RSS ${rss} over the last ${span}, within the ${limit} limit.`;
      case 'rising':
        return `Rising: live heap ${heap} over the last ${span}, above the ${limit} limit but not yet for a whole ${whole} window.`;
      case 'growing':
        return `Growing: live heap has grown faster than ${limit} for a whole ${whole} window (now ${heap}). This looks like a leak.`;
      default:
        return `Not enough samples yet to fit a growth slope over the ${whole} window.`;
    }
  }

  function minutes(seconds) {
    return seconds < 120 ? Math.round(seconds) + ' s' : Math.round(seconds / 60) + ' min';
  }

  // drawChart draws one series as an SVG line with its range and the time
  // span. Every sample is a point, except those for which pick returns null;
  // the server sends at most an hour of samples.
  function drawChart(box, label, allSamples, pick, fmt) {
    const samples = allSamples.filter((s) => pick(s) != null);
    // One SVG unit per pixel keeps the labels undistorted; the next
    // refresh follows a resize.
    const W = Math.max(240, Math.round(box.clientWidth) || 600);
    const H = 160;
    const left = 4;
    const right = W - 4;
    const top = 16;
    const bottom = H - 18;
    const root = svg('svg', {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img'});

    if (samples.length === 0) {
      root.setAttribute('aria-label', label + ': no samples yet');
      box.replaceChildren(root);
      return;
    }
    const values = samples.map(pick);
    const times = samples.map((s) => Date.parse(s.time));
    // The axis starts at zero so that a slope looks as large as it is.
    const lo = 0;
    const hi = Math.max(1, ...values) * 1.1;
    const t0 = times[0];
    const t1 = Math.max(times[times.length - 1], t0 + 1);
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (right - left);
    const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);

    for (const frac of [0, 0.5, 1]) {
      const gy = top + frac * (bottom - top);
      root.append(svg('line', {x1: left, x2: right, y1: gy, y2: gy, class: 'grid', 'vector-effect': 'non-scaling-stroke'}));
    }
    const points = values.map((v, i) => `${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`);
    if (points.length === 1) points.push(`${right},${points[0].split(',')[1]}`);
    root.append(svg('polygon', {points: `${left},${bottom} ${points.join(' ')} ${x(t1).toFixed(1)},${bottom}`, class: 'area'}));
    root.append(svg('polyline', {points: points.join(' '), class: 'series', 'vector-effect': 'non-scaling-stroke'}));

    const axis = (tx, ty, text, anchor) => {
      const node = svg('text', {x: tx, y: ty, class: 'axis', 'text-anchor': anchor});
      node.textContent = text;
      root.append(node);
    };
    axis(left, 12, fmt(hi), 'start');
    axis(left, H - 4, '0', 'start');
    axis(right, H - 4, Math.round((t1 - t0) / 60000) + ' min', 'end');

    const now = fmt(values[values.length - 1]);
    root.setAttribute('aria-label', `${label}: ${now} now; between ${fmt(Math.min(...values))} and ${fmt(Math.max(...values))} over the samples shown`);
    const caption = box.parentElement.querySelector('figcaption');
    let nowSpan = caption.querySelector('.now');
    if (!nowSpan) {
      nowSpan = el('span', {className: 'now'});
      caption.append(nowSpan);
    }
    nowSpan.textContent = now;
    box.replaceChildren(root);
  }

  // ---- Start ----

  function stopStreams() {
    if (state.lifecycle) state.lifecycle.close();
    state.lifecycle = null;
    closeCall();
    stopHealth();
    state.started = false;
    setConn('offline');
  }

  async function start() {
    if (state.started) return;
    try {
      await api('/v1/calls?status=live&limit=1');
    } catch (err) {
      if (!(err instanceof AuthError)) {
        setConn('offline');
        setTimeout(start, 3000);
      }
      return;
    }
    state.started = true;
    startLifecycle();
    route();
  }

  function init() {
    $('forget-token').hidden = !state.token;
    $('token-form').addEventListener('submit', submitToken);
    $('forget-token').addEventListener('click', forgetToken);

    $('status-filter').addEventListener('change', (ev) => {
      state.filterStatus = ev.target.value;
      scheduleRender();
    });
    $('search').addEventListener('input', (ev) => {
      state.search = ev.target.value;
      scheduleRender();
    });
    const showNumbers = $('show-numbers');
    showNumbers.checked = state.showNumbers;
    showNumbers.addEventListener('change', () => {
      state.showNumbers = showNumbers.checked;
      sessionStorage.setItem(SHOW_NUMBERS_KEY, state.showNumbers ? '1' : '0');
      if (state.call && state.call.call) updateCallFacts(state.call, {});
      scheduleRender();
    });

    for (const id of ['live-rows', 'ended-rows']) {
      $(id).addEventListener('click', onRowActivate);
      $(id).addEventListener('keydown', onRowActivate);
    }
    $('transcript').addEventListener('scroll', onTranscriptScroll, {passive: true});
    $('jump-live').addEventListener('click', jumpToLive);
    $('download-text').addEventListener('click', download);
    $('download-json').addEventListener('click', download);

    window.addEventListener('hashchange', route);
    setInterval(tick, 1000);
    setConn('starting');
    start();
  }

  init();
})();
