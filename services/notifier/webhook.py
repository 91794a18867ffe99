"""Posting a job's notification to the requester's callback URL, signed, with bounded retries."""

import asyncio
import hashlib
import hmac

import httpx

SIGNATURE_HEADER = "X-Clients-Import-Signature"


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the exact body, as `sha256=<hex>`: the receiver recomputes and compares."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempt: int, first: float) -> float:
    return first * 2 ** (attempt - 1)


async def deliver(
    client: httpx.AsyncClient, url: str, body: bytes, secret: str, attempts: int, first_backoff: float
) -> str:
    """Try up to `attempts` times; the outcome in words, for the job's record."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)}
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(url, content=body, headers=headers)
            if 200 <= response.status_code < 300:
                return f"delivered on attempt {attempt} (HTTP {response.status_code})"
            problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            problem = type(error).__name__
        if attempt < attempts:
            await asyncio.sleep(backoff(attempt, first_backoff))
    return f"failed after {attempts} attempts (last: {problem})"
