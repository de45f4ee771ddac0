// Drives Debian's Chromium (headless, through playwright-core) through the Sceau web console,
// as an operator does it. Run by crates/sceau-interop/tests/console.rs:
//
//   node console.mjs first  '{"url": ..., "user": ..., "password": ..., "names": [...], "shots": DIR}'
//   node console.mjs second '{"url": ..., "user": ..., "password": ..., "secret": ..., "step": N,
//                             "code": ..., "recovery": [...], "owner": ..., "name": ..., "shots": DIR}'
//
// Each phase prints one JSON line of what it saw, and exits non-zero (with the reason on stderr)
// as soon as the console does something an operator would not expect. The TOTP codes are
// computed here, by an implementation of RFC 6238 independent of the server's.
import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [phase, configText] = process.argv.slice(2);
const cfg = JSON.parse(configText);

function fail(message) {
  console.error(`console.mjs ${phase}: ${message}`);
  process.exit(1);
}

function expect(cond, message) {
  if (!cond) fail(message);
}

// RFC 4648 base32 decoding, RFC 4226 HOTP, RFC 6238 TOTP (SHA-1, 30 s, 6 digits).
function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) fail(`not base32: ${text}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

function hotp(secret, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', secret).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = mac.readUInt32BE(off) & 0x7fffffff;
  return String(bin % 1000000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 1000 / 30);

async function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// A fresh profile for every run (launchPersistentContext is Playwright's way to give Chromium
// its --user-data-dir). The console's certificate comes from the server's own test CA, which
// this profile does not trust; what is tested here is the console, not the trust store.
// With cfg.root, the profile trusts the server's root instead (a HOME of its own whose NSS
// database holds it): WebAuthn refuses to run on a page with certificate errors.
let env = process.env;
if (cfg.root) {
  const home = mkdtempSync(join(tmpdir(), 'sceau-home-'));
  const db = `sql:${join(home, '.pki', 'nssdb')}`;
  mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
  execFileSync('certutil', ['-d', db, '-N', '--empty-password']);
  execFileSync('certutil', ['-d', db, '-A', '-t', 'C,,', '-n', 'sceau test root', '-i', cfg.root]);
  env = { ...process.env, HOME: home };
}
const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), 'sceau-chromium-')), {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
  ignoreHTTPSErrors: !cfg.root,
  env,
  viewport: { width: 1280, height: 800 },
});
const page = await context.newPage();
let dialogs = 0;
page.on('dialog', async (d) => { dialogs += 1; await d.dismiss(); });
const cspViolations = [];
page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });

const shot = async (name) => {
  if (cfg.shots) await page.screenshot({ path: join(cfg.shots, `console-${name}.png`), fullPage: true });
};

async function goto(path) {
  const resp = await page.goto(cfg.url + path);
  expect(resp, `no answer for ${path}`);
  return resp;
}

async function submit(selector) {
  const [resp] = await Promise.all([page.waitForNavigation(), page.click(selector)]);
  return resp;
}

async function loginPassword(password) {
  await goto('/login');
  await page.fill('input[name=user]', cfg.user);
  await page.fill('input[name=password]', password);
  return submit('main button[type=submit]');
}

const bodyText = () => page.innerText('main');

try {
  if (phase === 'first') {
    // A wrong password: refused, the login form again, no hint of which part was wrong.
    let r = await loginPassword(cfg.password + 'x');
    expect(r.status() === 401, `wrong password answered ${r.status()}`);
    expect((await bodyText()).includes('Wrong user name or password.'), 'no refusal shown for a wrong password');
    const csp = r.headers()['content-security-policy'] || '';
    expect(csp.includes("default-src 'none'") && csp.includes("frame-ancestors 'none'"), `weak CSP: ${csp}`);

    // The right password: the first login enrols the authenticator.
    r = await loginPassword(cfg.password);
    expect(page.url().endsWith('/enrol'), `first login went to ${page.url()}, not /enrol`);
    const secretText = (await page.innerText('code.secret')).trim();
    const qr = await page.getAttribute('img', 'src');
    expect(qr && qr.startsWith('data:image/svg+xml;base64,'), 'no QR code on the enrolment page');
    await shot('enrol');
    const secret = base32Decode(secretText);
    // A wrong code first: refused, still enrolling.
    await page.fill('input[name=code]', hotp(secret, stepNow() + 10));
    r = await submit('main button[type=submit]');
    expect(r.status() === 401 && page.url().endsWith('/enrol'), 'a wrong enrolment code was accepted');
    const step = stepNow();
    const code = hotp(secret, step);
    await page.fill('input[name=code]', code);
    r = await submit('main button[type=submit]');
    expect(r.status() === 200, `enrolment answered ${r.status()}`);
    const recovery = await page.$$eval('ol.codes code', (els) => els.map((e) => e.textContent.trim()));
    expect(recovery.length === 10, `expected 10 recovery codes, saw ${recovery.length}`);

    // Create an external account; the second factor is fresh, so no code is asked for.
    await goto('/accounts/new');
    await page.fill('input[name=owner]', cfg.owner);
    await page.fill('textarea[name=names]', cfg.names.join('\n'));
    await page.fill('input[name=days]', '90');
    await shot('new-account');
    r = await submit('main button[type=submit]');
    expect(r.status() === 201, `creating the account answered ${r.status()}: ${await bodyText()}`);
    const kid = (await page.innerText('#kid')).trim();
    const mac = (await page.innerText('#mac-key')).trim();
    expect(/^[A-Za-z0-9_-]{20,}$/.test(kid) && /^[A-Za-z0-9_-]{40,}$/.test(mac), `kid ${kid} / key ${mac}`);
    await shot('created');

    // A form posted without the CSRF token (what another site's page would send): refused.
    const forged = await context.request.post(cfg.url + '/accounts/new', {
      form: { owner: 'Mallory Forger <mallory@example.org>', names: 'forged.test', days: '30' },
      maxRedirects: 0,
    });
    expect(forged.status() === 403, `a form without CSRF token answered ${forged.status()}`);
    await goto('/accounts');
    expect(!(await bodyText()).includes('Mallory'), 'the forged form created an account');

    // An oversized field, with the right token: refused with the reason, nothing created.
    await goto('/accounts/new');
    const csrf = await page.getAttribute('input[name=csrf]', 'value');
    const long = await context.request.post(cfg.url + '/accounts/new', {
      form: { csrf, owner: 'A'.repeat(300) + ' <long@example.org>', names: 'long.test', days: '30' },
      maxRedirects: 0,
    });
    expect(long.status() === 400 && (await long.text()).includes('too long'), `an oversized owner answered ${long.status()}`);
    // A body over the console's limit is refused before it is read.
    const huge = await context.request.post(cfg.url + '/accounts/new', {
      form: { csrf, owner: 'Big Body <big@example.org>', names: 'x'.repeat(40000), days: '30' },
      maxRedirects: 0,
    });
    expect(huge.status() === 413, `a 40 kB form answered ${huge.status()}`);

    // Script in a field is shown as text: escaped, and the CSP would stop it anyway.
    await goto('/audit?q=' + encodeURIComponent('<script>alert(1)</script>'));
    const html = await page.content();
    expect(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), 'the filter text is not escaped');
    expect(!html.includes('<script>alert(1)'), 'the filter text reached the page as markup');
    await goto('/audit');
    await shot('audit');
    expect(dialogs === 0, 'a script ran in the console');

    console.log(JSON.stringify({ kid, mac, secret: secretText, step, code, recovery }));
  } else if (phase === 'second') {
    const secret = base32Decode(cfg.secret);
    // The enrolment's code again: a replay, refused.
    let r = await loginPassword(cfg.password);
    expect(page.url().endsWith('/login/code'), `password step went to ${page.url()}`);
    await page.fill('input[name=code]', cfg.code);
    r = await submit('main button[type=submit]');
    expect(r.status() === 401, `a replayed code answered ${r.status()}`);
    expect((await bodyText()).includes('Wrong or already used code.'), 'no refusal shown for a replayed code');
    // A code of a later step logs in.
    while (stepNow() <= cfg.step) await sleep(500);
    const step = stepNow();
    await page.fill('input[name=code]', hotp(secret, step));
    r = await submit('main button[type=submit]');
    expect(page.url().endsWith('/accounts'), `login went to ${page.url()}`);
    expect((await bodyText()).includes(cfg.owner), 'the account is not listed');
    await shot('accounts');

    // The certificate certbot obtained is on the account's page.
    await Promise.all([page.waitForNavigation(), page.click(`a[href="/accounts/${cfg.kid}"]`)]);
    const certs = await page.innerText('#certificates');
    expect(certs.includes(cfg.name) && certs.includes('valid'), `certificates shown: ${certs}`);
    await shot('account');

    // Invite the account's holder: a one-time link, shown once.
    await page.fill('form[action$="/invite"] input[name=name]', cfg.holder);
    r = await submit('form[action$="/invite"] button[type=submit]');
    expect(r.status() === 201, `inviting answered ${r.status()}: ${await bodyText()}`);
    const link = (await page.innerText('#invitation')).trim();
    expect(link.startsWith(cfg.url + '/invite/'), `invitation link ${link}`);
    await goto('/approvals');
    expect(await page.$('#no-approvals'), 'approvals are waiting before any request');
    await submit('form.logout button[type=submit]');
    console.log(JSON.stringify({ link, step }));
  } else if (phase === 'holder') {
    // The invitation: two different passwords first (refused), then the password.
    await page.goto(cfg.link);
    await page.fill('input[name=password]', cfg.password);
    await page.fill('input[name=confirm]', cfg.password + '!');
    let r = await submit('main button[type=submit]');
    expect(r.status() === 400 && (await bodyText()).includes('differ'), 'different passwords were accepted');
    await page.fill('input[name=password]', cfg.password);
    await page.fill('input[name=confirm]', cfg.password);
    await submit('main button[type=submit]');
    expect(page.url().endsWith('/login'), `the invitation went to ${page.url()}`);
    const again = await page.goto(cfg.link);
    expect(again.status() === 404, 'an invitation link works twice');

    // First login: password, then enrolment of the holder's own authenticator.
    r = await loginPassword(cfg.password);
    expect(page.url().endsWith('/enrol'), `the holder's first login went to ${page.url()}`);
    const secret = base32Decode((await page.innerText('code.secret')).trim());
    await page.fill('input[name=code]', hotp(secret, stepNow()));
    await submit('main button[type=submit]');
    await Promise.all([page.waitForNavigation(), page.click('main a.button')]);
    expect(page.url().endsWith('/mine'), `the holder landed on ${page.url()}`);

    // The holder's dashboard: the certificate certbot obtained, valid; search by name.
    let certs = await page.innerText('#certificates');
    expect(certs.includes(cfg.name) && certs.includes('valid'), `holder sees: ${certs}`);
    await goto('/mine?q=nothing-like-this');
    expect(!(await page.$('#certificates')), 'the search does not filter');
    await goto('/mine');
    await shot('holder');

    // Another account's objects, by changing ids in URLs: not found, nothing changed.
    const csrf = await page.getAttribute('input[name=csrf]', 'value');
    const other = await context.request.post(cfg.url + '/mine/certs/00deadbeef/revoke', {
      form: { csrf, reason: '1' }, maxRedirects: 0,
    });
    expect(other.status() === 404, `revoking a certificate not of this account answered ${other.status()}`);
    const otherAcct = await context.request.post(cfg.url + '/mine/acme/not-mine/suspend', {
      form: { csrf }, maxRedirects: 0,
    });
    expect(otherAcct.status() === 404, `suspending an ACME account not of this account answered ${otherAcct.status()}`);
    const opPage = await context.request.get(cfg.url + `/accounts/${cfg.kid}`, { maxRedirects: 0 });
    expect(opPage.status() === 403, `an operator page answered the holder ${opPage.status()}`);

    // The dashboard (R50) counts the certificate; the report (R49) lists it, as CSV.
    await goto('/mine/dashboard');
    expect((await page.innerText('#totals')).startsWith('1 certificates issued'), `dashboard: ${await page.innerText('#totals')}`);
    expect((await page.getAttribute('img.chart', 'src')).startsWith('data:image/svg+xml;base64,'), 'no chart');
    await shot('holder-dashboard');
    const csv = await context.request.get(cfg.url + '/mine/report?days=7&format=csv');
    expect(csv.status() === 200 && csv.headers()['content-type'].startsWith('text/csv'), `CSV report: ${csv.status()}`);
    const csvText = await csv.text();
    expect(csvText.split('\r\n').some((l) => l.startsWith('issued,') && l.includes(cfg.name)), `CSV report: ${csvText}`);
    await goto('/mine');

    // Ask for a name (R6); it waits for an operator, with the CAA lookup's result (R7).
    await page.fill('form[action="/mine/names"] input[name=name]', cfg.requested);
    await submit('form[action="/mine/names"] button[type=submit]');
    const requests = await page.innerText('#requests');
    expect(requests.includes(cfg.requested) && requests.includes('pending'), `requests: ${requests}`);

    // A new MAC key (R9), shown once.
    await submit('form[action="/mine/key"] button[type=submit]');
    const mac = (await page.innerText('#mac-key')).trim();
    expect(/^[A-Za-z0-9_-]{40,}$/.test(mac), `new key ${mac}`);
    await goto('/mine');

    // Revoke the certificate (keyCompromise), then suspend the ACME account (R13).
    await page.selectOption('form.revoke select[name=reason]', '1');
    await submit('form.revoke button[type=submit]');
    certs = await page.innerText('#certificates');
    expect(certs.includes('revoked'), `after revocation: ${certs}`);
    await submit('form.suspend button[type=submit]');
    const acme = await page.innerText('#acme');
    expect(acme.includes('suspended'), `after suspension: ${acme}`);
    await shot('holder-after');
    expect(dialogs === 0, 'a script ran in the console');
    console.log(JSON.stringify({ mac }));
  } else if (phase === 'third') {
    const secret = base32Decode(cfg.secret);
    while (stepNow() <= cfg.step) await sleep(500);
    let r = await loginPassword(cfg.password);
    const loginStep = stepNow();
    await page.fill('input[name=code]', hotp(secret, loginStep));
    await submit('main button[type=submit]');
    expect(page.url().endsWith('/accounts'), `login went to ${page.url()}`);

    // The overall dashboard: the two certificates certbot obtained, the failures.
    await goto('/dashboard');
    const totals = await page.innerText('#totals');
    expect(totals.startsWith('2 certificates issued'), `dashboard: ${totals}`);
    const health = await page.innerText('#health');
    expect(health.includes('running') && health.includes('answers in'), `health: ${health}`);
    await shot('dashboard');
    const html = await context.request.get(cfg.url + `/accounts/${cfg.kid}/report?days=7&format=html`);
    const htmlText = await html.text();
    expect(html.status() === 200 && htmlText.includes('2 issued, 1 revoked'), `HTML report: ${htmlText.slice(0, 400)}`);

    // The holder's request, with its CAA lookup, approved (R6, R7).
    await goto('/approvals');
    const waiting = await page.innerText('#approvals');
    expect(waiting.includes(cfg.requested), `approvals: ${waiting}`);
    expect(waiting.includes('issue "other-ca.example"') && waiting.includes('may not issue'),
      `the CAA records and their meaning are not shown: ${waiting}`);
    await shot('approvals');
    await page.selectOption('form.decision select[name=decision]', 'approve');
    await submit('form.decision button[type=submit]');
    expect(await page.$('#no-approvals'), 'the approved request still waits');
    await goto(`/accounts/${cfg.kid}`);
    expect((await page.innerText('#names')).includes(cfg.requested), 'the approved name is not allowed');

    // Suspend the account (R15), within the fresh second-factor window: no code asked.
    await page.selectOption('form[action$="/status"] select[name=action]', 'suspend');
    await submit('form[action$="/status"] button[type=submit]');
    expect((await page.innerText('#status')).trim() === 'suspended', 'the account is not suspended');

    // Annex A.2 as guided steps: the plan first (nothing changed), a run without the
    // confirmation refused, then the run: the remaining valid certificate is revoked.
    await goto('/procedures');
    await page.selectOption('#a2 select[name=target]', cfg.kid);
    await submit('#a2 button[type=submit]');
    const steps = await page.innerText('#steps');
    expect(steps.includes('revoke 1 valid certificate(s)') && steps.includes('1 revoked already'), `plan: ${steps}`);
    await shot('procedure');
    const csrf = await page.getAttribute('input[name=csrf]', 'value');
    const unconfirmed = await context.request.post(cfg.url + '/procedures/run', {
      form: { csrf, procedure: 'external', target: cfg.kid, since: '', reason: 'keyCompromise' },
      maxRedirects: 0,
    });
    expect(unconfirmed.status() === 400, `a run without confirmation answered ${unconfirmed.status()}`);
    await page.check('input[name=confirm]');
    r = await submit('main button[type=submit]');
    const outcome = await page.innerText('#outcome');
    expect(r.status() === 200 && outcome.includes('1 certificate(s) revoked (keyCompromise)'), `outcome: ${outcome}`);

    // Log out, then in again with a recovery code; the same code a second time is refused.
    await submit('form.logout button[type=submit]');
    expect(page.url().endsWith('/login'), `logout went to ${page.url()}`);
    await loginPassword(cfg.password);
    await page.fill('input[name=code]', cfg.recovery[0]);
    await submit('main button[type=submit]');
    expect(page.url().endsWith('/accounts'), `a recovery code did not log in (${page.url()})`);
    await submit('form.logout button[type=submit]');
    await loginPassword(cfg.password);
    await page.fill('input[name=code]', cfg.recovery[0]);
    r = await submit('main button[type=submit]');
    expect(r.status() === 401, `a used recovery code answered ${r.status()}`);
    expect(dialogs === 0, 'a script ran in the console');
    expect(cspViolations.length === 0, `CSP violations: ${cspViolations.join('; ')}`);
    console.log(JSON.stringify({ suspended: true, step: loginStep }));
  } else if (phase === 'passkey') {
    // A passkey: registered after a TOTP login, through Chromium's virtual authenticator
    // (DevTools WebAuthn domain), then used instead of a code.
    const secret = base32Decode(cfg.secret);
    while (stepNow() <= cfg.step) await sleep(500);
    await loginPassword(cfg.password);
    await page.fill('input[name=code]', hotp(secret, stepNow()));
    await submit('main button[type=submit]');
    expect(page.url().endsWith('/accounts'), `login went to ${page.url()}`);
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    await goto('/passkeys');
    await page.fill('#passkey-label', 'test key');
    await Promise.all([page.waitForNavigation(), page.click('#passkey-register')]);
    const keys = await page.innerText('#passkeys');
    expect(keys.includes('test key'), `passkeys: ${keys} ${await page.innerText('#passkey-status').catch(() => '')}`);
    await shot('passkeys');
    await submit('form.logout button[type=submit]');
    await loginPassword(cfg.password);
    expect(page.url().endsWith('/login/code'), `password step went to ${page.url()}`);
    await Promise.all([page.waitForURL('**/accounts'), page.click('#passkey-login')]).catch(async (e) => {
      fail(`passkey login: ${e.message}; status: ${await page.innerText('#passkey-status').catch(() => '')}`);
    });
    expect(cspViolations.length === 0, `CSP violations: ${cspViolations.join('; ')}`);
    console.log(JSON.stringify({ passkey: true }));
  } else {
    fail(`unknown phase ${phase}`);
  }
} catch (e) {
  fail(e && e.stack ? e.stack : String(e));
} finally {
  await context.close();
}
