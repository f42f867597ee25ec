"""benchmarks.harness.metrics: caption metrics by hand and by an independent CIDEr-D; id metrics.

METEOR starts one JVM for the whole file (module fixture); every other test runs without it.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter

import numpy as np
import pytest

from benchmarks.harness import meteor
from benchmarks.harness.metrics import (
    caption_metrics,
    exact_match,
    per_length_buckets,
    perplexity,
    sequence_metrics,
    token_accuracy,
    trim_ids,
)
from benchmarks.tasks.base import Vocab

REFS = {
    "a": ["a man rides a horse".split(), "a person on a horse".split()],
    "b": ["two dogs play in the snow".split(), "dogs running in snow".split()],
    "c": ["a red bus on the street".split(), "a bus parked on a street".split()],
    "d": ["a cat sleeps on the sofa".split(), "a small cat on a couch".split()],
}
HYPS = {
    "a": "a man on a horse".split(),
    "b": "two dogs in snow".split(),
    "c": "a bus on the road today now".split(),
    "d": "a cat on the sofa".split(),
}


def cider_d_numpy(hyps: dict, refs: dict, n: int = 4, sigma: float = 6.0) -> float:
    """CIDEr-D from the paper (Vedantam et al. 2015, eq. 2-5) with NumPy vectors per n.

    idf_k(g) = log(N / max(1, #images whose references contain g)); g^n = tf * idf over the n-gram
    vocabulary; CIDEr-D_n = mean over refs of sum(min(g_c, g_r) * g_r) / (|g_c| |g_r|) *
    exp(-(l_c - l_r)^2 / (2 sigma^2)), l = words; score = 10 * mean over n = 1..4, mean over
    images. (pycocoevalcap's length is the bigram count: equal deltas for captions of >= 2 words.)
    """
    ids, num = sorted(hyps), len(hyps)

    def grams(words: list[str], k: int) -> Counter:
        return Counter(tuple(words[i : i + k]) for i in range(len(words) - k + 1))

    per_image = np.zeros((num, n))
    for k in range(1, n + 1):
        every = {g for i in ids for s in [hyps[i], *refs[i]] for g in grams(s, k)}
        index = {g: j for j, g in enumerate(sorted(every))}
        df = np.zeros(len(index))
        for i in ids:
            for g in {g for r in refs[i] for g in grams(r, k)}:
                df[index[g]] += 1
        idf = np.log(num) - np.log(np.maximum(df, 1.0))

        def vec(words: list[str], k: int = k, index: dict = index, idf: np.ndarray = idf):
            tf = np.zeros(len(index))
            for g, c in grams(words, k).items():
                tf[index[g]] = c
            return tf * idf

        for row, i in enumerate(ids):
            c = vec(hyps[i])
            sims = []
            for ref in refs[i]:
                r = vec(ref)
                norm = np.linalg.norm(c) * np.linalg.norm(r)
                cos = np.minimum(c, r) @ r / norm if norm > 0 else 0.0
                sims.append(cos * np.exp(-((len(hyps[i]) - len(ref)) ** 2) / (2 * sigma**2)))
            per_image[row, k - 1] = np.mean(sims)
    return float(10.0 * per_image.mean(axis=1).mean())


@pytest.fixture(scope="module")
def with_meteor():
    """One caption_metrics call with METEOR (one JVM), an empty hypothesis included; JVMs seen."""
    if shutil.which("java") is None:
        pytest.skip("java not on PATH")
    hyps = dict(HYPS, d=[])
    procs = []
    close = meteor.ClosableMeteor.close

    def spy(self):
        if self.meteor_p is not None:  # close() runs again from __del__
            procs.append(self.meteor_p)
        close(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(meteor.ClosableMeteor, "close", spy)
        result = caption_metrics(hyps, REFS, meteor=True)
    return result, procs


def test_caption_metrics_identical_scores_one():
    refs = {k: [v[0], v[1]] for k, v in REFS.items()}
    out = caption_metrics({k: v[0] for k, v in REFS.items()}, refs, meteor=False)
    for n in range(1, 5):
        assert out[f"bleu{n}"] == pytest.approx(1.0, rel=1e-6)
    assert out["rouge_l"] == pytest.approx(1.0, rel=1e-12)
    assert out["meteor"] is None and "disabled" in out["meteor_missing_reason"]


def test_caption_metrics_brevity_penalty_by_hand():
    hyps = {"a": "the cat sat on".split(), "b": "a dog ran".split()}
    refs = {
        "a": ["the cat sat on the mat".split()],
        "b": ["a dog ran home".split(), "a dog ran home fast now".split()],
    }
    # Every n-gram of both hypotheses is in a reference: p1 = 7/7, p2 = 5/5, p3 = 3/3, p4 = 1/1.
    # c = 4 + 3 = 7 words; r = 6 + 4 = 10 (b's closest reference to 3 words has 4 words).
    # BP = exp(1 - r / c) = exp(1 - 10/7) = exp(-3/7) = 0.6514..., and BLEU-n = BP for every n.
    out = caption_metrics(hyps, refs, meteor=False)
    for n in range(1, 5):
        assert out[f"bleu{n}"] == pytest.approx(math.exp(-3 / 7), rel=1e-6)


def test_caption_metrics_cider_perfect_beats_shuffled():
    perfect = {k: v[0] for k, v in REFS.items()}
    keys = sorted(REFS)
    shuffled = {k: REFS[keys[(i + 1) % len(keys)]][0] for i, k in enumerate(keys)}
    good = caption_metrics(perfect, REFS, meteor=False)["cider"]
    bad = caption_metrics(shuffled, REFS, meteor=False)["cider"]
    assert good > 1.0 and good > 3 * bad


def test_caption_metrics_cider_matches_numpy_cider_d():
    out = caption_metrics(HYPS, REFS, meteor=False)
    expected = cider_d_numpy(HYPS, REFS)
    assert expected > 0.1
    assert out["cider"] == pytest.approx(expected, rel=1e-9)


def test_caption_metrics_meteor_present_with_java(with_meteor):
    out, procs = with_meteor
    assert out["meteor"] is not None and 0 < out["meteor"] <= 1
    assert "meteor_missing_reason" not in out
    assert len(procs) == 1 and procs[0].returncode is not None  # the JVM was closed


def test_caption_metrics_meteor_none_without_java(monkeypatch):
    monkeypatch.setattr(meteor.shutil, "which", lambda name: None)
    out = caption_metrics(HYPS, REFS, meteor=True)
    assert out["meteor"] is None and "java" in out["meteor_missing_reason"]
    assert 0 < out["bleu1"] <= 1 and out["cider"] > 0


def test_caption_metrics_meteor_none_when_subprocess_fails(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'no jvm here' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    out = caption_metrics(HYPS, REFS, meteor=True)
    assert out["meteor"] is None
    assert "METEOR subprocess failed" in out["meteor_missing_reason"]
    assert "no jvm here" in out["meteor_missing_reason"]
    assert out["rouge_l"] > 0


def test_caption_metrics_meteor_none_when_jvm_hangs(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    # exec: the process the watchdog kills is the one holding the pipes, as a JVM would be
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(meteor, "METEOR_TIMEOUT_S", 0.2)
    out = caption_metrics(HYPS, REFS, meteor=True)
    assert out["meteor"] is None and "timed out" in out["meteor_missing_reason"]


def test_caption_metrics_empty_hypothesis_scores_zero():
    one_empty = caption_metrics({"a": [], "b": REFS["b"][0]}, {k: REFS[k] for k in "ab"}, False)
    assert one_empty["rouge_l"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert 0 < one_empty["bleu1"] < 1
    all_empty = caption_metrics({k: [] for k in REFS}, REFS, meteor=False)
    assert all(all_empty[k] == 0 for k in ("bleu1", "bleu4", "rouge_l", "cider"))


def test_caption_metrics_bad_input_raises():
    with pytest.raises(ValueError, match="ids differ"):
        caption_metrics({"a": ["x"]}, {"b": [["x"]]}, meteor=False)
    with pytest.raises(ValueError, match="whitespace"):
        caption_metrics({"a": ["x y"]}, {"a": [["x"]]}, meteor=False)


def test_exact_match_and_token_accuracy_hand_cases():
    hyps = [[1, 2, 3], [4], [5, 6, 7, 8], [9]]
    tgts = [[1, 2, 4], [4, 5], [5, 6], [9]]
    assert exact_match(hyps, tgts) == 0.25  # only [9]; [5, 6, 7, 8] != [5, 6]
    # matches 2 + 1 (4; the missing 2nd position is wrong) + 2 (extras ignored) + 1 = 6 of 8
    assert token_accuracy(hyps, tgts) == 0.75
    with pytest.raises(ValueError, match="as many"):
        exact_match(hyps, tgts[:2])


def test_perplexity_hand_cases():
    assert perplexity(3 * math.log(4), 3) == pytest.approx(4.0)
    assert perplexity(0.0, 5) == 1.0
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="total_tokens"):
        perplexity(1.0, 0)


def test_per_length_buckets_hand_case():
    rows = per_length_buckets([1, 2, 2, 5, 9], {"em": [1, 0, 1, 0, 0.5]}, edges=[1, 2, 5])
    assert [(r["bucket"], r["n"], r["em"]) for r in rows] == [
        ("1", 1, 1.0),
        ("2-4", 2, 0.5),
        ("5+", 2, 0.25),
    ]


def test_per_length_buckets_default_edges():
    assert [r["bucket"] for r in per_length_buckets([3, 1, 3], {"x": [0, 1, 2]})] == ["1", "3"]
    many = list(range(1, 21))
    labels = [r["bucket"] for r in per_length_buckets(many, {"x": many})]
    assert labels == ["1", "2-3", "4-7", "8-15", "16-31"]
    with pytest.raises(ValueError, match="below edges"):
        per_length_buckets([0, 3], {"x": [0, 1]}, edges=[1, 2])


def test_trim_ids_cuts_at_eos_and_pad():
    assert trim_ids([1, 4, 5, 2, 6]) == [4, 5]
    assert trim_ids([4, 5, 0, 0]) == [4, 5]
    assert trim_ids([4, 5]) == [4, 5]


def test_sequence_metrics_flat_dict():
    vocab = Vocab.from_words(["a", "b", "c", "d"])  # ids 4..7
    out = sequence_metrics(
        hyp_ids=[[4, 5, 2, 0], [1, 6, 7, 2], [4, 4, 4]],
        target_ids=[[4, 5], [6, 5], [4, 5, 6]],
        reference_ids=None,
        vocab=vocab,
        lengths=[2, 2, 3],
        meteor=False,
        nll=[1.0, 2.0, 3.0],
        nll_tokens=[2, 2, 3],
    )
    assert out["exact_match"] == pytest.approx(1 / 3)
    assert out["token_accuracy"] == pytest.approx(4 / 7)  # 2 + 1 + 1 of 2 + 2 + 3
    assert out["perplexity"] == pytest.approx(math.exp(6 / 7))
    assert out["len2_n"] == 2 and out["len2_token_accuracy"] == pytest.approx(0.75)
    assert out["len2_nll"] == pytest.approx(0.75) and out["len3_exact_match"] == 0.0
    assert 0 < out["bleu1"] < 1 and out["meteor"] is None
    assert all(
        isinstance(v, float)
        for k, v in out.items()
        if k != "meteor_missing_reason" and v is not None
    )
