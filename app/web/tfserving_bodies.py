"""TensorFlow Serving's request bodies: their JSON schemas (for the OpenAPI document)
and their parsing into uint8 images, run in the decode pool. The routes are in
app/web/routes/tfserving.py."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np

from app.errors import InvalidJSON, InvalidRequest, PayloadTooLarge
from app.imaging.decode import decode_image
from app.protocols.json_reader import json_object
from model import contract
from model.classes import IMAGE_SHAPE, NUM_CLASSES

# A 2x2 red PNG and a black 32x32 pixel list: the example must itself be a valid body.
EXAMPLE = {
    "instances": [
        {
            "b64": "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR42mM8oaHBwMDAxMDAwMDAAAAN6gEcJklYAwAAAABJRU5ErkJggg=="
        },
        [[[0, 0, 0]] * 32] * 32,
    ]
}
_PIXELS = {
    "type": "array",
    "minItems": 32,
    "maxItems": 32,
    "description": "32x32x3 whole numbers 0-255, [row][column][R, G, B]",
    "items": {
        "type": "array",
        "minItems": 32,
        "maxItems": 32,
        "items": {
            "type": "array",
            "minItems": 3,
            "maxItems": 3,
            "items": {"type": "number", "multipleOf": 1, "minimum": 0, "maximum": 255},
        },
    },
}
_TARGET = {
    "type": "integer",
    "minimum": contract.TOP_CLASS,
    "maximum": NUM_CLASSES - 1,
    "description": f"signature explain only: the class to explain, {contract.TOP_CLASS} (default) for the top class",
}


def _instance_schema(target: bool) -> dict[str, Any]:
    extra = {contract.TARGET_CLASS: _TARGET} if target else {}
    return {
        "oneOf": [
            _PIXELS,
            {
                "type": "object",
                "properties": {"b64": {"type": "string", "description": "base64 of an image file"}, **extra},
                "required": ["b64"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {contract.INPUT_NAME: _PIXELS, **extra},
                "required": [contract.INPUT_NAME],
                "additionalProperties": False,
            },
        ]
    }


def _instances_schema(target: bool) -> dict[str, Any]:
    return {
        "type": "array",
        "items": _instance_schema(target),
        "minItems": 1,
        "description": "at most CIFAR10_MAX_IMAGES_PER_REQUEST (64)",
    }


_INSTANCES = _instances_schema(target=False)
BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "signature_name": {"type": "string", "enum": [contract.SERVING_SIGNATURE, contract.EXPLAIN_SIGNATURE]},
        "instances": _instances_schema(target=True),
        "inputs": {
            "oneOf": [
                _instances_schema(target=True),
                {
                    "type": "object",
                    "properties": {
                        contract.INPUT_NAME: _INSTANCES,
                        contract.TARGET_CLASS: {"type": "array", "items": _TARGET},
                    },
                    "required": [contract.INPUT_NAME],
                    "additionalProperties": False,
                },
            ]
        },
    },
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    "additionalProperties": False,
}
EXAMPLES = {"examples": EXAMPLE["instances"]}
CLASSIFY_SCHEMA = {
    "type": "object",
    "properties": {
        "signature_name": {"type": "string", "enum": [contract.SERVING_SIGNATURE]},
        "context": {"type": "object", "maxProperties": 0},
        "examples": _INSTANCES,
    },
    "required": ["examples"],
    "additionalProperties": False,
}


def _pixels(instance: Any, index: int, max_pixels: int, key: str = "instances") -> np.ndarray:
    where = f"{key}[{index}]"
    if isinstance(instance, dict):
        if "b64" in instance and len(instance) == 1:
            try:
                data = base64.b64decode(instance["b64"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidRequest(f"{where}.b64 is not valid base64") from None
            return decode_image(data, max_pixels, where)
        if contract.INPUT_NAME in instance and len(instance) == 1:
            return _pixels(instance[contract.INPUT_NAME], index, max_pixels, key)
        raise InvalidRequest(
            f"{where}: expected {{'b64': ...}}, {{'{contract.INPUT_NAME}': ...}} or a 32x32x3 pixel list"
        )
    try:
        arr = np.asarray(instance)  # 32x32x3 numbers: 24 KB, not an image-sized copy
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise InvalidRequest(f"{where}: pixel lists must be numbers nested as [32][32][3]") from None
    if arr.shape != IMAGE_SHAPE:
        raise InvalidRequest(f"{where}: expected shape [32, 32, 3], got {list(arr.shape)}")
    # NumPy turns true/false into 1/0, and integers beyond int64 into objects.
    if arr.dtype.kind not in "iuf" or any(type(v) is bool for row in instance for px in row for v in px):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr)):
        raise InvalidRequest(f"{where}: pixel values must be integers in 0..255")
    return arr.astype(np.uint8)


def _json_object(raw: bytes, max_images: int, signatures: tuple[str, ...]) -> dict[str, Any]:
    body = json_object(raw, max_images)
    signature = body.get("signature_name", contract.SERVING_SIGNATURE)
    if signature not in signatures:
        raise InvalidRequest(
            f"signature_name {str(signature)[:100]!r} is not served here; use " + " or ".join(map(repr, signatures))
        )
    return body


def _images(items: Any, key: str, max_images: int, max_pixels: int) -> list[np.ndarray]:
    _check_count(items, key, max_images)
    return [_pixels(item, i, max_pixels, key) for i, item in enumerate(items)]


def _check_count(items: Any, key: str, max_images: int) -> None:
    if not isinstance(items, list) or not items:
        raise InvalidJSON(f"expected a non-empty list in {key!r}")
    if len(items) > max_images:
        raise PayloadTooLarge(f"too many {key}: {len(items)}, at most {max_images}")


def _target(value: Any, where: str) -> int:
    if type(value) is not int or not contract.TOP_CLASS <= value < NUM_CLASSES:
        raise InvalidRequest(
            f"{where}: {contract.TARGET_CLASS} must be an integer class id 0-{NUM_CLASSES - 1}, "
            f"or {contract.TOP_CLASS} for the top class"
        )
    return value


def _explain_item(instance: Any, index: int, max_pixels: int) -> tuple[np.ndarray, int]:
    """An explain instance's pixels and its target class (TOP_CLASS unless it names one)."""
    if isinstance(instance, dict) and contract.TARGET_CLASS in instance:
        rest = {k: v for k, v in instance.items() if k != contract.TARGET_CLASS}
        return _pixels(rest, index, max_pixels), _target(instance[contract.TARGET_CLASS], f"instances[{index}]")
    return _pixels(instance, index, max_pixels), contract.TOP_CLASS


