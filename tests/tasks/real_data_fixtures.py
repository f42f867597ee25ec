"""Tiny valid captioning data in the cs231n COCO and the plain formats, written into a directory.

Image i shows a coloured animal (COLORS[i % 4], ANIMALS[i % 3]); its captions name both and its
features encode both one-hot plus a little noise, so a decoder can genuinely learn the mapping
(the end-to-end training test relies on this). Everything is deterministic from `seed`.
Shapes: N images, S positions per image (spatial features), D feature width (>= 7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

COLORS = ("red", "green", "blue", "yellow")
ANIMALS = ("cat", "dog", "bird")
SPECIALS = ("<NULL>", "<START>", "<END>", "<UNK>")
COCO_T = 17  # cs231n caption row length


def caption_words(i: int) -> list[list[str]]:
    """The 2 or 3 captions of image i, as lower-case words."""
    c, a = COLORS[i % len(COLORS)], ANIMALS[i % len(ANIMALS)]
    caps = [["a", c, a], ["the", a, "is", c], ["one", c, a, "sitting"]]
    return caps[: 2 + i % 2]


def image_features(n: int, dim: int, grid: int = 0, seed: int = 0) -> np.ndarray:
    """(n, dim) one-hot colour + animal + noise, or (n, grid, dim) with per-position noise."""
    if dim < len(COLORS) + len(ANIMALS):
        raise ValueError(f"dim must be >= {len(COLORS) + len(ANIMALS)}; got {dim}")
    rng = np.random.default_rng(seed)
    base = np.zeros((n, dim), dtype=np.float32)  # (N, D)
    base[np.arange(n), np.arange(n) % len(COLORS)] = 1.0
    base[np.arange(n), len(COLORS) + np.arange(n) % len(ANIMALS)] = 1.0
    shape = (n, grid, dim) if grid else (n, dim)
    feats = (base[:, None] if grid else base) + 0.05 * rng.standard_normal(shape)
    return feats.astype(np.float32)  # (N, D) | (N, S, D)


def coco_vocab() -> list[str]:
    """idx_to_word of the COCO fixture: the specials, then every fixture word sorted."""
    words = {w for i in range(12) for cap in caption_words(i) for w in cap}
    return list(SPECIALS) + sorted(words)


def write_coco(
    data_dir: str | Path,
    n_train: int = 6,
    n_val: int = 4,
    pca_dim: int = 8,
    full_dim: int = 16,
    seed: int = 0,
) -> dict[str, list[list[list[str]]]]:
    """Write the cs231n COCO files (both PCA and full features) into `data_dir`.

    Caption rows are shuffled, as image order in the real file is arbitrary; train image 0 also
    gets a caption containing <UNK>. Returns {"train"|"val": per image, its captions' words in
    file order}.
    """
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    itw = coco_vocab()
    wti = {w: i for i, w in enumerate(itw)}
    (root / "coco2014_vocab.json").write_text(json.dumps({"idx_to_word": itw, "word_to_idx": wti}))
    rng = np.random.default_rng(seed)
    words: dict[str, list[list[list[str]]]] = {}
    with h5py.File(root / "coco2014_captions.h5", "w") as f:
        for split, n in (("train", n_train), ("val", n_val)):
            per_image = [caption_words(i) for i in range(n)]
            if split == "train":
                per_image[0].append(["a", "<UNK>", ANIMALS[0]])
            pairs = [(i, cap) for i, caps in enumerate(per_image) for cap in caps]
            pairs = [pairs[k] for k in rng.permutation(len(pairs))]
            rows = np.zeros((len(pairs), COCO_T), dtype=np.int32)  # (N, T) <NULL>-padded
            for r, (_, cap) in enumerate(pairs):
                ids = [1] + [wti[w] for w in cap] + [2]  # <START> words <END>
                rows[r, : len(ids)] = ids
            f[f"{split}_captions"] = rows
            f[f"{split}_image_idxs"] = np.array([i for i, _ in pairs], dtype=np.int32)
            words[split] = [[cap for j, cap in pairs if j == i] for i in range(n)]
            for suffix, dim in (("_pca", pca_dim), ("", full_dim)):
                with h5py.File(root / f"{split}2014_vgg16_fc7{suffix}.h5", "w") as g:
                    g["features"] = image_features(n, dim, seed=seed + len(split))
    return words


class PlainFiles(NamedTuple):
    captions: Path  # the captions JSON
    features: Path  # the .npy / .h5 features
    words: dict[
        int, list[list[str]]
    ]  # image row -> its captions as the loader should tokenise them


def render(words: list[str], j: int) -> str:
    """Caption text with the case and punctuation the loader must strip."""
    text = " ".join(words)
    return [text.capitalize() + ".", text.upper() + "!", text.replace(" ", ", ")][j % 3]


def write_plain(
    root: str | Path,
    n_images: int = 10,
    spatial: bool = False,
    fmt: str = "npy",
    key: str = "features",
    dim: int = 8,
    seed: int = 0,
) -> PlainFiles:
    """Write captions.json and features.{npy|h5} for images 0..n_images-1 into `root`.

    The features file has one extra, uncaptioned row (the loader must ignore it); spatial
    features are a (N, 4, dim) grid.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    words = {i: caption_words(i) for i in range(n_images)}
    texts = {str(i): [render(w, j) for j, w in enumerate(words[i])] for i in reversed(words)}
    captions = root / "captions.json"
    captions.write_text(json.dumps(texts, indent=1))
    feats = image_features(n_images + 1, dim, grid=4 if spatial else 0, seed=seed)
    features = root / f"features.{fmt}"
    if fmt == "npy":
        np.save(features, feats)
    elif fmt in ("h5", "hdf5"):
        with h5py.File(features, "w") as f:
            f[key] = feats
    else:
        raise ValueError(f"fmt must be 'npy', 'h5' or 'hdf5'; got {fmt!r}")
    return PlainFiles(captions, features, words)
