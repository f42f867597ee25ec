"""Plain captioning format for any data: a captions JSON plus a features `.npy` / `.h5` file.

Format
------
`captions`: a JSON object mapping image id -> list of caption strings:

    {"0": ["A cat on a mat.", "a cat sitting"], "17": ["Two dogs, running!"]}

  The image id is the image's row index in the features array, written as a decimal string
  (JSON keys are strings). Every listed image needs at least one caption and every caption at
  least one word and at most `max_caption_words` (default MAX_CAPTION_WORDS = 100; COCO's longest
  caption has about 50): a longer one is refused, as a sign of broken data, since every word of
  a reference is scored and decoded towards. Feature rows that no key names are ignored.
`features`: a `.npy` file, or an `.h5` / `.hdf5` file holding dataset `features_key` (default
  "features"): a float array, no NaN/inf, of shape
    (N, D)     one vector per image (a CNN's pooled or fc7 output), or
    (N, S, D)  S vectors per image (a spatial grid flattened to S = H*W positions, or S regions);
  D is the encoder's `feature_dim`, S the memory length the attention decoders attend over.

Processing: captions are lower-cased, apostrophes dropped ("don't" -> "dont") and every other
non-alphanumeric character treated as a word break. Images are split by a seeded shuffle:
`test_fraction` and `val_fraction` of them (rounded, at least one each) go to test and val, the rest
to train, so no image's captions straddle splits. The vocabulary is <NULL> <START> <END> <UNK>
(ids 0..3) then the words of the TRAIN captions seen at least `min_word_count` times, most frequent
first (ties alphabetical); other words become <UNK>. Train has one Example per caption (id
"img:k"); val and test one per image (id "img"), `target` its first caption and `references` all.

Shapes: N images, S positions per image, D feature width. This module also holds the file
helpers (one-line `TaskError`s naming file and key) shared with `coco.py`.
"""

from __future__ import annotations

import json
import re
import reprlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from benchmarks.tasks.base import Example, TaskData, TaskError, Vocab, register_task

_APOSTROPHES = re.compile(r"['\u2019]")
_NON_WORD = re.compile(r"[\W_]+")
_ROW_ID = re.compile(r"[0-9]+")
_FINITE_CHUNK = 4096  # rows per NaN/inf check: no full-size bool temporary for a 1 GB fc7 array
MAX_CAPTION_WORDS = 100  # default limit of words per caption in user data (plain and coco)


def where(path: Path, key: str | None = None) -> str:
    """`file['key']`, the prefix of every error message."""
    return str(path) if key is None else f"{path}[{key!r}]"


def short(value: Any, width: int = 60) -> str:
    """One-line, truncated repr of a bad value (reprlib: a huge bad JSON is not printed whole)."""
    text = reprlib.repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def one_line(error: Exception, width: int = 120) -> str:
    """A library's error text on one line (h5py's can span several)."""
    return " ".join(str(error).split())[:width]


def require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"{p}: {'not a file' if p.exists() else 'file not found'}")
    return p


def read_json(path: Path) -> Any:
    """Parsed JSON; a duplicate object key is an error (json would silently keep the last)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise TaskError(f"{where(path, key)}: duplicate key")
            out[key] = value
        return out

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, object_pairs_hook=no_duplicates)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{path}: invalid JSON ({e})") from None


def read_h5(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Datasets `keys` of HDF5 file `path`, read whole; a missing one lists the keys present."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise TaskError(f"{path}: cannot open as HDF5 ({one_line(e)})") from None
    with f:
        out = {}
        for key in keys:
            if key not in f:
                raise TaskError(f"{path}: no dataset {key!r}; found {sorted(f.keys())}")
            if not isinstance(f[key], h5py.Dataset):
                raise TaskError(f"{where(path, key)} is a group, not a dataset")
            out[key] = np.asarray(f[key][()])
        return out


def check_features(arr: np.ndarray, path: Path, key: str | None) -> np.ndarray:
    """Float (N, D) or (N, S, D) features without NaN/inf, as float32."""
    at = where(path, key)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TaskError(f"{at}: features must be a float array; got dtype {arr.dtype}")
    if arr.ndim not in (2, 3) or 0 in arr.shape[1:]:
        raise TaskError(f"{at}: features must have shape (N, D) or (N, S, D); got {arr.shape}")
    with np.errstate(over="ignore"):  # a float64 too big for float32 becomes inf: caught below
        arr = arr.astype(np.float32, copy=False)
    for start in range(0, len(arr), _FINITE_CHUNK):
        chunk = arr[start : start + _FINITE_CHUNK]
        finite = np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)  # (rows,)
        if not finite.all():
            raise TaskError(f"{at}: features row {start + int(np.argmin(finite))} has NaN/inf")
    return arr


def read_features(path: Path, key: str) -> np.ndarray:
    """Features from a `.npy` file or dataset `key` of an `.h5`/`.hdf5` file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise TaskError(f"{path}: cannot read as .npy ({one_line(e)})") from None
        return check_features(arr, path, None)
    if suffix in (".h5", ".hdf5"):
        return check_features(read_h5(path, [key])[key], path, key)
    raise TaskError(f"{path}: features must be a .npy, .h5 or .hdf5 file; got {suffix!r}")


def subsample(n: int, k: int | None, seed: Sequence[int]) -> np.ndarray:
    """Sorted indices of a seeded random k-subset of range(n); all of them when k is None."""
    if k is None or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(list(seed)).choice(n, size=k, replace=False))


