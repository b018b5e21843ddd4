// SPDX-License-Identifier: MIT
// The operator/admin console (/console) in a real browser (issue 14):
// an operator's whole dialog with a REST customer, sign-in variants,
// reconnecting after a server restart, customer text that tries to run
// script, the two languages, and the screenshots of docs/console/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, newPage, assertClean, shot, rest, restOk, openSse, waitFor, makeDemoData,
} from './harness.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });

/** Runs body(server) with a server that is removed afterwards (kept, with its path printed, on failure). */
async function withServer(opts, body) {
  const server = await startServer(opts);
  let ok = false;
  try {
    await body(server);
    ok = true;
  } finally {
    await server.cleanup(!ok);
  }
}

const api = (p) => `/api/v1${p}`;

async function createCustomerDialog(server, { name, customerId } = {}) {
  const body = { customer_info: { name: name || null } };
  if (customerId) body.customer_id = customerId;
  const d = await restOk(server, 'POST', api('/dialogue/create'), body);
  return d.dialog_id;
}

async function customerSays(server, id, message) {
  return restOk(server, 'POST', api(`/dialogue/${id}/message`), { message });
}

async function registerViaRest(server, name, extra = {}) {
  return restOk(server, 'POST', api('/operators/register'), { secret: server.secret, name, ...extra }, { key: null });
}

/** Signs in through the form with a token; resolves once the first load is in (the view is no longer busy). */
async function signInWithToken(page, token) {
  await page.check('#form-op input[name="method"][value="token"]');
  await page.fill('#in-token', token);
  await page.click('#op-submit');
  await page.waitForSelector(OPERATOR_READY);
}

const OPERATOR_READY = '#view-operator:not([hidden]):not([aria-busy])';

async function signInAdmin(page, key) {
  await page.click('#tab-admin');
  await page.fill('#in-key', key);
  await page.click('#form-admin button[type="submit"]');
  await page.waitForSelector('#view-admin:not([hidden])');
}

const item = (list, id) => `#${list} li[data-dialog-id="${id}"]`;