PREDICT_SIGNATURES = (contract.SERVING_SIGNATURE, contract.EXPLAIN_SIGNATURE)


def parse_instances(raw: bytes, max_images: int, max_pixels: int) -> tuple[str, list[tuple[np.ndarray, int]]]:
    """The signature and (image, target class) pairs of a TF Serving predict body; the
    target is contract.TOP_CLASS unless an explain request names one. Runs in the decode pool."""
    body = _json_object(raw, max_images, PREDICT_SIGNATURES)
    unknown = set(body) - {"signature_name", "instances", "inputs"}
    if unknown or ("instances" in body and "inputs" in body):
        raise InvalidJSON(
            "the body takes 'instances' or 'inputs' (not both) and optionally 'signature_name'"
            + (f"; unknown keys: {', '.join(sorted(map(repr, unknown)))}"[:200] if unknown else "")
        )
    signature = body.get("signature_name", contract.SERVING_SIGNATURE)
    explain = signature == contract.EXPLAIN_SIGNATURE
    instances = body.get("instances", body.get("inputs"))
    targets: Any = None
    if isinstance(instances, dict) and explain and set(instances) == {contract.INPUT_NAME, contract.TARGET_CLASS}:
        # Columnar explain: {"image": [...], "target_class": [...]}, one target per image.
        targets = instances[contract.TARGET_CLASS]
        instances = instances[contract.INPUT_NAME]
        if not isinstance(targets, list) or not isinstance(instances, list) or len(targets) != len(instances):
            raise InvalidRequest(f"inputs.{contract.TARGET_CLASS} must be a list with one class per image")
    elif isinstance(instances, dict) and set(instances) == {contract.INPUT_NAME}:
        instances = instances[contract.INPUT_NAME]
    key = "instances' (or 'inputs"
    if not explain:
        return signature, [(image, contract.TOP_CLASS) for image in _images(instances, key, max_images, max_pixels)]
    _check_count(instances, key, max_images)
    assert isinstance(instances, list)  # _check_count raised otherwise
    items = [_explain_item(instance, i, max_pixels) for i, instance in enumerate(instances)]
    if targets is not None:
        items = [
            (image, _target(t, f"inputs.{contract.TARGET_CLASS}[{i}]"))
            for i, ((image, _), t) in enumerate(zip(items, targets, strict=True))
        ]
    return signature, items


def parse_examples(raw: bytes, max_images: int, max_pixels: int) -> list[np.ndarray]:
    """The images of a TF Serving classify body (`examples`); runs in the decode pool."""
    body = _json_object(raw, max_images, (contract.SERVING_SIGNATURE,))
    unknown = set(body) - {"signature_name", "examples", "context"}
    if unknown or "examples" not in body:
        raise InvalidJSON(
            "the body takes 'examples' and optionally 'signature_name' and 'context'"
            + (f"; unknown keys: {', '.join(sorted(map(repr, unknown)))}"[:200] if unknown else "")
        )
    if body.get("context", {}) != {}:
        raise InvalidRequest("'context' must be empty: every example carries its own image")
    return _images(body["examples"], "examples", max_images, max_pixels)
