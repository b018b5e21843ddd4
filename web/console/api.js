// SPDX-License-Identifier: MIT
// REST calls and the live event stream of the console.
//
// Credentials travel only in request headers: an operator token as
// `Authorization: Bearer cco_…`, an admin key as `X-API-Key`. Nothing secret
// is ever put in a URL (downloads go through fetch and a Blob URL).

const BASE = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || null;
    this.detail = detail || null;
  }
}

/** One signed-in session: {kind: 'operator'|'admin', secret}. */
export class Api {
  constructor(session) {
    this.session = session;
    this.onUnauthorized = null; // called once a 401 says the credential is gone
  }

  headers(extra = {}) {
    const h = { Accept: 'application/json', ...extra };
    const { kind, secret } = this.session;
    if (kind === 'operator') h.Authorization = `Bearer ${secret}`;
    else if (secret) h['X-API-Key'] = secret;
    return h;
  }

  async raw(method, path, body, { headers = {}, signal } = {}) {
    const init = { method, headers: this.headers(headers), signal, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(BASE + path, init);
    if (res.status === 401 && this.onUnauthorized) this.onUnauthorized();
    return res;
  }

  /** JSON in, JSON out; a non-2xx answer throws ApiError with the server's code and detail. */
  async call(method, path, body, opts) {
    const res = await this.raw(method, path, body, opts);
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch { data = null; }
    }
    if (!res.ok) throw new ApiError(res.status, data && data.code, data && data.detail);
    return data;
  }

  get(path, opts) { return this.call('GET', path, undefined, opts); }
  post(path, body, opts) { return this.call('POST', path, body, opts); }
  put(path, body, opts) { return this.call('PUT', path, body, opts); }
  del(path, opts) { return this.call('DELETE', path, undefined, opts); }

  /** Fetches path with the credential and saves the body as a file (Blob URL, never the key in a URL). */
  async download(path, fallbackName) {
    const res = await this.raw('GET', path, undefined, { headers: { Accept: '*/*' } });
    if (!res.ok) {
      let data = null;
      try { data = await res.json(); } catch { /* not JSON */ }
      throw new ApiError(res.status, data && data.code, data && data.detail);
    }
    const blob = await res.blob();
    const cd = res.headers.get('Content-Disposition') || '';
    const m = /filename="?([^";]+)"?/i.exec(cd);
    const name = m ? m[1] : fallbackName;
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    return name;
  }
}