test('an operator answers a customer live; the customer gets it over REST and SSE; the rating reaches the dashboard', async () => {
  await withServer({}, async (server) => {
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console`);
    await page.waitForSelector('#view-signin:not([hidden])');
    assert.equal(await page.textContent('#signin-title'), 'Sign in');

    // Sign in with the registration secret: the console registers and shows the token once.
    await page.check('#form-op input[name="method"][value="secret"]');
    await page.fill('#in-secret', server.secret);
    await page.fill('#in-name', 'Anna Petrova');
    await page.click('#op-submit');
    await page.waitForSelector('#dlg-token[open]');
    const token = await page.inputValue('#dlg-token-value');
    assert.match(token, /^cco_[A-Za-z0-9_-]{43}$/);
    await page.click('#dlg-token-ok');
    await page.waitForSelector(OPERATOR_READY);
    assert.equal(await page.textContent('#who-name'), 'Anna Petrova');
    assert.ok(!page.url().includes(token), 'the token is not in the URL');
    const stored = await page.evaluate(() => sessionStorage.getItem('cca.console.session'));
    assert.ok(stored.includes(token), 'kept in sessionStorage ("stay signed in" ticked)');
    assert.equal(await page.evaluate(() => JSON.stringify(localStorage).includes('cco_')), false, 'never in localStorage');
    await page.waitForSelector('#conn[data-state="live"]');

    // Available, through the switch.
    await page.click('.seg-available');
    await waitFor(async () => (await rest(server, 'GET', api('/operators/me'), undefined, { token })).json.status === 'available',
      { what: 'the operator to be available' });
    assert.equal(await page.isChecked('input[name="opstatus"][value="available"]'), true);

    // A customer over REST asks for a human: the dialog appears without a reload.
    await page.evaluate(() => { window.__sameDocument = 42; });
    const id = await createCustomerDialog(server, { name: 'Ivan Sidorov', customerId: 'cust-ivan' });
    const asked = await customerSays(server, id, 'I want to talk to a human, please');
    assert.equal(asked.status, 'assigned');
    await page.waitForSelector(item('my-list', id), { timeout: 10000 });
    assert.equal(await page.evaluate(() => window.__sameDocument), 42, 'no reload');
    assert.match(await page.textContent(item('my-list', id)), /Ivan Sidorov/);

    await page.click(`${item('my-list', id)} .ditem-open`);
    await page.waitForSelector('#messages li[data-role="customer"]');
    assert.match(await page.textContent('#messages'), /I want to talk to a human, please/);
    assert.equal(await page.textContent('#conv-title'), 'Ivan Sidorov');
    // The customer's profile (they have a customer_id) is shown beside.
    await page.waitForFunction(() => document.querySelector('#profile').textContent.includes('cust-ivan'));

    // The customer listens on their stream; the operator types two lines (Shift+Enter) and sends (Enter).
    const sse = openSse(server, api(`/dialogue/${id}/events`));
    await sse.ready;
    await page.focus('#reply-text');
    await page.keyboard.type('Hello Ivan, this is Anna.');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('How can I help?');
    // Shift+Enter made a new line in the box (had it sent, the box would have been emptied,
    // and the first operator message below would be the first line alone).
    assert.equal(await page.inputValue('#reply-text'), 'Hello Ivan, this is Anna.\nHow can I help?');
    await page.keyboard.press('Enter');
    const replyText = 'Hello Ivan, this is Anna.\nHow can I help?';

    const polled = await waitFor(async () => {
      const r = await restOk(server, 'GET', api(`/dialogue/${id}/messages?after=${asked.message_id}`));
      return r.items.find((m) => m.role === 'operator');
    }, { what: 'the reply in the REST poll' });
    assert.equal(polled.content, replyText);
    assert.equal(polled.operator_name, 'Anna Petrova');
    const pushed = await sse.waitFor((e) => e.type === 'message' && e.data.role === 'operator');
    assert.equal(pushed.data.content, replyText);
    assert.equal(pushed.data.id, polled.id);
    // The box is emptied once the console has its answer (which may come after the poll's).
    await page.waitForFunction(() => document.querySelector('#reply-text').value === '');
    await page.waitForSelector(`#messages li[data-id="${polled.id}"]`);
    const ops = await restOk(server, 'GET', api(`/dialogue/${id}`));
    assert.equal(ops.messages.filter((m) => m.role === 'operator').length, 1, 'Enter sent once');

    // The customer answers: it shows up live in the open conversation.
    await customerSays(server, id, 'My invoice for October never arrived');
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('My invoice for October never arrived'));

    await shot(page, 'operator-dialog-test', { docs: false });

    // Close with a reason.
    await page.click('#act-close');
    await page.waitForSelector('#dlg-close[open]');
    await page.check('#close-form input[name="reason"][value="resolved"]');
    await page.click('#close-form button[type="submit"]');
    await page.waitForSelector('#dlg-close[open]', { state: 'detached' });
    const closed = await restOk(server, 'GET', api(`/dialogue/${id}`));
    assert.equal(closed.status, 'closed');
    assert.equal(closed.close_reason, 'resolved');
    await page.waitForSelector(item('closed-list', id));
    assert.equal(await page.$(item('my-list', id)), null);
    const closedEvent = await sse.waitFor((e) => e.type === 'closed');
    assert.equal(closedEvent.data.dialog_id, id);
    sse.close();

    // The customer rates over REST: the operator sees it on the closed dialog
    // (the `rated` event) and in their CSAT; the admin dashboard shows it.
    assert.equal(await page.$(`${item('closed-list', id)} [data-rating]`), null);
    await restOk(server, 'POST', api(`/dialogue/${id}/rating`), { score: 4, comment: 'Quick, thanks' });
    await page.waitForSelector(`${item('closed-list', id)} [data-rating="4"]`);
    await page.waitForFunction(() => document.querySelector('#my-csat').textContent.includes('4'));
    await page.click(`${item('closed-list', id)} .ditem-open`);
    await page.waitForFunction(() => document.querySelector('#dialog-info').textContent.includes('Quick, thanks'));
    await page.click('#signout');
    await page.waitForSelector('#view-signin:not([hidden])');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('cca.console.session')), null, 'signing out forgets the token');
    await signInAdmin(page, server.adminKey);
    await page.waitForFunction(() => {
      const svg = document.querySelector('#ch-csat svg');
      return svg && svg.getAttribute('aria-label').includes('4 ★: 1');
    }, null, { timeout: 15000 });
    const label = await page.getAttribute('#ch-csat svg', 'aria-label');
    assert.match(label, /1 ★: 0, 2 ★: 0, 3 ★: 0, 4 ★: 1, 5 ★: 0/);
    assert.match(await page.textContent('#kpis'), /CSAT\s*4/);
    assert.ok(!page.url().includes(server.adminKey));
    assertClean(page);
    await page.closeAll();
  });
});

