"""The CNNs the optimize-speed table (benchmarks/optimize_speed.py) times: torchvision's ResNeXt50-32x4d
and SqueezeNet 1.1 architectures written out here (torchvision does not install beside this host's
torch build), with random weights, since no model hub is reachable. As in benchmarks/openvino_models.py,
BatchNorm statistics are set by running photo crops through the network in training mode, so
activations have a trained network's scale. ResNet-18 comes from benchmarks/openvino_models.py.

Writes, under benchmarks/models/ (calibration crops: benchmarks/models/calib/resnet18, shared):
  resnext50_32x4d.onnx   input 'input' 1x3x224x224, output 'logits' (1000 classes)
  squeezenet1_1.onnx     input 'input' 1x3x224x224, output 'logits'
  yolov8n.onnx           input 'images' 1x3x640x640: Ultralytics' YOLOv8n built from the yaml
                         config that ships in its wheel (random weights, nothing downloaded) and
                         exported by Ultralytics itself, where `ultralytics` is installed (it is
                         not a bench dependency: it pulls OpenCV); skipped otherwise

    python benchmarks/speed_models.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REAL_DIR  # noqa: E402
from defaults import to_nchw  # noqa: E402
from openvino_models import CALIB_CROPS, CALIB_PHOTOS, _crops, calibrate_and_export  # noqa: E402

RESNEXT = REAL_DIR / "resnext50_32x4d.onnx"
SQUEEZENET = REAL_DIR / "squeezenet1_1.onnx"
YOLO_PATH = REAL_DIR / "yolov8n.onnx"


def resnext50_32x4d():
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, planes: int, stride: int, groups: int = 32, width_per_group: int = 4):
            super().__init__()
            width = planes * width_per_group * groups // 64
            cout = planes * 4
            self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            y = torch.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for index in range(blocks):
            layers.append(Bottleneck(cin, planes, stride if index == 0 else 1))
            cin = planes * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


def squeezenet1_1():
    import torch
    from torch import nn

    class Fire(nn.Module):
        def __init__(self, cin: int, squeeze: int, expand: int):
            super().__init__()
            self.squeeze = nn.Conv2d(cin, squeeze, 1)
            self.expand1 = nn.Conv2d(squeeze, expand, 1)
            self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            x = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1(x)), torch.relu(self.expand3(x))], 1)

    pool = nn.MaxPool2d(3, 2, ceil_mode=True)
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool,
        Fire(64, 16, 64), Fire(128, 16, 64), pool,
        Fire(128, 32, 128), Fire(256, 32, 128), pool,
        Fire(256, 48, 192), Fire(384, 48, 192), Fire(384, 64, 256), Fire(512, 64, 256),
        nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


def main() -> None:
    import torch

    batch = torch.from_numpy(np.concatenate([to_nchw(t, imagenet=True) for t in _crops(CALIB_PHOTOS, CALIB_CROPS)]))
    torch.manual_seed(0)
    calibrate_and_export(resnext50_32x4d(), batch, RESNEXT)
    torch.manual_seed(0)
    calibrate_and_export(squeezenet1_1(), batch, SQUEEZENET)
    yolov8n()


def yolov8n() -> None:
    import shutil
    import tempfile

    try:
        import torch
        from ultralytics import YOLO
    except ImportError:
        print("ultralytics not installed: yolov8n.onnx not written (pip install ultralytics to add it)")
        return
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = YOLO("yolov8n.yaml")
        model.model.float()
        exported = model.export(format="onnx", imgsz=640, opset=17, simplify=False, dynamic=False, project=tmp)
        shutil.move(str(exported), YOLO_PATH)
    print(f"wrote {YOLO_PATH}")


if __name__ == "__main__":
    main()
