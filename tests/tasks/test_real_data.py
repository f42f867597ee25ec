"""User-data loaders: the cs231n COCO HDF5 format and the plain captions-JSON + features format.

Valid tiny files come from tests.tasks.real_data_fixtures.py; every bad input must raise a one-line
TaskError naming the file and the key/value at fault. Shapes: N images, S positions, D width.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np
import pytest

from benchmarks.tasks.base import TaskError, load_task
from benchmarks.tasks.coco import coco
from benchmarks.tasks.plain import plain, tokenize
from tests.tasks.real_data_fixtures import coco_vocab, write_coco, write_plain

CAPS = "coco2014_captions.h5"
VOCAB = "coco2014_vocab.json"
TRAIN_F, VAL_F = "train2014_vgg16_fc7_pca.h5", "val2014_vgg16_fc7_pca.h5"


def words_of(data, ids: list[int]) -> list[str]:
    return [data.tgt_vocab.idx_to_word[i] for i in ids]


def h5_get(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[key][()]


def h5_set(path: Path, key: str, value: np.ndarray | None) -> None:
    """Replace (or, with None, delete) one dataset of an existing file."""
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f[key] = value


def h5_edit(path: Path, key: str, fn) -> None:
    arr = h5_get(path, key)
    h5_set(path, key, fn(arr))


@pytest.fixture
def coco_dir(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path, write_coco(tmp_path)


# ---------------------------------------------------------------- coco: valid data


def test_coco_shapes_vocab_and_kind(coco_dir):
    root, words = coco_dir
    data = coco(str(root))
    assert (data.name, data.source_kind, data.encoder) == ("coco", "features", "features")
    assert data.encoder_cfg == {"feature_dim": 8}
    assert data.tgt_vocab.idx_to_word == coco_vocab()
    assert len(data.train) == sum(len(caps) for caps in words["train"])
    for ex in data.train + data.val + data.test:
        assert ex.source.shape == (8,) and ex.source.dtype == np.float32
        assert ex.length == len(ex.target) > 0
        assert min(ex.target) >= 3  # no <NULL>/<START>/<END> left in a target


def test_coco_train_targets_decode_to_original_words(coco_dir):
    root, words = coco_dir
    data = coco(str(root))
    feats = h5_get(root / TRAIN_F, "features")
    got = Counter()
    for ex in data.train:
        img = int(ex.id.split(":")[1])
        np.testing.assert_array_equal(ex.source, feats[img])
        got[img, tuple(words_of(data, ex.target))] += 1
    want = Counter((i, tuple(cap)) for i, caps in enumerate(words["train"]) for cap in caps)
    assert got == want
    assert ("a", "<UNK>", "cat") in {w for _, w in got}  # <UNK> survives as id 3


def test_coco_eval_references_grouped_per_image(coco_dir):
    root, words = coco_dir
    data = coco(str(root))
    feats = h5_get(root / VAL_F, "features")
    for ex in data.val + data.test:
        img = int(ex.id.split(":")[1])
        assert [words_of(data, r) for r in ex.references] == words["val"][img]  # file order
        assert ex.target == ex.references[0]
        np.testing.assert_array_equal(ex.source, feats[img])


def test_coco_val_test_split_by_image_half_half(coco_dir):
    root, _ = coco_dir
    data = coco(str(root))
    val, test = {e.id for e in data.val}, {e.id for e in data.test}
    assert len(val) == len(data.val) == 2 and len(test) == len(data.test) == 2
    assert not val & test
    assert val | test == {f"val2014:{i}" for i in range(4)}


def test_coco_full_features_when_pca_off(coco_dir):
    root, _ = coco_dir
    data = coco(str(root), pca_features=False)
    assert data.encoder_cfg == {"feature_dim": 16}
    assert data.train[0].source.shape == (16,)


def test_coco_deterministic_and_seed_reshuffles_split(coco_dir):
    root, _ = coco_dir
    a, b = coco(str(root), seed=3), coco(str(root), seed=3)
    assert [e.id for e in a.val] == [e.id for e in b.val]
    assert [e.target for e in a.train] == [e.target for e in b.train]
    splits = {tuple(e.id for e in coco(str(root), seed=s).val) for s in range(6)}
    assert len(splits) > 1


def test_coco_max_train_max_eval_subsample(coco_dir):
    root, _ = coco_dir
    full = coco(str(root))
    small = coco(str(root), max_train=5, max_eval=1)
    assert len(small.train) == 5 and len(small.val) == len(small.test) == 1
    assert {e.id for e in small.train} < {e.id for e in full.train}
    assert {e.id for e in small.val} <= {e.id for e in full.val}  # split unchanged by subsampling
    assert {e.id for e in small.test} <= {e.id for e in full.test}
    again = coco(str(root), max_train=5, max_eval=1)
    assert [e.id for e in again.train] == [e.id for e in small.train]


def test_coco_registered_with_load_task(coco_dir):
    root, _ = coco_dir
    assert len(load_task("coco", data_dir=str(root), max_train=3).train) == 3


# ---------------------------------------------------------------- coco: bad input


@pytest.mark.parametrize("name", [CAPS, VOCAB, TRAIN_F, VAL_F])
def test_coco_missing_file_named(coco_dir, name):
    root, _ = coco_dir
    (root / name).unlink()
    with pytest.raises(TaskError, match=re.escape(name) + ": file not found"):
        coco(str(root))


def test_coco_missing_data_dir(tmp_path):
    with pytest.raises(TaskError, match=r"nope: data_dir not found"):
        coco(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "name, key",
    [(CAPS, "train_captions"), (CAPS, "val_image_idxs"), (TRAIN_F, "features")],
)
def test_coco_missing_dataset_named(coco_dir, name, key):
    root, _ = coco_dir
    h5_set(root / name, key, None)
    with pytest.raises(TaskError, match=re.escape(name) + f": no dataset '{key}'; found \\["):
        coco(str(root))


def test_coco_not_hdf5_file(coco_dir):
    root, _ = coco_dir
    (root / CAPS).write_text("not hdf5")
    with pytest.raises(TaskError, match=rf"{CAPS}: cannot open as HDF5"):
        coco(str(root))


# (file, dataset, edit, message regex): each edit breaks one thing in an otherwise valid dir.
COCO_BAD_H5 = {
    "float_captions": (CAPS, "train_captions", lambda a: a.astype(np.float32),
                       r"\['train_captions'\]: must be integer; got dtype float32"),
    "float_idxs": (CAPS, "val_image_idxs", lambda a: a + 0.5,
                   r"\['val_image_idxs'\]: must be integer; got dtype float64"),
    "int_features": (TRAIN_F, "features", lambda a: a.astype(np.int32),
                     r"\['features'\]: features must be a float array; got dtype int32"),
    "captions_1d": (CAPS, "val_captions", lambda a: a.ravel(),
                    r"\['val_captions'\]: must be 2-D; got shape \(\d+,\)"),
    "idxs_short": (CAPS, "train_image_idxs", lambda a: a[:-1],
                   r"\['train_image_idxs'\]: has 15 rows but 'train_captions' has 16"),
    "features_1d": (VAL_F, "features", lambda a: a[0],
                    r"\['features'\]: features must have shape \(N, D\) or \(N, S, D\); "
        r"got \(8,\)"),
    "features_4d": (VAL_F, "features", lambda a: a[:, None, None],
                    r"\['features'\]: features must have shape .* got \(4, 1, 1, 8\)"),
    "id_too_big": (CAPS, "train_captions", lambda a: _set(a, (2, 3), 999),
                   r"\['train_captions'\]: row 2 has id 999 outside the vocabulary \(size 16\)"),
    "id_negative": (CAPS, "val_captions", lambda a: _set(a, (1, 0), -5),
                    r"\['val_captions'\]: row 1 has id -5 outside the vocabulary"),
    "image_out_of_range": (CAPS, "train_image_idxs", lambda a: _set(a, 1, 6),
                           rf"\['train_image_idxs'\]: row 1 is image 6, out of range for "
                           rf".*{TRAIN_F} with 6 images"),
    "image_negative": (CAPS, "val_image_idxs", lambda a: _set(a, 0, -1),
                       r"\['val_image_idxs'\]: row 0 is image -1, out of range"),
    "nan_features": (VAL_F, "features", lambda a: _set(a, (3, 1), np.nan),
                     r"\['features'\]: features row 3 has NaN/inf"),
    "inf_features": (TRAIN_F, "features", lambda a: _set(a, (0, 0), np.inf),
                     r"\['features'\]: features row 0 has NaN/inf"),
    "empty_caption": (CAPS, "train_captions", lambda a: _set(a, 4, [1, 2] + [0] * 15),
                      r"\['train_captions'\]: row 4 has no words: \[1, 2, 0"),
    "all_null_caption": (CAPS, "val_captions", lambda a: _set(a, 2, 0),
                         r"\['val_captions'\]: row 2 has no words: \[0, 0"),
    "train_empty": (CAPS, "train_captions", lambda a: a[:0],
                    r"\['train_image_idxs'\]: has 16 rows but 'train_captions' has 0"),
    "one_val_image": (CAPS, "val_image_idxs", np.zeros_like,
                      r"\['val_image_idxs'\]: 1 distinct image\(s\) leave split 'val' empty"),
}  # fmt: skip


def _set(arr: np.ndarray, index, value) -> np.ndarray:
    arr = arr.copy()
    arr[index] = value
    return arr


@pytest.mark.parametrize("case", list(COCO_BAD_H5))
def test_coco_bad_h5_content_named(coco_dir, case):
    root, _ = coco_dir
    name, key, edit, message = COCO_BAD_H5[case]
    h5_edit(root / name, key, edit)
    with pytest.raises(TaskError, match=re.escape(name) + message) as err:
        coco(str(root))
    assert "\n" not in str(err.value)


def test_coco_empty_train_split(coco_dir):
    root, _ = coco_dir
    h5_edit(root / CAPS, "train_captions", lambda a: a[:0])
    h5_edit(root / CAPS, "train_image_idxs", lambda a: a[:0])
    with pytest.raises(TaskError, match=rf"{CAPS}\['train_captions'\]: is empty .* no train"):
        coco(str(root))


def test_coco_train_val_feature_width_mismatch(coco_dir):
    root, _ = coco_dir
    h5_edit(root / VAL_F, "features", lambda a: np.concatenate([a, a], axis=1))
    with pytest.raises(
        TaskError, match=rf"{VAL_F}: features are \(16,\) per image but .*{TRAIN_F} has \(8,\)"
    ):
        coco(str(root))


def _vocab_edit(fn):
    def edit(root: Path) -> None:
        data = json.loads((root / VOCAB).read_text())
        fn(data)
        (root / VOCAB).write_text(json.dumps(data))

    return edit


def _swap_specials(v: dict) -> None:
    v["idx_to_word"][2], v["idx_to_word"][3] = v["idx_to_word"][3], v["idx_to_word"][2]
    v["word_to_idx"] = {w: i for i, w in enumerate(v["idx_to_word"])}


COCO_BAD_VOCAB = {
    "index_mismatch": (_vocab_edit(lambda v: v["word_to_idx"].update(cat=99)),
                       r": 'idx_to_word'\[\d+\] is 'cat' but 'word_to_idx'\['cat'\] is 99"),
    "extra_entry": (_vocab_edit(lambda v: v["word_to_idx"].update(zebra=16)),
                    r": 'word_to_idx' has 17 entries but 'idx_to_word' has 16"),
    "specials_moved": (_vocab_edit(_swap_specials),
                       r"\['idx_to_word'\]: ids 0\.\.3 must be \['<NULL>', '<START>', '<END>', "
                       r"'<UNK>'\]; got \['<NULL>', '<START>', '<UNK>', '<END>'\]"),
    "itw_not_list": (_vocab_edit(lambda v: v.update(idx_to_word="a b")),
                     r"\['idx_to_word'\]: must be a list of strings; got 'a b'"),
    "wti_missing": (_vocab_edit(lambda v: v.pop("word_to_idx")),
                    r"\['word_to_idx'\]: must be an object; got None"),
    "not_object": (lambda root: (root / VOCAB).write_text("[1, 2]"),
                   r": must be a JSON object with 'idx_to_word' and 'word_to_idx'"),
    "bad_json": (lambda root: (root / VOCAB).write_text("{oops"),
                 r": invalid JSON \(Expecting property name"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(COCO_BAD_VOCAB))
def test_coco_bad_vocab_named(coco_dir, case):
    root, _ = coco_dir
    edit, message = COCO_BAD_VOCAB[case]
    edit(root)
    with pytest.raises(TaskError, match=rf"{VOCAB}{message}"):
        coco(str(root))


@pytest.mark.parametrize("key", ["max_train", "max_eval"])
def test_coco_max_below_one_rejected(coco_dir, key):
    with pytest.raises(TaskError, match=rf"{key} must be >= 1 or None; got 0"):
        coco(str(coco_dir[0]), **{key: 0})


# ---------------------------------------------------------------- plain: valid data


def test_tokenize_lowercases_and_strips_punctuation():
    assert tokenize("Don't STOP, the cat_dog -- now!") == [
        "dont",
        "stop",
        "the",
        "cat",
        "dog",
        "now",
    ]
    assert tokenize(" ?! ") == []


@pytest.mark.parametrize(
    "fmt, spatial, shape",
    [("npy", False, (8,)), ("npy", True, (4, 8)), ("h5", False, (8,)), ("hdf5", True, (4, 8))],
)
def test_plain_loads_npy_h5_2d_3d(tmp_path, fmt, spatial, shape):
    files = write_plain(tmp_path, spatial=spatial, fmt=fmt)
    data = plain(str(files.captions), str(files.features))
    feats = np.load(files.features) if fmt == "npy" else h5_get(files.features, "features")
    assert (data.name, data.source_kind, data.encoder) == ("plain", "features", "features")
    assert data.encoder_cfg == {"feature_dim": 8}
    for ex in data.train + data.val + data.test:
        assert ex.source.shape == shape and ex.source.dtype == np.float32
        np.testing.assert_array_equal(ex.source, feats[int(ex.id.split(":")[0])])


def test_plain_targets_and_references_decode_to_words(tmp_path):
    files = write_plain(tmp_path)
    data = plain(str(files.captions), str(files.features))
    for ex in data.train:
        img, k = map(int, ex.id.split(":"))
        assert words_of(data, ex.target) == files.words[img][k]
        assert ex.length == len(ex.target)
    for ex in data.val + data.test:
        assert [words_of(data, r) for r in ex.references] == files.words[int(ex.id)]
        assert ex.target == ex.references[0]


def test_plain_split_disjoint_by_image(tmp_path):
    files = write_plain(tmp_path, n_images=10)
    data = plain(str(files.captions), str(files.features))
    train = {int(e.id.split(":")[0]) for e in data.train}
    val, test = {int(e.id) for e in data.val}, {int(e.id) for e in data.test}
    assert (len(train), len(val), len(test)) == (8, 1, 1)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(10))  # the uncaptioned extra feature row is unused
    assert len(data.train) == sum(len(files.words[i]) for i in train)


def _with_unique_words(files) -> None:
    """Give image i one extra caption with words seen nowhere else: 'zebra<i> zebra<i>'."""
    texts = json.loads(files.captions.read_text())
    for key in texts:
        texts[key].append(f"zebra{key} zebra{key}")
    files.captions.write_text(json.dumps(texts))


@pytest.mark.parametrize("min_count", [1, 2, 3])
def test_plain_vocab_from_train_only_with_min_count(tmp_path, min_count):
    files = write_plain(tmp_path, n_images=10)
    _with_unique_words(files)
    data = plain(str(files.captions), str(files.features), min_word_count=min_count)
    vocab = data.tgt_vocab
    assert vocab.idx_to_word[:4] == ["<NULL>", "<START>", "<END>", "<UNK>"]
    for ex in data.val + data.test:
        assert ex.references[-1] == [3, 3]  # its zebra word never occurs in train
    train_imgs = sorted({int(e.id.split(":")[0]) for e in data.train})
    for i in train_imgs:
        assert (f"zebra{i}" in vocab.word_to_idx) == (min_count <= 2)
    counts = Counter(w for ex in data.train for w in words_of(data, ex.target))
    assert all(counts[a] >= counts[b] for a, b in pairwise(vocab.idx_to_word[4:]))


def test_plain_deterministic_and_seed_reshuffles(tmp_path):
    files = write_plain(tmp_path, n_images=10)
    args = (str(files.captions), str(files.features))
    a, b = plain(*args, seed=7), plain(*args, seed=7)
    assert [e.id for e in a.train] == [e.id for e in b.train]
    assert [e.target for e in a.train] == [e.target for e in b.train]
    assert len({tuple(e.id for e in plain(*args, seed=s).test) for s in range(5)}) > 1


def test_plain_registered_with_load_task(tmp_path):
    files = write_plain(tmp_path)
    data = load_task("plain", captions=str(files.captions), features=str(files.features))
    assert len(data.val) == 1


# ---------------------------------------------------------------- plain: bad input


def _json(files, obj) -> None:
    files.captions.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


PLAIN_BAD_JSON = {
    "list": (["a cat"], r"captions\.json: must be a non-empty JSON object .* got \['a cat'\]"),
    "empty_object": ({}, r"captions\.json: must be a non-empty JSON object .* got \{\}"),
    "value_string": ({"0": "a cat"}, r"captions\.json\['0'\]: must be a non-empty list .* 'a cat'"),
    "value_empty": ({"0": []}, r"captions\.json\['0'\]: must be a non-empty list .* got \[\]"),
    "caption_int": ({"1": ["a", 5]}, r"captions\.json\['1'\]: caption 1 must be a string; got 5"),
    "caption_empty": ({"2": ["a cat", ""]}, r"captions\.json\['2'\]: caption 1 has no words: ''"),
    "caption_punct": ({"3": ["?!"]}, r"captions\.json\['3'\]: caption 0 has no words: '\?!'"),
    "key_word": ({"cat": ["a cat"]}, r"captions\.json\['cat'\]: image id must be a feature row"),
    "key_negative": ({"-1": ["a cat"]}, r"captions\.json\['-1'\]: image id must be a feature row"),
    "key_repeat": ({"1": ["a"], "01": ["b"]}, r"captions\.json\['01'\]: image id repeats row 1"),
    "key_duplicate": ('{"1": ["a"], "1": ["b"]}', r"captions\.json\['1'\]: duplicate key"),
    "bad_json": ('{"1": [', r"captions\.json: invalid JSON \(Expecting value"),
    "out_of_range": ({"0": ["a"], "11": ["b"]},
                     r"captions\.json\['11'\]: image id 11 is out of range for "
                     r".*features\.npy with 11 rows"),
    "too_few_images": ({"0": ["a"], "1": ["b"]},
                       r"captions\.json: 2 image\(s\) leave split 'train' empty"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PLAIN_BAD_JSON))
def test_plain_bad_captions_named(tmp_path, case):
    files = write_plain(tmp_path)
    obj, message = PLAIN_BAD_JSON[case]
    _json(files, obj)
    with pytest.raises(TaskError, match=message) as err:
        plain(str(files.captions), str(files.features))
    assert "\n" not in str(err.value)


def test_plain_non_utf8_captions(tmp_path):
    files = write_plain(tmp_path)
    files.captions.write_bytes(b"\xff\xfe{")
    with pytest.raises(TaskError, match=r"captions\.json: invalid JSON"):
        plain(str(files.captions), str(files.features))


PLAIN_BAD_FEATURES = {
    "int": (lambda a: a.astype(np.int64), r"features must be a float array; got dtype int64"),
    "1d": (lambda a: a[:, 0], r"features must have shape \(N, D\) or \(N, S, D\); got \(11,\)"),
    "4d": (lambda a: a[:, None, None], r"features must have shape .* got \(11, 1, 1, 8\)"),
    "zero_width": (lambda a: a[:, :0], r"features must have shape .* got \(11, 0\)"),
    "nan": (lambda a: _set(a, (2, 5), np.nan), r"features row 2 has NaN/inf"),
    "inf": (lambda a: _set(a, (9, 0), -np.inf), r"features row 9 has NaN/inf"),
    "f64_overflow": (lambda a: _set(a.astype(np.float64), (4, 0), 1e300), r"features row 4 has"),
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["npy", "h5"])
@pytest.mark.parametrize("case", list(PLAIN_BAD_FEATURES))
def test_plain_bad_features_named(tmp_path, case, fmt):
    files = write_plain(tmp_path, fmt=fmt)
    edit, message = PLAIN_BAD_FEATURES[case]
    if fmt == "npy":
        np.save(files.features, edit(np.load(files.features)))
        where = r"features\.npy: "
    else:
        h5_edit(files.features, "features", edit)
        where = r"features\.h5\['features'\]: "
    with pytest.raises(TaskError, match=where + message):
        plain(str(files.captions), str(files.features))


def test_plain_missing_files_named(tmp_path):
    files = write_plain(tmp_path)
    with pytest.raises(TaskError, match=r"nope\.json: file not found"):
        plain(str(tmp_path / "nope.json"), str(files.features))
    with pytest.raises(TaskError, match=r"nope\.npy: file not found"):
        plain(str(files.captions), str(tmp_path / "nope.npy"))
    with pytest.raises(TaskError, match=rf"{tmp_path.name}: not a file"):
        plain(str(files.captions), str(tmp_path))


def test_plain_missing_h5_key_named(tmp_path):
    files = write_plain(tmp_path, fmt="h5")
    with pytest.raises(TaskError, match=r"features\.h5: no dataset 'feats'; found \['features'\]"):
        plain(str(files.captions), str(files.features), features_key="feats")


def test_plain_unreadable_features_named(tmp_path):
    files = write_plain(tmp_path)
    files.features.write_bytes(b"garbage")
    with pytest.raises(TaskError, match=r"features\.npy: cannot read as \.npy"):
        plain(str(files.captions), str(files.features))
    np.save(files.features, np.array([{"a": 1}], dtype=object))  # needs pickle: refused
    with pytest.raises(TaskError, match=r"features\.npy: cannot read as \.npy"):
        plain(str(files.captions), str(files.features))
    other = tmp_path / "features.txt"
    other.write_text("1 2 3")
    with pytest.raises(TaskError, match=r"features\.txt: features must be a \.npy, \.h5"):
        plain(str(files.captions), str(other))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\) .* got 0\.0"),
        ({"test_fraction": 1.5}, r"test_fraction must be in \(0, 1\) .* got 1\.5"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"10 image\(s\) leave split 'train' empty"),
        ({"min_word_count": 0}, r"min_word_count must be >= 1; got 0"),
    ],
)
def test_plain_bad_options_named(tmp_path, kwargs, message):
    files = write_plain(tmp_path)
    with pytest.raises(TaskError, match=message):
        plain(str(files.captions), str(files.features), **kwargs)
