// DR-AXE for the lab portal: axe-core in Debian's chromium (headless, driven by
// playwright-core; no browser is ever downloaded) against the login page and, signed in,
// the releases list. Writes axe's results, one object per page, as a JSON array (the shape
// @axe-core/cli writes) and exits 1 when any page has a violation of any impact.
//
//   BASE_URL=http://127.0.0.1:18081 npm run test:axe
//
// Environment: BASE_URL (required), AXE_REPORT (default reports/axe-results.json),
// CHROMIUM (default /usr/bin/chromium), PORTAL_USER / PORTAL_PASSWORD (the lab's demo
// account by default). Only BASE_URL's host is reachable from the page: anything else it
// asks for is refused, so a scan never leaves the machine under test.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const base = process.env.BASE_URL;
if (!base) {
  console.error('BASE_URL is not set: the portal to scan, e.g. http://127.0.0.1:18081');
  process.exit(2);
}
const report = path.resolve(process.env.AXE_REPORT || 'reports/axe-results.json');
const user = process.env.PORTAL_USER || 'mcms-operator';
const password = process.env.PORTAL_PASSWORD || 'lab-portal';
const allowedHost = new URL(base).hostname;

async function scan(page, url) {
  const response = await page.goto(url, { waitUntil: 'load' });
  if (!response || !response.ok()) {
    throw new Error(`${url} answered ${response ? response.status() : 'nothing'}`);
  }
  await page.addScriptTag({ content: AXE_SOURCE });
  // WCAG 2.x A/AA plus axe's best practices: what an accessibility review looks at.
  const result = await page.evaluate(() =>
    window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    }),
  );
  console.log(`${url}: ${result.violations.length} violation(s)` +
    result.violations.map((v) => `\n  ${v.impact} ${v.id}: ${v.help} (${v.nodes.length})`).join(''));
  return result;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
let failed = false;
try {
  const page = await browser.newPage();
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.protocol === 'data:' || url.hostname === allowedHost) return route.continue();
    return route.abort();
  });
  const results = [];
  results.push(await scan(page, new URL('/login', base).href));
  await page.fill('#password', password);
  // The user name field is the one an a11y fault may leave unlabelled: find it by name.
  await page.fill('input[name="username"]', user);
  await Promise.all([page.waitForURL(/\/releases$/), page.click('button[type="submit"]')]);
  results.push(await scan(page, new URL('/releases', base).href));
  fs.mkdirSync(path.dirname(report), { recursive: true });
  fs.writeFileSync(report, JSON.stringify(results, null, 2));
  console.log(`axe results: ${report}`);
  failed = results.some((r) => r.violations.length > 0);
} catch (error) {
  console.error(`test:axe could not scan ${base}: ${error.message}`);
  process.exitCode = 2;
} finally {
  await browser.close();
}
if (failed) process.exitCode = 1;
