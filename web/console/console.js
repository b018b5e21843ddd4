// SPDX-License-Identifier: MIT
// The console's entry point: sign-in, the operator view and the admin view.
//
// Rules kept throughout: data from the server (above all the customers'
// text) reaches the page only through textContent or attribute values,
// never as HTML; the credential lives in memory, and in sessionStorage only
// when "stay signed in" is ticked, never in a URL; no inline styles (the CSP
// forbids them): layout state is expressed with classes and attributes.

import { Api, ApiError, EventStream, registerOperator } from '/console/api.js';
import { t, tOr, getLang, setLang, applyI18n, formatDuration, formatTime, formatNumber, formatPercent } from '/console/i18n.js';
import { barChart, columnChart, shareBar, lineChart } from '/console/charts.js';

const $ = (id) => document.getElementById(id);
const SESSION_KEY = 'cca.console.session';
const ADMIN_REFRESH_S = 5;

/** Builds an element. Strings and numbers among children become text nodes; props never set HTML. */
function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v == null || v === false) continue;
    if (k === 'className') e.className = v;
    else if (k === 'text') e.textContent = String(v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'style' || k.startsWith('on')) throw new Error(`h(): ${k} is not allowed`);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  requestAnimationFrame(() => { a.textContent = text; });
}

function errText(e) {
  if (e instanceof ApiError) return e.detail || e.code || `HTTP ${e.status}`;
  return e && e.message ? e.message : String(e);
}

const agentName = (a) => (a ? tOr(`agent.${a}`, a) : t('agent.none'));
const statusName = (s) => tOr(`dstatus.${s}`, s);
/** A server code shown to people: its translation, else the code (or free text) itself. */
const reasonName = (r) => (r ? tOr(`reason.${r}`, r) : t('common.none'));
const priorityName = (p) => (p ? tOr(`priority.${p}`, p) : t('common.none'));
const methodName = (m) => (m ? tOr(`method.${m}`, m) : t('common.none'));

// ---------------------------------------------------------------------------
// Session and views

let api = null;
let session = null;   // {kind: 'operator'|'admin', secret, name}
let current = null;   // the running view's controller: {render(), stop()}

function saveSession(s, remember) {
  try {
    if (remember) sessionStorage.setItem(SESSION_KEY, JSON.stringify({ kind: s.kind, secret: s.secret }));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch { /* storage off: memory only */ }
}

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && (s.kind === 'operator' || s.kind === 'admin') && typeof s.secret === 'string') return s;
  } catch { /* ignore */ }
  return null;
}

function showView(name) {
  $('loading').hidden = true;
  for (const v of ['signin', 'operator', 'admin']) $(`view-${v}`).hidden = v !== name;
  $('signout').hidden = name === 'signin';
  $('conn').hidden = name !== 'operator';
  if (name === 'signin') { $('who-name').textContent = ''; $('who-role').textContent = ''; }
}

function signOut(message) {
  if (current) current.stop();
  current = null;
  api = null;
  session = null;
  saveSession({}, false);
  for (const id of ['in-token', 'in-pin', 'in-secret', 'in-key']) $(id).value = '';
  showView('signin');
  $('op-error').textContent = message || '';
  $('admin-error').textContent = '';
}

async function startSession(s, remember) {
  session = s;
  api = new Api(s);
  let unauthorized = false;
  api.onUnauthorized = () => {
    if (unauthorized) return;
    unauthorized = true;
    setTimeout(() => signOut(t('signin.revoked')));
  };
  saveSession(s, remember);
  $('who-role').textContent = s.kind === 'admin' ? t('role.admin') : t('role.operator');
  const mine = api;
  try {
    // The controller is current as soon as it exists (a language switch
    // reaches a view still loading; a sign-out stops it).
    const view = s.kind === 'operator' ? await operatorView(s, (ctl) => { if (api === mine) current = ctl; }) : adminView();
    if (api !== mine) { view.stop(); return; }
    current = view;
  } catch (e) {
    if (api !== mine) return; // signed out (or signed in again) while it loaded
    // The view stopped itself; back to the sign-in, saying why.
    if (!unauthorized) signOut(e instanceof ApiError && e.status === 401 ? t('signin.revoked') : t('signin.failed', { detail: errText(e) }));
    throw e;
  }
  // Signed in: no credential is left in the form.
  for (const id of ['in-token', 'in-key', 'in-secret', 'in-pin']) $(id).value = '';
}

// ---------------------------------------------------------------------------
// Sign-in

function setupSignIn() {
  const tabs = [$('tab-op'), $('tab-admin')];
  const selectTab = (tab) => {
    for (const x of tabs) {
      const on = x === tab;
      x.setAttribute('aria-selected', String(on));
      x.tabIndex = on ? 0 : -1;
      $(x.getAttribute('aria-controls')).hidden = !on;
    }
  };
  for (const tab of tabs) {
    tab.addEventListener('click', () => selectTab(tab));
    tab.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
      const next = tabs[(tabs.indexOf(tab) + 1) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }

  const form = $('form-op');
  const method = () => form.elements.method.value;
  const showMethod = () => {
    for (const f of form.querySelectorAll('[data-method]')) f.hidden = !f.dataset.method.split(' ').includes(method());
    $('op-submit').textContent = method() === 'token' ? t('signin.submit') : t('signin.register');
  };
  for (const r of form.elements.method) r.addEventListener('change', showMethod);
  showMethod();
  setupSignIn.refresh = showMethod;

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('op-error');
    err.textContent = '';
    const remember = form.elements.remember.checked;
    const btn = $('op-submit');
    btn.disabled = true;
    try {
      if (method() === 'token') {
        const token = $('in-token').value.trim();
        if (!token) { err.textContent = t('signin.badToken'); return; }
        const probe = new Api({ kind: 'operator', secret: token });
        await probe.get('/operators/me');
        await startSession({ kind: 'operator', secret: token }, remember);
      } else {
        const cred = method() === 'pin' ? { pin: $('in-pin').value.trim() } : { secret: $('in-secret').value };
        const languages = ['ru', 'en'].filter((l) => form.elements[`lang-${l}`].checked);
        const name = $('in-name').value.trim();
        if (!name) { err.textContent = t('common.error', { detail: t('signin.name') }); $('in-name').focus(); return; }
        const res = await registerOperator({ ...cred, name, languages: languages.length ? languages : ['ru', 'en'] });
        await showToken(t('signin.tokenTitle'), t('signin.tokenText'), res.token);
        await startSession({ kind: 'operator', secret: res.token }, remember);
      }
    } catch (e) {
      err.textContent = signInError(e, method() === 'token' ? 'token' : 'register');
    } finally {
      btn.disabled = false;
    }
  });

  $('form-admin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('admin-error');
    err.textContent = '';
    const key = $('in-key').value.trim();
    try {
      await new Api({ kind: 'admin', secret: key }).get('/stats');
      await startSession({ kind: 'admin', secret: key }, $('form-admin').elements.remember.checked);
    } catch (e) {
      err.textContent = signInError(e, 'admin');
    }
  });
}

