"""A ResNet-18 for the OpenVINO table (benchmarks/openvino.py), with its photos: run in the main
virtualenv (torch and scikit-image come with the bench extra), since .venv-openvino has neither.

The network is torchvision's ResNet-18 architecture written out here (torchvision does not
install beside this host's torch build), with random weights: no model hub is reachable. Its
BatchNorm statistics are then set the way training sets them, by running photo crops through it
in training mode, so that activations have a trained network's scale (with untouched running
statistics a random ResNet's activations grow block by block, which no real model does).

Writes, under benchmarks/models/:
  resnet18.onnx             input 'input' 1x3x224x224 (ImageNet normalization), output 'logits'
  calib/resnet18/*.png      32 photo crops for calibration (224x224)
  heldout/resnet18.npz      12 other crops (other photos), the inputs accuracy is judged on

    python benchmarks/openvino_models.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR  # noqa: E402
from defaults import PHOTO_CROPS, PHOTOS, skimage_data, square_crop, to_nchw  # noqa: E402

SIZE = 224
MODEL = REAL_DIR / "resnet18.onnx"
CALIB = REAL_DIR / "calib" / "resnet18"
HELDOUT = REAL_DIR / "heldout" / "resnet18.npz"
# Calibration and held-out crops come from different photos.
CALIB_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
CALIB_CROPS = ((1.0, 0.5, 0.5), (0.6, 0.3, 0.3), (0.6, 0.7, 0.3), (0.6, 0.3, 0.7), (0.6, 0.7, 0.7),
               (0.4, 0.5, 0.5), (0.8, 0.5, 0.4), (0.5, 0.5, 0.8))


def _crops(photos, crops) -> list[Image.Image]:
    folder = skimage_data()
    out = []
    for photo in photos:
        image = Image.open(folder / photo).convert("RGB")
        out += [square_crop(image, *crop).resize((SIZE, SIZE), Image.BILINEAR) for crop in crops]
    return out


def resnet18():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers)


def main() -> None:
    import torch

    calib = _crops(CALIB_PHOTOS, CALIB_CROPS)
    CALIB.mkdir(parents=True, exist_ok=True)
    for index, tile in enumerate(calib):
        tile.save(CALIB / f"crop_{index:02d}.png")
    held = _crops([p for p in PHOTOS if p not in CALIB_PHOTOS], PHOTO_CROPS)
    HELDOUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez(HELDOUT, input=np.concatenate([to_nchw(t, imagenet=True) for t in held]))

    torch.manual_seed(0)
    batch = torch.from_numpy(np.concatenate([to_nchw(t, imagenet=True) for t in calib]))
    calibrate_and_export(resnet18(), batch, MODEL)
    print(f"{len(calib)} calibration crops, {len(held)} held-out crops")


def calibrate_and_export(model, batch, path: Path) -> None:
    """BatchNorm statistics from ``batch`` (as training sets them), then an opset-17 export with
    input 'input' and output 'logits' at batch 1."""
    import torch

    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the passes below
    with torch.no_grad():
        for _ in range(4):
            model(batch)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (batch[:1],), str(path), input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
