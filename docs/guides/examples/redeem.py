"""Redeem a coupon code as a player, then list and claim what it granted (docs/guides/rewards.md).

Needs PyJWT and requests (`pip install PyJWT requests`):

    PHOENIX_URL=http://127.0.0.1:8080 TENANT_ID=my-game TENANT_SECRET=... \
    USER_ID=user-123 COUPON_CODE=LAUNCH-2026 python redeem.py
"""

import json
import os
import sys
import time
import uuid
from urllib.parse import quote

import jwt
import requests


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"set {name}")
    return value


def player_token(secret: str, tenant: str, player: str) -> str:
    """A tenant JWT for the player: HS256, signed with the tenant's HMAC secret. `sub` is the player;
    `rewards:redeem` lets it redeem and claim, nothing else."""
    now = int(time.time())
    claims = {
        "sub": player,
        "sub_type": "tenant",
        "sub_id": tenant,
        "scope": "rewards:redeem",
        "iat": now,
        "exp": now + 15 * 60,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


base = env("PHOENIX_URL")
session = requests.Session()
session.headers["Authorization"] = "Bearer " + player_token(
    env("TENANT_SECRET"), env("TENANT_ID"), env("USER_ID")
)
code = env("COUPON_CODE")

# One key per redemption attempt: a retry with the same key answers the first redemption again.
key = str(uuid.uuid4())
url = f"{base}/v1/coupons/{quote(code, safe='')}/redeem"
response = session.post(url, headers={"Idempotency-Key": key}, timeout=10)
if response.status_code >= 500:
    response = session.post(url, headers={"Idempotency-Key": key}, timeout=10)
body = response.json()
if not response.ok:
    # 404 unknown code, 403 someone else's code, 409 with a message saying why (used, expired, ...).
    sys.exit(f"refused ({response.status_code}): {body['error']['message']}")
print(f"redeemed {body['code']}: {len(body['grants'])} grant(s)")

# The game applies each reward, then claims the grant so it is never applied twice.
for grant in body["grants"]:
    print(f"  apply {json.dumps(grant['reward'])}")
    claimed = session.post(f"{base}/v1/rewards/{grant['grant_id']}/claim", timeout=10)
    claimed.raise_for_status()

pending = session.get(f"{base}/v1/rewards", params={"status": "pending"}, timeout=10).json()
everything = session.get(f"{base}/v1/rewards", timeout=10).json()
print(json.dumps({"redeemed": len(body["grants"]), "pending": pending["total"], "total": everything["total"]}))
