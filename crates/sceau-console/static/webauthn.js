// Passkeys for the Sceau console: runs the WebAuthn ceremonies the server prepared and sends
// back what the authenticator answered. The console works without this file (TOTP codes);
// the passkey buttons only appear when it runs.
'use strict';

const b64u = {
  enc(buf) {
    let s = '';
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  },
  dec(text) {
    const s = text.replace(/-/g, '+').replace(/_/g, '/');
    const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  },
};

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'same-origin',
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || `the console answered ${r.status}`);
  return answer;
}

function say(text) {
  const p = document.getElementById('passkey-status');
  if (p) p.textContent = text;
}

function csrf() {
  return document.querySelector('input[name=csrf]').value;
}

async function registerPasskey() {
  try {
    const o = await post('/passkeys/options', { csrf: csrf() });
    const cred = await navigator.credentials.create({
      publicKey: {
        ...o,
        challenge: b64u.dec(o.challenge),
        user: { ...o.user, id: b64u.dec(o.user.id) },
        excludeCredentials: o.excludeCredentials.map((c) => ({ ...c, id: b64u.dec(c.id) })),
      },
    });
    await post('/passkeys', {
      csrf: csrf(),
      label: document.getElementById('passkey-label').value,
      clientDataJSON: b64u.enc(cred.response.clientDataJSON),
      attestationObject: b64u.enc(cred.response.attestationObject),
    });
    say('Passkey registered.');
    window.location.reload();
  } catch (e) {
    say(`No passkey registered: ${e.message}`);
  }
}

async function loginWithPasskey() {
  try {
    const o = await post('/login/passkey/options', { csrf: csrf() });
    const cred = await navigator.credentials.get({
      publicKey: {
        ...o,
        challenge: b64u.dec(o.challenge),
        allowCredentials: o.allowCredentials.map((c) => ({ ...c, id: b64u.dec(c.id) })),
      },
    });
    const done = await post('/login/passkey', {
      csrf: csrf(),
      id: b64u.enc(cred.rawId),
      clientDataJSON: b64u.enc(cred.response.clientDataJSON),
      authenticatorData: b64u.enc(cred.response.authenticatorData),
      signature: b64u.enc(cred.response.signature),
    });
    window.location.assign(done.redirect);
  } catch (e) {
    say(`Not logged in with a passkey: ${e.message}`);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  if (!window.PublicKeyCredential) return;
  for (const [id, run] of [['passkey-register', registerPasskey], ['passkey-login', loginWithPasskey]]) {
    const button = document.getElementById(id);
    if (button) {
      button.hidden = false;
      button.addEventListener('click', run);
    }
  }
});