/** Registration is public: the body carries the secret or the PIN. */
export async function registerOperator(body) {
  const res = await fetch(`${BASE}/operators/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, data && data.code, data && data.detail);
  return data;
}

/**
 * A Server-Sent Events reader over fetch(), because EventSource cannot send
 * an Authorization header. It parses the stream as WHATWG HTML §9.2 says
 * (fields, comments, multi-line data, `retry`), remembers the last event id
 * and sends it back as `Last-Event-ID` on every reconnect, reconnects with
 * exponential backoff and jitter, and treats 45 s without a byte as a dead
 * connection (the server sends a `: keep-alive` comment every 15 s).
 *
 * onEvent(type, payload, id) gets each event (payload: the parsed `data`
 * JSON envelope's `data`, or the raw envelope for `resync`); onState(state,
 * info) gets 'connecting' | 'live' | 'reconnecting' | 'stopped' | 'unauthorized'.
 */
export class EventStream {
  constructor(api, path, { onEvent, onState, idleMs = 45000 } = {}) {
    this.api = api;
    this.path = path;
    this.onEvent = onEvent || (() => {});
    this.onState = onState || (() => {});
    this.idleMs = idleMs;
    this.lastId = null;
    this.retryMs = 3000;  // the server's `retry:` replaces it
    this.failures = 0;
    this.stopped = true;
    this.controller = null;
    this.timer = null;
    this.state = 'stopped';
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.setState('stopped');
  }

  /**
   * Reconnects at once (used when the browser comes back online): a pending
   * retry is cut short, a connection still trying is dropped and started
   * again without waiting. A live stream is left alone.
   */
  kick() {
    if (this.stopped || this.state === 'live') return;
    clearTimeout(this.timer);
    this.timer = null;
    this.failures = 0;
    if (this.controller) {
      this.kicked = true; // the catch below reconnects without a delay
      this.controller.abort();
    } else {
      this.connect();
    }
  }

  /** Drops the current connection (the browser went offline); it is retried as usual. */
  drop() {
    if (this.stopped || !this.controller) return;
    this.controller.abort();
  }

  setState(state, info) {
    this.state = state;
    this.onState(state, info);
  }

  async connect() {
    if (this.stopped) return;
    const controller = new AbortController();
    this.controller = controller;
    this.setState(this.failures ? 'reconnecting' : 'connecting', {});
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), this.idleMs);
    };
    try {
      const headers = { Accept: 'text/event-stream' };
      if (this.lastId) headers['Last-Event-ID'] = this.lastId;
      arm();
      const res = await this.api.raw('GET', this.path, undefined, { headers, signal: controller.signal });
      if (res.status === 401) {
        clearTimeout(watchdog);
        this.stopped = true;
        this.setState('unauthorized');
        return;
      }
      if (!res.ok || !res.body) {
        const err = new Error(`HTTP ${res.status}`);
        err.status = res.status;
        // A 503 may say when to come back (delta-seconds; an HTTP-date is ignored).
        const ra = res.headers.get('Retry-After');
        if (res.status === 503 && ra && /^\d+$/.test(ra.trim())) err.retryAfterMs = Math.min(300, Number(ra.trim())) * 1000;
        throw err;
      }
      this.setState('live');
      // No event id to resume from (the first connection, or nothing had
      // arrived before a drop): the server cannot say what was missed, so
      // the client loads the state over REST now that the stream is
      // subscribed (nothing published from here on can be lost).
      if (!this.lastId) {
        this.dispatch('resync', JSON.stringify({ type: 'resync', reason: this.connectedBefore ? 'no_last_event_id' : 'initial' }), null);
      }
      this.connectedBefore = true;
      await this.read(res.body.getReader(), arm, () => { this.failures = 0; });
      throw new Error('stream ended');
    } catch (e) {
      clearTimeout(watchdog);
      if (this.controller === controller) this.controller = null;
      if (this.stopped) return;
      if (this.kicked) {
        this.kicked = false;
        this.connect();
        return;
      }
      this.failures += 1;
      // 1st retry after the server's `retry`, then doubling up to 30 s, with
      // jitter; a 503's Retry-After when it asks for longer.
      const base = Math.min(30000, this.retryMs * 2 ** Math.min(this.failures - 1, 4));
      let delay = Math.round(base * (0.75 + Math.random() * 0.5));
      if (e && e.retryAfterMs) delay = Math.max(delay, e.retryAfterMs);
      this.setState('reconnecting', { delayMs: delay, attempt: this.failures, error: e });
      this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
    }
  }

  /** Reads frames until the stream ends; gotData() runs once, at the first byte (the connection works). */
  async read(reader, arm, gotData) {
    const decoder = new TextDecoder();
    let first = true;
    let buf = '';
    let type = '';
    let data = [];
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      arm();
      if (first) { first = false; gotData(); }
      buf += decoder.decode(value, { stream: true });
      let nl;
      // Lines end with CRLF, LF or CR.
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        if (buf[nl] === '\r' && nl === buf.length - 1) break; // a CR that may be half of CRLF
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (id !== null) this.lastId = id;
          if (data.length) this.dispatch(type || 'message', data.join('\n'), this.lastId);
          type = ''; data = []; id = null;
          continue;
        }
        if (line.startsWith(':')) continue; // comment: the keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? '' : line.slice(colon + 1);
        if (val.startsWith(' ')) val = val.slice(1);
        if (field === 'event') type = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id' && !val.includes('\0')) id = val;
        else if (field === 'retry' && /^\d+$/.test(val)) this.retryMs = Math.max(500, Number(val));
      }
    }
  }

  dispatch(type, text, id) {
    let env = null;
    try { env = JSON.parse(text); } catch { env = null; }
    const payload = env && typeof env === 'object' && 'data' in env ? env.data : env;
    try {
      this.onEvent(type, payload, id, env);
    } catch (e) {
      // A handler bug must not kill the stream; it is still reported.
      setTimeout(() => { throw e; });
    }
  }
}
