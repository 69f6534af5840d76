// Artillery processor for the rthub scenarios: every virtual user gets its
// own token, as real users would. A single shared token makes every virtual
// user the same rthub user, and the hub limits handshakes per user (2/s,
// burst 20, by default), so most of them would be refused with 429.
//
// The token is an HS256 JWT signed with JWT_SECRET (the hub's secret), with
// the claims the hub reads: sub (a distinct "artillery-<uuid>" per virtual
// user), roles (["staff"]) and exp (one hour). Only node:crypto is used.
'use strict';

const { createHmac } = require('node:crypto');

const TOKEN_LIFETIME_SECONDS = 3600;
const ROLES = ['staff'];

function base64url(text) {
  return Buffer.from(text).toString('base64url');
}

// signHS256 returns a compact JWS of claims, signed with secret.
function signHS256(secret, claims) {
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify(claims));
  const signature = createHmac('sha256', secret)
    .update(`${header}.${payload}`)
    .digest('base64url');
  return `${header}.${payload}.${signature}`;
}

// connectWithToken is the scenario's connect function (Artillery's ws engine
// calls it before opening the socket): it mints the virtual user's token and
// sends it as an Authorization: Bearer header. The options and headers objects
// come from the shared config, so they are copied, never changed in place.
function connectWithToken(wsArgs, context, done) {
  const secret = process.env.JWT_SECRET;
  if (!secret) {
    done(new Error('JWT_SECRET is not set: export the hub\'s HS256 secret'));
    return;
  }
  const token = signHS256(secret, {
    sub: `artillery-${context.vars.$uuid}`,
    roles: ROLES,
    exp: Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECONDS,
  });
  const options = wsArgs.options || {};
  wsArgs.options = {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${token}` },
  };
  done();
}

module.exports = { connectWithToken, signHS256 };
