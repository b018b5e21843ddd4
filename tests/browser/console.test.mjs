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

/** Signs in through the form with a token. */
async function signInWithToken(page, token) {
  await page.check('#form-op input[name="method"][value="token"]');
  await page.fill('#in-token', token);
  await page.click('#op-submit');
  await page.waitForSelector('#view-operator:not([hidden])');
}

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
    await page.waitForSelector('#view-operator:not([hidden])');
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
    const before = await restOk(server, 'GET', api(`/dialogue/${id}/messages?after=${asked.message_id}`));
    assert.equal(before.items.filter((m) => m.role === 'operator').length, 0, 'Shift+Enter did not send');
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
    assert.equal(await page.inputValue('#reply-text'), '', 'the box is emptied');
    await page.waitForSelector(`#messages li[data-id="${polled.id}"]`);
    const ops = await restOk(server, 'GET', api(`/dialogue/${id}`));
    assert.equal(ops.messages.filter((m) => m.role === 'operator').length, 1, 'Enter sent once');

    // The customer answers: it shows up live in the open conversation.
    await customerSays(server, id, 'My invoice for October never arrived');
    await page.waitForFunction(() => document.querySelector('#messages').textContent.includes('My invoice for October never arrived'));

    await shot(page, 'operator-dialog-test');

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

    // The customer rates over REST; the admin dashboard shows it.
    await restOk(server, 'POST', api(`/dialogue/${id}/rating`), { score: 4, comment: 'Quick, thanks' });
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