function signInError(e, kind) {
  if (!(e instanceof ApiError)) return t('signin.failed', { detail: errText(e) });
  if (e.status === 429) return t('signin.tooMany');
  if (kind === 'token' && e.status === 401) return t('signin.badToken');
  if (kind === 'register' && e.status === 401) return t('signin.badCredential');
  if (kind === 'register' && e.code === 'registration_closed') return t('signin.closed');
  if (kind === 'admin' && e.status === 401) return t('signin.badKey');
  if (kind === 'admin' && e.status === 403) return t('signin.notAdmin');
  return t('signin.failed', { detail: errText(e) });
}

/** Shows a one-time token; resolves when the dialog is dismissed. */
function showToken(title, text, token) {
  const dlg = $('dlg-token');
  $('dlg-token-title').textContent = title;
  $('dlg-token-text').textContent = text;
  $('dlg-token-value').value = token;
  $('dlg-token-copy').textContent = t('common.copy');
  return new Promise((resolve) => {
    const done = () => { dlg.removeEventListener('close', done); resolve(); };
    dlg.addEventListener('close', done);
    dlg.showModal();
    $('dlg-token-value').select();
  });
}

function setupDialogs() {
  // Every modal closes with Escape (native) and with its [data-dismiss] button.
  for (const dlg of document.querySelectorAll('dialog')) {
    for (const b of dlg.querySelectorAll('[data-dismiss]')) b.addEventListener('click', () => dlg.close('cancel'));
  }
  // Forms of method=dialog whose submit only closes the dialog (no async action).
  for (const id of ['dlg-token', 'dlg-confirm', 'dlg-history']) {
    const dlg = $(id);
    dlg.querySelector('form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      dlg.close(ev.submitter ? ev.submitter.value || 'ok' : 'ok');
    });
  }
  // The one-time token does not linger in the page once its dialog is closed.
  $('dlg-token').addEventListener('close', () => { $('dlg-token-value').value = ''; });
  $('dlg-token-copy').addEventListener('click', async () => {
    const input = $('dlg-token-value');
    input.select();
    try { await navigator.clipboard.writeText(input.value); } catch { document.execCommand && document.execCommand('copy'); }
    $('dlg-token-copy').textContent = t('common.copied');
  });
}

/** A confirmation; resolves true when confirmed. */
function confirmBox(text, okLabel) {
  const dlg = $('dlg-confirm');
  $('dlg-confirm-text').textContent = text;
  $('dlg-confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dlg.returnValue = '';
    const done = () => { dlg.removeEventListener('close', done); resolve(dlg.returnValue === 'ok'); };
    dlg.addEventListener('close', done);
    dlg.showModal();
  });
}

/** Opens a form dialog whose submit runs action(), then after() once it is closed; errors stay in the dialog. */
function formDialog(dlgId, formId, errId, action, after) {
  const dlg = $(dlgId);
  const form = $(formId);
  $(errId).textContent = '';
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    $(errId).textContent = '';
    const btns = form.querySelectorAll('button');
    btns.forEach((b) => { b.disabled = true; });
    try {
      await action();
      dlg.close('ok');
      if (after) after();
    } catch (e) {
      $(errId).textContent = t('common.error', { detail: errText(e) });
    } finally {
      btns.forEach((b) => { b.disabled = false; });
    }
  };
  dlg.showModal();
}

/**
 * Quiets an ARIA live log while it is filled in bulk (a dialog opened, the
 * language switched): the history is not news and must not be read out.
 */
function quietLog(list) {
  list.setAttribute('aria-busy', 'true');
  list.setAttribute('aria-live', 'off');
  clearTimeout(quietLog.timer);
  quietLog.timer = setTimeout(() => {
    list.setAttribute('aria-live', 'polite');
    list.removeAttribute('aria-busy');
  }, 250);
}

// ---------------------------------------------------------------------------
// Connection indicator

function setConn(state, info = {}) {
  const el = $('conn');
  let shown = state;
  let text;
  if (state === 'live') text = t('conn.live');
  else if (state === 'connecting') text = t('conn.connecting');
  else if (state === 'reconnecting' && !navigator.onLine) { shown = 'offline'; text = t('conn.offline'); }
  else if (state === 'reconnecting') text = info.delayMs ? t('conn.reconnectingIn', { s: Math.max(1, Math.round(info.delayMs / 1000)) }) : t('conn.reconnecting');
  else text = t('conn.offline');
  el.dataset.state = shown;
  $('conn-text').textContent = text;
}

// ---------------------------------------------------------------------------
// Operator view

