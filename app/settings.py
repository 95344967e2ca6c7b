"""Service settings: one frozen object, read from `CIFAR10_*` environment variables
(or a .env file) when the app is created, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    # An empty variable means the default: the image passes its RUNTIME build argument
    # through as CIFAR10_RUNTIME, empty unless a variant sets it.
    model_config = SettingsConfigDict(
        env_prefix="CIFAR10_", env_file=".env", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    model_dir: Path = Field(
        Path("saved_models/cifar10"), description="model folder; its highest numeric version is served"
    )
    model_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="the name served at /v1/models/<name>; default the model folder's name (saved_models/cifar10: cifar10)",
    )
    model_config_file: Path | None = Field(
        None,
        description="YAML or JSON list of models (name, base path, version policy, labels); replaces MODEL_DIR/MODEL_NAME",
    )
    model_poll_s: float = Field(
        0.0, ge=0, le=3600, description="seconds between scans of each model's base path for new versions; 0 = off"
    )
    max_batch_size: int = Field(64, ge=1, le=1024, description="images per model call")
    max_wait_ms: float = Field(5.0, ge=0, le=1000, description="how long a batch waits for more images after its first")
    max_queue: int = Field(1024, ge=1, le=100_000, description="images waiting for a batch before requests get 429")
    request_timeout_s: float = Field(10.0, gt=0, le=600, description="deadline for one request's inference; then 504")
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1 << 30, description="request body limit; larger gets 413"
    )
    max_images_per_request: int = Field(64, ge=1, le=1024, description="files (or TF Serving instances) in one request")
    max_answer_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1 << 20,
        le=1 << 30,
        description="the largest answer a request may ask for, estimated from the layers, maps and images "
        "it names before any work is done; larger gets 422 answer_too_large",
    )
    max_image_pixels: int = Field(
        16_777_216,
        ge=1024,
        le=1_000_000_000,
        description="declared width x height above which an image is refused (413)",
    )
    decode_threads: int = Field(
        1, ge=1, le=64, description="threads that decode images and parse JSON bodies, off the event loop"
    )
    max_concurrent_requests: int = Field(
        128, ge=1, le=100_000, description="inference requests in progress before new ones get 429 at once"
    )
    max_header_bytes: int = Field(
        16_384, ge=1024, le=1 << 20, description="request line plus headers; larger gets 431 (python -m app)"
    )
    max_headers: int = Field(
        100, ge=8, le=10_000, description="header fields per request; more gets 431 (python -m app)"
    )
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="time for a request's headers to arrive; then 408 and close"
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="time for a request's body to arrive after its headers; then 408 and close"
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After on 429 responses")
    api_keys: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="comma-separated keys; empty = no auth"
    )
    runtime: Literal["tensorflow", "jax", "openvino", "openvino-float32"] = Field(
        "tensorflow",
        description="tensorflow: the SavedModel; jax: the Keras archive under Keras's JAX backend (no TensorFlow); "
        "openvino / openvino-float32: the int8 / float32 OpenVINO IR (`python -m training quantize`)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="HTTP front processes; above 1, one more process holds the model and its batch queue",
    )
    grpc_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="TF Serving's gRPC API on this port (the image: 8500, TF Serving's); unset = off; 0 = any free port",
    )
    grpc_host: str = Field(
        "127.0.0.1", description="the gRPC address; cifar10-serve sets it to its --host unless given"
    )
    model_process_socket: Path | None = Field(
        None, description="set by cifar10-serve for its front processes: the model process's Unix socket"
    )
    supervisor_pid: int | None = Field(
        None, ge=1, description="set by cifar10-serve --workers N for its children: they stop when it dies"
    )
    warmup: bool = Field(True, description="run the model at every batch size before turning ready")
    log_level: str = Field("info", pattern="^(critical|error|warning|info|debug)$")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("model_config_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # compose's ${CIFAR10_MODEL_CONFIG_FILE:-}

    @property
    def max_wait_s(self) -> float:
        return self.max_wait_ms / 1000.0
