"""The GPU code paths, run on the CPU: no host sync in a training step or decoder forward, the
same decoded tokens when the all-finished check runs every 8th step, and which modules run in
which dtype under autocast.

`models.base.HOST_READS_FREE` names the device types whose tensors the host may read for free;
cleared, every model takes the path it takes on a GPU, and `HostReads` counts what would have
been a device sync there. Shapes: B batch, S memory length, T target length, V vocab.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import models.base
from benchmarks.harness.batching import collate
from benchmarks.harness.config import TrainConfig
from benchmarks.harness.train import _step, build_model
from benchmarks.tasks import load_task
from models import encoders
from models.attention.chunked import ChunkedAttention
from models.base import EncoderOutput
from models.registry import create_decoder, list_decoders
from models.seq2seq import beam_search, greedy

# .item(), bool(t), int(t) and float(t) all reach aten._local_scalar_dense; these do not on a CPU
HOST_METHODS = {"tolist", "cpu", "numpy"}
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "is_nonzero", "masked_select"}


PAUSED = [0]  # > 0: inside a call whose reads are of host tensors by design (see below)


def paused(fn):
    """`fn` with HostReads not counting, for what reads host tensors by PyTorch's API (CPU
    tensors on every device, so free on a GPU): pack_padded_sequence reads the lengths it takes
    on the host, and an RNN run on a PackedSequence reads its `batch_sizes`."""

    def call(*args, **kwargs):
        PAUSED[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            PAUSED[0] -= 1

    return call


class HostReads(TorchFunctionMode):
    """Counts reads of tensor data by the host: Python-level methods (`.item()`, `bool(t)`,
    `.cpu()`, ...) seen by this function mode, and the aten ops behind the implicit ones
    (boolean-mask indexing calls `nonzero`) seen by `_AtenReads`. Each is a device sync on a
    GPU. `reads` lists them, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []
        self._aten = _AtenReads(self.reads)

    def __enter__(self) -> HostReads:
        super().__enter__()
        self._aten.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._aten.__exit__(*exc)
        super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_METHODS and not PAUSED[0]:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))


