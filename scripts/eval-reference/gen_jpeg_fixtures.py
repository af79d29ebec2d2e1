"""Writes suites/jpeg/tests/fixtures/: tiny JPEGs and what Pillow decodes them to.

    python scripts/eval-reference/gen_jpeg_fixtures.py   # in scripts/pyenv.sh's environment

Each file is encoded by Pillow (its libjpeg-turbo) from a formula image (no random numbers), then
decoded with `Image.open(f).convert("RGB")` as lmms-eval does; expected.json keeps the size and
the SHA-256 of the RGB bytes, or Pillow's error for files it refuses. suites/jpeg's test
`pillow_fixtures` decodes the same files and compares. Rerun after changing Pillow's pin
(scripts/eval-reference/requirements.txt) and commit the result.
"""

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, features

OUT = Path(__file__).resolve().parents[2] / "suites" / "jpeg" / "tests" / "fixtures"


def picture(w, h):
    """Gradients, a diagonal wave and sharp saturated blocks: chroma edges and smooth areas."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255) // max(w - 1, 1)
    g = (y * 255) // max(h - 1, 1)
    b = np.where(((x // 3) + (y // 2)) % 2 == 0, 250, 10)
    b = np.where(x + y > w, (x * y * 7) % 256, b)
    return Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8), "RGB")


def encode(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def main():
    files = {
        "rgb420_13x9.jpg": encode(picture(13, 9), quality=90, subsampling=2),
        "rgb422_10x7.jpg": encode(picture(10, 7), quality=80, subsampling=1),
        "rgb444_progressive_17x11.jpg": encode(picture(17, 11), quality=85, subsampling=0,
                                               progressive=True),
        # Progressive 4:2:0 wide enough (5x3 blocks) for the 5x5 block smoothing.
        "rgb420_progressive_40x24.jpg": encode(picture(40, 24), quality=60, subsampling=2,
                                               progressive=True),
        "rgb420_restart_24x16.jpg": encode(picture(24, 16), quality=75, subsampling=2,
                                           restart_marker_blocks=1),
        "grey_9x9.jpg": encode(picture(9, 9).convert("L"), quality=90),
        # Pillow writes CMYK as Adobe does (inverted) and reads it back as "CMYK;I".
        "cmyk_8x6.jpg": encode(picture(8, 6).convert("CMYK"), quality=90),
        "rgb_no_transform_7x7.jpg": encode(picture(7, 7), quality=90, subsampling=0, keep_rgb=True),
    }
    # Damaged entropy-coded data that Pillow still decodes (warnings only), with blocks whose
    # values overflow: libjpeg's C IDCT wraps where the x86 SIMD one (Pillow's) saturates. The
    # two flipped bytes were picked so that the two IDCTs give different pixels here.
    y, x = np.mgrid[0:16, 0:16]
    base = Image.fromarray(np.stack([x * 16, y * 16, (x * y) % 256], -1).astype(np.uint8), "RGB")
    damaged = bytearray(encode(base, quality=90, subsampling=0))
    for offset, xor in ((703, 78), (656, 71)):
        damaged[offset] ^= xor
    files["damaged_simd_idct_16x16.jpg"] = bytes(damaged)
    # Truncated in the middle of the scan: Pillow refuses ("image file is truncated").
    whole = files["rgb420_progressive_40x24.jpg"]
    files["truncated_40x24.jpg"] = whole[: len(whole) * 6 // 10]
    whole = files["rgb420_13x9.jpg"]
    files["truncated_13x9.jpg"] = whole[: len(whole) - 40]

    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        try:
            with Image.open(io.BytesIO(data)) as im:
                rgb = im.convert("RGB")
            expected[name] = {"width": rgb.width, "height": rgb.height,
                              "rgb_sha256": hashlib.sha256(rgb.tobytes()).hexdigest()}
        except OSError as e:
            expected[name] = {"error": str(e)}
    expected["damaged_simd_idct_16x16.jpg"]["simd_idct_matters"] = True
    doc = {"pillow": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"),
           "written_by": "scripts/eval-reference/gen_jpeg_fixtures.py", "files": expected}
    (OUT / "expected.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    for name, e in expected.items():
        print(name, len(files[name]), "bytes", e.get("error", f"{e.get('width')}x{e.get('height')}"))


if __name__ == "__main__":
    main()
