"""Print hwopt's dependencies from pyproject.toml, one per line, for an environment whose
onnxruntime comes from another wheel (onnxruntime-openvino and onnxruntime-gpu install the same
``onnxruntime`` module, so pip must not add the CPU wheel beside them).

    python scripts/requirements.py --without onnxruntime [--extra NAME ...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # hwopt depends on tomli below 3.11
    import tomli as tomllib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without", action="append", default=[], help="a distribution to leave out")
    parser.add_argument("--extra", action="append", default=[], help="an optional-dependency group to add")
    args = parser.parse_args()
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in args.extra:
        wanted += project["optional-dependencies"][extra]
    for requirement in wanted:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()
        if name not in args.without:
            print(requirement)


if __name__ == "__main__":
    main()