test('sign-in by PIN, by pasting a token, and the refusals', async () => {
  await withServer({}, async (server) => {
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console/`);
    await page.waitForSelector('#view-signin:not([hidden])');

    // A wrong PIN is refused on the form.
    await page.check('#form-op input[name="method"][value="pin"]');
    assert.equal(await page.isVisible('#in-token'), false);
    await page.fill('#in-pin', '000');
    await page.fill('#in-name', 'Boris');
    await page.click('#op-submit');
    await page.waitForFunction(() => document.querySelector('#op-error').textContent.length > 0);
    assert.match(await page.textContent('#op-error'), /not accepted/);

    // The right PIN registers Boris and shows his token once.
    await page.fill('#in-pin', server.pin);
    await page.click('#op-submit');
    await page.waitForSelector('#dlg-token[open]');
    const token = await page.inputValue('#dlg-token-value');
    assert.match(token, /^cco_/);
    await page.keyboard.press('Enter'); // the dialog's default button
    await page.waitForSelector(OPERATOR_READY);
    const me = await restOk(server, 'GET', api('/operators/me'), undefined, { token });
    assert.equal(me.name, 'Boris');
    assert.equal(await page.textContent('#who-name'), 'Boris');

    // A reload keeps the session (sessionStorage); signing out ends it.
    await page.reload();
    await page.waitForSelector(OPERATOR_READY);
    await page.click('#signout');
    await page.waitForSelector('#view-signin:not([hidden])');

    // A wrong token, then the token pasted.
    await signInWithTokenExpectError(page, 'cco_' + 'x'.repeat(43));
    assert.match(await page.textContent('#op-error'), /not valid/);
    await page.uncheck('#form-op input[name="remember"]');
    await signInWithToken(page, token);
    assert.equal(await page.textContent('#who-name'), 'Boris');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('cca.console.session')), null, 'memory only when not remembered');

    // Revoked by an admin: the console notices (401) and returns to the sign-in.
    await restOk(server, 'DELETE', api(`/operators/${me.operator_id}`), undefined, { key: server.adminKey });
    await page.click('.seg-busy');
    await page.waitForSelector('#view-signin:not([hidden])');
    assert.match(await page.textContent('#op-error'), /no longer valid/);

    // A client key is not an admin key; no key at all is refused too.
    await page.click('#tab-admin');
    await page.fill('#in-key', server.clientKey);
    await page.click('#form-admin button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#admin-error').textContent.length > 0);
    assert.match(await page.textContent('#admin-error'), /not an admin key/);
    await page.fill('#in-key', 'wrong');
    await page.click('#form-admin button[type="submit"]');
    await page.waitForFunction(() => /not accepted/.test(document.querySelector('#admin-error').textContent));
    // The refusals (401/403) show in the console as failed loads; nothing else may.
    assertClean(page, { allow: [/Failed to load resource: the server responded with a status of 40[13]/] });
    await page.closeAll();
  });
});

async function signInWithTokenExpectError(page, token) {
  await page.check('#form-op input[name="method"][value="token"]');
  await page.fill('#in-token', token);
  await page.click('#op-submit');
  await page.waitForFunction(() => document.querySelector('#op-error').textContent.length > 0);
}

test('the console reconnects after a server restart and reloads what it missed', async () => {
  await withServer({}, async (server) => {
    const reg = await registerViaRest(server, 'Olga');
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'busy' }, { token: reg.token });
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console`);
    await signInWithToken(page, reg.token);
    await page.waitForSelector('#conn[data-state="live"]');
    assert.equal(await page.textContent('#conn-text'), 'Live');
    await page.evaluate(() => { window.__sameDocument = 7; });

    // Olga is busy: a customer waits in the queue, and the console shows it live
    // (so it holds an event id to resume from).
    const waiting = await createCustomerDialog(server, { name: 'Queued Before' });
    assert.equal((await customerSays(server, waiting, 'talk to a human')).status, 'queued');
    await page.waitForSelector(item('queue-list', waiting));

    // The server goes away and comes back on the same port and storage.
    const restarting = server.restart();
    await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 10000 });
    assert.match(await page.textContent('#conn-text'), /reconnecting/i);
    await restarting;

    // Meanwhile Olga becomes available (from another device): the queued dialog and a new
    // one are assigned to her. The console reconnects with Last-Event-ID, gets `resync`
    // (a new epoch) and must bring both in over REST.
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'available' }, { token: reg.token });
    const id = await createCustomerDialog(server, { name: 'Missed While Away' });
    assert.equal((await customerSays(server, id, 'talk to a human')).status, 'assigned');
    const stateThen = await page.getAttribute('#conn', 'data-state');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    await page.waitForSelector(item('my-list', id), { timeout: 10000 });
    await page.waitForSelector(item('my-list', waiting), { timeout: 10000 });
    await page.waitForSelector(item('queue-list', waiting), { state: 'detached' });
    assert.equal(await page.isChecked('input[name="opstatus"][value="available"]'), true);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    const resyncs = Number((/^cca_event_resyncs_total (\d+)/m.exec(metrics) || [])[1]);
    assert.ok(resyncs >= 1, `the console resumed with Last-Event-ID and got a resync (cca_event_resyncs_total ${resyncs}; state when assigned: ${stateThen})`);

    // New events arrive live again, without a reload.
    await page.click(`${item('my-list', id)} .ditem-open`);
    await customerSays(server, id, 'Are you still there?');
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('Are you still there?'));
    const id2 = await createCustomerDialog(server, { name: 'After The Restart' });
    await customerSays(server, id2, 'operator');
    await page.waitForSelector(item('my-list', id2));
    assert.equal(await page.evaluate(() => window.__sameDocument), 7, 'no reload');
    // While the server was down the stream's fetches failed; those are the only errors allowed.
    assertClean(page, { allow: [/Failed to load resource: net::ERR_CONNECTION_REFUSED/, /Failed to load resource: the server responded with a status of 503/] });
    await page.closeAll();
  });
});

