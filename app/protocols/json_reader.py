"""Reading a JSON request body whose size the service bounds by what it may hold: the
count of values (commas and brackets, a fast scan of the bytes) is checked before
`json.loads`, which holds the GIL even in the decode pool, parses anything."""

from __future__ import annotations

import json
from typing import Any

from app.errors import InvalidJSON, PayloadTooLarge

# JSON values (counted as commas and brackets) one image may take: a 32x32x3 pixel list
# has 3,071 commas and 1,057 brackets.
VALUES_PER_IMAGE = 4200


def json_object(raw: bytes, max_images: int, what: str = "the body") -> dict[str, Any]:
    """`raw` parsed as a JSON object holding at most `max_images` images' worth of values;
    413 beyond that, 400 for anything that is not one JSON object."""
    if raw.count(b",") + raw.count(b"[") > max_images * VALUES_PER_IMAGE:
        raise PayloadTooLarge(f"{what} holds more JSON values than {max_images} images of 32x32x3 pixels")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers over Python's digit limit;
        # RecursionError, nesting deeper than the parser goes.
        raise InvalidJSON(f"{what} is not valid JSON: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise InvalidJSON(f"{what} must be a JSON object")
    return body
