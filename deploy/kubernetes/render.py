"""Render a kustomization here without kustomize: `python deploy/kubernetes/render.py cpu`
prints the cpu overlay's manifests, as `kubectl kustomize deploy/kubernetes/overlays/cpu`
would, for `kubectl apply -f -`. The tests render every overlay with it.

Only the part of kustomize these files use: `resources` (files, or folders with a
kustomization.yaml), `patches` as RFC 6902 JSON patches with a kind/name target, and
`images`. Anything else in a kustomization is refused rather than silently ignored.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
OVERLAYS = HERE / "overlays"
KNOWN_KEYS = {"apiVersion", "kind", "resources", "patches", "images"}


class RenderError(Exception):
    """The kustomization uses something this renderer does not implement, or a patch fails."""


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts[:-1]:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise RenderError(f"no {path!r} to patch") from exc
    return doc


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of `doc` with the JSON patch operations add, replace and remove applied."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent, last = _parent(doc, parts, op["path"]), parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind in ("replace", "remove") and 0 <= index < len(parent):
                if kind == "replace":
                    parent[index] = copy.deepcopy(op["value"])
                else:
                    del parent[index]
            else:
                raise RenderError(f"cannot {kind} {op['path']!r}")
        elif isinstance(parent, dict):
            if kind == "add":
                parent[last] = copy.deepcopy(op["value"])
            elif kind in ("replace", "remove") and last in parent:
                if kind == "replace":
                    parent[last] = copy.deepcopy(op["value"])
                else:
                    del parent[last]
            else:
                raise RenderError(f"cannot {kind} {op['path']!r}: no such field")
        else:
            raise RenderError(f"{op['path']!r} does not point into an object or a list")
    return doc


def _image_name(image: str) -> str:
    """`registry:5000/repo/name:tag@sha256:...` -> `registry:5000/repo/name`."""
    image = image.split("@")[0]
    head, _, last = image.rpartition("/")
    last = last.split(":")[0]
    return f"{head}/{last}" if head else last


def _set_images(doc: dict[str, Any], images: list[dict[str, str]]) -> None:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        name = _image_name(container["image"])
        for image in images:
            if image["name"] == name:
                new = image.get("newName", name)
                container["image"] = (
                    f"{new}@{image['digest']}" if "digest" in image else f"{new}:{image.get('newTag', 'latest')}"
                )


def render(folder: Path) -> list[dict[str, Any]]:
    """The resources of the kustomization in `folder`, patched, in the order listed."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_KEYS
    if unknown:
        raise RenderError(f"{folder}: kustomization fields not implemented here: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        if set(target) - {"kind", "name"}:
            raise RenderError(f"{folder}: only kind/name patch targets are implemented: {target}")
        ops = yaml.safe_load((folder / patch["path"]).read_text())
        if not isinstance(ops, list):
            raise RenderError(
                f"{folder / patch['path']}: only JSON 6902 patches (a list of operations) are implemented"
            )
        matched = [
            i for i, d in enumerate(docs) if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        if not matched:
            raise RenderError(f"{folder}: patch {patch['path']} matches no resource")
        for i in matched:
            docs[i] = apply_patch(docs[i], ops)
    for doc in docs:
        _set_images(doc, kustomization.get("images", []))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "overlay", help=f"one of {sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir())}, or a folder"
    )
    args = parser.parse_args()
    folder = OVERLAYS / args.overlay if (OVERLAYS / args.overlay).is_dir() else Path(args.overlay)
    try:
        docs = render(folder)
    except RenderError as exc:
        raise SystemExit(f"render: {exc}") from exc
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
