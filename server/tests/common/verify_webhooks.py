"""Verifies webhooks with the `standardwebhooks` package (PyPI, pinned in
examples/django/requirements.txt): an implementation of the specification independent of the
server's. Reads {"secret", "deliveries": [{"headers", "body"}]} on stdin; prints, for each
delivery, {"payload": <the verified JSON>} or {"error": "<why it was refused>"}.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

request = json.load(sys.stdin)
webhook = Webhook(request["secret"])
results = []
for delivery in request["deliveries"]:
    try:
        payload = webhook.verify(delivery["body"].encode(), delivery["headers"])
        results.append({"payload": payload})
    except WebhookVerificationError as err:
        results.append({"error": str(err)})
json.dump(results, sys.stdout)
