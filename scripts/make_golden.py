"""Writes tests/golden/: a source image, its .nic under the shipped photo q3 model, and the
sha256 of the decoded pixels. Run once per release that adds a golden; never overwrite one."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import smooth_image  # noqa: E402

from nicodec import container, registry  # noqa: E402

out = Path(__file__).resolve().parent.parent / "tests" / "golden"
out.mkdir(exist_ok=True)
src = smooth_image(45, 61, seed=7)
Image.fromarray(src).save(out / "source.png")
reg = registry.Registry(registry.REPO_MODELS)
codec = reg.codec(quality=3, generation=1)
blob = codec.encode(src)
(out / "photo-q3.nic").write_bytes(blob)
pixels = codec.decode(*container.parse(blob))
meta = {"file": "photo-q3.nic", "source": "source.png", "base_id": container.format_id(codec.base_id),
        "pixels_sha256": hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest(),
        "shape": list(pixels.shape)}
(out / "golden.json").write_text(json.dumps(meta, indent=1) + "\n")
print(meta)
