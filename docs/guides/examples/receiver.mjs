// A Phoenix webhook receiver (docs/guides/rewards.md): verifies each delivery's Standard Webhooks
// signature with the `standardwebhooks` package, drops repeats by `webhook-id` (delivery is at least
// once), and hands each new event to `handle`. Node.js 18+, `npm install standardwebhooks`.
//
//     WEBHOOK_SECRET=whsec_... PORT=8081 node receiver.mjs
//
// Answer 2xx only once the event is safely handled: anything else (or no answer within 10 s) makes
// Phoenix send it again, with the same webhook-id, after 5 s, 30 s, 2 min, ... up to a day.

import { createServer } from "node:http";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const verifier = new Webhook(process.env.WEBHOOK_SECRET);
const port = Number(process.env.PORT ?? 8081);
// For the guide's test only: answer 500 once, after handling, as if the process died before it could
// answer; the retry that follows is recognised as a repeat.
let failFirst = process.env.FAIL_FIRST === "1";
// In production, keep the ids in your database, in the same transaction as what `handle` does.
const seen = new Set();

function handle(event) {
  // Credit the goods, notify the player, ... Here: print one line per event.
  console.log(JSON.stringify({ new: event.type, id: event.id, data: event.data }));
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    // Verify the exact bytes received: parsing and re-serializing would change them.
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    try {
      // Checks the signature (any of them, during a secret rotation) and the timestamp (5 min).
      event = verifier.verify(body, req.headers);
    } catch (e) {
      if (!(e instanceof WebhookVerificationError)) throw e;
      console.log(JSON.stringify({ rejected: e.message }));
      res.writeHead(400).end();
      return;
    }
    const id = req.headers["webhook-id"];
    if (seen.has(id)) {
      console.log(JSON.stringify({ repeat: id }));
      res.writeHead(204).end();
      return;
    }
    seen.add(id);
    handle(event);
    if (failFirst) {
      failFirst = false;
      res.writeHead(500).end();
      return;
    }
    res.writeHead(204).end();
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(JSON.stringify({ listening: server.address().port }));
});
