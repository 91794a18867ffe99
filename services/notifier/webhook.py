"""Posting a job's notification to the requester's callback URL, signed: one attempt, its back-off, the words
of its outcome. The outbox (`outbox.py`) keeps the deliveries and counts their attempts."""

import asyncio
import hashlib
import hmac

import httpx

SIGNATURE_HEADER = "X-Clients-Import-Signature"
MAX_BACKOFF_S = 3600.0  # however many attempts are allowed, one wait is at most an hour


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the exact body, as `sha256=<hex>`: the receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempt: int, first: float) -> float:
    """The wait after failed attempt number `attempt`: `first`, doubling each time, at most an hour."""
    return min(MAX_BACKOFF_S, first * 2.0 ** min(max(attempt - 1, 0), 40))


async def attempt(client: httpx.AsyncClient, url: str, body: bytes, secret: str, timeout_s: float) -> tuple[bool, str]:
    """One signed POST, bounded by `timeout_s` in all (the client follows no redirect, and the answer's
    body is never read): whether it was taken (a 2xx), and what happened, in words."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)}
    try:
        async with asyncio.timeout(timeout_s), client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
    except Exception as error:  # whatever goes wrong (refused, reset, timed out, a bad URL) fails this attempt
        return False, type(error).__name__
    return 200 <= status < 300, f"HTTP {status}"


def delivered(attempt_number: int, answer: str) -> str:
    return f"delivered on attempt {attempt_number} ({answer})"


def failed(attempts: int, problem: str) -> str:
    return f"failed after {attempts} attempts (last: {problem})"
