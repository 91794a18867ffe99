import hashlib
import hmac
import time

TOLERANCE_S = 300  # refuse deliveries signed longer ago than this


def verify_webhook(secret: str, headers, body: bytes, seen: set, now: float | None = None) -> bool:
    """Check a clients-import webhook. `headers`: your framework's case-insensitive mapping; `body`: the
    raw bytes as received; `seen`: the delivery ids taken lately (keep each one at least TOLERANCE_S, and
    as long as the sender's retries of one delivery last). Raises ValueError when the call is forged,
    altered or too old (answer 400). Returns False for a delivery id already taken, a retry or a replay
    (answer 2xx, do nothing); True for a new one (process it and answer 2xx; if processing fails, discard
    the id from `seen` and answer 5xx: it is tried again)."""
    try:
        delivery_id = headers["X-Clients-Import-Delivery"]
        fields = dict(p.split("=", 1) for p in headers["X-Clients-Import-Webhook-Signature"].split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError) as error:
        raise ValueError("unsigned or malformed webhook") from error
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), fields.get("v1", "").encode()):
        raise ValueError("bad signature")
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise ValueError("timestamp outside the tolerance: a replay, or a clock far off")
    if delivery_id in seen:
        return False
    seen.add(delivery_id)
    return True
