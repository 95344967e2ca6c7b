"""TensorFlow's TensorProto in and out: the `image` input (uint8 [N, 32, 32, 3] pixels as
`tf.make_tensor_proto` sends them, in tensor_content or int_val; or string [N] image
files, decoded like uploads), `target_class` (int32 [N]), and float32/int32 outputs.
Runs in the decode pool. Every size is checked against the declared shape before any
array is made, so a huge declared shape costs nothing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from app.errors import InvalidRequest, PayloadTooLarge
from app.imaging.decode import decode_image
from model import contract
from model.classes import IMAGE_SHAPE, NUM_CLASSES

PIXELS = math.prod(IMAGE_SHAPE)
DTYPES = {np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.int32): types_pb2.DT_INT32}


def _dtype_name(dtype: int) -> str:
    return str(types_pb2.DataType.Name(dtype)) if dtype in types_pb2.DataType.values() else str(dtype)


def _dims(tensor: Any) -> list[int]:
    return [int(d.size) for d in tensor.tensor_shape.dim]


def _count(name: str, dims: list[int], max_images: int) -> int:
    n = dims[0] if dims else 0
    if n <= 0:
        raise InvalidRequest(f"input {name!r} holds no images (shape {dims})")
    if n > max_images:
        raise PayloadTooLarge(f"input {name!r} holds {n} images; at most {max_images} per request")
    return n


def images(tensor: Any, max_images: int, max_pixels: int) -> list[np.ndarray]:
    """The images of the `image` input: DT_UINT8 [N, 32, 32, 3] or DT_STRING [N] files."""
    dims, name = _dims(tensor), contract.INPUT_NAME
    if tensor.dtype == types_pb2.DT_STRING:
        if len(dims) != 1:
            raise InvalidRequest(f"input 'image' as DT_STRING must have shape [N] (image files), got {dims}")
        n = _count(name, dims, max_images)
        if len(tensor.string_val) != n:
            raise InvalidRequest(f"input 'image': shape [{n}] but {len(tensor.string_val)} strings")
        return [decode_image(data, max_pixels, f"image[{i}]") for i, data in enumerate(tensor.string_val)]
    if tensor.dtype != types_pb2.DT_UINT8:
        raise InvalidRequest(
            f"input 'image' expects DT_UINT8 [N, 32, 32, 3] (pixels) or DT_STRING [N] (image files), "
            f"got {_dtype_name(tensor.dtype)}"
        )
    if len(dims) != 4 or tuple(dims[1:]) != IMAGE_SHAPE:
        raise InvalidRequest(f"input 'image' must have shape [N, 32, 32, 3], got {dims}")
    n = _count(name, dims, max_images)
    if tensor.tensor_content:
        if len(tensor.tensor_content) != n * PIXELS:
            raise InvalidRequest(
                f"input 'image': shape {dims} needs {n * PIXELS} bytes, tensor_content holds {len(tensor.tensor_content)}"
            )
        pixels = np.frombuffer(tensor.tensor_content, dtype=np.uint8)
    else:
        if len(tensor.int_val) != n * PIXELS:
            raise InvalidRequest(
                f"input 'image': shape {dims} needs {n * PIXELS} values, int_val holds {len(tensor.int_val)}"
            )
        values = np.asarray(tensor.int_val, dtype=np.int64)
        if values.min() < 0 or values.max() > 255:
            raise InvalidRequest("input 'image': pixel values must be in 0..255")
        pixels = values.astype(np.uint8)
    return list(pixels.reshape(n, *IMAGE_SHAPE))


def targets(tensor: Any | None, n: int) -> list[int]:
    """The explain signature's `target_class`: int32 [N], -1 for an image's top class;
    absent, every image's top class."""
    if tensor is None:
        return [contract.TOP_CLASS] * n
    if tensor.dtype != types_pb2.DT_INT32 or _dims(tensor) != [n]:
        raise InvalidRequest(f"input 'target_class' must be DT_INT32 [{n}], one class per image (-1: its top class)")
    if tensor.tensor_content:
        if len(tensor.tensor_content) != 4 * n:
            raise InvalidRequest(f"input 'target_class': tensor_content must hold {4 * n} bytes")
        values = np.frombuffer(tensor.tensor_content, dtype="<i4").tolist()
    else:
        values = list(tensor.int_val)
    if len(values) != n or not all(contract.TOP_CLASS <= v < NUM_CLASSES for v in values):
        raise InvalidRequest(f"input 'target_class': {n} classes 0-{NUM_CLASSES - 1}, or -1 for the top class")
    return [int(v) for v in values]


def to_proto(array: np.ndarray) -> Any:
    """A float32 or int32 array as a TensorProto (tensor_content, as TensorFlow writes it)."""
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape])
    return tensor_pb2.TensorProto(dtype=DTYPES[array.dtype], tensor_shape=shape, tensor_content=array.tobytes())


def example_image(example: Any, index: int, max_pixels: int) -> np.ndarray:
    """A classify request's tf.Example: feature `image` as bytes_list (one image file)
    or int64_list (32x32x3 pixel values, row-major)."""
    where = f"examples[{index}]"
    feature = example.features.feature
    if contract.INPUT_NAME not in feature or len(feature) != 1:
        raise InvalidRequest(
            f"{where}: expected one feature, 'image' (bytes_list: an image file; int64_list: 3072 pixels)"
        )
    value = feature[contract.INPUT_NAME]
    kind = value.WhichOneof("kind")
    if kind == "bytes_list" and len(value.bytes_list.value) == 1:
        return decode_image(value.bytes_list.value[0], max_pixels, where)
    if kind == "int64_list" and len(value.int64_list.value) == PIXELS:
        pixels = np.asarray(value.int64_list.value, dtype=np.int64)
        if pixels.min() < 0 or pixels.max() > 255:
            raise InvalidRequest(f"{where}: pixel values must be in 0..255")
        return pixels.astype(np.uint8).reshape(IMAGE_SHAPE)
    raise InvalidRequest(f"{where}: 'image' must be a bytes_list of one image file or an int64_list of {PIXELS} pixels")