test('a console that had received no event yet reloads after a reconnect', async () => {
  await withServer({}, async (server) => {
    const reg = await registerViaRest(server, 'Pavel');
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'available' }, { token: reg.token });
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console`);
    await signInWithToken(page, reg.token);
    await page.waitForSelector('#conn[data-state="live"]');
    // The stream is dropped by the server (SIGKILL this time) before any event reached the console.
    await server.kill();
    await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 10000 });
    await server.start();
    const id = await createCustomerDialog(server, { name: 'No Event Id' });
    assert.equal((await customerSays(server, id, 'talk to a human')).status, 'assigned');
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    await page.waitForSelector(item('my-list', id), { timeout: 10000 });
    assertClean(page, { allow: [/Failed to load resource: net::ERR_(CONNECTION_REFUSED|INCOMPLETE_CHUNKED_ENCODING)/] });
    await page.closeAll();
  });
});

const resyncCount = async (server) => {
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  return Number((/^cca_event_resyncs_total (\d+)/m.exec(metrics) || [])[1] || 0);
};

test('offline and back: the stream resumes with Last-Event-ID (no resync); unread and waiting badges', async () => {
  await withServer({}, async (server) => {
    const reg = await registerViaRest(server, 'Rita');
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'available' }, { token: reg.token });
    const page = await newPage(browser, { locale: 'en-US' });
    const lastIds = []; // the Last-Event-ID of each stream request
    page.on('request', (r) => { if (r.url().endsWith('/api/v1/operators/me/events')) lastIds.push(r.headers()['last-event-id'] || null); });
    await page.goto(`${server.url}/console`);
    await signInWithToken(page, reg.token);
    await page.waitForSelector('#conn[data-state="live"]');
    await page.evaluate(() => { window.__sameDocument = 5; });

    // A dialog assigned live (the console now holds an event id); nothing is selected.
    const id = await createCustomerDialog(server, { name: 'Offline Olivia' });
    assert.equal((await customerSays(server, id, 'talk to a human')).status, 'assigned');
    const li = item('my-list', id);
    await page.waitForSelector(li);
    // Its one unanswered message counts as new; the number is shown, the words are for screen readers.
    await page.waitForFunction((sel) => document.querySelector(`${sel} .badge-unread [aria-hidden="true"]`)?.textContent === '1', li);
    assert.equal(await page.textContent(`${li} .badge-unread .sr-only`), '1 new');
    // The waiting time shows and ticks.
    const wait0 = await page.textContent(`${li} .badge-wait`);
    assert.match(wait0, /^waiting \d+ s$/);
    await page.waitForFunction(([sel, w]) => {
      const t = document.querySelector(`${sel} .badge-wait`)?.textContent;
      return t && t !== w && /^waiting \d+ s$/.test(t);
    }, [li, wait0], { timeout: 5000 });

    const resyncsBefore = await resyncCount(server);
    // The browser goes offline: the stream is dropped; a message is published meanwhile.
    await page.context().setOffline(true);
    await page.waitForSelector('#conn[data-state="offline"]', { timeout: 10000 });
    await customerSays(server, id, 'written while you were offline');
    await page.context().setOffline(false);
    // Back online: reconnected at once with Last-Event-ID; the server replays the missed event.
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 10000 });
    await page.waitForFunction((sel) => document.querySelector(`${sel} .badge-unread [aria-hidden="true"]`)?.textContent === '2', li);
    assert.equal(await resyncCount(server), resyncsBefore, 'resumed from the last event id, not resynced');
    assert.equal(lastIds[0], null, 'the first connection has no id to send');
    assert.match(lastIds.at(-1) || '', /^[0-9a-f]+-\d+$/, `the reconnect sent Last-Event-ID (${JSON.stringify(lastIds)})`);

    // Opening the dialog clears the count; the missed message is there.
    await page.click(`${li} .ditem-open`);
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('written while you were offline'));
    await page.waitForSelector(`${li} .badge-unread`, { state: 'detached' });
    // A message to the open dialog is not counted.
    await customerSays(server, id, 'and one more');
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('and one more'));
    assert.equal(await page.$(`${li} .badge-unread`), null);
    assert.equal(await page.evaluate(() => window.__sameDocument), 5, 'no reload');
    assertClean(page, { allow: [/Failed to load resource: net::ERR_INTERNET_DISCONNECTED/] });
    await page.closeAll();
  });
});

test('a first load that fails returns to the sign-in, saying why, and leaves nothing running', async () => {
  await withServer({}, async (server) => {
    const reg = await registerViaRest(server, 'Fedor');
    const page = await newPage(browser, { locale: 'en-US' });
    const streams = [];
    page.on('request', (r) => { if (r.url().endsWith('/api/v1/operators/me/events')) streams.push(r.url()); });
    // The queue answers 503 once.
    let failed = 0;
    await page.route('**/api/v1/queue?*', (route) => {
      if (failed++ === 0) return route.fulfill({ status: 503, contentType: 'application/json', body: '{"code":"unavailable","detail":"try later"}' });
      return route.continue();
    });
    await page.goto(`${server.url}/console`);
    await page.check('#form-op input[name="method"][value="token"]');
    await page.fill('#in-token', reg.token);
    await page.click('#op-submit');
    await page.waitForFunction(() => /try later/.test(document.querySelector('#op-error').textContent));
    assert.equal(await page.isVisible('#view-signin'), true);
    assert.equal(await page.isVisible('#conn'), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('cca.console.session')), null);
    // Signing in again works; the failed session's stream was stopped (one stream per sign-in).
    await signInWithToken(page, reg.token);
    await page.waitForSelector('#conn[data-state="live"]');
    assert.equal(await page.inputValue('#in-token'), '', 'the token is not left in the form');
    assert.equal(streams.length, 2, `event streams opened: ${streams.length}`);
    assertClean(page, { allow: [/status of 503/] });
    await page.closeAll();
  });
});

test('customer text that looks like HTML is shown as text and never runs', async () => {
  await withServer({}, async (server) => {
    const reg = await registerViaRest(server, 'Xenia');
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console`);
    await signInWithToken(page, reg.token);
    await page.waitForSelector('#conn[data-state="live"]');

    const evilName = '<img src=x onerror="window.__xss=1">';
    const img = '<img src=x onerror="window.__xss=1">';
    const script = '<script>window.__xss=2</script>';
    const id = await createCustomerDialog(server, { name: evilName, customerId: 'cust-xss' });
    const city = '<svg onload="window.__xss=3">';
    const put = await rest(server, 'PUT', api('/customers/cust-xss'), { city }, { key: server.adminKey });
    assert.ok([200, 201].includes(put.status), put.text);
    await customerSays(server, id, img);
    // Nobody is available: the dialog waits in the queue, where the console shows its name and last words.
    assert.equal((await customerSays(server, id, `talk to a human ${script}`)).status, 'queued');
    await page.waitForSelector(item('queue-list', id));
    assert.ok((await page.textContent(item('queue-list', id))).includes(evilName));

    // Opened while it waits, the dialog follows what the customer writes (no event tells of it).
    await page.click(`${item('queue-list', id)} .ditem-open`);
    await page.waitForSelector('#take-box:not([hidden])');
    await customerSays(server, id, 'still waiting');
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('still waiting'), null, { timeout: 12000 });
    await page.waitForFunction((sel) => document.querySelector(`${sel} .ditem-preview`).textContent === 'still waiting', item('queue-list', id));

    await page.click(`${item('queue-list', id)} .ditem-take`);
    await page.waitForSelector(item('my-list', id));
    await page.waitForSelector('#messages li[data-role="customer"]');
    await customerSays(server, id, script);
    await page.waitForFunction((s) => [...document.querySelectorAll('#messages .msg-body')].some((p) => p.textContent === s), script);
    await page.waitForFunction((c) => document.querySelector('#profile').textContent.includes(c), city);

    const bodies = await page.$$eval('#messages li[data-role="customer"] .msg-body', (ps) => ps.map((p) => p.textContent));
    assert.deepEqual(bodies, [img, `talk to a human ${script}`, 'still waiting', script]);
    assert.equal(await page.textContent('#conv-title'), evilName);
    assert.equal(await page.$$eval('#main img, #main script, #main svg [onload]', (x) => x.length), 0, 'no element was made from customer text');
    assert.equal(await page.$$eval('#messages *', (els) => els.filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    await shot(page, 'xss-as-text', { docs: false });
    assertClean(page);
    await page.closeAll();

    // An operator name registered by the admin is text in the operators table.
    const admin = await newPage(browser, { locale: 'en-US' });
    await admin.goto(`${server.url}/console`);
    await signInAdmin(admin, server.adminKey);
    await admin.click('#atab-ops');
    const evilOperator = '<img src=x onerror=window.__xss=3>';
    await admin.fill('#reg-name', evilOperator);
    await admin.click('#reg-form button[type="submit"]');
    await admin.waitForSelector('#dlg-token[open]');
    await admin.click('#dlg-token-ok');
    assert.equal(await admin.inputValue('#dlg-token-value'), '', 'the token is not left in the closed dialog');
    await admin.waitForFunction((n) => [...document.querySelectorAll('#ops-body td strong')].some((e) => e.textContent === n), evilOperator);
    assert.equal(await admin.$$eval('#ops-body img, #main img', (x) => x.length), 0);
    assert.equal(await admin.evaluate(() => window.__xss), undefined);
    assertClean(admin);
    await admin.closeAll();
  });
});

