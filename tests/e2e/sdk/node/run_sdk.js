// Casdoor's Node SDK (npm `casdoor-nodejs-sdk`) against a Jeton node, unchanged: every SDK method whose
// endpoint Jeton serves, with its result checked. Run by tests/e2e/sdk.rs; exits non-zero on the first
// failed check.
//
// Environment: JETON_URL, JETON_ADMIN_CLIENT_ID, JETON_ADMIN_CLIENT_SECRET (the admin application), and
// JETON_SDK_ORG (a fresh organization name this script creates and deletes).
'use strict';

const { SDK } = require('casdoor-nodejs-sdk');

const URL = process.env.JETON_URL;
const ADMIN_ID = process.env.JETON_ADMIN_CLIENT_ID;
const ADMIN_SECRET = process.env.JETON_ADMIN_CLIENT_SECRET;
const ORG = process.env.JETON_SDK_ORG;
const APP = `app-${ORG}`;
const APP_SECRET = `${ORG}-client-secret-0123456789`;
const PASSWORD = 'Sdk-Password-123';
const NOW = new Date().toISOString();

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

// An admin call's envelope: status ok.
function ok(res, what) {
  check(res.status === 200 && res.data && res.data.status === 'ok', `${what}: ${JSON.stringify(res.data)}`);
  return res.data.data;
}

// A Jeton password grant, for the refresh token the SDK's refreshToken takes (the SDK itself only
// exchanges authorization codes, which Jeton does not issue).
async function passwordGrant(clientId) {
  const body = new URLSearchParams({
    grant_type: 'password', username: 'alice', password: PASSWORD, client_id: clientId, client_secret: APP_SECRET,
  });
  const r = await fetch(`${URL}/api/login/oauth/access_token`, { method: 'POST', body });
  return r.json();
}

// The hidden inputs of a page's form, with the character references a server writes decoded.
function hiddenInputs(html) {
  const fields = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields[m[1]] = m[2].replace(/&#(\d+);/g, (_, d) => String.fromCharCode(Number(d)))
      .replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  }
  return fields;
}

// A web application, its sign-in URL from the SDK, the login form posted as a browser does (keeping the
// cookies it is given), and the code at the redirect URI exchanged with getAuthToken.
async function signInWithTheSdk(admin, cert) {
  const redirect = 'https://app.sdk.example/callback';
  ok(await admin.addApplication({
    owner: 'admin', name: `${APP}-web`, createdTime: NOW, displayName: 'SDK Web', organization: ORG, cert: `cert-${ORG}`,
    clientId: `${APP}-web`, clientSecret: APP_SECRET, grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [redirect], skipConsent: true, expireInHours: 1, refreshExpireInHours: 24,
  }), 'addApplication (web)');
  const web = new SDK({ endpoint: URL, clientId: `${APP}-web`, clientSecret: APP_SECRET, certificate: cert.certificate, orgName: ORG, appName: `${APP}-web` });
  const page = await fetch(web.getSignInUrl(redirect), { redirect: 'manual' });
  check(page.status === 200, `the sign-in URL shows the login page (${page.status})`);
  const cookies = page.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const form = new URLSearchParams({ ...hiddenInputs(await page.text()), username: 'alice', password: PASSWORD });
  const signedIn = await fetch(`${URL}/login`, { method: 'POST', body: form, headers: { cookie: cookies }, redirect: 'manual' });
  const location = new globalThis.URL(signedIn.headers.get('location') || '', URL);
  check(signedIn.status === 303 && location.href.startsWith(redirect), `the login sends the browser back (${signedIn.status} ${location})`);
  check(location.searchParams.get('state') === `${APP}-web`, 'the SDK\'s state comes back');
  const tokens = await web.getAuthToken(location.searchParams.get('code'));
  check(tokens.access_token && tokens.refresh_token, `getAuthToken: ${JSON.stringify(tokens)}`);
  return web.parseJwtToken(tokens.access_token);
}

