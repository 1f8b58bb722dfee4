// Drive Microsoft 365 Agents Playground in Debian's chromium (headless) through a scenario,
// for tests/test_browser.py. The Python test decides what to say and what to expect; this
// script only acts, waits, screenshots, and reports what the page showed.
//
//   node drive.mjs --url http://127.0.0.1:PORT/ --scenario steps.json --out DIR [--chromium PATH]
//
// A step: {id, say?, click?|double_click?, in_card?, card, timeout_s?}
//   say            type this in the message box and send it
//   click          click the button with this name, in the last card containing `in_card`
//   double_click   the same, as a real double click (two clicks before the card is replaced)
//   card           then wait for a card whose text contains this; report its text and
//                  screenshot the page (<id>.png) and the card alone (<id>-card.png)
//   count          also report how many cards on the page contain this text
// Writes <out>/report.json: {steps: [{id, ok, error, text, counted, ms}], invokes: [{verb,
// status, body} of every card action the page sent, with the answer it got], blocked: [hosts
// the page asked for and was refused]}.
// Exit 0 only when every step passed.

import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    scenario: { type: 'string' },
    out: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});
const steps = JSON.parse(fs.readFileSync(args.scenario, 'utf8'));

// A case-sensitive "contains this text" for locators (a plain string would ignore case).
function exactly(text) {
  return new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
}
fs.mkdirSync(args.out, { recursive: true });

// The flags that make Debian's chromium behave on a machine without a network; the
// resolver rule keeps every lookup on this machine (the Playground's page links a CDN).
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ],
});
const report = { steps: [], invokes: [], blocked: [] };
try {
  // Tall enough that the 18-step progress card of the demo fits in the chat pane whole.
  const page = await browser.newPage({ viewport: { width: 1280, height: 1800 } });
  // Tests talk to loopback only: anything else the page asks for is refused here.
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    if (host === '127.0.0.1' || host === 'localhost') return route.continue();
    if (!report.blocked.includes(host)) report.blocked.push(host);
    return route.abort();
  });
  page.on('response', async (response) => {
    const request = response.request();
    if (request.method() === 'POST' && request.url().endsWith('/_conversation/v1/invoke')) {
      const sent = request.postDataJSON() ?? {};
      const answer = { verb: sent?.value?.action?.verb ?? sent?.name ?? '?', status: response.status() };
      report.invokes.push(answer);
      answer.body = await response.text().catch((error) => `unreadable: ${error}`);
    }
  });
  await page.goto(args.url);
  const box = page.locator('[contenteditable="true"][role="textbox"]');
  await box.waitFor({ timeout: 30_000 });

  for (const step of steps) {
    const started = Date.now();
    const result = { id: step.id, ok: false, error: null, text: null, counted: null };
    report.steps.push(result);
    try {
      if (step.say) {
        await box.click();
        await page.keyboard.type(step.say);
        await page.keyboard.press('Enter');
      }
      const action = step.double_click ?? step.click;
      if (action) {
        const host = page.locator('.ac-adaptiveCard', { hasText: exactly(step.in_card) }).last();
        const button = host.getByRole('button', { name: action, exact: true });
        if (step.double_click) await button.dblclick();
        else await button.click();
      }
      // Case-sensitive: a string `hasText` ignores case, and the progress card's "approved
      // by Alex Wilber" would then pass for the decided card's "Approved by Alex Wilber".
      const card = page.locator('.ac-adaptiveCard', { hasText: exactly(step.card) }).last();
      await card.waitFor({ timeout: (step.timeout_s ?? 20) * 1000 });
      // Cards are edited in place; let the last edit paint before reading and shooting.
      await page.waitForTimeout(300);
      result.text = await card.innerText();
      if (step.count) {
        result.counted = await page.locator('.ac-adaptiveCard', { hasText: step.count }).count();
      }
      await card.screenshot({ path: path.join(args.out, `${step.id}-card.png`) });
      // The page as a person sees it: the card at the bottom of the chat, what led to it
      // above; a card taller than the pane is shown from its title.
      await card.evaluate((element) => {
        const tall = element.getBoundingClientRect().height > window.innerHeight - 250;
        element.scrollIntoView({ block: tall ? 'start' : 'end' });
      });
      await page.screenshot({ path: path.join(args.out, `${step.id}.png`) });
      result.ok = true;
    } catch (error) {
      result.error = String(error?.message ?? error).split('\n')[0];
      await page.screenshot({ path: path.join(args.out, `${step.id}-FAILED.png`) });
    }
    result.ms = Date.now() - started;
    console.error(`${step.id}: ${result.ok ? 'ok' : 'FAILED ' + result.error} (${result.ms} ms)`);
    if (!result.ok) break;
  }
} finally {
  await browser.close();
  fs.writeFileSync(path.join(args.out, 'report.json'), JSON.stringify(report, null, 2));
}
process.exitCode = report.steps.every((s) => s.ok) && report.steps.length === steps.length ? 0 : 1;
