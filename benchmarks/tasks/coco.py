"""COCO 2014 captioning in the cs231n assignment-3 format: VGG-16 fc7 features + caption ids.

Files in `data_dir` (as cs231n's get_coco_dataset.sh leaves them):
  coco2014_captions.h5   train_captions (N, T) int, rows "<START> w ... <END> <NULL> ..." (T = 17),
                         train_image_idxs (N,) int (row of the caption's image in the features),
                         val_captions, val_image_idxs (the same for the val split)
  coco2014_vocab.json    {"idx_to_word": [...], "word_to_idx": {...}}; <NULL> <START> <END> <UNK>
                         are ids 0..3, the same ids as models.base (PAD BOS EOS UNK)
  {train,val}2014_vgg16_fc7_pca.h5   dataset "features" (N_images, 512)   pca_features=True
  {train,val}2014_vgg16_fc7.h5       dataset "features" (N_images, 4096)  pca_features=False

Choices:
- target: a caption's ids before its first <END>, with <START>/<NULL> dropped; <UNK> is kept (the
  model must learn to emit it, as in cs231n). A row with no word left is an error.
- train: cs231n's train split, one Example per caption (~400k), source = its image's feature row
  (F,), id "train2014:img:row".
- val/test: cs231n has no test split, so the images of its val split are shuffled (seeded) and
  halved, first half val, second half test: an image's captions never straddle the two. One
  Example per image (id "val2014:img"): `target` its first caption in file order, `references`
  all of its captions (for BLEU/CIDEr).
- max_train keeps that many train captions, max_eval that many images of each of val and test:
  seeded random subsets, kept in file / image order. The split and the two subsamples draw from
  independent streams of `seed`, so changing max_train never reshuffles val/test.
- Every caption row and image index is validated, not only those kept, so a subsample never
  hides a corrupt file. A row of more than `max_caption_words` words (default 100, as for the
  plain format; cs231n's rows hold at most 15) is refused as broken data.

Shapes: N captions, T caption row length, F feature width (512 or 4096).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.tasks.base import Example, TaskData, TaskError, Vocab, register_task
from benchmarks.tasks.plain import (
    MAX_CAPTION_WORDS,
    caption_too_long,
    check_features,
    check_max_words,
    per_image_example,
    read_h5,
    read_json,
    require_file,
    short,
    subsample,
    where,
)
from models.base import EOS, SPECIAL_TOKENS, UNK

CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
SPLITS = ("train", "val")


def feature_file(split: str, pca: bool) -> str:
    return f"{split}2014_vgg16_fc7{'_pca' if pca else ''}.h5"


def read_vocab(path: Path) -> Vocab:
    """cs231n vocab.json, checked for internal consistency and the reserved specials."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise TaskError(f"{path}: must be a JSON object with 'idx_to_word' and 'word_to_idx'")
    itw, wti = data.get("idx_to_word"), data.get("word_to_idx")
    if not isinstance(itw, list) or not all(isinstance(w, str) for w in itw):
        raise TaskError(
            f"{where(path, 'idx_to_word')}: must be a list of strings; got {short(itw)}"
        )
    if not isinstance(wti, dict):
        raise TaskError(f"{where(path, 'word_to_idx')}: must be an object; got {short(wti)}")
    if tuple(itw[:4]) != SPECIAL_TOKENS:
        raise TaskError(
            f"{where(path, 'idx_to_word')}: ids 0..3 must be {list(SPECIAL_TOKENS)}; got {itw[:4]}"
        )
    if len(wti) != len(itw):
        raise TaskError(
            f"{path}: 'word_to_idx' has {len(wti)} entries but 'idx_to_word' has {len(itw)}"
        )
    for i, w in enumerate(itw):
        if wti.get(w) != i or isinstance(wti.get(w), bool):
            raise TaskError(
                f"{path}: 'idx_to_word'[{i}] is {w!r} but 'word_to_idx'[{w!r}] is {wti.get(w)!r}"
            )
    return Vocab(itw)