async function main() {
  // The admin SDK: the admin application's credentials, sent as HTTP Basic.
  const admin = new SDK({ endpoint: URL, clientId: ADMIN_ID, clientSecret: ADMIN_SECRET, certificate: '', orgName: ORG, appName: 'app-built-in' });

  // Organizations
  ok(await admin.addOrganization({ owner: 'admin', name: ORG, createdTime: NOW, displayName: 'SDK Org', passwordType: 'argon2id' }), 'addOrganization');
  let org = ok(await admin.getOrganization(ORG), 'getOrganization');
  check(org.name === ORG && org.displayName === 'SDK Org', 'getOrganization returns it');
  check(ok(await admin.getOrganizations(), 'getOrganizations').some((o) => o.name === ORG), 'getOrganizations lists it');
  org.displayName = 'SDK Org Renamed';
  ok(await admin.updateOrganization(org), 'updateOrganization');
  check(ok(await admin.getOrganization(ORG), 'getOrganization').displayName === 'SDK Org Renamed', 'updateOrganization took effect');

  // Certs (signing keys)
  ok(await admin.addCert({ owner: 'admin', name: `cert-${ORG}`, createdTime: NOW, displayName: 'SDK cert', scope: 'JWT', type: 'x509', cryptoAlgorithm: 'RS256', bitSize: 2048, expireInYears: 20 }), 'addCert');
  const cert = ok(await admin.getCert(`cert-${ORG}`), 'getCert');
  check(cert.cryptoAlgorithm === 'RS256' && typeof cert.createdTime === 'string', 'getCert: RS256, createdTime as text');
  check(ok(await admin.getCerts(), 'getCerts').some((c) => c.name === `cert-${ORG}`), 'getCerts lists it');

  // Applications: the caller chooses the client secret (Jeton keeps only its digest).
  ok(await admin.addApplication({
    owner: 'admin', name: APP, createdTime: NOW, displayName: 'SDK App', organization: ORG, cert: `cert-${ORG}`,
    clientSecret: APP_SECRET, grantTypes: ['password', 'client_credentials', 'refresh_token'], expireInHours: 1, refreshExpireInHours: 24,
  }), 'addApplication');
  let app = ok(await admin.getApplication(APP), 'getApplication');
  check(app.clientSecret === '***' && app.tokenSigningMethod === 'RS256', 'getApplication: secret masked, RS256');
  const clientId = app.clientId;
  check(ok(await admin.getApplications(), 'getApplications').some((a) => a.name === APP), 'getApplications lists it');
  app.displayName = 'SDK App Renamed';
  ok(await admin.updateApplication(app), 'updateApplication');
  check(ok(await admin.getApplication(APP), 'getApplication').displayName === 'SDK App Renamed', 'updateApplication took effect');

  // Users
  ok(await admin.addUser({ owner: ORG, name: 'alice', createdTime: NOW, displayName: 'Alice', email: 'alice@sdk.example', password: PASSWORD }), 'addUser');
  let user = ok(await admin.getUser('alice'), 'getUser');
  check(user.email === 'alice@sdk.example' && user.password === '***', 'getUser: no password hash');
  check(ok(await admin.getUsers(), 'getUsers').some((u) => u.name === 'alice'), 'getUsers lists it');
  user.displayName = 'Alice Renamed';
  ok(await admin.updateUser(user), 'updateUser');
  check(ok(await admin.getUser('alice'), 'getUser').displayName === 'Alice Renamed', 'updateUser took effect');

  // Groups and roles
  ok(await admin.addGroup({ owner: ORG, name: 'devs', createdTime: NOW, displayName: 'Developers', type: 'Virtual', parentId: ORG, isTopGroup: true, isEnabled: true }), 'addGroup');
  const group = ok(await admin.getGroup('devs'), 'getGroup');
  check(group.displayName === 'Developers', 'getGroup returns it');
  check(ok(await admin.getGroups(), 'getGroups').some((g) => g.name === 'devs'), 'getGroups lists it');
  group.displayName = 'Developers Renamed';
  ok(await admin.updateGroup(group), 'updateGroup');
  ok(await admin.addRole({ owner: ORG, name: 'readers', createdTime: NOW, displayName: 'Readers', users: [`${ORG}/alice`], isEnabled: true }), 'addRole');
  const role = ok(await admin.getRole('readers'), 'getRole');
  check(role.users.length === 1 && role.users[0] === `${ORG}/alice`, 'getRole returns it');
  check(ok(await admin.getRoles(), 'getRoles').some((r) => r.name === 'readers'), 'getRoles lists it');
  role.description = 'may read';
  ok(await admin.updateRole(role), 'updateRole');

  // Tokens, as an application of the organization sees them.
  const sdk = new SDK({ endpoint: URL, clientId, clientSecret: APP_SECRET, certificate: cert.certificate, orgName: ORG, appName: APP });
  const first = await passwordGrant(clientId);
  check(first.access_token && first.refresh_token, `password grant: ${JSON.stringify(first)}`);
  const claims = sdk.parseJwtToken(first.access_token);
  check(claims.sub === user.id, 'parseJwtToken verifies an RS256 token with the cert');
  // refreshToken sends HTTP Basic and the same credentials in the JSON body.
  const refreshed = await sdk.refreshToken(first.refresh_token);
  check(refreshed.access_token && refreshed.refresh_token && refreshed.refresh_token !== first.refresh_token, 'refreshToken');
  check(sdk.parseJwtToken(refreshed.access_token).sub === user.id, 'parseJwtToken of the refreshed token');
  const info = await sdk.introspect(refreshed.access_token, 'access_token');
  check(info.data && info.data.active === true && info.data.client_id === clientId, `introspect: ${JSON.stringify(info.data)}`);
  const inactive = await sdk.introspect('not-a-token', 'access_token');
  check(inactive.data && inactive.data.active === false, 'introspect of garbage');

  // Browser sign-in: the SDK's sign-in URL (Casdoor's /login/oauth/authorize path), the login page as a
  // browser would fill it, and getAuthToken(code) on Casdoor's token path.
  const web = await signInWithTheSdk(admin, cert);
  check(web.sub === user.id, 'getAuthToken: the code gives a token of the signed-in user');

  // Deletes
  ok(await admin.deleteApplication({ owner: 'admin', name: `${APP}-web` }), 'deleteApplication (web)');
  ok(await admin.deleteRole(role), 'deleteRole');
  ok(await admin.deleteGroup(group), 'deleteGroup');
  ok(await admin.deleteUser(user), 'deleteUser');
  check(ok(await admin.getUser('alice'), 'getUser') === null, 'a deleted user is gone');
  ok(await admin.deleteApplication(app), 'deleteApplication');
  ok(await admin.deleteCert(cert), 'deleteCert');
  ok(await admin.deleteOrganization(org), 'deleteOrganization');
  console.log('node sdk: all checks passed');
}

main().catch((e) => {
  const detail = e.response ? `${e.response.status} ${JSON.stringify(e.response.data)}` : '';
  console.error(`FAILED: ${e.stack || e} ${detail}`);
  process.exit(1);
});
