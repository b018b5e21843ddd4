// SPDX-License-Identifier: MIT
// Shared helpers of the browser tests (tests/browser/*.test.mjs): a server on
// a free port with a temporary storage directory, Debian's chromium driven by
// playwright-core (no download, loopback only), pages that record JS errors
// and console errors (CSP violations included), screenshots, REST calls and
// a reader for the customer's event stream.
//
// Environment (set by tests/browser/run.sh): CCA_SERVER (the binary),
// CCA_DATA_DIR, CCA_BROWSER_OUT (screenshots, logs), CCA_ROOT, CCA_CHROMIUM;
// CCA_SCREENSHOTS_DIR (optional: screenshots are copied there too).

import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = process.env.CCA_ROOT || path.resolve(here, '../..');
const require = createRequire(path.join(ROOT, 'tools', 'package.json'));
const { chromium } = require('playwright-core');

export const SERVER = process.env.CCA_SERVER || path.join(ROOT, 'build', 'call-center-agents');
export const DATA_DIR = process.env.CCA_DATA_DIR || path.join(ROOT, 'data');
export const OUT = process.env.CCA_BROWSER_OUT || fs.mkdtempSync(path.join(os.tmpdir(), 'cca-browser-out-'));
fs.mkdirSync(OUT, { recursive: true });
// A directory made here (no CCA_BROWSER_OUT) goes when the run ends.
if (!process.env.CCA_BROWSER_OUT) process.on('exit', () => fs.rmSync(OUT, { recursive: true, force: true }));

const FORWARD = ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'PATH', 'LD_LIBRARY_PATH', 'TZ'];

/** Polls fn() until it returns a truthy value (returned) or timeoutMs passes (throws with what). */
export async function waitFor(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e && e.fatal) throw e; // no point in waiting longer
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const rand = (n = 12) => crypto.randomBytes(n).toString('base64url');

/**
 * Starts the server: cwd a fresh temp dir (no stray .env), PORT=0 on
 * 127.0.0.1, storage in the temp dir (or opts.storageDir), keys and
 * registration credentials made up for the test, plus env. Resolves once the
 * log says it listens. stop() sends SIGTERM and waits; kill() SIGKILLs;
 * restart() stops and starts again on the same port and storage.
 * cleanup() removes the temp dir unless keep is true (a failed test: the
 * path is printed).
 */