class _AtenReads(TorchDispatchMode):
    def __init__(self, reads: list[str]) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in SYNCING_OPS and not PAUSED[0]:
            self.reads.append(f"aten.{func.overloadpacket.__name__}")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def gpu_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model takes the path it takes on a GPU."""
    monkeypatch.setattr(models.base, "HOST_READS_FREE", frozenset())


def test_host_reads_counts_what_a_gpu_would_sync_on() -> None:
    """The counter itself: each kind of read it must catch, caught."""
    x, mask = torch.arange(4.0), torch.tensor([True, False, True, False])
    with HostReads() as reads:
        x.sum().item()
        bool(x.any())
        x.tolist()
        x[mask.nonzero()]
    assert reads.reads == ["aten._local_scalar_dense"] * 2 + ["tolist", "aten.nonzero"]


def tiny(task: str, **args: Any) -> Any:
    base = {"n_train": 16, "n_val": 4, "n_test": 4, "seed": 0}
    return load_task(task, **(base | args))


@pytest.mark.parametrize("decoder", list_decoders())
@pytest.mark.parametrize(
    ("task", "args", "expected"),
    [
        ("digits", {"length": 2}, []),
        # pack_padded_sequence takes its lengths on the host: the one read, per batch
        ("reverse", {"length": 4}, ["cpu"]),
    ],
)
def test_a_training_step_reads_nothing_back_on_a_gpu(
    gpu_paths, monkeypatch, decoder, task, args, expected
):
    monkeypatch.setattr(encoders, "pack_padded_sequence", paused(encoders.pack_padded_sequence))
    data = tiny(task, **args)
    cfg = TrainConfig(decoder=decoder, d_model=16, batch_size=4, max_steps=2, eval_every=2)
    model = build_model(data, cfg)
    if task == "reverse":  # the text encoder's BiGRU runs on a PackedSequence
        model.encoder.rnn.forward = paused(model.encoder.rnn.forward)
    # SGD: AdamW reads its step counter with .item(), a CPU tensor on every device (free)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    batch = collate(data.train[:4], data.source_kind)
    with HostReads() as reads:
        _step(model, opt, sched, batch, cfg, torch.device("cpu"))
    assert reads.reads == expected


def test_on_the_cpu_the_models_still_check_their_inputs() -> None:
    """The other side of the switch: with host reads free, an empty memory row is refused."""
    dec = create_decoder("transformer", vocab_size=7, d_model=16)
    mask = torch.tensor([[True, False], [False, False]])
    enc = EncoderOutput(torch.zeros(2, 2, 16), mask, torch.zeros(2, 16))
    with pytest.raises(ValueError, match=r"no valid position in batch row\(s\) \[1\]"):
        dec(enc, torch.zeros(2, 3, dtype=torch.long))


def decode_both(decoder: str) -> tuple[Any, ...]:
    torch.manual_seed(0)
    dec = create_decoder(decoder, vocab_size=9, d_model=16).eval()
    mask = torch.arange(5)[None, :] < torch.tensor([5, 3, 2])[:, None]  # (B, S)
    enc = EncoderOutput(torch.randn(3, 5, 16) * mask[..., None], mask, torch.randn(3, 16))
    tokens, attn = greedy(dec, enc, max_len=20)
    return tokens, attn, beam_search(dec, enc, max_len=20, beam_size=3)


@pytest.mark.parametrize("decoder", list_decoders())
def test_decoding_with_the_gpu_check_interval_gives_the_same_tokens(decoder, monkeypatch):
    """On a GPU the all-finished check runs every 8th step; the output is trimmed back, so
    tokens and attention equal the check-every-step run exactly."""
    cpu = decode_both(decoder)
    monkeypatch.setattr(models.base, "HOST_READS_FREE", frozenset())
    gpu = decode_both(decoder)
    for a, b in zip(cpu, gpu, strict=True):
        if a is None:
            assert b is None
        else:
            assert torch.equal(a, b)


def test_decoding_on_a_gpu_reads_back_only_every_8th_step(gpu_paths) -> None:
    torch.manual_seed(0)
    dec = create_decoder("rnn", vocab_size=9, d_model=16).eval()
    enc = EncoderOutput(
        torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool), torch.randn(2, 16)
    )
    trim = ["aten.nonzero", "aten._local_scalar_dense"]  # the one trim at the end
    for decode in (greedy, partial(beam_search, beam_size=2)):
        with HostReads() as reads:
            decode(dec, enc, max_len=16)
        checks = reads.reads[: -len(trim)]  # "all finished?" at steps 8 and 16 at most
        assert reads.reads[-len(trim) :] == trim and checks in (
            ["aten._local_scalar_dense"],
            ["aten._local_scalar_dense"] * 2,
        ), reads.reads


@pytest.mark.parametrize("decoder", list_decoders())
def test_under_autocast_every_recurrence_runs_in_fp32(decoder) -> None:
    """CPU bf16 autocast (CUDA's behaves alike, and its cuDNN RNN would cast to fp16): the
    fused GRUs (decoder, text encoder) produce fp32, the projections bf16."""
    data = tiny("reverse", length=4)
    cfg = TrainConfig(decoder=decoder, d_model=16, batch_size=4, max_steps=1, eval_every=1)
    model = build_model(data, cfg)
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            seen[name] = out.data.dtype if hasattr(out, "data") else out.dtype

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.GRU, torch.nn.RNN, torch.nn.LSTM, torch.nn.Linear)):
            module.register_forward_hook(record(name))
    batch = collate(data.train[:4], data.source_kind)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch.source, batch.source_mask, batch.tokens_in, need_attn=False)
    assert out.logits.dtype == torch.bfloat16
    recurrent = {n: d for n, d in seen.items() if n.endswith("rnn")}
    assert recurrent and set(recurrent.values()) == {torch.float32}, recurrent
    assert torch.bfloat16 in {d for n, d in seen.items() if n not in recurrent}


def test_chunked_computes_in_fp32_under_autocast_forward_and_backward() -> None:
    """Under bf16 autocast its tiles' matmuls would round to bf16 (errors ~1e-2): with autocast
    off inside, fp32 inputs give the fp32 result, forward and gradients."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 96, 16, requires_grad=True) for _ in range(3))
    kernel = ChunkedAttention(block_size=(32, 32))
    ref, _ = kernel(q, k, v, causal=True)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = kernel(q, k, v, causal=True)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)