async function operatorView(s, onController) {
  const st = {
    me: await api.get('/operators/me'),
    mine: new Map(),       // dialog_id -> {summary, doc, unread}
    queue: { length: 0, items: [], at: 0 },
    queueDocs: new Map(),  // dialog_id -> {doc, key, at}: names and previews of the waiting
    gone: new Map(),       // dialog_id -> {doc, reason}: closed or handed on in this session
    selected: null,        // {id, kind: 'mine'|'queue'|'gone'}
    rendered: { id: null, ids: new Set() },
    customer: new Map(),   // customer_id -> view, while their dialog is selected
    timers: [],
    stream: null,
    stopped: false,
    loaded: false,         // the first REST load is done
    wentLive: false,       // the stream has connected at least once
  };
  session.name = st.me.name;
  $('who-name').textContent = st.me.name;
  showView('operator');
  const view = $('view-operator');
  view.setAttribute('aria-busy', 'true'); // until the first load is in

  // --- loading state over REST
  /** Is the operator looking at this dialog right now (selected, tab visible)? */
  const looking = (id) => !!(st.selected && st.selected.id === id && !document.hidden);

  /** The fresh snapshot's messages plus any the old copy had that it lacks (delivered as events meanwhile), by time. */
  const mergeMessages = (old, fresh) => {
    const ids = new Set(fresh.map((m) => m.id));
    const extra = old.filter((m) => !ids.has(m.id));
    if (!extra.length) return fresh;
    return [...fresh, ...extra].map((m, i) => [m, i])
      .sort((a, b) => (Date.parse(a[0].timestamp) - Date.parse(b[0].timestamp)) || (a[1] - b[1]))
      .map(([m]) => m);
  };

  const loadMine = async () => {
    const { items } = await api.get('/operators/me/dialogs');
    const seen = new Set();
    for (const sum of items) {
      seen.add(sum.dialog_id);
      let entry = st.mine.get(sum.dialog_id);
      if (!entry) {
        entry = { summary: sum, doc: null, unread: 0 };
        st.mine.set(sum.dialog_id, entry);
      }
      const stale = !entry.doc || entry.summary.updated_at !== sum.updated_at;
      entry.summary = sum;
      if (stale) {
        let doc = null;
        try {
          doc = await api.get(`/dialogue/${sum.dialog_id}`);
        } catch (e) {
          if (!(e instanceof ApiError) || e.status !== 403) throw e;
        }
        if (doc) {
          // Compared with the copy as it is now (events may have added to it during the GET).
          const had = entry.doc;
          if (had) {
            const known = new Set(had.messages.map((m) => m.id));
            const missed = doc.messages.filter((m) => m.role === 'customer' && !known.has(m.id)).length;
            if (missed && !looking(sum.dialog_id)) entry.unread += missed; // e.g. received while disconnected
            doc.messages = mergeMessages(had.messages, doc.messages);
          } else if (!looking(sum.dialog_id)) {
            entry.unread = unanswered(doc).length;
          }
          entry.doc = doc;
        }
      }
      st.gone.delete(sum.dialog_id);
    }
    for (const id of [...st.mine.keys()]) {
      if (!seen.has(id)) moveAway(id, 'unassigned');
    }
  };

  // Queue items carry neither the customer's name nor their words: the first
  // waiting dialogs are read too. A cached copy is read again when its queue
  // item changed, when it is older than QUEUE_DOC_TTL_MS (a waiting customer
  // may write more, and no event says so) and when it is the open one.
  const QUEUE_DOC_TTL_MS = 15000;
  const queueKey = (i) => `${i.priority}|${i.language}|${i.skill}|${i.requeued}`;
  const queueDoc = (id) => (st.queueDocs.has(id) ? st.queueDocs.get(id).doc : null);
  const fetchQueueDoc = async (id, key) => {
    try {
      st.queueDocs.set(id, { doc: await api.get(`/dialogue/${id}`), key, at: Date.now() });
    } catch { /* taken meanwhile */ }
  };

  const loadQueue = async () => {
    const q = await api.get('/queue?limit=100');
    st.queue = { ...q, at: Date.now() };
    const open = st.selected && st.selected.kind === 'queue' ? st.selected.id : null;
    const ids = new Set(q.items.map((i) => i.dialog_id));
    for (const id of [...st.queueDocs.keys()]) if (!ids.has(id) && id !== open) st.queueDocs.delete(id);
    const now = Date.now();
    const want = q.items.filter((i, n) => n < 20 || i.dialog_id === open).filter((i) => {
      const c = st.queueDocs.get(i.dialog_id);
      return !c || i.dialog_id === open || c.key !== queueKey(i) || now - c.at > QUEUE_DOC_TTL_MS;
    });
    await Promise.all(want.map((i) => fetchQueueDoc(i.dialog_id, queueKey(i))));
  };

  const reloadAll = async () => {
    st.me = await api.get('/operators/me');
    await Promise.all([loadMine(), loadQueue()]);
    render();
  };

  // One REST reload at a time; a request during one runs another after it.
  let syncing = null;
  let syncAgain = false;
  const syncState = () => {
    if (syncing) { syncAgain = true; return syncing; }
    syncing = (async () => {
      try {
        do { syncAgain = false; await reloadAll(); } while (syncAgain && !st.stopped);
      } finally {
        syncing = null;
      }
    })();
    return syncing;
  };

  // The first load: the stream connects first (so nothing published after
  // the load is missed), then its first `live` loads the state over REST.
  let firstLoad = null;
  const firstLoaded = new Promise((resolve, reject) => { firstLoad = { resolve, reject }; });
  firstLoaded.catch(() => {}); // handled by the caller; not an unhandled rejection meanwhile

  // Coalesces bursts of events into one REST reload.
  const debounced = (fn, ms) => {
    let timer = null;
    return () => {
      clearTimeout(timer);
      timer = setTimeout(() => { if (!st.stopped) fn().then(render).catch(showError); }, ms);
    };
  };
  const reloadQueueSoon = debounced(loadQueue, 150);
  const reloadMineSoon = debounced(loadMine, 100);

  /** An error goes beside the open dialog, else to the sidebar's alert line (the note is hidden then). */
  const showError = (e) => {
    if (st.stopped || (e instanceof ApiError && e.status === 401)) return;
    const text = t('common.error', { detail: errText(e) });
    if (st.selected && !$('conv-inner').hidden) $('conv-note').textContent = text;
    else $('op-alert').textContent = text;
  };

  function moveAway(id, reason) {
    const entry = st.mine.get(id);
    if (!entry) return;
    st.mine.delete(id);
    const doc = entry.doc ? { ...entry.doc } : null;
    st.gone.set(id, { doc, reason });
    if (st.selected && st.selected.id === id) st.selected = { id, kind: 'gone' };
  }

  // --- live events
  const onEvent = (type, data) => {
    if (type === 'resync') {
      const first = !st.loaded;
      syncState().then(() => {
        if (first) { st.loaded = true; view.removeAttribute('aria-busy'); firstLoad.resolve(); } else announce(t('conn.resynced'));
      }, (e) => {
        if (first) firstLoad.reject(e); else showError(e);
      });
      return;
    }
    if (!data || typeof data !== 'object') return;
    if (type === 'message') {
      const entry = st.mine.get(data.dialog_id);
      if (!entry || !entry.doc) { reloadMineSoon(); return; }
      const msg = { ...data };
      delete msg.dialog_id;
      if (!entry.doc.messages.some((m) => m.id === msg.id)) {
        entry.doc.messages.push(msg);
        if (msg.role === 'customer' && !looking(data.dialog_id)) {
          entry.unread += 1;
          announce(t('op.newMessage', { name: customerName(entry.doc) }));
        }
      }
      render();
    } else if (type === 'assigned') {
      loadMine().then(() => {
        const e = st.mine.get(data.dialog_id);
        if (e && e.doc) announce(t('op.newAssigned', { name: customerName(e.doc) }));
        render();
      }).catch(showError);
    } else if (type === 'unassigned') {
      if (st.mine.has(data.dialog_id)) {
        const entry = st.mine.get(data.dialog_id);
        if (entry.doc && data.reason === 'closed') entry.doc.status = 'closed';
        moveAway(data.dialog_id, data.reason || 'unassigned');
        render();
      }
    } else if (type === 'status') {
      if (data.operator_id === st.me.operator_id && data.status) {
        st.me.status = data.status;
        if (data.reason && data.reason !== 'operator') announce(t('op.statusChanged', { status: t(`status.${data.status}`) }));
        renderStatus();
      }
    } else if (type === 'queue') {
      reloadQueueSoon();
    } else if (type === 'rated') {
      // A dialog this operator held last was rated: show it on that dialog,
      // and re-read the operator's CSAT.
      const g = st.gone.get(data.dialog_id);
      if (g && g.doc && data.rating) g.doc.rating = data.rating;
      if (data.rating) announce(t('op.rated', { score: data.rating.score }));
      api.get('/operators/me').then((me) => { if (!st.stopped) { st.me = me; renderStatus(); render(); } }, showError);
    }
  };

  st.stream = new EventStream(api, '/operators/me/events', {
    onEvent,
    onState: (state, info) => {
      if (state === 'unauthorized') {
        api.onUnauthorized();
        if (!st.loaded) firstLoad.reject(new ApiError(401, 'unauthorized'));
        return;
      }
      // The stream cannot connect before anything was loaded: the sign-in fails with its error.
      if (state === 'live') st.wentLive = true;
      if (state === 'reconnecting' && !st.loaded && !st.wentLive && info && info.error) {
        const e = info.error;
        firstLoad.reject(e.status ? new ApiError(e.status, null, e.message) : e);
      }
      setConn(state, info);
    },
  });

  // --- rendering
  function customerName(doc) {
    const ci = doc && doc.customer_info;
    return (ci && ci.name) || (doc && doc.customer_id) || t('op.anonymous');
  }

  /** The customer's messages after the last message of an operator (what waits for an answer). */
  function unanswered(doc) {
    const out = [];
    for (const m of doc.messages) {
      if (m.role === 'operator') out.length = 0;
      else if (m.role === 'customer') out.push(m);
    }
    return out;
  }

  /** Since when the customer has waited for a human, or null when answered. */
  function waitingSince(doc) {
    const open = unanswered(doc);
    if (open.length && doc.owner && doc.owner.replied) return Date.parse(open[0].timestamp);
    if (doc.owner && !doc.owner.replied && doc.owner.waiting_since) return Date.parse(doc.owner.waiting_since);
    return open.length ? Date.parse(open[0].timestamp) : null;
  }

  const waitBadge = (since, key = 'op.waiting') => (since == null ? null
    : h('span', { className: 'badge badge-wait', dataset: { since: String(since), key } },
      t(key, { t: formatDuration((Date.now() - since) / 1000) })));

  /** The list's one-line preview: the customer's last words in the queue, else the last message. */
  function lastText(doc, kind) {
    for (let i = doc.messages.length - 1; i >= 0; i--) {
      const r = doc.messages[i].role;
      if (kind === 'queue' ? r === 'customer' : r !== 'system') return doc.messages[i].content;
    }
    return '';
  }

  function listItem(id, kind, doc, { sub = [], badges = [], take = false } = {}) {
    const selected = st.selected && st.selected.id === id;
    const name = doc ? customerName(doc) : id.slice(0, 8);
    const open = h('button', {
      type: 'button', className: 'ditem-open', 'aria-current': selected ? 'true' : null,
      onclick: () => select(id, kind),
    },
    h('span', { className: 'ditem-top' }, h('span', { className: 'ditem-name' }, name), ...badges),
    h('span', { className: 'ditem-sub' }, ...sub),
    doc ? h('span', { className: 'ditem-preview' }, lastText(doc, kind)) : null);
    const li = h('li', { className: 'ditem', dataset: { dialogId: id, kind }, 'aria-current': selected ? 'true' : null }, open);
    if (take) {
      li.append(h('button', {
        type: 'button', className: 'btn btn-small ditem-take', 'aria-label': `${t('op.take')}: ${name}`,
        onclick: () => takeDialog(id),
      }, t('op.take')));
    }
    return li;
  }

  function renderLists() {
    const mine = [...st.mine.entries()];
    $('my-count').textContent = String(mine.length);
    $('my-empty').hidden = mine.length > 0;
    $('my-list').replaceChildren(...mine.map(([id, e]) => {
      const doc = e.doc;
      const badges = [];
      if (e.unread) {
        badges.push(h('span', { className: 'badge badge-unread' },
          h('span', { 'aria-hidden': 'true' }, String(e.unread)), h('span', { className: 'sr-only' }, t('op.unread', { n: e.unread }))));
      }
      const sub = [doc ? statusName(doc.status) : '', doc && doc.language ? doc.language : ''];
      const w = doc ? waitBadge(waitingSince(doc)) : null;
      return listItem(id, 'mine', doc, { badges, sub: [...sub.filter(Boolean).map((x) => h('span', {}, x)), w] });
    }));

    const q = st.queue;
    $('queue-count').textContent = String(q.length);
    $('queue-empty').hidden = q.items.length > 0;
    $('queue-list').replaceChildren(...q.items.map((it) => {
      const since = q.at - it.waiting_s * 1000;
      const badges = [h('span', { className: 'badge' }, t('op.position', { n: it.position }))];
      if (it.priority !== 'normal') badges.push(h('span', { className: `badge badge-${it.priority}` }, priorityName(it.priority)));
      const sub = [it.language, it.skill ? agentName(it.skill) : null].filter(Boolean).map((x) => h('span', {}, x));
      return listItem(it.dialog_id, 'queue', queueDoc(it.dialog_id), { badges, sub: [...sub, waitBadge(since)], take: true });
    }));

    const gone = [...st.gone.entries()].reverse();
    $('closed-title').hidden = gone.length === 0;
    $('closed-list').replaceChildren(...gone.map(([id, g]) => listItem(id, 'gone', g.doc, {
      sub: [h('span', {}, g.doc && g.doc.status === 'closed' ? statusName('closed') : reasonName(g.reason)),
        ...(g.doc && g.doc.rating ? [h('span', { className: 'badge', dataset: { rating: g.doc.rating.score } }, t('op.rating', { score: g.doc.rating.score }))] : [])],
    })));
  }

  function renderStatus() {
    for (const r of document.querySelectorAll('input[name="opstatus"]')) r.checked = r.value === st.me.status;
    const c = st.me.csat;
    $('my-csat').textContent = c && c.ratings ? `${formatNumber(c.mean, 2)} (${c.ratings})` : t('op.noRatings');
  }

  function selectedDoc() {
    const s = st.selected;
    if (!s) return null;
    if (s.kind === 'mine') return st.mine.get(s.id) ? st.mine.get(s.id).doc : null;
    if (s.kind === 'queue') return queueDoc(s.id);
    const g = st.gone.get(s.id);
    return g ? g.doc : null;
  }

  function messageNode(m, doc) {
    let author;
    if (m.role === 'customer') author = customerName(doc);
    else if (m.role === 'agent') author = t('op.ai', { agent: agentName(m.agent_type) });
    else if (m.role === 'operator') author = m.operator_id === st.me.operator_id ? t('op.you') : (m.operator_name || t('role.operator'));
    else author = t('op.system');
    const li = h('li', { className: `msg msg-${m.role}`, dataset: { id: m.id, role: m.role } },
      h('div', { className: 'msg-head' },
        h('span', { className: 'msg-author' }, author),
        h('time', { datetime: m.timestamp }, formatTime(m.timestamp))),
      h('p', { className: 'msg-body' }, m.content));
    if (m.route) {
      const r = m.route;
      li.append(h('p', { className: 'msg-route', title: (r.matched || []).join(', ') },
        t('op.route', { agent: agentName(r.agent), method: methodName(r.method), conf: formatNumber(r.confidence, 2) })));
    }
    return li;
  }

  function renderConversation() {
    const doc = selectedDoc();
    const s = st.selected;
    view.classList.toggle('has-selection', !!s);
    $('conv-none').hidden = !!s;
    $('conv-inner').hidden = !s;
    $('details').hidden = !s;
    if (!s) return;
    const list = $('messages');
    if (st.rendered.id !== s.id) {
      list.replaceChildren();
      st.rendered = { id: s.id, ids: new Set() };
      $('conv-note').textContent = '';
      $('reply-text').value = '';
    }
    $('conv-title').textContent = doc ? customerName(doc) : s.id;
    const mine = s.kind === 'mine' && doc && doc.status === 'assigned';
    $('conv-actions').hidden = !mine;
    $('reply-form').hidden = !mine;
    $('take-box').hidden = s.kind !== 'queue';
    if (!doc) return;
    $('conv-meta').textContent = [statusName(doc.status), doc.source, doc.language, agentName(doc.current_agent),
      doc.priority !== 'normal' ? priorityName(doc.priority) : null].filter(Boolean).join(' · ');
    if (s.kind === 'queue') $('conv-note').textContent = t('op.queuedPreview');
    else if (s.kind === 'gone') {
      const g = st.gone.get(s.id);
      $('conv-note').textContent = doc.status === 'closed'
        ? t('op.closedNote', { reason: reasonName(doc.close_reason || g.reason) }) : t('op.movedAway', { reason: reasonName(g.reason) });
    }
    // A message merged in before ones already shown (a reload after a gap): draw the list again.
    let k = 0;
    while (k < doc.messages.length && st.rendered.ids.has(doc.messages[k].id)) k++;
    if (k < st.rendered.ids.size || doc.messages.slice(k).some((m) => st.rendered.ids.has(m.id))) {
      list.replaceChildren();
      st.rendered.ids = new Set();
    }
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    const fresh = doc.messages.filter((m) => !st.rendered.ids.has(m.id));
    if (fresh.length) {
      // Filling an empty log (a dialog opened, the language switched, a redraw)
      // is not news: the live region is quiet meanwhile so the whole history
      // is not read out; single new messages are announced as usual.
      const bulk = list.children.length === 0 && fresh.length > 1;
      if (bulk) quietLog(list);
      for (const m of fresh) {
        st.rendered.ids.add(m.id);
        list.append(messageNode(m, doc));
      }
      if (atBottom || list.children.length === fresh.length) {
        list.scrollTop = list.scrollHeight;
        requestAnimationFrame(() => { list.scrollTop = list.scrollHeight; }); // after the layout settles
      }
    }
    if (s.kind === 'mine' && !document.hidden) st.mine.get(s.id).unread = 0; // onVisible renders again
    renderDetails(doc);
  }

  function renderDetails(doc) {
    const kv = $('dialog-info');
    const rows = [
      [t('op.dialogStatus'), statusName(doc.status)],
      [t('op.channel'), doc.source],
      [t('op.language'), doc.language || t('common.none')],
      [t('op.priority'), priorityName(doc.priority)],
      [t('op.agent'), agentName(doc.current_agent)],
    ];
    if (doc.owner && doc.owner.kind === 'operator' && doc.owner.since) rows.push([t('op.since'), formatTime(doc.owner.since)]);
    if (doc.rating) rows.push([t('kpi.csat'), `${'★'.repeat(doc.rating.score)}${'☆'.repeat(5 - doc.rating.score)} ${doc.rating.score}/5`]);
    kv.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    if (doc.rating && doc.rating.comment) kv.append(h('dt', {}, t('op.ratingComment')), h('dd', {}, doc.rating.comment));

    // The AI's decisions and every change of owner, oldest first.
    const items = [];
    for (const m of doc.messages) {
      if (m.route) items.push([m.timestamp, t('op.route', { agent: agentName(m.route.agent), method: methodName(m.route.method), conf: formatNumber(m.route.confidence, 2) })
        + (m.route.matched && m.route.matched.length ? ` — ${t('op.routeWords', { words: m.route.matched.join(', ') })}` : '')]);
    }
    const md = doc.metadata || {};
    for (const ho of md.handoffs || []) items.push([ho.at, t('op.agentHandoff', { from: agentName(ho.from), to: agentName(ho.to), reason: reasonName(ho.reason) })]);
    const ownerLabel = (kind, id) => (kind === 'operator' ? t('op.owner.operator', { name: id === st.me.operator_id ? t('op.you') : (id || '').slice(0, 8) }) : t(`op.owner.${kind}`));
    for (const tr of md.transitions || []) {
      items.push([tr.at, t('op.transition', { from: ownerLabel(tr.from, tr.prev_operator_id), to: ownerLabel(tr.to, tr.operator_id), reason: reasonName(tr.reason || tr.event) })]);
    }
    items.sort((a, b) => Date.parse(a[0]) - Date.parse(b[0]));
    $('routing').replaceChildren(...(items.length ? items.map(([at, text]) => h('li', {}, h('time', { datetime: at }, formatTime(at)), ' ', text))
      : [h('li', {}, t('profile.noRouting'))]));
    renderProfile(doc);
  }

  function renderProfile(doc) {
    const box = $('profile');
    const cid = doc.customer_id;
    const ci = doc.customer_info || {};
    const title = $('earlier-title');
    const earlier = $('earlier');
    const basic = [[t('profile.full_name'), ci.name], [t('profile.phone'), ci.phone], [t('profile.email'), ci.email]].filter(([, v]) => v);
    if (!cid) {
      box.replaceChildren(basic.length ? kvList(basic) : h('p', { className: 'muted' }, t('profile.none')));
      title.textContent = '';
      earlier.replaceChildren();
      return;
    }
    const cached = st.customer.get(cid);
    // The profile may be read only while one of the customer's dialogs is
    // the operator's: a queued or past dialog shows what it carries (nothing
    // is cached, so taking the dialog loads the profile).
    if (!cached && st.selected.kind !== 'mine') {
      box.replaceChildren(kvList([[t('profile.id'), cid], ...basic]), h('p', { className: 'hint' }, t('profile.unavailable')));
      title.textContent = '';
      earlier.replaceChildren();
      return;
    }
    if (!cached) {
      st.customer.set(cid, { loading: true });
      box.replaceChildren(kvList([[t('profile.id'), cid], ...basic]));
      api.get(`/customers/${encodeURIComponent(cid)}?limit=20`).then((v) => {
        st.customer.set(cid, { view: v });
      }).catch(() => st.customer.set(cid, { error: true })).finally(() => {
        if (st.stopped) return;
        const d = selectedDoc();
        if (d && d.customer_id === cid) renderProfile(d);
      });
      title.textContent = '';
      earlier.replaceChildren();
      return;
    }
    if (cached.loading) return;
    if (cached.error || !cached.view) {
      box.replaceChildren(kvList([[t('profile.id'), cid], ...basic]), h('p', { className: 'hint' }, t('profile.unavailable')));
      title.textContent = '';
      earlier.replaceChildren();
      return;
    }
    const p = cached.view.customer;
    const fields = ['full_name', 'phone', 'email', 'city', 'birth_date', 'position', 'experience', 'language'];
    box.replaceChildren(kvList([[t('profile.id'), cid], ...fields.filter((f) => p[f] != null && p[f] !== '').map((f) => [t(`profile.${f}`), p[f]])]));
    const others = cached.view.dialogs.filter((d) => d.dialog_id !== doc.dialog_id);
    title.textContent = t('profile.earlier', { n: Math.max(0, cached.view.dialog_count - 1) });
    earlier.replaceChildren(...(others.length ? others.map((d) => h('li', {},
      h('div', {}, h('strong', {}, formatTime(d.created_at)), ' · ', statusName(d.status), ' · ', agentName(d.current_agent), ' · ', String(d.message_count)),
      h('button', { type: 'button', className: 'btn btn-small', onclick: () => showEarlier(cid, d.dialog_id) }, t('profile.showHistory'))))
      : [h('li', { className: 'muted' }, t('profile.noEarlier'))]));
  }

  const kvList = (rows) => h('dl', { className: 'kv' }, ...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]));

  async function showEarlier(cid, dialogId) {
    try {
      const all = await api.get(`/customers/${encodeURIComponent(cid)}/history?format=json&limit=100`);
      const doc = (Array.isArray(all) ? all : all.dialogs || []).find((d) => d.dialog_id === dialogId);
      if (!doc) return;
      const head = `${customerName(doc)} · ${formatTime(doc.created_at)} · ${statusName(doc.status)}`;
      $('dlg-history-title').textContent = doc.rating ? `${head} · ${t('op.rating', { score: doc.rating.score })}` : head;
      $('dlg-history-msgs').replaceChildren(...doc.messages.map((m) => messageNode(m, doc)));
      $('dlg-history').showModal();
    } catch (e) {
      showError(e);
    }
  }

  function render() {
    if (st.stopped) return;
    renderConversation(); // first: it clears the unread count of the open dialog
    renderLists();
    renderStatus();
  }

  function select(id, kind) {
    st.selected = { id, kind };
    $('op-alert').textContent = '';
    render();
    if (kind === 'queue') refreshQueued();
    if (kind === 'mine') $('reply-text').focus();
    else $('messages').focus();
  }

  // --- actions
  /** Reads the open queued dialog again (a waiting customer's new words come with no event). */
  function refreshQueued() {
    const s = st.selected;
    if (!s || s.kind !== 'queue') return;
    const item = st.queue.items.find((i) => i.dialog_id === s.id);
    fetchQueueDoc(s.id, item ? queueKey(item) : '').then(render);
  }

  async function takeDialog(id) {
    try {
      const doc = await api.post(`/dialogue/${id}/take`);
      $('op-alert').textContent = '';
      adoptTaken(doc);
    } catch (e) {
      showError(e.code === 'limit_reached' ? new Error(t('op.limit')) : e);
      await loadQueue().catch(() => {});
      render();
    }
  }

  function adoptTaken(doc) {
    st.mine.set(doc.dialog_id, { summary: { dialog_id: doc.dialog_id, updated_at: doc.updated_at }, doc, unread: 0 });
    st.queueDocs.delete(doc.dialog_id);
    st.queue.items = st.queue.items.filter((i) => i.dialog_id !== doc.dialog_id);
    select(doc.dialog_id, 'mine');
    reloadQueueSoon();
  }

  $('take-next').onclick = async () => {
    try {
      adoptTaken(await api.post('/operators/me/next'));
    } catch (e) {
      if (e.code === 'queue_empty') announce(t('op.queueEmptyForYou'));
      showError(e.code === 'queue_empty' ? new Error(t('op.queueEmptyForYou')) : e.code === 'limit_reached' ? new Error(t('op.limit')) : e);
    }
  };
  $('take-this').onclick = () => st.selected && takeDialog(st.selected.id);
  $('conv-back').onclick = () => { const id = st.selected && st.selected.id; st.selected = null; render(); const li = id && document.querySelector(`.ditem[data-dialog-id="${id}"] .ditem-open`); if (li) li.focus(); };

  for (const r of document.querySelectorAll('input[name="opstatus"]')) {
    r.onchange = async () => {
      const prev = st.me.status;
      try {
        st.me = await api.put('/operators/me/status', { status: r.value });
        announce(t('op.statusChanged', { status: t(`status.${st.me.status}`) }));
      } catch (e) {
        st.me.status = prev;
        showError(e);
      }
      renderStatus();
      if (r.value === 'available') loadMine().then(render).catch(showError);
    };
  }

  const replyText = $('reply-text');
  replyText.onkeydown = (ev) => {
    // Enter sends; Shift+Enter (the browser's default) makes a new line; IME composition is left alone.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.isComposing) {
      ev.preventDefault();
      $('reply-form').requestSubmit();
    }
  };
  $('reply-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const s = st.selected;
    const text = replyText.value;
    if (!s || s.kind !== 'mine' || !text.trim()) return;
    const btn = $('reply-send');
    btn.disabled = true;
    try {
      const res = await api.post(`/dialogue/${s.id}/reply`, { message: text });
      const entry = st.mine.get(s.id);
      if (entry && entry.doc) {
        if (!entry.doc.messages.some((m) => m.id === res.message_id)) {
          entry.doc.messages.push({ id: res.message_id, role: 'operator', content: text, timestamp: res.timestamp,
            agent_type: null, operator_id: st.me.operator_id, operator_name: st.me.name });
        }
        if (entry.doc.owner) entry.doc.owner.replied = true;
      }
      replyText.value = '';
      $('conv-note').textContent = '';
      render();
      $('messages').scrollTop = $('messages').scrollHeight;
    } catch (e) {
      showError(e);
    } finally {
      btn.disabled = false;
      replyText.focus();
    }
  };

  $('act-close').onclick = () => {
    const id = st.selected.id;
    $('close-other').value = '';
    formDialog('dlg-close', 'close-form', 'close-error', async () => {
      const f = $('close-form');
      let reason = f.elements.reason.value;
      if (reason === 'other') reason = $('close-other').value.trim() || 'other';
      await api.post(`/dialogue/${id}/close`, { reason });
      const entry = st.mine.get(id);
      if (entry && entry.doc) Object.assign(entry.doc, { status: 'closed', close_reason: reason });
      moveAway(id, reason);
      render();
    }, () => $('messages').focus());
  };
  $('act-transfer').onclick = async () => {
    const id = st.selected.id;
    const select = $('transfer-id');
    let team = [];
    try {
      team = (await api.get('/operators/team')).items.filter((o) => o.operator_id !== st.me.operator_id);
    } catch (e) {
      showError(e);
      return;
    }
    // Available colleagues with a free seat first, then by name.
    const rank = (o) => (o.status === 'available' ? 0 : o.status === 'busy' ? 1 : 2) + (o.open_dialogs >= o.max_dialogs ? 3 : 0);
    team.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
    select.replaceChildren(...team.map((o) => h('option', { value: o.operator_id },
      t('transfer.option', { name: o.name, status: t(`status.${o.status}`), open: o.open_dialogs, max: o.max_dialogs }))));
    formDialog('dlg-transfer', 'transfer-form', 'transfer-error', async () => {
      const to = select.value;
      if (!to) throw new Error(t('transfer.nobody'));
      await api.post(`/dialogue/${id}/handoff`, { to: 'operator', operator_id: to });
      moveAway(id, 'transfer');
      render();
    }, () => $('messages').focus());
  };
  $('act-handback').onclick = () => {
    const id = st.selected.id;
    formDialog('dlg-handback', 'handback-form', 'handback-error', async () => {
      const agent = $('handback-agent').value;
      await api.post(`/dialogue/${id}/handoff`, agent ? { to: 'ai', agent } : { to: 'ai' });
      moveAway(id, 'handback');
      render();
    }, () => $('messages').focus());
  };

  const onOnline = () => st.stream && st.stream.kick();
  const onOffline = () => st.stream && st.stream.drop(); // retried at once when back online
  const onVisible = () => { if (!document.hidden) render(); };

  const ctl = {
    render: () => {
      // A new language: the messages are drawn again (their labels changed); the draft stays.
      st.rendered.ids = new Set();
      $('messages').replaceChildren();
      render();
      setConn(st.stream.state);
    },
    stop: () => {
      if (st.stopped) return;
      st.stopped = true;
      firstLoad.reject(new Error('stopped'));
      st.stream.stop();
      st.timers.forEach(clearInterval);
      window.removeEventListener('online', onOnline);
      window.removeEventListener('offline', onOffline);
      document.removeEventListener('visibilitychange', onVisible);
      $('my-list').replaceChildren(); $('queue-list').replaceChildren(); $('closed-list').replaceChildren();
      $('messages').replaceChildren();
      $('op-alert').textContent = '';
      $('conv-note').textContent = '';
      view.classList.remove('has-selection');
      view.removeAttribute('aria-busy');
    },
  };

  onController(ctl);
  try {
    // Waiting times tick once a second (text only, nothing re-rendered).
    st.timers.push(setInterval(() => {
      for (const el of document.querySelectorAll('[data-since]')) {
        el.textContent = t(el.dataset.key, { t: formatDuration((Date.now() - Number(el.dataset.since)) / 1000) });
      }
    }, 1000));
    // Own CSAT has no event: refreshed now and then.
    st.timers.push(setInterval(() => {
      api.get('/operators/me').then((me) => { if (!st.stopped) { st.me = me; renderStatus(); } }).catch(() => {});
    }, 30000));
    // The queue's previews and an open queued dialog: no event tells of a waiting customer's new words.
    st.timers.push(setInterval(() => {
      if (!document.hidden && st.loaded && st.queue.items.length) loadQueue().then(render).catch(() => {});
    }, QUEUE_DOC_TTL_MS));
    st.timers.push(setInterval(() => { if (!document.hidden) refreshQueued(); }, 5000));
    window.addEventListener('online', onOnline);
    window.addEventListener('offline', onOffline);
    document.addEventListener('visibilitychange', onVisible);

    st.stream.start();
    await firstLoaded;
  } catch (e) {
    ctl.stop();
    throw e;
  }
  return ctl;
}