def tokenize(caption: str) -> list[str]:
    """Lower-case words: apostrophes dropped, any other non-alphanumeric character splits."""
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", caption.lower())).split()


def check_max_words(max_caption_words: int) -> None:
    if max_caption_words < 1:
        raise TaskError(f"max_caption_words must be >= 1; got {max_caption_words}")


def caption_too_long(caption: str, words: int, limit: int) -> TaskError:
    return TaskError(
        f"{caption} has {words} words, more than max_caption_words={limit} "
        "(broken data? the task argument max_caption_words raises the limit)"
    )


def read_captions(
    path: Path, max_caption_words: int = MAX_CAPTION_WORDS
) -> dict[int, list[list[str]]]:
    """{image row: tokenised captions} from a captions JSON (module docstring)."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise TaskError(
            f"{path}: must be a non-empty JSON object of image id -> list of caption strings; "
            f"got {short(data)}"
        )
    out: dict[int, list[list[str]]] = {}
    for key, caps in data.items():
        at = where(path, key)
        if not _ROW_ID.fullmatch(key):
            raise TaskError(f'{at}: image id must be a feature row index like "17"')
        if int(key) in out:
            raise TaskError(f"{at}: image id repeats row {int(key)}")
        if not isinstance(caps, list) or not caps:
            raise TaskError(f"{at}: must be a non-empty list of caption strings; got {short(caps)}")
        for j, cap in enumerate(caps):
            if not isinstance(cap, str):
                raise TaskError(f"{at}: caption {j} must be a string; got {short(cap)}")
        words = [tokenize(cap) for cap in caps]
        for j, w in enumerate(words):
            if not w:
                raise TaskError(f"{at}: caption {j} has no words: {short(caps[j])}")
            if len(w) > max_caption_words:
                raise caption_too_long(f"{at}: caption {j}", len(w), max_caption_words)
        out[int(key)] = words
    return out


def split_images(
    images: Sequence[int], val_fraction: float, test_fraction: float, seed: int, path: Path
) -> dict[str, list[int]]:
    """Seeded split of image ids into train/val/test (sorted); an empty split is an error."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < frac < 1:
            raise TaskError(f"{name} must be in (0, 1) (0 leaves a split empty); got {frac}")
    n = len(images)
    n_val, n_test = max(1, round(val_fraction * n)), max(1, round(test_fraction * n))
    if n - n_val - n_test < 1:
        raise TaskError(
            f"{path}: {n} image(s) leave split 'train' empty after val {n_val} and test {n_test}"
        )
    perm = np.random.default_rng(seed).permutation(np.asarray(images)).tolist()
    parts = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val]}
    parts["train"] = perm[n_test + n_val :]
    return {name: sorted(ids) for name, ids in parts.items()}


def build_vocab(captions: Iterable[list[str]], min_word_count: int) -> Vocab:
    """Specials, then words seen >= min_word_count times, most frequent first (ties by word)."""
    counts = Counter(w for cap in captions for w in cap)
    kept = [w for w, c in counts.items() if c >= min_word_count]
    return Vocab.from_words(sorted(kept, key=lambda w: (-counts[w], w)))


def per_image_example(source: np.ndarray, refs: list[list[int]], uid: str) -> Example:
    """An eval example: target = first caption, references = all of them."""
    return Example(source, refs[0], len(refs[0]), refs, uid)


@register_task("plain")
def plain(
    captions: str,
    features: str,
    features_key: str = "features",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    min_word_count: int = 1,
    seed: int = 0,
    max_caption_words: int = MAX_CAPTION_WORDS,
) -> TaskData:
    """Captions JSON + features .npy/.h5 (format in the module docstring)."""
    if min_word_count < 1:
        raise TaskError(f"min_word_count must be >= 1; got {min_word_count}")
    check_max_words(max_caption_words)
    cap_path, feat_path = require_file(captions), require_file(features)
    texts = read_captions(cap_path, max_caption_words)
    feats = read_features(feat_path, features_key)  # (N, D) | (N, S, D)
    top = max(texts)
    if top >= len(feats):
        raise TaskError(
            f"{where(cap_path, str(top))}: image id {top} is out of range for "
            f"{feat_path} with {len(feats)} rows"
        )
    split = split_images(sorted(texts), val_fraction, test_fraction, seed, cap_path)
    vocab = build_vocab((cap for i in split["train"] for cap in texts[i]), min_word_count)
    ids = {i: [vocab.encode(cap) for cap in texts[i]] for i in texts}
    config = {
        "captions": str(cap_path),
        "features": str(feat_path),
        "features_key": features_key,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "min_word_count": min_word_count,
        "seed": seed,
        "max_caption_words": max_caption_words,
    }
    return TaskData(
        name="plain",
        source_kind="features",
        train=[
            Example(feats[i], t, len(t), None, f"{i}:{k}")
            for i in split["train"]
            for k, t in enumerate(ids[i])
        ],
        val=[per_image_example(feats[i], ids[i], str(i)) for i in split["val"]],
        test=[per_image_example(feats[i], ids[i], str(i)) for i in split["test"]],
        tgt_vocab=vocab,
        src_vocab=None,
        encoder="features",
        encoder_cfg={"feature_dim": int(feats.shape[-1])},
        config=config,
    )
