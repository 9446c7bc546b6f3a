// The peer of bench/code.sh: node-oidc-provider serving the authorization code flow, so that Jeton's code
// redemption and whole browser sign-ins can be measured next to it with the same client (codeload).
//
// - one confidential client (client_secret_basic), one redirect URI, PKCE S256 required, scope openid;
//   ID tokens signed with BENCH_OIDC_ALG (RS256 by default, as Jeton's applications sign; EdDSA possible),
//   a 2048-bit RSA key and an Ed25519 key generated at start (nothing on disk).
// - the login "interaction" is a small HTML form of our own (the provider ships none for production:
//   devInteractions is a development aid). POST /interaction/<uid>/login checks the password against a
//   Casdoor `salt` hash (hex(sha256(hex(sha256(password)) + salt))) or a `plain` one (BENCH_OIDC_SCHEME),
//   then finishes the interaction with the login and a Grant for openid, so no consent page follows. The
//   same user signing in again within the session gets a code straight from /auth, as at Jeton.
// - codes live BENCH_OIDC_CODE_TTL seconds (600): a benchmark mints them first and redeems them after.
// - storage: the provider's own in-memory adapter, with its LRU grown from 1,000 entries to
//   BENCH_OIDC_STORE_ENTRIES (2,000,000): at 1,000 the codes minted for a run would evict one another and
//   the sessions. Nothing else of the provider is changed; NODE_ENV=production is expected (start it so).
//
// Users: BENCH_OIDC_USERS (100) users `user00001`... with password `secret00001`... (the same fixtures as
// Jeton's side of the benchmark). Client: bench-code-client / bench-code-secret-0123456789abcdef,
// redirect URI http://127.0.0.1:9/cb (never contacted: the client reads the code from the redirect).
// Env: BENCH_OIDC_PORT (3100), BENCH_OIDC_ALG, BENCH_OIDC_SCHEME (salt|plain), BENCH_OIDC_CODE_TTL,
// BENCH_OIDC_USERS, BENCH_OIDC_STORE_ENTRIES.
//
// It imports `oidc-provider` as a bare name: run it from a folder whose node_modules holds the package
// (bench/code.sh copies it next to a link to the peers' oidc-provider/node_modules).
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import LRU from 'oidc-provider/lib/helpers/lru.js';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const PORT = Number(process.env.BENCH_OIDC_PORT || 3100);
const HOST = '127.0.0.1';
const ISSUER = `http://${HOST}:${PORT}`;
const ALG = process.env.BENCH_OIDC_ALG || 'RS256';
const SCHEME = process.env.BENCH_OIDC_SCHEME || 'salt';
const CODE_TTL = Number(process.env.BENCH_OIDC_CODE_TTL || 600);
const USERS = Number(process.env.BENCH_OIDC_USERS || 100);
const STORE_ENTRIES = Number(process.env.BENCH_OIDC_STORE_ENTRIES || 2000000);

export const CLIENT_ID = 'bench-code-client';
export const CLIENT_SECRET = 'bench-code-secret-0123456789abcdef';
export const REDIRECT_URI = 'http://127.0.0.1:9/cb';

if (!['RS256', 'EdDSA'].includes(ALG)) throw new Error(`BENCH_OIDC_ALG must be RS256 or EdDSA, not ${ALG}`);
if (!['salt', 'plain'].includes(SCHEME)) throw new Error(`BENCH_OIDC_SCHEME must be salt or plain, not ${SCHEME}`);

// The provider's own in-memory adapter over a larger LRU (its default factory makes one of 1,000 entries).
const store = new LRU({ maxSize: STORE_ENTRIES });
const adapter = (model) => new MemoryAdapter(model, store);

function signingKey(type, options, alg) {
  const jwk = generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `bench-${alg.toLowerCase()}-${randomBytes(4).toString('hex')}`, use: 'sig', alg };
}
// One key per algorithm, both published; the client's id_token_signed_response_alg picks the signer.
const jwks = { keys: [signingKey('rsa', { modulusLength: 2048 }, 'RS256'), signingKey('ed25519', {}, 'EdDSA')] };

const sha256hex = (s) => createHash('sha256').update(s).digest('hex');
const pad = (n) => String(n).padStart(5, '0');
// name -> { salt, stored }: what Casdoor's `salt` (or `plain`) scheme keeps for the password.
const accounts = new Map();
for (let n = 1; n <= USERS; n += 1) {
  const salt = `salt${pad(n)}`;
  const password = `secret${pad(n)}`;
  accounts.set(`user${pad(n)}`, { salt, stored: SCHEME === 'salt' ? sha256hex(sha256hex(password) + salt) : password });
}

function passwordMatches(name, password) {
  const account = accounts.get(name);
  if (!account || typeof password !== 'string') return false;
  const computed = Buffer.from(SCHEME === 'salt' ? sha256hex(sha256hex(password) + account.salt) : password);
  const stored = Buffer.from(account.stored);
  return computed.length === stored.length && timingSafeEqual(computed, stored);
}

const configuration = {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [REDIRECT_URI],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: ALG,
  }],
  adapter,
  jwks,
  scopes: ['openid'],
  claims: { openid: ['sub'] },
  pkce: { required: () => true },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  ttl: {
    AuthorizationCode: CODE_TTL, AccessToken: 3600, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600,
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
};

const provider = new Provider(ISSUER, configuration);
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function loginPage(uid, error) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><main>
<h1>Sign in</h1>
${error ? `<p id="error">${escape(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${escape(uid)}/login">
<label for="username">User name</label> <input id="username" name="username" autocomplete="username">
<label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password">
<button id="submit" type="submit">Sign in</button>
</form>
</main></body></html>
`;
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// GET /interaction/<uid>: the login form. POST /interaction/<uid>/login: check it, finish the interaction.
async function interaction(req, res) {
  const [, , uid, action] = req.url.split('?')[0].split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, 'interaction mismatch\n');
  if (req.method === 'GET' && action === undefined) return send(res, 200, loginPage(uid));
  if (req.method !== 'POST' || action !== 'login') return send(res, 404, 'not found\n');
  const form = await readForm(req);
  const name = form.get('username');
  if (!passwordMatches(name, form.get('password'))) return send(res, 200, loginPage(uid, 'Wrong user name or password'));
  const grant = new provider.Grant({ accountId: name, clientId: details.params.client_id });
  grant.addOIDCScope('openid');
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { login: { accountId: name }, consent: { grantId } }, {
    mergeWithLastSubmission: false,
  });
}

const callback = provider.callback();
createServer((req, res) => {
  if (!req.url.startsWith('/interaction/')) return callback(req, res);
  return interaction(req, res).catch((err) => {
    console.error('interaction', err);
    if (!res.headersSent) send(res, 400, 'interaction failed\n');
    else res.end();
  });
}).listen(PORT, HOST, () => {
  console.log(`oidc-provider (code flow) ${ISSUER} alg=${ALG} scheme=${SCHEME} NODE_ENV=${process.env.NODE_ENV} pid=${process.pid}`);
});
