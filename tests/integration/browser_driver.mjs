// Headless Chromium (Debian's /usr/bin/chromium) driven through playwright-core, for the web
// app's tests: a JSON-lines RPC on stdin/stdout so that the Python tests, which run the
// server and the fake devices, decide every step. One request per line:
//   {"id": 1, "cmd": "goto", "args": {"url": "https://..."}}
// answered by {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}.
// Started by browser_harness.py with NODE_PATH pointing at the playwright-core install.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(path.join(process.env.NODE_PATH || '.', 'noop.js'));
const { chromium } = require('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const userDataDir = mkdtempSync(path.join(tmpdir(), 'tether-chromium-'));
let context = null;
let page = null;
let responses = [];
let consoleMessages = [];

async function newPage() {
  if (context) await context.close();
  // A persistent context is the only way to give Chromium a --user-data-dir of our own.
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.TETHER_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    ignoreHTTPSErrors: true,
    viewport: { width: 1024, height: 768 },
  });
  page = context.pages()[0] || await context.newPage();
  responses = [];
  consoleMessages = [];
  page.on('response', (r) => {
    responses.push({ url: r.url(), status: r.status(), headers: r.headers() });
  });
  page.on('console', (m) => consoleMessages.push({ type: m.type(), text: m.text() }));
  page.on('pageerror', (e) => consoleMessages.push({ type: 'pageerror', text: String(e) }));
  // A dialog (alert/confirm/prompt) is recorded and dismissed: tests assert none opened.
  page.on('dialog', (d) => {
    consoleMessages.push({ type: 'dialog', text: d.message() });
    d.dismiss().catch(() => {});
  });
  return true;
}

const commands = {
  newPage,
  goto: async ({ url }) => {
    const r = await page.goto(url, { waitUntil: 'load' });
    return r ? { status: r.status(), headers: r.headers() } : null;
  },
  fill: async ({ selector, value }) => { await page.fill(selector, value); return true; },
  click: async ({ selector }) => { await page.click(selector); return true; },
  clickAt: async ({ selector, x, y }) => {
    await page.click(selector, { position: { x, y } });
    return true;
  },
  type: async ({ text }) => { await page.keyboard.type(text, { delay: 20 }); return true; },
  press: async ({ key }) => { await page.keyboard.press(key); return true; },
  waitFor: async ({ selector, state, ms }) => {
    await page.waitForSelector(selector, { state: state || 'visible', timeout: ms || 10000 });
    return true;
  },
  // `expression` is a function's source: (arg) => ...
  evaluate: async ({ expression, arg }) => page.evaluate(`(${expression})(${JSON.stringify(arg ?? null)})`),
  // Polls from here: page.waitForFunction evaluates a string inside the page, which the web
  // app's CSP (rightly) forbids.
  waitForFunction: async ({ expression, arg, ms }) => {
    const deadline = Date.now() + (ms || 10000);
    const source = `(${expression})(${JSON.stringify(arg ?? null)})`;
    for (;;) {
      const value = await page.evaluate(source);
      if (value) return value;
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${ms || 10000} ms waiting for ${expression}` +
          ` (last value ${JSON.stringify(value)})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  },
  text: async ({ selector }) => page.textContent(selector),
  url: async () => page.url(),
  // Answers every request matching `pattern` with `body`: a page at a foreign origin.
  route: async ({ pattern, body, contentType }) => {
    await page.route(pattern, (route) => route.fulfill({
      status: 200, contentType: contentType || 'text/html', body,
    }));
    return true;
  },
  screenshot: async ({ file }) => { await page.screenshot({ path: file }); return true; },
  responses: async () => responses,
  console: async () => consoleMessages,
};

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    let request;
    try {
      request = JSON.parse(line);
      const run = commands[request.cmd];
      if (!run) throw new Error('unknown command ' + request.cmd);
      const result = await run(request.args || {});
      process.stdout.write(JSON.stringify({ id: request.id, ok: true, result }) + '\n');
    } catch (e) {
      process.stdout.write(JSON.stringify({
        id: request ? request.id : null, ok: false, error: String(e && e.stack || e),
      }) + '\n');
    }
  });
});
rl.on('close', async () => {
  await queue;
  if (context) await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(0);
});
