"""ovbench's JPEG decoder (suites/jpeg) against Pillow's, file by file, bit for bit.

    python jpeg_compare.py --jpeg2rgb target/release/examples/jpeg2rgb [--extra DIR ...]
        [--seed N] [--damaged N] [--c-idct]

Writes a corpus of JPEGs into a temporary folder and decodes each with Pillow
(`Image.open(f).convert("RGB")`, as lmms-eval does) and with ovbench's decoder (the `jpeg2rgb`
example), then compares: the same size and every byte, or both refusing the file. The corpus:

- Pillow's encoder (libjpeg-turbo): sizes from 1x1 to 500x375 (odd, not multiples of 8 or 16);
  4:4:4, 4:2:2 and 4:2:0; quality 20 to 100; baseline, progressive, optimized Huffman tables;
  restart markers every block or row; grayscale; CMYK (Adobe, inverted); RGB without the
  YCbCr transform (`keep_rgb`); noise, smooth gradients and blocks;
- `cjpeg` (libjpeg-turbo-progs), when installed: 4:4:0, 4:1:1, 1x4, 4x2 and mixed sampling
  factors, arithmetic coding (sequential and progressive), restart markers, RGB and grey;
- damaged copies: truncated at several points (Pillow refuses these) and with flipped bytes in
  the entropy-coded data (both decoders must give the same pixels or both refuse);
- any `.jpg` / `.jpeg` under the `--extra` folders.

Exit 1 on any difference. Deterministic (seeded).
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, features


def content(rng, w, h, kind):
    if kind == "noise":
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        r = 255 * x / max(w - 1, 1)
        g = 255 * y / max(h - 1, 1)
        b = 127.5 + 127.5 * np.sin((x + 2 * y) / 7.0)
        return np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8)
    # blocks: sharp edges and saturated colours, where chroma upsampling shows
    a = ((x // 5 + y // 3) % 4).astype(int)
    pal = np.array([[255, 0, 0], [0, 255, 40], [20, 20, 255], [250, 250, 250]], dtype=np.uint8)
    img = pal[a]
    img[(x.astype(int) % 11) == 0] = [0, 0, 0]
    return img


def pillow_corpus(out, rng):
    sizes = [(1, 1), (2, 3), (7, 5), (8, 8), (9, 17), (16, 16), (17, 33), (60, 90), (97, 41),
             (130, 250), (333, 257), (500, 375)]
    files = []
    skipped = 0
    for w, h in sizes:
        for kind in ("noise", "gradient", "blocks"):
            arr = content(rng, w, h, kind)
            img = Image.fromarray(arr, "RGB")
            variants = [
                ("444", dict(subsampling=0, quality=90)),
                ("422", dict(subsampling=1, quality=90)),
                ("420", dict(subsampling=2, quality=90)),
                ("420q20", dict(subsampling=2, quality=20)),
                ("420q100", dict(subsampling=2, quality=100)),
                ("420prog", dict(subsampling=2, quality=75, progressive=True)),
                ("444prog", dict(subsampling=0, quality=85, progressive=True)),
                ("422opt", dict(subsampling=1, quality=60, optimize=True)),
                ("420rst", dict(subsampling=2, quality=80, restart_marker_blocks=1)),
                ("444rstrow", dict(subsampling=0, quality=80, restart_marker_rows=1)),
                ("rgb", dict(keep_rgb=True, subsampling=0, quality=90)),
            ]
            jobs = [(img, f"{kind}_{tag}", kw) for tag, kw in variants]
            g = img.convert("L")
            jobs += [(g, f"{kind}_grey_q90", dict(quality=90)),
                     (g, f"{kind}_grey_prog", dict(quality=70, progressive=True)),
                     (img.convert("CMYK"), f"{kind}_cmyk", dict(quality=90))]
            for im, tag, kw in jobs:
                p = out / f"pil_{w}x{h}_{tag}.jpg"
                try:
                    im.save(p, "JPEG", **kw)
                except OSError:
                    # Pillow's encoder cannot write some settings on the tiniest images
                    # (progressive / optimized 1x1: "Suspension not allowed here").
                    p.unlink(missing_ok=True)
                    skipped += 1
                    continue
                files.append(p)
    return files, skipped


def cjpeg_corpus(out, rng):
    cjpeg = shutil.which("cjpeg")
    if cjpeg is None:
        return [], "cjpeg not installed (Debian: libjpeg-turbo-progs): its cases skipped"
    files = []
    opts = [
        ("440", ["-sample", "1x2"]), ("411", ["-sample", "4x1"]), ("14", ["-sample", "1x4"]),
        ("42", ["-sample", "4x2"]), ("mixed", ["-sample", "2x1,1x2,1x1"]),
        ("mixed2", ["-sample", "2x2,2x1,1x2"]), ("ari", ["-arithmetic"]),
        ("ariprog", ["-arithmetic", "-progressive"]), ("440prog", ["-sample", "1x2", "-progressive"]),
        ("rst", ["-restart", "1B"]), ("rgb", ["-rgb"]), ("grey", ["-grayscale"]),
        ("q30smooth", ["-quality", "30", "-smooth", "20"]), ("411prog", ["-sample", "4x1", "-progressive"]),
    ]
    for w, h in [(1, 1), (13, 7), (31, 64), (97, 41), (130, 250), (331, 211)]:
        for kind in ("noise", "gradient", "blocks"):
            ppm = out / f"src_{w}x{h}_{kind}.ppm"
            Image.fromarray(content(rng, w, h, kind), "RGB").save(ppm)
            for tag, args in opts:
                p = out / f"cjpeg_{w}x{h}_{kind}_{tag}.jpg"
                subprocess.run([cjpeg, *args, "-outfile", str(p), str(ppm)], check=True)
                files.append(p)
            ppm.unlink()
    return files, f"cjpeg: {len(files)} files"


def damaged(out, sources, rng):
    files = []
    for src in sources:
        data = src.read_bytes()
        sos = data.find(b"\xff\xda")
        for frac in (0.3, 0.7, 0.98):
            cut = max(4, int(len(data) * frac))
            p = out / f"trunc{int(frac * 100)}_{src.name}"
            p.write_bytes(data[:cut])
            files.append(p)
        p = out / f"noeoi_{src.name}"
        p.write_bytes(data[:-2])
        files.append(p)
        if sos > 0 and len(data) - sos > 40:
            b = bytearray(data)
            for _ in range(3):
                i = int(rng.integers(sos + 20, len(data) - 2))
                b[i] ^= int(rng.integers(1, 256))
            p = out / f"flip_{src.name}"
            p.write_bytes(bytes(b))
            files.append(p)
    return files


def pillow_decode(path):
    try:
        with Image.open(path) as im:
            rgb = im.convert("RGB")
            return rgb.size, rgb.tobytes()
    except Exception as e:  # noqa: BLE001 - any refusal counts as a refusal
        return None, f"{type(e).__name__}: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jpeg2rgb", required=True, help="target/release/examples/jpeg2rgb")
    ap.add_argument("--extra", nargs="*", default=[], help="folders with more .jpg files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="write the corpus here and keep it")
    ap.add_argument("--damaged", type=int, default=60, help="files to make damaged copies of")
    ap.add_argument("--c-idct", action="store_true",
                    help="ovbench with libjpeg's portable C IDCT instead of the x86 SIMD arithmetic")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"Pillow {Image.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}")
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="jpegcmp-"))
    corpus = tmp / "corpus"
    decoded = tmp / "decoded"
    corpus.mkdir(parents=True, exist_ok=True)
    decoded.mkdir(parents=True, exist_ok=True)
    try:
        files, skipped = pillow_corpus(corpus, rng)
        print(f"Pillow's encoder: {len(files)} files ({skipped} settings it cannot write skipped)")
        more, note = cjpeg_corpus(corpus, rng)
        print(note)
        files += more
        extra = []
        for d in args.extra:
            for p in sorted(Path(d).rglob("*")):
                if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file():
                    q = corpus / f"extra{len(extra)}_{p.name}"
                    shutil.copyfile(p, q)
                    extra.append(q)
        files += extra
        pick = [files[i] for i in rng.choice(len(files), size=min(args.damaged, len(files)), replace=False)]
        files += damaged(corpus, pick, rng)
        # One process for all files (argument lists in chunks).
        ours = {}
        for i in range(0, len(files), 200):
            chunk = files[i:i + 200]
            flag = ["--c-idct"] if args.c_idct else []
            res = subprocess.run([args.jpeg2rgb, *flag, *map(str, chunk), str(decoded)],
                                 check=True, capture_output=True, text=True)
            for line in res.stdout.splitlines():
                name, rest = line.split(" ", 1)
                ours[name] = rest
        same = refused_both = 0
        diffs = []
        for p in files:
            size, ref = pillow_decode(p)
            mine = ours[p.name]
            if size is None:
                if mine.startswith("error "):
                    refused_both += 1
                else:
                    diffs.append(f"{p.name}: Pillow refuses ({ref}), ovbench decodes {mine}")
                continue
            if mine.startswith("error "):
                diffs.append(f"{p.name}: Pillow decodes {size}, ovbench: {mine}")
                continue
            w, h = map(int, mine.split())
            got = (decoded / f"{p.name}.rgb").read_bytes()
            if (w, h) != size or got != ref:
                if (w, h) != size:
                    diffs.append(f"{p.name}: size {w}x{h}, Pillow {size}")
                else:
                    a = np.frombuffer(got, np.uint8).astype(int)
                    b = np.frombuffer(ref, np.uint8).astype(int)
                    d = np.abs(a - b)
                    diffs.append(f"{p.name}: max |diff| {d.max()}, values differing "
                                 f"{100 * (d > 0).mean():.2f} %")
                continue
            same += 1
        print(f"files {len(files)} ({len(extra)} extra): identical {same}, refused by both "
              f"{refused_both}, different {len(diffs)}")
        for d in diffs[:40]:
            print("  " + d)
        return 1 if diffs else 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
