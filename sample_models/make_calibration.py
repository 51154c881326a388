"""Write the sample models' calibration folder: photo crops from the scikit-image wheel.

``make demo`` builds mobilenetv2_tiny with ``--calib sample_models/calib``: static INT8 needs
real input samples (hwopt calibrates on generated data only when told ``--calib generated``),
and these are real photographs, the kind of input an image model is fed. The crops are
committed; regenerate them (deterministically) with::

    .venv/bin/pip install scikit-image && .venv/bin/python sample_models/make_calibration.py

Each photo gives square crops at a few positions and scales, resized to 96x96 (the sample
CNNs' input size) and saved as JPEG; hwopt's default image preprocessing (bilinear resize to the
model's input size, torchvision ImageNet normalization, NCHW) turns them into inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "calib"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
          "hubble_deep_field.jpg", "ihc.png")
SIZE = 96
# (fraction of the short side, centre x, centre y) of each crop.
CROPS = ((1.0, 0.5, 0.5), (0.6, 0.3, 0.35), (0.6, 0.7, 0.65), (0.4, 0.5, 0.5))


def photo_folder() -> Path:
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def crops(image: Image.Image):
    width, height = image.size
    for fraction, cx, cy in CROPS:
        side = int(min(width, height) * fraction)
        left = int(min(max(cx * width - side / 2, 0), width - side))
        top = int(min(max(cy * height - side / 2, 0), height - side))
        yield image.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.BILINEAR)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    folder = photo_folder()
    count = 0
    for name in PHOTOS:
        path = folder / name
        image = Image.open(path).convert("RGB")
        for index, crop in enumerate(crops(image)):
            crop.save(OUT / f"{Path(name).stem}_{index}.jpg", quality=90)
            count += 1
    print(f"{count} crops in {OUT} (mean pixel {np.mean([np.asarray(Image.open(p)) for p in OUT.glob('*.jpg')]):.1f})")


if __name__ == "__main__":
    main()
