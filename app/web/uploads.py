"""Multipart uploads: parse with explicit limits, then decode every image.

The form is parsed here rather than through FastAPI's `File()` parameters so the
limits (file count, part size) are ours and every violation gets our error shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.errors import InvalidRequest, PayloadTooLarge
from app.imaging.decode import decode_image
from app.web.dependencies import Inference

UPLOAD_FIELDS = ("file", "files")


@dataclass(frozen=True)
class Upload:
    filename: str | None
    pixels: np.ndarray  # uint8 [32, 32, 3]


async def read_uploads(
    request: Request, inference: Inference, max_files: int, fields: tuple[str, ...] = UPLOAD_FIELDS
) -> list[Upload]:
    """Decoded images from the `file`/`files` fields, in upload order; decoded in the
    decode pool, one job per file, within the request's deadline."""
    settings = inference.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("send the image(s) as multipart/form-data in the field 'file' (or 'files')")
    try:
        form = await request.form(max_files=max_files, max_fields=16, max_part_size=settings.max_upload_bytes)
    except (MultiPartException, HTTPException) as exc:
        # Starlette wraps parser errors in a 400 HTTPException; we want our own codes.
        message = str(getattr(exc, "message", None) or getattr(exc, "detail", exc))
        if "too many files" in message.lower():
            raise PayloadTooLarge(f"too many files: at most {max_files} per request") from None
        raise InvalidRequest(f"malformed multipart body: {message}") from None
    try:
        where = " or ".join(repr(f) for f in fields)
        unknown = sorted({key for key in form if key not in fields})
        if unknown:
            raise InvalidRequest(f"unknown form field(s) {', '.join(map(repr, unknown))[:200]}: send images in {where}")
        files = [v for key in fields for v in form.getlist(key)]
        if not files:
            raise InvalidRequest(f"no image: upload it in the multipart field {where}")
        if len(files) > max_files:
            raise PayloadTooLarge(f"too many files: {len(files)} uploaded, at most {max_files} per request")
        jobs = []
        for index, item in enumerate(files):
            if not isinstance(item, UploadFile):
                raise InvalidRequest(f"field value #{index + 1} is text, not a file upload")
            name = item.filename or f"file #{index + 1}"
            jobs.append(partial(decode_image, await item.read(), settings.max_image_pixels, name))
        pixels = await inference.decode(jobs)
        return [Upload(item.filename, p) for item, p in zip(files, pixels, strict=True) if isinstance(item, UploadFile)]
    finally:
        await form.close()
