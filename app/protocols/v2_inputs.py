"""The Open Inference Protocol's (KServe v2) inference request: its JSON header and the
binary tensor data extension's parts after it, checked and turned into the images and
target classes the operations take. Runs in the decode pool: JSON parsing and image
decoding never run on the event loop.

Binary extension: the `Inference-Header-Content-Length` header says how many bytes of
the body are the JSON header; each input with `parameters.binary_data_size` takes that
many bytes of the rest, in input order. BYTES elements are each a 4-byte little-endian
length and the bytes (tritonclient's `serialize_byte_tensor`); in JSON, a BYTES element
is a string, here base64 of an image file (as TF Serving's `b64`).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidRequest, PayloadTooLarge
from app.imaging.decode import decode_image
from app.protocols.json_reader import json_object
from model import contract
from model.classes import IMAGE_SHAPE, NUM_CLASSES

PIXELS = math.prod(IMAGE_SHAPE)
INPUT_NAMES = (contract.INPUT_NAME, contract.TARGET_CLASS)


@dataclass(frozen=True)
class Tensor:
    """One input as the request declares it; `data` is its JSON list or its binary part."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any


@dataclass(frozen=True)
class Request:
    """A checked inference request: the images (uint8 [32, 32, 3]), one target class per
    image (contract.TOP_CLASS unless given), and the outputs asked for, each with
    whether it goes back as binary data."""

    id: str | None
    images: list[np.ndarray]
    targets: list[int]
    outputs: list[tuple[str, bool]]  # (name, binary); empty: the default output


def _header(raw: bytes, header_length: int | None, max_images: int) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        head, rest = raw, b""
    elif not 0 < header_length <= len(raw):
        raise InvalidRequest(f"Inference-Header-Content-Length is {header_length}, but the body holds {len(raw)} bytes")
    else:
        head, rest = raw[:header_length], raw[header_length:]
    return json_object(head, max_images, "the inference request"), rest


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise InvalidRequest(f"{where}: 'shape' must be a list of whole numbers >= 0")
    return tuple(value)


def _tensors(body: dict[str, Any], binary: bytes, max_images: int) -> dict[str, Tensor]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidRequest("the request needs a non-empty 'inputs' list")
    tensors: dict[str, Tensor] = {}
    offset = 0
    for i, spec in enumerate(inputs):
        where = f"inputs[{i}]"
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest(f"{where}: each input is an object with 'name', 'datatype', 'shape' and its data")
        name = spec["name"]
        if name not in INPUT_NAMES:
            raise InvalidRequest(f"unknown input {name[:50]!r}; this model takes {', '.join(map(repr, INPUT_NAMES))}")
        if name in tensors:
            raise InvalidRequest(f"input {name!r} is given twice")
        shape = _shape(spec.get("shape"), f"input {name!r}")
        if shape and shape[0] > max_images:  # before any data is looked at: a huge declared shape costs nothing
            raise PayloadTooLarge(f"input {name!r} holds {shape[0]} elements; at most {max_images} images per request")
        params = spec.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if type(size) is not int or size < 0:
                raise InvalidRequest(f"input {name!r}: binary_data_size must be a whole number of bytes")
            if offset + size > len(binary):
                raise InvalidRequest(
                    f"input {name!r} declares {size} bytes of binary data at offset {offset}, "
                    f"but the body holds {len(binary)} after the JSON header (truncated?)"
                )
            data: Any = binary[offset : offset + size]
            offset += size
        elif "data" in spec:
            data = spec["data"]
        else:
            raise InvalidRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        tensors[name] = Tensor(name, str(spec.get("datatype")), shape, data)
    if offset != len(binary):
        raise InvalidRequest(
            f"the body holds {len(binary)} bytes of binary data after the JSON header; the inputs declare {offset}"
        )
    if contract.INPUT_NAME not in tensors:
        raise InvalidRequest(f"the request needs the input {contract.INPUT_NAME!r}")
    return tensors


def _count(tensor: Tensor, max_images: int) -> int:
    n = tensor.shape[0] if tensor.shape else 0
    if n == 0:
        raise InvalidRequest(f"input {tensor.name!r} holds no elements (shape {list(tensor.shape)})")
    if n > max_images:
        raise PayloadTooLarge(f"input {tensor.name!r} holds {n} images; at most {max_images} per request")
    return n


