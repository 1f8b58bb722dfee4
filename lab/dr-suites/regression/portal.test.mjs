// DR-E2E for the lab portal: the user flows an operator relies on, over plain HTTP.
// Run by `npm run test:regression` (node's test runner; JUnit to reports/junit.xml).
// Environment: BASE_URL (required), PORTAL_USER / PORTAL_PASSWORD (the lab's demo account).

import assert from 'node:assert/strict';
import { test } from 'node:test';

const base = process.env.BASE_URL;
const user = process.env.PORTAL_USER || 'mcms-operator';
const password = process.env.PORTAL_PASSWORD || 'lab-portal';

function url(path) {
  assert.ok(base, 'BASE_URL is not set: the portal to test, e.g. http://127.0.0.1:18081');
  return new URL(path, base).href;
}

async function signIn(name = user, secret = password) {
  return fetch(url('/login'), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username: name, password: secret }).toString(),
  });
}

async function releasesPage() {
  const login = await signIn();
  assert.equal(login.status, 303, 'signing in did not redirect');
  const cookie = login.headers.get('set-cookie').split(';')[0];
  const page = await fetch(url('/releases'), { headers: { cookie }, redirect: 'manual' });
  assert.equal(page.status, 200, `the releases page answered ${page.status}`);
  return page.text();
}

test('the login page offers a user name and password form', async () => {
  const page = await fetch(url('/login'));
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<form method="post" action="\/login">/);
  assert.match(html, /name="username"/);
  assert.match(html, /type="password"/);
});

test('signing in with the operator account opens the releases list', async () => {
  const login = await signIn();
  assert.equal(login.status, 303);
  assert.equal(login.headers.get('location'), '/releases');
  assert.match(await releasesPage(), /<h1>Releases on /);
});

test('a wrong password is refused with a message', async () => {
  const login = await signIn(user, 'not-the-password');
  assert.equal(login.status, 401);
  assert.match(await login.text(), /role="alert">Wrong user name or password/);
});

test('the releases list needs a session', async () => {
  const page = await fetch(url('/releases'), { redirect: 'manual' });
  assert.equal(page.status, 303);
  assert.equal(page.headers.get('location'), '/login');
});

test('the releases list marks the version health reports as current', async () => {
  const health = await (await fetch(url('/health'))).json();
  const html = await releasesPage();
  assert.match(html, new RegExp(`Current release: ${health.version.replaceAll('.', '\\.')}<`));
  assert.match(html, new RegExp(`<td>${health.version.replaceAll('.', '\\.')}</td><td>current</td>`));
});
