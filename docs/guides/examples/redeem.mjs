// Redeem a coupon code as a player, then list and claim what it granted (docs/guides/rewards.md).
// Node 18+ only: `crypto` signs the tenant JWT (HS256), `fetch` talks to Phoenix. No packages.
//
//   PHOENIX_URL=http://127.0.0.1:8080 TENANT_ID=my-game TENANT_SECRET=... \
//   USER_ID=user-123 COUPON_CODE=LAUNCH-2026 node redeem.mjs
import { createHmac, randomUUID } from "node:crypto";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
};
const base = env("PHOENIX_URL");
const tenantId = env("TENANT_ID");
const userId = env("USER_ID");
const code = env("COUPON_CODE");

// A tenant JWT for the player: HS256 over base64url(header).base64url(claims), signed with the
// tenant's HMAC secret. `sub` is the player; `rewards:redeem` lets it redeem and claim, nothing else.
function playerToken(secret, tenant, player) {
  const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const header = b64url({ alg: "HS256", typ: "JWT" });
  const claims = b64url({
    sub: player,
    sub_type: "tenant",
    sub_id: tenant,
    scope: "rewards:redeem",
    iat: now,
    exp: now + 15 * 60,
  });
  const signature = createHmac("sha256", secret).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

const token = playerToken(env("TENANT_SECRET"), tenantId, userId);
const auth = { Authorization: `Bearer ${token}` };

// One key per redemption attempt: if the answer is lost and we retry with the same key, Phoenix
// answers the first redemption again instead of "already used".
const idempotencyKey = randomUUID();
async function redeem() {
  return fetch(`${base}/v1/coupons/${encodeURIComponent(code)}/redeem`, {
    method: "POST",
    headers: { ...auth, "Idempotency-Key": idempotencyKey },
  });
}
let response = await redeem();
if (response.status >= 500) response = await redeem(); // a retry is safe with the same key
const redeemed = await response.json();
if (!response.ok) {
  // 404 unknown code, 403 someone else's code, 409 with a message saying why (used, expired, ...).
  console.error(`refused (${response.status}): ${redeemed.error.message}`);
  process.exit(1);
}
console.log(`redeemed ${redeemed.code}: ${redeemed.grants.length} grant(s)`);

// The game applies each reward, then claims the grant so it is never applied twice.
for (const grant of redeemed.grants) {
  console.log(`  apply ${JSON.stringify(grant.reward)}`);
  const claimed = await fetch(`${base}/v1/rewards/${grant.grant_id}/claim`, {
    method: "POST",
    headers: auth,
  });
  if (!claimed.ok) throw new Error(`claim ${grant.grant_id}: ${claimed.status}`);
}

const pending = await (await fetch(`${base}/v1/rewards?status=pending`, { headers: auth })).json();
const all = await (await fetch(`${base}/v1/rewards`, { headers: auth })).json();
console.log(JSON.stringify({ redeemed: redeemed.grants.length, pending: pending.total, total: all.total }));
