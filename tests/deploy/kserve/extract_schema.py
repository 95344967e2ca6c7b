"""Write the OpenAPI schema of KServe's InferenceService (v1beta1) from KServe's CRD file,
as the compressed JSON that tests/deploy/test_kserve.py validates deploy/kserve against.

    git -C kserve show v0.20.0:config/crd/full/serving.kserve.io_inferenceservices.yaml > crd.yaml
    python tests/deploy/kserve/extract_schema.py crd.yaml tests/deploy/kserve/inferenceservice-v1beta1.json.gz

The file committed here came from kserve/kserve tag v0.20.0 (commit
1fb781055dd1567164358233e1125142ca6ef1fe). Only the schema is kept, as it is: no field
is added or dropped; gzip without a timestamp, so the same CRD gives the same bytes.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import yaml


def schema(crd: dict, version: str = "v1beta1") -> dict:
    """The openAPIV3Schema of `version` in a CustomResourceDefinition."""
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return found["schema"]["openAPIV3Schema"]


def main(source: Path, target: Path) -> None:
    crd = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "InferenceService"
    data = json.dumps(schema(crd), sort_keys=True, separators=(",", ":")).encode()
    target.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
