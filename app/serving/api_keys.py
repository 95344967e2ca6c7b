"""API-key auth, whatever protocol the key came by: HTTP headers or gRPC metadata carry
`authorization: Bearer <key>` or `x-api-key: <key>`."""

from __future__ import annotations

import secrets
from collections.abc import Collection

from app.errors import Unauthorized

MISSING = "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def check_api_key(keys: Collection[str], authorization: str, x_api_key: str) -> None:
    """Unauthorized unless the offered key is one of `keys` (none configured: no auth)."""
    if not keys:
        return
    offered = authorization[7:].strip() if authorization.lower().startswith("bearer ") else x_api_key
    # Compare against every key in constant time, so timing reveals nothing.
    if not any(secrets.compare_digest(offered.encode(), key.encode()) for key in keys):
        raise Unauthorized(MISSING)