test('Russian and English: the browser language first, then the switch, remembered', async () => {
  await withServer({}, async (server) => {
    const ru = await newPage(browser, { locale: 'ru-RU' });
    await ru.goto(`${server.url}/console`);
    await ru.waitForSelector('#view-signin:not([hidden])');
    assert.equal(await ru.textContent('#signin-title'), 'Вход');
    assert.equal(await ru.getAttribute('html', 'lang'), 'ru');
    assert.equal(await ru.inputValue('#lang'), 'ru');
    await ru.selectOption('#lang', 'en');
    assert.equal(await ru.textContent('#signin-title'), 'Sign in');
    assert.equal(await ru.getAttribute('html', 'lang'), 'en');
    await ru.reload();
    await ru.waitForSelector('#view-signin:not([hidden])');
    assert.equal(await ru.textContent('#signin-title'), 'Sign in', 'the choice is remembered');
    // Signed in, the operator view follows the switch too.
    const reg = await registerViaRest(server, 'Лена');
    await signInWithToken(ru, reg.token);
    await ru.selectOption('#lang', 'ru');
    assert.equal(await ru.textContent('#take-next'), 'Взять следующий');
    await ru.waitForSelector('#conn[data-state="live"]');
    assert.equal(await ru.textContent('#conn-text'), 'На связи');
    assertClean(ru);
    await ru.closeAll();

    const en = await newPage(browser, { locale: 'en-GB' });
    const res = await en.goto(`${server.url}/console`);
    const csp = res.headers()['content-security-policy'] || '';
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    await en.waitForSelector('#view-signin:not([hidden])');
    assert.equal(await en.textContent('#signin-title'), 'Sign in');
    await shot(en, 'sign-in');
    assertClean(en);
    await en.closeAll();
  });
});

