"""Run airbench's own PyTorch code on this project's data and split, as a reference for the
Keras port (docs/gpu-training.md, "airbench's own code on this data").

The port's accuracy falls short of airbench's published figures, and the question is
whether the port or the data is the cause. This runs the original,
`legacy/airbench94.py` of KellerJordan/cifar10-airbench (give its path; it is not
copied here), changed only where it must be to run here:

- the data: the training and validation images of `--split-seed`'s split, decoded
  by `training.data` (airbench downloads the official files with torchvision). The
  training images are shuffled once, so that the first 5,000, which airbench fits
  its whitening on, are a random draw and not 4,500 airplanes;
- the device: float32 on the CPU, where airbench runs float16 on CUDA, and a
  wall-clock timer for its CUDA events;
- the knobs: widths of blocks 2 and 3, epochs and the torch seed from the command
  line; one run, not 25.

Each edit must match the original exactly, or the script stops. It needs PyTorch
(`pip install torch==2.13.0`; torchvision is not needed). On the 2-core CPU, widths
64/128/128 take about 30 minutes.

    python scripts/airbench_reference.py --airbench ../cifar10-airbench/legacy/airbench94.py \\
        --widths 64,128,128 --out runs/airbench-reference
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.config import DEFAULT_DATA, TrainConfig  # noqa: E402
from training.data import load_dataset, stratified_split  # noqa: E402

SHUFFLE_SEED = 12345  # the training images' order in the run docs/gpu-training.md records

# (original text, replacement): every change made to airbench's file.
EDITS = [
    ("import torchvision\nimport torchvision.transforms as T\n", "import numpy as np, time\n"),
    ("torch.backends.cudnn.benchmark = True", "torch.manual_seed(int(os.environ['SEED']))"),
    ("        'train_epochs': 9.9,", "        'train_epochs': float(os.environ['EPOCHS']),"),
    (
        "            'block2': 256,\n            'block3': 256,",
        "            'block2': int(os.environ['W2']),\n            'block3': int(os.environ['W3']),",
    ),
    (
        """        data_path = os.path.join(path, 'train.pt' if train else 'test.pt')
        if not os.path.exists(data_path):
            dset = torchvision.datasets.CIFAR10(path, download=True, train=train)
            images = torch.tensor(dset.data)
            labels = torch.tensor(dset.targets)
            torch.save({'images': images, 'labels': labels, 'classes': dset.classes}, data_path)

        data = torch.load(data_path, map_location=torch.device(gpu))
        self.images, self.labels, self.classes = data['images'], data['labels'], data['classes']""",
        """        d = np.load(os.environ['SPLIT'])
        self.images = torch.tensor(d['x_train' if train else 'x_val'])
        self.labels = torch.tensor(d['y_train' if train else 'y_val']).long()
        self.classes = list(range(10))""",
    ),
    ("self.images.half() / 255", "self.images.float() / 255"),
    (
        "self.normalize = T.Normalize(CIFAR_MEAN, CIFAR_STD)",
        "self.normalize = lambda x: (x - CIFAR_MEAN.view(1, 3, 1, 1)) / CIFAR_STD.view(1, 3, 1, 1)",
    ),
    ("    net = net.half().cuda()\n", "    net = net.float()\n"),
    (
        "    starter = torch.cuda.Event(enable_timing=True)\n    ender = torch.cuda.Event(enable_timing=True)",
        "    class Ev:\n        def record(self): self.t = time.perf_counter()\n"
        "        def elapsed_time(self, other): return 1e3 * (other.t - self.t)\n    starter, ender = Ev(), Ev()",
    ),
    ("torch.cuda.synchronize()", "pass"),
    (
        "    accs = torch.tensor([main(run) for run in range(25)])",
        "    accs = torch.tensor([main(run) for run in range(1)])",
    ),
]


def patched(source: str) -> str:
    for original, replacement in EDITS:
        if original not in source:
            raise SystemExit(f"airbench's file does not contain the text this script edits:\n{original}")
        source = source.replace(original, replacement)
    return source


def write_split(data: str, split_seed: int, path: Path) -> None:
    dataset = load_dataset(data)
    train_idx, val_idx = stratified_split(dataset.labels, TrainConfig().val_size, split_seed)
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(train_idx))
    np.savez(
        path,
        x_train=dataset.images[train_idx][order],
        y_train=dataset.labels[train_idx][order],
        x_val=dataset.images[val_idx],
        y_val=dataset.labels[val_idx],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airbench", type=Path, required=True, help="path of legacy/airbench94.py")
    parser.add_argument("--widths", default="64,256,256", help="blocks 1-3; block 1 stays airbench's 64")
    parser.add_argument("--epochs", default="9.9")
    parser.add_argument("--seed", type=int, default=0, help="torch's seed: initial weights and augmentation")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the script, the split and the log")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if len(widths) != 3 or widths[0] != 64:
        raise SystemExit("--widths: three widths, the first 64 (airbench's block 1 is not a knob here)")
    args.out.mkdir(parents=True, exist_ok=False)
    script = args.out / "airbench94_reference.py"
    script.write_text(patched(args.airbench.read_text()))
    split = args.out / "split.npz"
    write_split(args.data, args.split_seed, split)
    env = {
        **os.environ,
        "SPLIT": str(split.resolve()),
        "EPOCHS": args.epochs,
        "W2": str(widths[1]),
        "W3": str(widths[2]),
        "SEED": str(args.seed),
    }
    with (args.out / "log.txt").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, script.name], cwd=args.out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            text = line.decode()
            sys.stdout.write(text)
            log.write(text)
    return proc.wait()


if __name__ == "__main__":
    raise SystemExit(main())