def _numbers(tensor: Tensor, dtype: type[np.integer[Any]], count: int) -> np.ndarray:
    """A numeric tensor's values, flat: from its binary part (little-endian) or JSON list."""
    if isinstance(tensor.data, bytes):
        width = np.dtype(dtype).itemsize
        if len(tensor.data) != count * width:
            raise InvalidRequest(
                f"input {tensor.name!r}: shape {list(tensor.shape)} needs {count * width} bytes of "
                f"{tensor.datatype}, the binary part holds {len(tensor.data)}"
            )
        return np.frombuffer(tensor.data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    try:
        values = np.asarray(tensor.data)
    except (TypeError, ValueError, OverflowError, RecursionError):
        values = np.asarray([None])
    if values.size != count or values.dtype.kind not in "iu":
        raise InvalidRequest(
            f"input {tensor.name!r}: 'data' must be {count} whole numbers (shape {list(tensor.shape)}), "
            "flat or nested row-major"
        )
    info = np.iinfo(dtype)
    if values.min() < info.min or values.max() > info.max:
        raise InvalidRequest(f"input {tensor.name!r}: values must be in {info.min}..{info.max}")
    return values.reshape(-1).astype(dtype)


def _files(tensor: Tensor, count: int) -> list[bytes]:
    """A BYTES tensor's elements: length-prefixed in its binary part, base64 in JSON."""
    if isinstance(tensor.data, bytes):
        files, offset, data = [], 0, tensor.data
        while offset < len(data):
            if offset + 4 > len(data):
                raise InvalidRequest(f"input {tensor.name!r}: a BYTES element's 4-byte length is cut short")
            (size,) = struct.unpack_from("<I", data, offset)
            if offset + 4 + size > len(data):
                raise InvalidRequest(f"input {tensor.name!r}: a BYTES element of {size} bytes is cut short")
            files.append(data[offset + 4 : offset + 4 + size])
            offset += 4 + size
    else:
        flat = np.asarray(tensor.data, dtype=object).reshape(-1) if isinstance(tensor.data, list) else None
        if flat is None or not all(isinstance(s, str) for s in flat):
            raise InvalidRequest(f"input {tensor.name!r}: BYTES 'data' must be a list of base64 strings of image files")
        try:
            files = [base64.b64decode(s, validate=True) for s in flat]
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"input {tensor.name!r}: an element is not valid base64") from None
    if len(files) != count:
        raise InvalidRequest(
            f"input {tensor.name!r}: shape {list(tensor.shape)} declares {count} elements, got {len(files)}"
        )
    return files


def _images(tensor: Tensor, max_images: int, max_pixels: int) -> list[np.ndarray]:
    n = _count(tensor, max_images)
    if tensor.datatype == "UINT8":
        if tensor.shape[1:] != IMAGE_SHAPE:
            raise InvalidRequest(f"input 'image': UINT8 shape must be [N, 32, 32, 3], got {list(tensor.shape)}")
        return list(_numbers(tensor, np.uint8, n * PIXELS).reshape(n, *IMAGE_SHAPE))
    if tensor.datatype == "BYTES":
        if tensor.shape[1:] not in ((), (1,)):
            raise InvalidRequest(f"input 'image': BYTES shape must be [N] or [N, 1], got {list(tensor.shape)}")
        files = _files(tensor, n)
        return [decode_image(data, max_pixels, f"image[{i}]") for i, data in enumerate(files)]
    raise InvalidRequest(
        f"input 'image' must be UINT8 [N, 32, 32, 3] (pixels) or BYTES [N] (image files), got {tensor.datatype[:20]}"
    )


def _targets(tensor: Tensor | None, n: int) -> list[int]:
    if tensor is None:
        return [contract.TOP_CLASS] * n
    if tensor.datatype not in ("INT32", "INT64") or tensor.shape != (n,):
        raise InvalidRequest(f"input 'target_class' must be INT32 [{n}], one class per image (-1: its top class)")
    values = _numbers(tensor, np.int32 if tensor.datatype == "INT32" else np.int64, n)
    if values.min() < contract.TOP_CLASS or values.max() >= NUM_CLASSES:
        raise InvalidRequest(f"input 'target_class': classes are 0-{NUM_CLASSES - 1}, or -1 for the top class")
    return [int(v) for v in values]


def _outputs(body: dict[str, Any]) -> list[tuple[str, bool]]:
    params = body.get("parameters") or {}
    binary_default = bool(params.get("binary_data_output", False)) if isinstance(params, dict) else False
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list):
        raise InvalidRequest("'outputs' must be a list of {'name': ...} objects")
    chosen = []
    for spec in outputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise InvalidRequest("each requested output is an object with a 'name'")
        out_params = spec.get("parameters") or {}
        binary = out_params.get("binary_data", binary_default) if isinstance(out_params, dict) else binary_default
        chosen.append((spec["name"], bool(binary)))
    names = [name for name, _ in chosen]
    twice = sorted({name[:50] for name in names if names.count(name) > 1})
    if twice:  # each would be answered again: a few KB of body could ask for 100 MB (issue 27)
        raise InvalidRequest(f"output(s) named more than once: {', '.join(map(repr, twice))}; name each once")
    return chosen or [(contract.PROBABILITIES, binary_default)]


def parse_request(raw: bytes, header_length: int | None, max_images: int, max_pixels: int) -> Request:
    """The checked request; InvalidRequest (400 on /v2), InvalidJSON or PayloadTooLarge
    with a message that names the input and what was expected. Runs in the decode pool."""
    body, binary = _header(raw, header_length, max_images)
    request_id = body.get("id")
    tensors = _tensors(body, binary, max_images)
    images = _images(tensors[contract.INPUT_NAME], max_images, max_pixels)
    targets = _targets(tensors.get(contract.TARGET_CLASS), len(images))
    return Request(str(request_id) if request_id is not None else None, images, targets, _outputs(body))
