"""Caption and sequence metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, exact match, token accuracy.

Caption metrics are pycocoevalcap 1.2 (the coco-caption code): BLEU (Papineni et al. 2002),
METEOR 1.5 (Denkowski & Lavie 2014, a Java program), ROUGE-L (Lin 2004) and CIDEr-D
(Vedantam et al. 2015). Inputs are words from our vocabularies, already tokenised, so
PTBTokenizer is skipped: it starts a JVM per call and would re-tokenise vocabulary words.
Sequence metrics work on token ids: exact match, token accuracy, perplexity, and the same
per-example values grouped by the task's length dial. Library code: returns data, never prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from benchmarks.harness.meteor import meteor_score
from benchmarks.tasks.base import Vocab
from models.base import BOS, EOS, PAD

DISTINCT_LENGTH_BUCKETS = 16  # up to this many distinct lengths: one bucket each (else powers of 2)


def _join(words: Sequence[str], where: str) -> str:
    """Words -> the space-joined string pycocoevalcap splits again; a word must be one token."""
    for w in words:
        if not w or w != w.strip() or len(w.split()) != 1:
            raise ValueError(f"{where}: word {w!r} is empty or contains whitespace")
    return " ".join(words)


def caption_metrics(
    hypotheses: dict[str, list[str]],
    references: dict[str, list[list[str]]],
    meteor: bool = True,
) -> dict[str, float | str | None]:
    """Corpus-level BLEU-1..4, METEOR, ROUGE-L and CIDEr-D of one split.

    hypotheses: id -> one hypothesis (words; may be empty). references: id -> its references.
    Returns keys bleu1..bleu4, meteor, rouge_l, cider; when meteor is None (disabled, no java,
    or the JVM failed) also `meteor_missing_reason`.
    - BLEU pools n-gram statistics over the split, brevity penalty from the closest reference
      length (coco-caption's option); METEOR is the jar's aggregate over all segments.
    - ROUGE-L (beta=1.2) and CIDEr-D are means of per-example scores.
    - `cider` is CIDEr-D: pycocoevalcap's Cider is coco-caption's CiderScorer, which clips the
      candidate's tf-idf weights at the reference's (`min(vec_hyp, vec_ref) * vec_ref`),
      multiplies each n-gram similarity by the Gaussian length penalty exp(-delta^2 / (2 * 6^2)),
      averages n = 1..4 and the references, and scales by 10 (verified in cider_scorer.py). Its
      length is the bigram count (words - 1), which differs from words only for 0/1-word
      captions. idf comes from the references of this split, so one example scores 0.
    Empty hypotheses are valid and score 0 where nothing matches (pycocoevalcap copes with "").
    """
    if not hypotheses:
        raise ValueError("caption_metrics: no hypotheses")
    if hypotheses.keys() != references.keys():
        diff = sorted(set(hypotheses) ^ set(references))[:5]
        raise ValueError(f"caption_metrics: hypothesis and reference ids differ, e.g. {diff}")
    res = {k: [_join(h, f"hypothesis {k}")] for k, h in hypotheses.items()}
    gts = {k: [_join(r, f"reference {k}") for r in refs] for k, refs in references.items()}
    if any(not refs for refs in gts.values()):
        raise ValueError("caption_metrics: every id needs at least one reference")
    if not any(r for refs in gts.values() for r in refs):
        raise ValueError("caption_metrics: every reference is empty")  # CIDEr's idf needs words
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose=0: it prints otherwise
    out: dict[str, float | str | None] = {f"bleu{n + 1}": float(b) for n, b in enumerate(bleu)}
    m, reason = meteor_score(gts, res) if meteor else (None, "disabled (meteor=False)")
    out["meteor"] = m
    if m is None:
        out["meteor_missing_reason"] = reason
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    return out


def _check_pairs(hyps: Sequence, targets: Sequence, name: str) -> None:
    if len(hyps) != len(targets) or not targets:
        raise ValueError(
            f"{name}: need as many hypotheses as targets (>0); got {len(hyps)}, {len(targets)}"
        )


def token_matches(hyp: Sequence[int], target: Sequence[int]) -> int:
    """Positions i < len(target) with hyp[i] == target[i] (a missing hyp position is wrong)."""
    return sum(h == t for h, t in zip(hyp, target, strict=False))


def exact_match(hyps: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> float:
    """Fraction of examples whose hypothesis equals its target exactly."""
    _check_pairs(hyps, targets, "exact_match")
    return sum(list(h) == list(t) for h, t in zip(hyps, targets, strict=True)) / len(targets)


def token_accuracy(hyps: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> float:
    """Position-wise matches over all target tokens (micro average).

    Position i of a target counts as right iff the hypothesis has the same token at i; a
    hypothesis shorter than its target is wrong on the rest; extra hypothesis tokens beyond the
    target are not counted (exact_match penalises them).
    """
    _check_pairs(hyps, targets, "token_accuracy")
    total = sum(len(t) for t in targets)
    if total == 0:
        raise ValueError("token_accuracy: every target is empty")
    return sum(token_matches(h, t) for h, t in zip(hyps, targets, strict=True)) / total


def perplexity(total_nll: float, total_tokens: int) -> float:
    """exp(total NLL in nats / tokens); inf when that overflows, nan stays nan."""
    if total_tokens <= 0:
        raise ValueError(f"perplexity: total_tokens must be > 0; got {total_tokens}")
    if total_nll < 0:
        raise ValueError(f"perplexity: total_nll must be >= 0 (a sum of -log p); got {total_nll}")
    try:
        return math.exp(total_nll / total_tokens)
    except OverflowError:
        return math.inf


def _edges_for(lengths: Sequence[int]) -> list[int]:
    """Default bucket edges: the distinct lengths, or powers of two when there are many."""
    distinct = sorted(set(lengths))
    if len(distinct) <= DISTINCT_LENGTH_BUCKETS:  # [n, n+1) per length; gaps stay empty
        return sorted(set(distinct) | {n + 1 for n in distinct})
    edges = [0] if distinct[0] == 0 else []
    p = 1
    while p * 2 <= max(distinct[0], 1):
        p *= 2
    while p <= distinct[-1]:
        edges.append(p)
        p *= 2
    return edges + [p]  # a closing edge, so the last bucket is [p/2, p) and not open-ended


def per_length_buckets(
    lengths: Sequence[int], values: dict[str, Sequence[float]], edges: list[int] | None = None
) -> list[dict[str, float | int | str]]:
    """Mean of each per-example metric within length buckets, one row per non-empty bucket.

    Bucket i holds lengths in [edges[i], edges[i+1]); the last is [edges[-1], inf). Default
    edges: each distinct length its own bucket when there are at most DISTINCT_LENGTH_BUCKETS
    of them, else powers of two (1, 2-3, 4-7, ...; 0 alone). Rows:
    {"bucket": "4-7" | "5" | "16+", "lo": 4, "n": 3, <metric>: mean, ...}, sorted by lo.
    """
    for name, vals in values.items():
        if len(vals) != len(lengths):
            raise ValueError(
                f"per_length_buckets: '{name}' has {len(vals)} values for {len(lengths)} lengths"
            )
    edges = _edges_for(lengths) if edges is None else list(edges)
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"per_length_buckets: edges must be non-empty and increasing; got {edges}")
    if lengths and min(lengths) < edges[0]:
        raise ValueError(f"per_length_buckets: length {min(lengths)} is below edges[0]={edges[0]}")
    rows = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else math.inf
        idx = [j for j, n in enumerate(lengths) if lo <= n < hi]
        if not idx:
            continue
        top = max(lengths[j] for j in idx) if hi == math.inf else hi - 1
        label = f"{lo}" if top == lo else (f"{lo}+" if hi == math.inf else f"{lo}-{top}")
        row: dict[str, float | int | str] = {"bucket": label, "lo": lo, "n": len(idx)}
        row.update({k: sum(v[j] for j in idx) / len(idx) for k, v in values.items()})
        rows.append(row)
    return rows


def trim_ids(ids: Sequence[int]) -> list[int]:
    """Generated ids as a plain sequence: one leading BOS dropped, cut at the first EOS or PAD."""
    out = list(ids[1:] if len(ids) and ids[0] == BOS else ids)
    for i, tok in enumerate(out):
        if tok in (EOS, PAD):
            return out[:i]
    return out


def sequence_metrics(
    hyp_ids: Sequence[Sequence[int]],
    target_ids: Sequence[Sequence[int]],
    reference_ids: Sequence[Sequence[Sequence[int]] | None] | None,
    vocab: Vocab,
    lengths: Sequence[int],
    meteor: bool = True,
    nll: Sequence[float] | None = None,
    nll_tokens: Sequence[int] | None = None,
    edges: list[int] | None = None,
) -> dict[str, float | str | None]:
    """Every metric of one evaluated split in one flat dict (what the training harness records).

    hyp_ids: generated ids per example (trim_ids: leading BOS dropped, cut at EOS/PAD).
    target_ids: gold ids (no BOS/EOS). reference_ids: per example all reference captions, or None
    (that example's, or every example's, target is its one reference), as Example.references.
    lengths: the task's length dial per example. nll, nll_tokens: optional per-example summed
    teacher-forced NLL (nats) and its token count -> `perplexity`, `nll_per_token`.
    Keys: n_examples, exact_match, token_accuracy, the caption_metrics keys (words from
    vocab.decode), and per length bucket `len{bucket}_{n|exact_match|token_accuracy|nll}`
    (nll = mean over the bucket's examples of their per-token NLL).
    """
    n = len(target_ids)
    if len(hyp_ids) != n or len(lengths) != n or n == 0:
        raise ValueError(
            f"sequence_metrics: {len(hyp_ids)} hypotheses, {n} targets and "
            f"{len(lengths)} lengths; need the same number (>0)"
        )
    hyps, tgts = [trim_ids(h) for h in hyp_ids], [trim_ids(t) for t in target_ids]
    if reference_ids is not None and len(reference_ids) != n:
        raise ValueError(f"sequence_metrics: {len(reference_ids)} reference lists for {n} targets")
    per_ref = [None] * n if reference_ids is None else reference_ids
    refs = [r if r is not None else [t] for r, t in zip(per_ref, tgts, strict=True)]
    out: dict[str, float | str | None] = {"n_examples": float(n)}
    out["exact_match"] = exact_match(hyps, tgts)
    out["token_accuracy"] = token_accuracy(hyps, tgts)
    out.update(
        caption_metrics(
            {str(i): vocab.decode(h) for i, h in enumerate(hyps)},
            {str(i): [vocab.decode(x) for x in r] for i, r in enumerate(refs)},
            meteor=meteor,
        )
    )
    per_example: dict[str, list[float]] = {
        "exact_match": [float(h == t) for h, t in zip(hyps, tgts, strict=True)],
        "token_accuracy": [
            token_matches(h, t) / len(t) if t else float(h == t)
            for h, t in zip(hyps, tgts, strict=True)
        ],
    }
    if nll is not None:
        if nll_tokens is None or len(nll) != n or len(nll_tokens) != n:
            raise ValueError(f"sequence_metrics: nll and nll_tokens need {n} values each")
        out["perplexity"] = perplexity(sum(nll), sum(nll_tokens))
        out["nll_per_token"] = sum(nll) / sum(nll_tokens)
        per_example["nll"] = [s / max(k, 1) for s, k in zip(nll, nll_tokens, strict=True)]
    for row in per_length_buckets(lengths, per_example, edges):
        for key in ("n", *per_example):
            out[f"len{row['bucket']}_{key}"] = float(row[key])
    return out