test('transfer to another operator and hand back to the AI from the console; Escape closes a dialog', async () => {
  await withServer({}, async (server) => {
    const anna = await registerViaRest(server, 'Anna', { max_dialogs: 2 });
    const boris = await registerViaRest(server, 'Boris');
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'available' }, { token: anna.token });
    const page = await newPage(browser, { locale: 'en-US' });
    await page.goto(`${server.url}/console`);
    await signInWithToken(page, anna.token);
    await page.waitForSelector('#conn[data-state="live"]');
    const first = await createCustomerDialog(server, { name: 'To Be Transferred' });
    await customerSays(server, first, 'talk to a human');
    const second = await createCustomerDialog(server, { name: 'Back To The AI' });
    await customerSays(server, second, 'talk to a human');
    await page.waitForSelector(item('my-list', first));
    await page.waitForSelector(item('my-list', second));
    // Boris comes on shift only now, so both went to Anna.
    await restOk(server, 'PUT', api('/operators/me/status'), { status: 'available' }, { token: boris.token });

    // Escape closes the transfer dialog without doing anything.
    await page.click(`${item('my-list', first)} .ditem-open`);
    await page.click('#act-transfer');
    await page.waitForSelector('#dlg-transfer[open]');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'transfer-id', 'the dialog focuses its field');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#dlg-transfer[open]', { state: 'detached' });
    assert.equal((await restOk(server, 'GET', api(`/dialogue/${first}`))).owner.operator_id, anna.operator_id);

    // Transfer: the colleagues list (GET /operators/team) offers Boris by name, not Anna.
    await page.click('#act-transfer');
    await page.waitForSelector('#dlg-transfer[open]');
    const options = await page.$$eval('#transfer-id option', (els) => els.map((e) => [e.value, e.textContent]));
    assert.deepEqual(options.map(([v]) => v), [boris.operator_id], JSON.stringify(options));
    assert.match(options[0][1], /^Boris — Available, 0\/3$/);
    await page.selectOption('#transfer-id', boris.operator_id);
    await page.click('#transfer-form button[type="submit"]');
    await page.waitForSelector('#dlg-transfer[open]', { state: 'detached' });
    // The focus does not drop to <body>: it goes to the conversation.
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'messages');
    const moved = await restOk(server, 'GET', api(`/dialogue/${first}`));
    assert.equal(moved.owner.operator_id, boris.operator_id);
    await page.waitForSelector(item('closed-list', first));
    assert.equal(await page.$(item('my-list', first)), null);

    // Hand back to the AI, to sales.
    await page.click(`${item('my-list', second)} .ditem-open`);
    await page.click('#act-handback');
    await page.selectOption('#handback-agent', 'sales');
    await page.click('#handback-form button[type="submit"]');
    await page.waitForSelector('#dlg-handback[open]', { state: 'detached' });
    await page.waitForFunction(() => document.activeElement && document.activeElement.id === 'messages');
    const back = await restOk(server, 'GET', api(`/dialogue/${second}`));
    assert.equal(back.owner.kind, 'agent');
    assert.equal(back.current_agent, 'sales');
    await page.waitForSelector(item('closed-list', second));
    assertClean(page);
    await page.closeAll();
  });
});

