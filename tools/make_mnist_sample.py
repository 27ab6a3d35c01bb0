"""Rebuild the bundled ``mnist-sample`` (dlprep/_data/mnist-sample) from the real MNIST test set.

Takes the first 5,000 digits of the genuine ``t10k`` IDX files (tests/data/realdata/mnist): 0-3,999
become the train split, 4,000-4,999 the test split. Written as gzipped IDX with a zero gzip mtime,
so the bytes (and the sha256 in recipes/mnist-sample.toml) are reproducible.
Usage: python tools/make_mnist_sample.py [SRC_DIR]
"""

import gzip
import hashlib
import struct
import sys
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parent.parent
src = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests" / "data" / "realdata" / "mnist"
out = root / "dlprep" / "_data" / "mnist-sample"
out.mkdir(parents=True, exist_ok=True)

images = np.frombuffer(gzip.open(src / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
images = images.reshape(-1, 28, 28)
labels = np.frombuffer(gzip.open(src / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
parts = {"train": slice(0, 4000), "t10k": slice(4000, 5000)}
for prefix, sl in parts.items():
    img, lab = images[sl], labels[sl]
    for kind, header, body in (
        ("images-idx3-ubyte", struct.pack(">IIII", 2051, len(img), 28, 28), img.tobytes()),
        ("labels-idx1-ubyte", struct.pack(">II", 2049, len(lab)), lab.tobytes()),
    ):
        path = out / f"{prefix}-{kind}.gz"
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                    filename="", compresslevel=9) as gz:
            gz.write(header + body)
        data = path.read_bytes()
        print(f"{path.name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}")