def check_split(
    raw: dict[str, np.ndarray], split: str, path: Path, vocab_size: int, max_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (captions (N, T) int64, image_idxs (N,) int64) of `split`."""
    ckey, ikey = f"{split}_captions", f"{split}_image_idxs"
    caps, idxs = raw[ckey], raw[ikey]
    for key, arr, ndim in ((ckey, caps, 2), (ikey, idxs, 1)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise TaskError(f"{where(path, key)}: must be integer; got dtype {arr.dtype}")
        if arr.ndim != ndim:
            raise TaskError(f"{where(path, key)}: must be {ndim}-D; got shape {arr.shape}")
    if len(idxs) != len(caps):
        raise TaskError(f"{where(path, ikey)}: has {len(idxs)} rows but {ckey!r} has {len(caps)}")
    if len(caps) == 0 or caps.shape[1] == 0:
        raise TaskError(f"{where(path, ckey)}: is empty (shape {caps.shape}): no {split} split")
    bad = (caps < 0) | (caps >= vocab_size)  # (N, T)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise TaskError(
            f"{where(path, ckey)}: row {r} has id {caps[r, c]} outside the vocabulary "
            f"(size {vocab_size})"
        )
    caps = caps.astype(np.int64)
    words = word_mask(caps).sum(axis=1)  # (N,)
    if (words == 0).any():
        r = int(np.argmax(words == 0))
        raise TaskError(f"{where(path, ckey)}: row {r} has no words: {caps[r].tolist()}")
    if (words > max_words).any():
        r = int(np.argmax(words > max_words))
        raise caption_too_long(f"{where(path, ckey)}: row {r}", int(words[r]), max_words)
    return caps, idxs.astype(np.int64)


def word_mask(caps: np.ndarray) -> np.ndarray:
    """(N, T) bool: the words of each row, i.e. non-special ids or <UNK> before the first <END>."""
    t = caps.shape[1]
    is_end = caps == EOS  # (N, T)
    end = np.where(is_end.any(axis=1), is_end.argmax(axis=1), t)  # (N,) first <END> or T
    return (caps >= UNK) & (np.arange(t) < end[:, None])  # (N, T)


def decode_rows(caps: np.ndarray) -> list[list[int]]:
    """Target id lists of caption rows (N, T): one flat gather, then slices, for ~400k rows."""
    keep = word_mask(caps)  # (N, T)
    flat = caps[keep].tolist()
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    return [flat[a:b] for a, b in zip([0] + ends[:-1], ends, strict=True)]


def check_image_idxs(idxs: np.ndarray, cap_path: Path, key: str, feat_path: Path, n: int) -> None:
    bad = (idxs < 0) | (idxs >= n)  # (N,)
    if bad.any():
        r = int(np.argmax(bad))
        raise TaskError(
            f"{where(cap_path, key)}: row {r} is image {idxs[r]}, out of range for {feat_path} "
            f"with {n} images"
        )


def train_examples(
    caps: np.ndarray, idxs: np.ndarray, feats: np.ndarray, max_train: int | None, seed: int
) -> list[Example]:
    rows = subsample(len(caps), max_train, [seed, 1])  # (K,)
    targets = decode_rows(caps[rows])
    return [
        Example(feats[img], t, len(t), None, f"train2014:{img}:{r}")
        for r, img, t in zip(rows.tolist(), idxs[rows].tolist(), targets, strict=True)
    ]


def eval_examples(
    caps: np.ndarray,
    idxs: np.ndarray,
    feats: np.ndarray,
    max_eval: int | None,
    seed: int,
    path: Path,
) -> tuple[list[Example], list[Example]]:
    """cs231n val halved by image into (val, test), one Example per image."""
    order = np.argsort(idxs, kind="stable")  # (N,) rows grouped by image, file order within
    images, starts = np.unique(idxs[order], return_index=True)  # (I,), (I,)
    groups = np.split(order, starts[1:])  # I arrays of caption rows
    perm = np.random.default_rng([seed, 0]).permutation(len(images))  # (I,)
    half = len(images) // 2
    out = []
    for k, (name, pos) in enumerate((("val", perm[:half]), ("test", perm[half:]))):
        if len(pos) == 0:
            raise TaskError(
                f"{where(path, 'val_image_idxs')}: {len(images)} distinct image(s) leave split "
                f"{name!r} empty (cs231n val is halved by image into val and test)"
            )
        pos = np.sort(pos)[subsample(len(pos), max_eval, [seed, 2 + k])]
        exs = []
        for p in pos.tolist():
            img = int(images[p])
            exs.append(
                per_image_example(feats[img], decode_rows(caps[groups[p]]), f"val2014:{img}")
            )
        out.append(exs)
    return out[0], out[1]


def load_split(
    root: Path,
    split: str,
    pca: bool,
    raw: dict[str, np.ndarray],
    cap_path: Path,
    vocab_size: int,
    max_words: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    """Validated captions (N, T), image_idxs (N,), features (N_images, F) and their file."""
    feat_path = require_file(root / feature_file(split, pca))
    feats = check_features(read_h5(feat_path, ["features"])["features"], feat_path, "features")
    caps, idxs = check_split(raw, split, cap_path, vocab_size, max_words)
    check_image_idxs(idxs, cap_path, f"{split}_image_idxs", feat_path, len(feats))
    return caps, idxs, feats, feat_path


@register_task("coco")
def coco(
    data_dir: str,
    pca_features: bool = True,
    max_train: int | None = None,
    max_eval: int | None = None,
    seed: int = 0,
    max_caption_words: int = MAX_CAPTION_WORDS,
) -> TaskData:
    """cs231n COCO captions with VGG-16 fc7 features (module docstring)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise TaskError(f"{root}: data_dir not found (it should hold {CAPTIONS_FILE}, ...)")
    for name, value in (("max_train", max_train), ("max_eval", max_eval)):
        if value is not None and value < 1:
            raise TaskError(f"{name} must be >= 1 or None; got {value}")
    check_max_words(max_caption_words)
    vocab = read_vocab(require_file(root / VOCAB_FILE))
    cap_path = require_file(root / CAPTIONS_FILE)
    raw = read_h5(cap_path, [f"{s}_{k}" for s in SPLITS for k in ("captions", "image_idxs")])
    data = {
        s: load_split(root, s, pca_features, raw, cap_path, len(vocab), max_caption_words)
        for s in SPLITS
    }
    (f_train, p_train), (f_val, p_val) = ((data[s][2].shape[1:], data[s][3]) for s in SPLITS)
    if f_train != f_val:
        raise TaskError(f"{p_val}: features are {f_val} per image but {p_train} has {f_train}")
    train = train_examples(*data["train"][:3], max_train, seed)
    val, test = eval_examples(*data["val"][:3], max_eval, seed, cap_path)
    config = {
        "data_dir": str(root),
        "pca_features": pca_features,
        "max_train": max_train,
        "max_eval": max_eval,
        "seed": seed,
        "max_caption_words": max_caption_words,
    }
    return TaskData(
        name="coco",
        source_kind="features",
        train=train,
        val=val,
        test=test,
        tgt_vocab=vocab,
        src_vocab=None,
        encoder="features",
        encoder_cfg={"feature_dim": int(f_train[-1])},
        config=config,
    )
