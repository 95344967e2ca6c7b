"""TrainConfig's fields as `train` flags: one flag per field, typed from its annotation,
with the field's unit comment in training/config.py as its help. A new field is a new
flag without touching the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import tokenize
import typing
from typing import Any

from training import config
from training.config import TrainConfig

# Fields set otherwise: --preset records itself, notes are free-form.
NOT_FLAGS = ("preset", "notes")
CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ("tutorial", "fast", "airbench"),
    "optimizer": ("sgd", "adam"),
    "stem": ("conv", "whiten"),
    "data_format": ("auto", "channels_last", "channels_first"),
}


def field_comments() -> dict[str, str]:
    """Each field's trailing comment in TrainConfig's source: its unit and meaning."""
    source = inspect.getsource(TrainConfig)
    comments: dict[str, str] = {}
    line_start: str | None = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.start[1] == 4 and line_start is None:
            line_start = token.string
        elif token.type == tokenize.COMMENT and line_start is not None:
            comments[line_start] = token.string.lstrip("# ").strip()
        if token.type in (tokenize.NEWLINE, tokenize.NL):
            line_start = None
    return comments


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers, e.g. 64,128,128") from None


def flag_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(TrainConfig) if f.name not in NOT_FLAGS]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field; unset flags stay None (the preset's value holds)."""
    hints = typing.get_type_hints(TrainConfig, vars(config))
    comments = field_comments()
    group = parser.add_argument_group("TrainConfig fields (override the preset)")
    for field in flag_fields():
        kind = hints[field.name]
        # argparse formats help with %: a literal one must be doubled.
        options: dict[str, Any] = {"default": None, "help": comments.get(field.name, "").replace("%", "%%")}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            options.update(type=_int_tuple, metavar="N,N,...")
        else:
            # int | None and the like: the non-None member.
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            options["type"] = args[0] if args else kind
            if field.name in CHOICES:
                options["choices"] = CHOICES[field.name]
        group.add_argument("--" + field.name.replace("_", "-"), **options)


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the user set on the command line."""
    return {f.name: getattr(args, f.name) for f in flag_fields() if getattr(args, f.name) is not None}