// ---------------------------------------------------------------------------
// Admin view

function adminView() {
  $('who-name').textContent = '';
  showView('admin');
  const st = { stats: null, queue: null, operators: [], queueSeries: [], days: null, daysAt: 0, timer: null, stopped: false, tab: 'dash' };

  const tabs = [['atab-dash', 'apanel-dash', 'dash'], ['atab-ops', 'apanel-ops', 'ops'], ['atab-exp', 'apanel-exp', 'exp']];
  const selectTab = (name) => {
    st.tab = name;
    for (const [tabId, panelId, n] of tabs) {
      $(tabId).setAttribute('aria-selected', String(n === name));
      $(tabId).tabIndex = n === name ? 0 : -1;
      $(panelId).hidden = n !== name;
    }
    refresh();
  };
  tabs.forEach(([tabId, , n], i) => {
    $(tabId).onclick = () => selectTab(n);
    $(tabId).onkeydown = (ev) => {
      if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
      const next = tabs[(i + (ev.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
      selectTab(next[2]);
      $(next[0]).focus();
    };
  });

  const utcDay = (d) => d.toISOString().slice(0, 10);
  const windowQuery = () => {
    const w = $('window').value;
    if (w === 'all') return '';
    const from = new Date();
    if (w !== 'today') from.setUTCDate(from.getUTCDate() - (Number(w) - 1));
    return `?from=${utcDay(from)}`;
  };

  async function loadDays() {
    // /stats has no time series: one windowed call per UTC day of the last
    // 14, one after another (not 14 at once), at most once a minute.
    if (st.daysBusy) return;
    st.daysBusy = true;
    try {
      const days = [];
      for (let i = 13; i >= 0; i--) {
        const d = new Date();
        d.setUTCDate(d.getUTCDate() - i);
        days.push(utcDay(d));
      }
      const res = [];
      for (const d of days) {
        if (st.stopped) return;
        res.push(await api.get(`/stats?from=${d}&to=${d}`));
      }
      st.days = days.map((d, i) => ({ day: d, stats: res[i] }));
      st.daysAt = Date.now();
    } finally {
      st.daysBusy = false;
    }
  }

  async function refreshDash() {
    const [stats, queue, ops] = await Promise.all([api.get(`/stats${windowQuery()}`), api.get('/queue?limit=1'), api.get('/operators')]);
    if (st.stopped) return;
    st.stats = stats;
    st.queue = queue;
    st.operators = ops.items;
    st.queueSeries.push({ x: Date.now(), y: queue.length });
    if (st.queueSeries.length > 720) st.queueSeries.shift();
    $('dash-updated').textContent = `${t('admin.updated', { time: formatTime(stats.generated_at) })} · ${t('admin.autoRefresh', { s: ADMIN_REFRESH_S })}`;
    $('dash-error').textContent = '';
    renderDash();
    if (!st.days || Date.now() - st.daysAt > 60000) {
      await loadDays();
      if (!st.stopped) renderDash();
    }
  }

  function kpi(label, value, sub) {
    return h('div', { className: 'card kpi' }, h('div', { className: 'kpi-label' }, label), h('div', { className: 'kpi-value' }, value), sub ? h('div', { className: 'kpi-sub' }, sub) : null);
  }

  function renderDash() {
    const s = st.stats;
    if (!s) return;
    const bs = s.dialogs.by_status;
    const onShift = st.operators.filter((o) => o.status !== 'offline').length;
    $('kpis').replaceChildren(
      kpi(t('kpi.dialogs'), formatNumber(s.dialogs.total), t('kpi.messages', { n: formatNumber(s.messages) })),
      kpi(t('kpi.open'), formatNumber(bs.active + bs.escalated + bs.queued + bs.assigned)),
      kpi(t('kpi.queue'), formatNumber(st.queue.length)),
      kpi(t('kpi.operatorsOn'), `${onShift} / ${st.operators.length}`),
      kpi(t('kpi.csat'), s.csat.average == null ? t('common.none') : formatNumber(s.csat.average, 2), t('kpi.csatCount', { n: s.csat.count })),
      kpi(t('kpi.containment'), formatPercent(s.ai.containment_rate), `${s.ai.contained} / ${s.ai.closed}`),
      kpi(t('kpi.escalation'), formatPercent(s.escalations.rate), String(s.escalations.total)),
      kpi(t('kpi.firstResponse'), formatDuration(s.first_response_s.p50)),
      kpi(t('kpi.queueWait'), formatDuration(s.queue_wait_s.p50), `p90 ${formatDuration(s.queue_wait_s.p90)}`),
      kpi(t('kpi.handle'), formatDuration(s.handle_time_s.p50)),
    );
    const noData = t('chart.noData');
    const dist = s.csat.distribution;
    columnChart($('ch-csat'), [1, 2, 3, 4, 5].map((n) => ({ label: `${n} ★`, value: dist[String(n)] || 0, cls: `csat-${n}` })), { title: t('chart.csat'), noData });
    shareBar($('ch-contain'), [
      { label: t('chart.contained'), value: s.ai.contained, cls: 'c-ok' },
      { label: t('chart.escalatedClosed'), value: s.ai.closed - s.ai.contained, cls: 'c-warn' },
    ], { title: t('chart.containment'), noData });
    const ch = Object.entries(s.dialogs.by_channel).sort((a, b) => b[1] - a[1]);
    barChart($('ch-channel'), ch.map(([k, v]) => ({ label: k, value: v })), { title: t('chart.channel'), noData });
    barChart($('ch-agent'), Object.entries(s.dialogs.by_agent).map(([k, v]) => ({ label: agentName(k), value: v, cls: 'c-violet' })), { title: t('chart.agentDialogs'), noData, format: (v) => formatNumber(v) });
    barChart($('ch-trigger'), Object.entries(s.escalations.by_trigger).map(([k, v]) => ({ label: t(`trigger.${k}`), value: v, cls: 'c-warn' })), { title: t('chart.trigger'), noData });
    barChart($('ch-status'), Object.entries(bs).map(([k, v]) => ({ label: statusName(k), value: v, cls: k === 'closed' ? 'c-muted' : k === 'queued' ? 'c-bad' : 'c-teal' })), { title: t('chart.status'), noData });
    const clock = (x) => new Date(x).toLocaleTimeString(getLang() === 'ru' ? 'ru-RU' : 'en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    lineChart($('ch-queue'), [{ label: t('kpi.queue'), points: st.queueSeries }], { title: t('chart.queueLive'), xLabel: clock, noData });
    if (st.days) {
      const dayLabel = (i) => st.days[i].day.slice(5);
      lineChart($('ch-wait'), [
        { label: t('chart.p50'), points: st.days.map((d, i) => ({ x: i, y: d.stats.queue_wait_s.count ? d.stats.queue_wait_s.p50 : null })) },
        { label: t('chart.p90'), cls: 'c-warn', points: st.days.map((d, i) => ({ x: i, y: d.stats.queue_wait_s.count ? d.stats.queue_wait_s.p90 : null })) },
      ], { title: t('chart.waitPerDay'), xLabel: dayLabel, noData, format: (v) => formatNumber(v) });
      columnChart($('ch-day'), st.days.map((d) => ({ label: d.day.slice(8), value: d.stats.dialogs.total })), { title: t('chart.perDay'), noData });
    }
  }

  async function refreshOps() {
    const { items } = await api.get('/operators');
    if (st.stopped) return;
    st.operators = items;
    renderOps();
  }

  function renderOps() {
    $('ops-empty').hidden = st.operators.length > 0;
    $('ops-body').replaceChildren(...st.operators.map((o) => {
      const meter = h('meter', { min: 0, max: o.max_dialogs, value: o.open_dialogs, 'aria-label': `${t('ops.load')}: ${o.open_dialogs} / ${o.max_dialogs}` });
      const csat = o.csat && o.csat.ratings ? `${formatNumber(o.csat.mean, 2)} (${o.csat.ratings})` : t('common.none');
      return h('tr', { dataset: { operatorId: o.operator_id } },
        h('td', {}, h('strong', {}, o.name)),
        h('td', {}, h('span', { className: `badge badge-${o.status}` }, t(`status.${o.status}`))),
        h('td', {}, h('span', { className: 'load' }, meter, `${o.open_dialogs} / ${o.max_dialogs}`)),
        h('td', {}, (o.languages || []).join(', ')),
        h('td', {}, o.skills && o.skills.length ? o.skills.map(agentName).join(', ') : t('ops.allSkills')),
        h('td', {}, formatTime(o.last_seen_at)),
        h('td', {}, csat),
        h('td', {}, h('code', {}, o.operator_id)),
        h('td', {}, h('button', { type: 'button', className: 'btn btn-small btn-danger', 'aria-label': `${t('ops.revoke')}: ${o.name}`, onclick: () => revoke(o) }, t('ops.revoke'))));
    }));
  }

  async function revoke(o) {
    if (!(await confirmBox(t('ops.revokeConfirm', { name: o.name }), t('ops.revoke')))) return;
    try {
      await api.del(`/operators/${o.operator_id}`);
      $('ops-notice').textContent = t('ops.revoked', { name: o.name });
      await refreshOps();
    } catch (e) {
      $('ops-error').textContent = t('common.error', { detail: errText(e) });
    }
  }

  $('reg-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const f = $('reg-form');
    $('reg-error').textContent = '';
    const name = $('reg-name').value.trim();
    if (!name) { $('reg-error').textContent = t('common.error', { detail: t('ops.name') }); $('reg-name').focus(); return; }
    const body = {
      name,
      languages: ['ru', 'en'].filter((l) => f.elements[`rl-${l}`].checked),
      skills: ['tech_support', 'sales', 'supervisor'].filter((s) => f.elements[`rs-${s}`].checked),
      max_dialogs: Number($('reg-max').value) || 3,
    };
    try {
      const res = await api.post('/operators', body);
      $('reg-name').value = '';
      $('ops-notice').textContent = t('ops.created', { name });
      await refreshOps();
      await showToken(t('ops.tokenTitle', { name }), t('ops.tokenText'), res.token);
    } catch (e) {
      $('reg-error').textContent = t('common.error', { detail: errText(e) });
    }
  };

  for (const b of document.querySelectorAll('[data-export]')) {
    b.onclick = async () => {
      $('exp-error').textContent = '';
      $('exp-notice').textContent = '';
      const p = new URLSearchParams({ format: b.dataset.format });
      if (b.dataset.export === 'dialogs') {
        if ($('exp-from').value) p.set('from', $('exp-from').value);
        if ($('exp-to').value) p.set('to', $('exp-to').value);
      } else {
        p.set('kind', 'all');
      }
      if ($('exp-bom').checked && b.dataset.format === 'csv') p.set('bom', 'true');
      b.disabled = true;
      try {
        const name = await api.download(`/exports/${b.dataset.export}?${p}`, `${b.dataset.export}.${b.dataset.format}`);
        $('exp-notice').textContent = t('exp.started', { name });
      } catch (e) {
        $('exp-error').textContent = t('common.error', { detail: errText(e) });
      } finally {
        b.disabled = false;
      }
    };
  }
  for (const b of document.querySelectorAll('[data-export]')) b.textContent = t('exp.download', { fmt: b.dataset.format.toUpperCase() });

  // One refresh at a time: a slow server does not pile up calls. A refresh
  // asked for meanwhile (a tab switch, the period changed) runs after it.
  async function refresh() {
    if (st.stopped) return;
    if (st.busy) { st.again = true; return; }
    st.busy = true;
    try {
      do {
        st.again = false;
        const tab = st.tab;
        try {
          if (tab === 'dash') await refreshDash();
          else if (tab === 'ops') await refreshOps();
        } catch (e) {
          if (!st.stopped && !(e instanceof ApiError && e.status === 401)) $(tab === 'ops' ? 'ops-error' : 'dash-error').textContent = t('common.error', { detail: errText(e) });
        }
      } while (st.again && !st.stopped);
    } finally {
      st.busy = false;
    }
  }
  $('window').onchange = () => { st.queueSeries.length = 0; refresh(); };
  $('dash-refresh').onclick = refresh;
  // Auto-refresh, skipped while the tab is hidden.
  st.timer = setInterval(() => { if (!document.hidden) refresh(); }, ADMIN_REFRESH_S * 1000);
  selectTab('dash');

  return {
    render: () => {
      renderDash();
      renderOps();
      for (const b of document.querySelectorAll('[data-export]')) b.textContent = t('exp.download', { fmt: b.dataset.format.toUpperCase() });
    },
    stop: () => { st.stopped = true; clearInterval(st.timer); },
  };
}

// ---------------------------------------------------------------------------
// Start

async function main() {
  setLang(getLang());
  applyI18n();
  const langSel = $('lang');
  langSel.value = getLang();
  langSel.addEventListener('change', () => {
    setLang(langSel.value);
    applyI18n();
    if (setupSignIn.refresh) setupSignIn.refresh();
    if (session) $('who-role').textContent = session.kind === 'admin' ? t('role.admin') : t('role.operator');
    if (current) current.render();
  });
  setupDialogs();
  setupSignIn();
  $('signout').addEventListener('click', () => signOut());

  const saved = loadSession();
  if (!saved) { showView('signin'); return; }
  try {
    await startSession(saved, true);
  } catch {
    // startSession went back to the sign-in and said why.
  }
}

main();
