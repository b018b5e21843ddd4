// SPDX-License-Identifier: MIT
// /docs in a real browser: Swagger UI renders the embedded openapi.yaml with
// no request to another origin and nothing blocked by the page's CSP, lists
// every operation of the document, and calls this server with a key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, launchBrowser, newPage, assertClean, shot } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.cleanup(); // stops it and removes its temporary directory
});

// "METHOD /path" for every operation of the YAML document (the paths section:
// two-space path keys, four-space method keys).
function operations(yaml) {
  const ops = [];
  let inPaths = false;
  let path = null;
  for (const line of yaml.split('\n')) {
    if (/^\S/.test(line)) inPaths = line.startsWith('paths:');
    if (!inPaths) continue;
    const p = /^  (\/\S*):\s*$/.exec(line);
    if (p) path = p[1];
    const m = /^    (get|put|post|delete|patch|head|options):\s*$/.exec(line);
    if (m && path) ops.push(`${m[1].toUpperCase()} ${path}`);
  }
  return ops.sort();
}

test('/docs renders every operation of openapi.yaml, offline, within the CSP', async () => {
  const page = await newPage(browser);
  const resp = await page.goto(`${server.url}/docs`);
  assert.equal(resp.status(), 200);
  const csp = resp.headers()['content-security-policy'] ?? '';
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);

  const yaml = await (await fetch(`${server.url}/openapi.yaml`)).text();
  const want = operations(yaml);
  assert.ok(want.length >= 50, `only ${want.length} operations parsed from openapi.yaml`);
  await page.waitForSelector('.opblock', { timeout: 30000 });
  const shown = (
    await page.$$eval('.opblock', (els) =>
      els.map(
        (e) =>
          `${e.querySelector('.opblock-summary-method').textContent} ` +
          e.querySelector('.opblock-summary-path').getAttribute('data-path'),
      ),
    )
  ).sort();
  assert.deepEqual(shown, want);
  await shot(page, 'api-docs', { docs: false }); // the build's output only
  assertClean(page); // no JS error, no CSP violation, no request to another origin
  await page.close();
});

test('/docs calls the API with a key ("Authorize", then "Try it out")', async () => {
  const page = await newPage(browser);
  await page.goto(`${server.url}/docs`);
  await page.waitForSelector('.opblock', { timeout: 30000 });
  // GET /api/v1/health/detailed needs a client key when the server has keys.
  const op = page.locator('#operations-health-getHealthDetailed');
  await op.locator('.opblock-summary-control').click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  await op.getByRole('button', { name: 'Execute' }).click();
  await assert.doesNotReject(
    op.locator('.live-responses-table .response-col_status', { hasText: '401' }).first()
      .waitFor({ timeout: 15000 }),
    'without a key the server answers 401',
  );

  await page.locator('.btn.authorize').first().click();
  const bearer = page.locator('.modal-ux .auth-container').filter({ hasText: 'bearerAuth' });
  await bearer.locator('input').fill(server.clientKey);
  await bearer.locator('button.authorize').click();
  await page.locator('.modal-ux .btn-done, .modal-ux button.close-modal').first().click();

  await op.getByRole('button', { name: 'Execute' }).click();
  await op.locator('.live-responses-table .response-col_status', { hasText: '200' }).first()
    .waitFor({ timeout: 15000 });
  const body = await op.locator('.live-responses-table .response-col_description pre')
    .first().textContent();
  assert.match(body, /"status"/);
  // The 401 above is logged by chromium as a failed resource load; nothing else may be.
  assertClean(page, { allow: [/status of 401/] });
  await page.close();
});
