"""Print the README's table of shipped models from their model cards.

python scripts/model_table.py [saved_models]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "saved_models"
    print(
        "| model | architecture | parameters | val accuracy | with TTA (`serving_tta`) | epochs | training time | device, backend | preset |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    for card_path in sorted(base.glob("*/*/model_card.json")):
        card = json.loads(card_path.read_text())
        m, t = card["metrics"], card["training"]
        rel = card_path.parent.relative_to(base.parent) if base.parent in card_path.parents else card_path.parent
        seconds = t["train_seconds"]
        took = f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
        print(
            f"| `{rel}` | {card['architecture']} | {card['parameters']:,} | {m['val_accuracy']:.2%} | "
            f"{m['val_accuracy_tta']:.2%} | {t['epochs']} | {took} | {t['device']}, {t['keras_backend']} | {t['preset']} |"
        )


if __name__ == "__main__":
    main()