/** The operator tokens printed by demo-data: operator_id -> token. */
function demoTokens(output) {
  const out = new Map();
  for (const m of output.matchAll(/^\s+.+?\s+([0-9a-f-]{36})\s+(cco_[A-Za-z0-9_-]+)\s*$/gm)) out.set(m[1], m[2]);
  return out;
}

test('with demo data: the dashboard, operators, exports, and the screenshots of docs/console', async () => {
  const demo = await makeDemoData();
  try {
    await withServer({ storageDir: demo.storageDir }, async (server) => {
      const tokens = demoTokens(demo.output);
      assert.equal(tokens.size, 5, demo.output.slice(-1500));
      const stats = await restOk(server, 'GET', api('/stats'), undefined, { key: server.adminKey });
      const operators = (await restOk(server, 'GET', api('/operators'), undefined, { key: server.adminKey })).items;

      // The admin's dashboard: the figures are the server's.
      const admin = await newPage(browser, { locale: 'en-US' });
      const urls = [];
      admin.on('request', (r) => urls.push(r.url()));
      await admin.goto(`${server.url}/console`);
      await signInAdmin(admin, server.adminKey);
      const dist = stats.csat.distribution;
      const expected = [1, 2, 3, 4, 5].map((n) => `${n} ★: ${dist[n]}`).join(', ');
      await admin.waitForFunction((e) => {
        const svg = document.querySelector('#ch-csat svg');
        return svg && svg.getAttribute('aria-label').includes(e);
      }, expected);
      await admin.waitForSelector('#ch-day svg');
      await admin.waitForSelector('#ch-wait svg');
      await admin.waitForSelector('#ch-queue svg');
      assert.match(await admin.getAttribute('#ch-channel svg', 'aria-label'), new RegExp(`web ${stats.dialogs.by_channel.web}`));
      assert.match(await admin.textContent('#kpis'), new RegExp(`Dialogs\\s*${stats.dialogs.total}`));
      await shot(admin, 'admin-dashboard', { fullPage: true });

      // Operators: every one listed with status and load.
      await admin.click('#atab-ops');
      await admin.waitForFunction((n) => document.querySelectorAll('#ops-body tr').length === n, operators.length);
      // (The table refreshes every 5 s; the server may move a dialog meanwhile, so compare with a fresh answer.)
      await waitFor(async () => {
        const now = (await restOk(server, 'GET', api('/operators'), undefined, { key: server.adminKey })).items;
        for (const o of now) {
          const row = await admin.textContent(`#ops-body tr[data-operator-id="${o.operator_id}"]`);
          const status = { available: 'Available', busy: 'Busy', offline: 'Offline' }[o.status];
          if (!(row.includes(o.name) && row.includes(`${o.open_dialogs} / ${o.max_dialogs}`) && row.includes(status))) throw new Error(row);
        }
        return true;
      }, { timeoutMs: 12000, what: 'the operators table to match GET /operators' });
      await shot(admin, 'admin-operators');

      // Register one from the form: the token is shown once and works; then revoke it.
      await admin.fill('#reg-name', 'Nina New');
      await admin.fill('#reg-max', '2');
      await admin.click('#reg-form button[type="submit"]');
      await admin.waitForSelector('#dlg-token[open]');
      const nina = await admin.inputValue('#dlg-token-value');
      await admin.click('#dlg-token-ok');
      const ninaMe = await restOk(server, 'GET', api('/operators/me'), undefined, { token: nina });
      assert.equal(ninaMe.name, 'Nina New');
      assert.equal(ninaMe.max_dialogs, 2);
      await admin.waitForSelector(`#ops-body tr[data-operator-id="${ninaMe.operator_id}"]`);
      await admin.click(`#ops-body tr[data-operator-id="${ninaMe.operator_id}"] button`);
      await admin.waitForSelector('#dlg-confirm[open]');
      await admin.click('#dlg-confirm-ok');
      await admin.waitForSelector(`#ops-body tr[data-operator-id="${ninaMe.operator_id}"]`, { state: 'detached' });
      assert.equal((await rest(server, 'GET', api('/operators/me'), undefined, { token: nina })).status, 401);

      // Exports download through fetch + Blob: the file is the server's, the key never in a URL.
      await admin.click('#atab-exp');
      const [download] = await Promise.all([admin.waitForEvent('download'), admin.click('[data-export="dialogs"][data-format="csv"]')]);
      const csv = await (await import('node:fs')).promises.readFile(await download.path(), 'utf8');
      const lines = csv.trim().split('\r\n');
      assert.match(lines[0], /^dialog_id,customer_id,customer_name,/);
      assert.equal(lines.length, stats.dialogs.total + 1);
      assert.match(download.suggestedFilename(), /^dialogs.*\.csv$/);
      const [download2] = await Promise.all([admin.waitForEvent('download'), admin.click('[data-export="profiles"][data-format="ndjson"]')]);
      const nd = (await (await import('node:fs')).promises.readFile(await download2.path(), 'utf8')).trim().split('\n');
      assert.equal(nd.length, 5 + 10, 'five operators and ten customers');
      assert.equal(urls.filter((u) => u.includes(server.adminKey)).length, 0, 'the admin key is never in a URL');
      assertClean(admin);
      await admin.closeAll();

      // The operator with the most open dialogs, in their console.
      const busiest = [...operators].sort((a, b) => b.open_dialogs - a.open_dialogs)[0];
      assert.ok(busiest.open_dialogs > 0, 'demo data has assigned dialogs');
      const token = tokens.get(busiest.operator_id);
      const op = await newPage(browser, { locale: 'en-US' });
      await op.goto(`${server.url}/console`);
      await signInWithToken(op, token);
      await op.waitForSelector('#conn[data-state="live"]');
      await op.waitForSelector('#my-list li');
      await op.waitForSelector('#queue-list li');
      await op.click('#my-list li .ditem-open');
      await op.waitForSelector('#messages li');
      await op.waitForFunction(() => document.querySelector('#earlier').children.length > 0);
      await shot(op, 'operator-dialog');
      await op.click('#queue-list li .ditem-open');
      await op.waitForSelector('#take-box:not([hidden])');
      await op.waitForSelector('#messages li');
      await shot(op, 'operator-queue');
      assertClean(op);
      await op.closeAll();

      // A phone: the list first, then the conversation alone with a way back.
      const phone = await newPage(browser, { locale: 'ru-RU', viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
      await phone.goto(`${server.url}/console`);
      await signInWithToken(phone, token);
      await phone.waitForSelector('#my-list li');
      assert.equal(await phone.isVisible('#conv'), false, 'the conversation waits until a dialog is chosen');
      await phone.click('#my-list li .ditem-open');
      await phone.waitForSelector('#messages li');
      assert.equal(await phone.isVisible('.sidebar'), false);
      assert.equal(await phone.isVisible('#conv-back'), true);
      const width = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `no sideways scrolling (${width}px)`);
      await shot(phone, 'operator-phone');
      await phone.click('#conv-back');
      await phone.waitForSelector('.sidebar', { state: 'visible' });
      assertClean(phone);
      await phone.closeAll();
    });
  } finally {
    demo.cleanup();
  }
});
