"""Task generators: exact lengths, disjoint splits, determinism, correct targets, SCAN exactness."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

import benchmarks.tasks.digits as digits_mod
import benchmarks.tasks.scan as scan_mod
import benchmarks.tasks.sequences  # noqa: F401  registers copy / reverse / sort
from benchmarks.tasks.base import TaskData, TaskError, list_tasks, load_task

SEQUENCE_TASKS = ["copy", "reverse", "sort"]
LENGTH_TASKS = ["digits", *SEQUENCE_TASKS]  # tasks whose target length is the `length` dial
SMALL = {"n_train": 60, "n_val": 10, "n_test": 10}


def small(name: str, **cfg) -> TaskData:
    return load_task(name, **{**SMALL, **cfg})


def all_examples(data: TaskData):
    return data.train + data.val + data.test


def digit_indices(example) -> list[int]:
    """Image indices recorded in a digits example id: '<split>-<n>:<i1>.<i2>...'."""
    return [int(i) for i in example.id.split(":")[1].split(".")]


def split_sources(data: TaskData, split: str) -> set[bytes]:
    return {e.source.tobytes() for e in getattr(data, split)}


def test_tasks_registered():
    assert {"digits", "copy", "reverse", "sort", "scan"} <= set(list_tasks())


@pytest.mark.parametrize("length", [1, 7])
@pytest.mark.parametrize("name", LENGTH_TASKS)
def test_task_lengths_exact(name, length):
    extra = {} if name == "digits" else {"num_symbols": 100}  # 80 distinct length-1 sequences
    data = small(name, length=length, **extra)
    for e in all_examples(data):
        assert len(e.target) == length and e.length == length
        if name != "digits":
            assert e.source.shape == (length,) and e.source.dtype == np.int64
    assert data.max_target_len == length
    assert data.config["length"] == length and data.config["seed"] == 0


@pytest.mark.parametrize("length", [1, 3, 12])
def test_digits_strip_width_matches_length(length):
    data = small("digits", length=length)
    for e in all_examples(data):
        c, h, w = e.source.shape
        assert (c, h) == (1, digits_mod.CANVAS_HEIGHT) and e.source.dtype == np.float32
        assert 8 * length <= w <= 8 * length + digits_mod.MAX_GAP * (length - 1)
        assert 0.0 <= e.source.min() and e.source.max() <= 1.0
    assert data.encoder_cfg == {"in_channels": 1, "height": digits_mod.CANVAS_HEIGHT}


def test_digits_noise_free_strip_holds_every_digit_whole():
    images, _ = digits_mod.digit_images()
    data = small("digits", length=5, noise=0.0)
    for e in data.train[:20]:
        used = images[digit_indices(e)]  # (L, 8, 8)
        # nothing cropped or overlapping: total ink equals the digits' ink
        assert np.isclose(e.source.sum(), used.sum(), rtol=1e-5)
        assert np.allclose(e.source[0, :, :8].sum(), used[0].sum(), rtol=1e-5)  # first digit left


def test_digits_noise_changes_pixels_only():
    clean = small("digits", noise=0.0, n_train=5)
    noisy = small("digits", noise=0.2, n_train=5)
    for a, b in zip(clean.train, noisy.train, strict=True):
        assert a.target == b.target and a.id == b.id  # same digits, same layout
        assert not np.array_equal(a.source, b.source)
        assert np.abs(a.source - b.source).mean() < 0.2


def test_digits_words_match_labels():
    _, labels = digits_mod.digit_images()
    data = small("digits", length=6)
    for e in all_examples(data):
        words = [digits_mod.DIGIT_WORDS[labels[i]] for i in digit_indices(e)]
        assert data.tgt_vocab.decode(e.target) == words


def test_digits_image_pools_disjoint_and_stratified():
    _, labels = digits_mod.digit_images()
    pools = digits_mod.image_pools(seed=3)
    sets = {s: set(p.tolist()) for s, p in pools.items()}
    assert not (
        sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"]
    )
    assert set.union(*sets.values()) == set(range(len(labels)))
    for p in pools.values():
        assert set(labels[p].tolist()) == set(range(10))  # every class in every pool


def test_digits_examples_use_their_own_pool():
    data = small("digits", seed=3, length=4)
    pools = {s: set(p.tolist()) for s, p in digits_mod.image_pools(seed=3).items()}
    used = {s: {i for e in getattr(data, s) for i in digit_indices(e)} for s in pools}
    for s in pools:
        assert used[s] <= pools[s]
    assert not used["train"] & used["test"] and not used["train"] & used["val"]
    assert data.config["pool_sizes"] == {s: len(p) for s, p in pools.items()}


@pytest.mark.parametrize("name", [*LENGTH_TASKS, "scan"])
def test_task_deterministic_per_seed(name):
    cfg = {"max_train": 200, "n_val": 20} if name == "scan" else {**SMALL, "length": 5}
    a, b, c = (load_task(name, seed=s, **cfg) for s in (0, 0, 1))
    for split in ("train", "val", "test"):
        ea, eb = getattr(a, split), getattr(b, split)
        assert [e.target for e in ea] == [e.target for e in eb]
        assert all(np.array_equal(x.source, y.source) for x, y in zip(ea, eb, strict=True))
    assert [e.id for e in a.train] == [e.id for e in b.train]
    different = [e.source.tobytes() for e in a.train] != [e.source.tobytes() for e in c.train]
    assert different and a.config["seed"] == 0 and c.config["seed"] == 1


@pytest.mark.parametrize("cfg", [{"length": 3, "num_symbols": 5}, {"length": 40}])  # small, huge
@pytest.mark.parametrize("name", SEQUENCE_TASKS)
def test_sequences_splits_disjoint(name, cfg):
    data = load_task(name, n_train=100, n_val=10, n_test=10, **cfg)  # 120 of 125 in the small space
    train, val, test = (split_sources(data, s) for s in ("train", "val", "test"))
    assert len(train) == 100 and len(val) == 10 and len(test) == 10  # no repeats within a split
    assert not test & train and not val & train and not test & val


def test_sequences_test_set_independent_of_train_size():
    a, b = small("copy", n_train=50), small("copy", n_train=80)
    assert split_sources(a, "test") == split_sources(b, "test")


@pytest.mark.parametrize(
    "name, expected",
    [("copy", lambda w: w), ("reverse", lambda w: w[::-1]), ("sort", sorted)],
)
def test_sequences_targets_correct(name, expected):
    data = small(name, length=9, num_symbols=12)  # 12 symbols: zero-padded names must sort right
    for e in all_examples(data):
        words = data.src_vocab.decode(e.source.tolist())
        assert data.tgt_vocab.decode(e.target) == expected(words)


def test_sequences_vocabs_separate():
    data = small("reverse", num_symbols=7)
    assert data.src_vocab is not data.tgt_vocab
    assert len(data.src_vocab) == len(data.tgt_vocab) == 4 + 7
    assert data.encoder == "text" and data.encoder_cfg == {"vocab_size": 11}
    assert data.source_kind == "tokens"


def test_sequences_space_too_small_raises():
    with pytest.raises(TaskError, match="only 400 exist"):
        load_task("copy", length=2)  # 20**2 = 400 < 4,400 requested


@pytest.mark.parametrize(
    "name, cfg, text",
    [
        ("digits", {"length": 0}, "length=0"),
        ("digits", {"length": 65}, "length=65"),
        ("digits", {"n_test": 0}, "n_test=0"),
        ("digits", {"noise": -0.1}, "noise=-0.1"),
        ("copy", {"length": 0}, "length=0"),
        ("reverse", {"length": 513}, "length=513"),
        ("sort", {"num_symbols": 1}, "num_symbols=1"),
        ("sort", {"n_val": -1}, "n_val=-1"),
        ("scan", {"split": "addprim"}, "addprim"),
        ("scan", {"n_val": 20000}, "n_val=20000"),
        ("scan", {"max_train": 0}, "max_train=0"),
    ],
)
def test_task_bad_config_raises(name, cfg, text):
    with pytest.raises(TaskError, match=text) as err:
        load_task(name, **cfg)
    assert "\n" not in str(err.value)


def test_load_task_unknown_name_lists_choices():
    with pytest.raises(TaskError, match=r"unknown task 'digit'.*'digits'"):
        load_task("digit")


def test_load_task_unknown_key_lists_accepted():
    with pytest.raises(TaskError, match=r"\['lenght'\].*accepted"):
        load_task("copy", lenght=4)


# --- SCAN: exact against the published data files (counts and hashes of tasks.txt etc.) ---


def sorted_lines_sha256(pairs) -> str:
    lines = sorted(f"IN: {c} OUT: {a}" for c, a in pairs)
    return hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()


def n_actions(pair) -> int:
    return len(pair[1].split())


def test_scan_pairs_counts_and_vocab():
    pairs = scan_mod.scan_pairs()
    assert len(pairs) == 20910 and len({c for c, _ in pairs}) == 20910
    assert len({w for c, _ in pairs for w in c.split()}) == 13
    assert {w for _, a in pairs for w in a.split()} == set(scan_mod.ACTIONS)
    hist = Counter(len(c.split()) for c, _ in pairs)
    assert hist == {1: 4, 2: 18, 3: 72, 4: 328, 5: 1288, 6: 3520, 7: 6080, 8: 6400, 9: 3200}
    missing = set(range(1, 49)) - {n_actions(p) for p in pairs}
    assert missing == {23, 29, 31, 34, 35, 37, 38, 39, *range(41, 48)}


def test_scan_pairs_match_published_hashes():
    pairs = scan_mod.scan_pairs()
    train = [p for p in pairs if n_actions(p) <= 22]
    test = [p for p in pairs if n_actions(p) >= 24]
    assert (len(train), len(test)) == (16990, 3920)
    assert sorted_lines_sha256(pairs) == (
        "6be4b39bc8bf3a20be810b6991250d0493e608560609db6765dd679e1ed1c98e"
    )
    assert sorted_lines_sha256(train) == (
        "7ffb97f45029871c94bede7e723f7a4aa179eb99fe2b977a18283310422c719d"
    )
    assert sorted_lines_sha256(test) == (
        "3297fd0b676c391f7bc3a7385aa66a7fdf64f6f8e81ad584810c1d4ebd0eaa2c"
    )


@pytest.mark.parametrize(
    "command, actions",
    [
        ("turn left", "I_TURN_LEFT"),
        ("jump opposite left", "I_TURN_LEFT I_TURN_LEFT I_JUMP"),
        ("turn around right", "I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT I_TURN_RIGHT"),
        ("walk twice after look right", "I_TURN_RIGHT I_LOOK I_WALK I_WALK"),
        ("run and jump thrice", "I_RUN I_JUMP I_JUMP I_JUMP"),
    ],
)
def test_scan_interpretation(command, actions):
    assert dict(scan_mod.scan_pairs())[command] == actions


def task_pairs(data: TaskData, split: str) -> set[tuple[str, str]]:
    return {
        (
            " ".join(data.src_vocab.decode(e.source.tolist())),
            " ".join(data.tgt_vocab.decode(e.target)),
        )
        for e in getattr(data, split)
    }


def test_scan_length_split_task():
    data = load_task("scan", split="length", n_val=500)
    train, val, test = (task_pairs(data, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (16490, 500, 3920)
    assert sorted_lines_sha256(train | val) == (
        "7ffb97f45029871c94bede7e723f7a4aa179eb99fe2b977a18283310422c719d"
    )
    assert max(e.length for e in data.train + data.val) == 22
    assert min(e.length for e in data.test) == 24
    assert all(e.length == len(e.target) for e in data.test)


def test_scan_simple_split_80_20_disjoint():
    data = load_task("scan", split="simple", n_val=0)
    train, test = task_pairs(data, "train"), task_pairs(data, "test")
    assert (len(train), len(test)) == (16728, 4182) and not train & test
    assert train | test == set(scan_mod.scan_pairs())
    assert data.encoder == "text" and data.encoder_cfg == {"vocab_size": 4 + 13}
    assert len(data.tgt_vocab) == 4 + 6


def test_scan_max_train_subsamples_with_val_carved_from_train():
    full = load_task("scan", n_val=100)
    capped = load_task("scan", n_val=100, max_train=300)
    assert len(capped.train) == 300 and task_pairs(capped, "train") <= task_pairs(full, "train")
    assert task_pairs(capped, "val") == task_pairs(full, "val")
    assert task_pairs(capped, "test") == task_pairs(full, "test")
    assert not task_pairs(full, "val") & task_pairs(full, "train")