export async function startServer({ env = {}, storageDir = null, name = 'server' } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cca-browser-'));
  const s = {
    dir,
    storageDir: storageDir || path.join(dir, 'dialogs'),
    clientKey: `client-${rand()}`,
    adminKey: `admin-${rand()}`,
    secret: `secret-${rand()}`,
    pin: String(100000 + crypto.randomInt(900000)),
    port: 0,
    url: null,
    proc: null,
    logPath: null,
    runs: 0,
  };
  const baseEnv = {};
  for (const k of FORWARD) if (process.env[k] != null) baseEnv[k] = process.env[k];

  s.start = async () => {
    s.runs += 1;
    s.logPath = path.join(dir, `${name}-${s.runs}.log`);
    const log = fs.openSync(s.logPath, 'w');
    const childEnv = {
      ...baseEnv,
      PORT: String(s.port),
      HOST: '127.0.0.1',
      DIALOGS_STORAGE_PATH: s.storageDir,
      DATA_DIR,
      LOG_LEVEL: 'info',
      API_KEYS: s.clientKey,
      ADMIN_API_KEYS: s.adminKey,
      OPERATOR_SECRET: s.secret,
      OPERATOR_PINS: s.pin,
      OPENAI_API_KEY: '',
      TELEGRAM_BOT_TOKEN: '',
      ...env,
    };
    const proc = spawn(SERVER, [], { cwd: dir, env: childEnv, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    s.proc = proc;
    proc.exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
    let exitedEarly = null;
    proc.exited.then((r) => { exitedEarly = r; });
    const port = await waitFor(() => {
      if (exitedEarly) throw Object.assign(new Error(`server exited ${JSON.stringify(exitedEarly)}: ${tail(s.logPath)}`), { fatal: true });
      const m = /event=listening.*?port=(\d+)/.exec(fs.readFileSync(s.logPath, 'utf8'));
      return m && Number(m[1]);
    }, { timeoutMs: 30000, what: 'the server to listen' }).catch((e) => {
      if (!exitedEarly) proc.kill('SIGKILL');
      throw e;
    });
    s.port = port;
    s.url = `http://127.0.0.1:${port}`;
    return s;
  };

  s.stop = async () => {
    const p = s.proc;
    if (!p || p.exitCode != null || p.signalCode != null) return null;
    p.kill('SIGTERM');
    const killer = setTimeout(() => p.kill('SIGKILL'), 15000);
    const r = await p.exited;
    clearTimeout(killer);
    return r;
  };

  s.kill = async () => {
    const p = s.proc;
    if (!p || p.exitCode != null || p.signalCode != null) return null;
    p.kill('SIGKILL');
    return p.exited;
  };

  /** Stops and starts again on the same port and storage; a start retries while the port is still held. */
  s.restart = async () => {
    const r = await s.stop();
    assert.deepEqual(r && { code: r.code }, { code: 0 }, `the server's SIGTERM exit: ${JSON.stringify(r)}`);
    await waitFor(async () => {
      try {
        await s.start();
        return true;
      } catch (e) {
        if (/exited/.test(e.message)) return false; // the port not free yet
        throw e;
      }
    }, { timeoutMs: 20000, intervalMs: 200, what: 'the server to start again' });
    return s;
  };

  s.log = () => fs.readdirSync(dir).filter((f) => f.endsWith('.log')).map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('\n');

  s.cleanup = async (keep = false) => {
    await s.stop();
    if (keep) {
      console.error(`# kept the failed test's server directory: ${dir}`);
      return;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    await s.start();
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true }); // nobody gets s to clean it up
    throw e;
  }
  return s;
}

function tail(p, n = 2000) {
  try {
    const t = fs.readFileSync(p, 'utf8');
    return t.slice(-n);
  } catch {
    return '';
  }
}

/**
 * Runs `call-center-agents demo-data` into a fresh storage directory and
 * returns {dir, storageDir, output, cleanup()}.
 */
export async function makeDemoData(args = ['--operators', '5', '--customers', '10', '--dialogs', '120', '--seed', '1']) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cca-demo-'));
  const storageDir = path.join(dir, 'dialogs');
  const env = { DATA_DIR, DIALOGS_STORAGE_PATH: storageDir };
  for (const k of FORWARD) if (process.env[k] != null) env[k] = process.env[k];
  const output = await new Promise((resolve, reject) => {
    const p = spawn(SERVER, ['demo-data', ...args, '--storage', storageDir], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`demo-data exited ${code}: ${out.slice(-2000)}`))));
  });
  return { dir, storageDir, output, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// ---------------------------------------------------------------------------
// The browser

/** Debian's chromium, headless, no network beyond loopback, a fresh profile. Returns a Browser. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CCA_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--disable-extensions',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'],
  });
}

/**
 * A page in a new context (its own storage) that records page.jsErrors
 * (uncaught exceptions) and page.consoleErrors (console errors, which
 * include the CSP violations chromium reports). Requests to any origin but
 * the test server's are aborted and recorded in page.offsite.
 */
export async function newPage(browser, { locale = 'en-US', viewport = { width: 1280, height: 800 }, deviceScaleFactor = 1, isMobile = false, hasTouch = false } = {}) {
  const context = await browser.newContext({ locale, viewport, deviceScaleFactor, isMobile, hasTouch, acceptDownloads: true });
  const page = await context.newPage();
  page.jsErrors = [];
  page.consoleErrors = [];
  page.offsite = [];
  page.on('pageerror', (e) => page.jsErrors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (m) => { if (m.type() === 'error') page.consoleErrors.push(m.text()); });
  await context.route(/^(?!http:\/\/127\.0\.0\.1[:/])/, (route) => {
    page.offsite.push(route.request().url());
    return route.abort();
  });
  page.closeAll = () => context.close();
  return page;
}

/**
 * Fails when the page logged an uncaught error, a console error or a request
 * to another origin. allow: regexps of console messages that are expected
 * (e.g. the failed fetches while the server restarts).
 */
export function assertClean(page, { allow = [] } = {}) {
  const consoleErrors = page.consoleErrors.filter((m) => !allow.some((re) => re.test(m)));
  assert.deepEqual(page.jsErrors, [], 'uncaught JavaScript errors');
  assert.deepEqual(consoleErrors, [], 'console errors (CSP violations are reported here)');
  assert.deepEqual(page.offsite, [], 'requests to other origins');
}

/**
 * Saves CCA_BROWSER_OUT/<name>.png, and a copy in CCA_SCREENSHOTS_DIR when
 * set (unless docs: false: a shot for the test's record only). Other options
 * go to page.screenshot().
 */
export async function shot(page, name, { docs: forDocs = true, ...opts } = {}) {
  const file = path.join(OUT, `${name}.png`);
  await page.screenshot({ path: file, ...opts });
  const docs = process.env.CCA_SCREENSHOTS_DIR;
  if (docs && forDocs) {
    fs.mkdirSync(docs, { recursive: true });
    fs.copyFileSync(file, path.join(docs, `${name}.png`));
  }
  return file;
}

// ---------------------------------------------------------------------------
// REST and SSE

/**
 * rest(server, method, path, body, {token, key, headers}): path under the
 * server (e.g. '/api/v1/health'); token → Authorization: Bearer, key →
 * X-API-Key (default: the client key, key: null sends none). Returns
 * {status, headers, json, text}.
 */
export async function rest(server, method, p, body, { token, key, headers = {} } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  else if (key !== null) h['X-API-Key'] = key || server.clientKey;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const res = await fetch(server.url + p, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { status: res.status, headers: res.headers, json, text };
}

/** rest() that asserts the status; returns the JSON. */
export async function restOk(server, method, p, body, opts = {}, expect = [200, 201, 202]) {
  const r = await rest(server, method, p, body, opts);
  assert.ok(expect.includes(r.status), `${method} ${p}: ${r.status} ${r.text}`);
  return r.json;
}

/**
 * Reads an SSE stream (e.g. the customer's /api/v1/dialogue/{id}/events)
 * with fetch: {events: [{id, type, data}], waitFor(pred, ms), close()}.
 * `data` is the parsed envelope's `data`.
 */
export function openSse(server, p, { key, token, lastEventId } = {}) {
  const controller = new AbortController();
  const events = [];
  const headers = { Accept: 'text/event-stream' };
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (key !== null) headers['X-API-Key'] = key || server.clientKey;
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  const stream = { events, status: null, closed: false };
  stream.ready = (async () => {
    const res = await fetch(server.url + p, { headers, signal: controller.signal });
    stream.status = res.status;
    if (!res.ok) throw new Error(`SSE ${p}: ${res.status}`);
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    stream.done = (async () => {
      let buf = '';
      let ev = { id: null, type: 'message', data: [] };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).replace(/\r$/, '');
            buf = buf.slice(i + 1);
            if (line === '') {
              if (ev.data.length) {
                let env = null;
                try { env = JSON.parse(ev.data.join('\n')); } catch { env = null; }
                events.push({ id: ev.id, type: ev.type, data: env && 'data' in env ? env.data : env });
              }
              ev = { id: null, type: 'message', data: [] };
            } else if (!line.startsWith(':')) {
              const c = line.indexOf(':');
              const f = c < 0 ? line : line.slice(0, c);
              const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (f === 'event') ev.type = v;
              else if (f === 'data') ev.data.push(v);
              else if (f === 'id') ev.id = v;
            }
          }
        }
      } catch (e) {
        if (e.name !== 'AbortError') throw e;
      } finally {
        stream.closed = true;
      }
    })();
  })();
  stream.waitFor = (pred, timeoutMs = 10000) => waitFor(() => events.find(pred), { timeoutMs, what: `an SSE event on ${p}` });
  stream.close = () => controller.abort();
  return stream;
}
