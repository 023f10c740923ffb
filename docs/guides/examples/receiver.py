"""A Phoenix webhook receiver (docs/guides/rewards.md): verifies each delivery's Standard Webhooks
signature with the `standardwebhooks` package, drops repeats by `webhook-id` (delivery is at least
once), and hands each new event to `handle`. Python 3.9+, `pip install standardwebhooks`.

    WEBHOOK_SECRET=whsec_... PORT=8081 python receiver.py

Answer 2xx only once the event is safely handled: anything else (or no answer within 10 s) makes
Phoenix send it again, with the same webhook-id, after 5 s, 30 s, 2 min, ... up to a day.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ["WEBHOOK_SECRET"]
PORT = int(os.environ.get("PORT", "8081"))
# For the guide's test only: answer 500 once, after handling, as if the process died before it could
# answer; the retry that follows is recognised as a repeat.
FAIL_FIRST = os.environ.get("FAIL_FIRST") == "1"

verifier = Webhook(SECRET)
# In production, keep the ids in your database, in the same transaction as what `handle` does.
seen = set()
lock = threading.Lock()
failed_once = False


def handle(event):
    """Credit the goods, notify the player, ... Here: print one line per event."""
    print(json.dumps({"new": event["type"], "id": event["id"], "data": event["data"]}), flush=True)


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        global failed_once
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            # Checks the signature (any of them, during a secret rotation) and the timestamp (5 min).
            event = verifier.verify(body, dict(self.headers))
        except WebhookVerificationError as e:
            print(json.dumps({"rejected": str(e)}), flush=True)
            return self.answer(400)
        webhook_id = self.headers["webhook-id"]
        with lock:
            repeat = webhook_id in seen
            if not repeat:
                seen.add(webhook_id)
                handle(event)
        if repeat:
            print(json.dumps({"repeat": webhook_id}), flush=True)
        elif FAIL_FIRST and not failed_once:
            failed_once = True
            return self.answer(500)
        self.answer(204)

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Hook)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
