"""What only a GPU can show: bf16 kernels against an fp32 reference, one autocast training step
per decoder, greedy and beam decoding on CUDA, and the GPU a Ray task receives. Every test
skips cleanly without CUDA (CI has none); `make test` runs them wherever a GPU is present."""

from __future__ import annotations

import pytest
import torch

from benchmarks.harness.batching import collate
from benchmarks.harness.config import TrainConfig
from benchmarks.harness.train import _step, build_model, finite_losses
from benchmarks.tasks import load_task
from models.base import EncoderOutput
from models.registry import create_decoder, create_kernel, list_decoders, list_kernels
from models.seq2seq import beam_search, greedy

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
CUDA = torch.device("cuda")


@pytest.mark.parametrize("kernel", list_kernels())
@pytest.mark.parametrize("causal", [False, True])
def test_bf16_kernel_matches_the_fp32_reference(kernel: str, causal: bool) -> None:
    """bf16 inputs on CUDA against fp32 math on the same (bf16-rounded) values: within bf16's
    resolution, forward and gradients."""
    torch.manual_seed(0)
    shape = (2, 4, 256, 64)  # (B, H, N, Dh)
    q, k, v = (torch.randn(shape, device=CUDA).to(torch.bfloat16) for _ in range(3))
    module = create_kernel(kernel, **({"head_dim": 64} if kernel == "additive" else {}))
    module = module.to(CUDA)
    ref_in = [t.float().requires_grad_() for t in (q, k, v)]
    ref, _ = module.float()(*ref_in, causal=causal)
    ref_grads = torch.autograd.grad(ref.square().sum(), ref_in)
    low_in = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = module.to(torch.bfloat16)(*low_in, causal=causal)
    grads = torch.autograd.grad(out.float().square().sum(), low_in)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.float(), r, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("causal", [False, True])
def test_flex_trains_after_an_inference_call_at_the_same_shape(causal: bool) -> None:
    """The kernel benchmark's order: forward under inference_mode (which fills the block-mask
    cache), then forward+backward at the same shape. Failed on an H200 before the cached masks
    were kept out of inference mode ("Inference tensors cannot be saved for backward")."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 384, 64, device=CUDA, dtype=torch.bfloat16) for _ in "qkv")
    kernel = create_kernel("flex")
    with torch.inference_mode():
        kernel(q, k, v, causal=causal)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out, _ = kernel(*leaves, causal=causal)
    out.float().square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in leaves)


@pytest.mark.parametrize("decoder", list_decoders())
@pytest.mark.parametrize("task", ["reverse", "digits"])
def test_one_autocast_training_step_per_decoder(decoder: str, task: str) -> None:
    data = load_task(task, length=4, n_train=16, n_val=4, n_test=4, seed=0)
    cfg = TrainConfig(decoder=decoder, d_model=32, batch_size=8, max_steps=2, eval_every=2)
    model = build_model(data, cfg).to(CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    batch = collate(data.train[:8], data.source_kind).to(CUDA)
    before = [p.detach().clone() for p in model.parameters()]
    loss = _step(model, opt, sched, batch, cfg, CUDA)
    assert finite_losses([loss], {"step": 1})[0] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights fp32


@pytest.mark.parametrize("decoder", list_decoders())
def test_greedy_and_beam_decoding_on_cuda_equal_the_cpu(decoder: str) -> None:
    torch.manual_seed(0)
    dec = create_decoder(decoder, vocab_size=9, d_model=16).eval()
    mask = torch.arange(5)[None, :] < torch.tensor([5, 3, 2])[:, None]  # (B, S)
    enc = EncoderOutput(torch.randn(3, 5, 16) * mask[..., None], mask, torch.randn(3, 16))
    on_cuda = EncoderOutput(enc.memory.to(CUDA), enc.memory_mask.to(CUDA), enc.summary.to(CUDA))
    cpu_tokens, _ = greedy(dec, enc, 20)
    gpu_tokens, _ = greedy(dec.to(CUDA), on_cuda, 20)
    assert torch.equal(cpu_tokens, gpu_tokens.cpu())
    cpu_beam = beam_search(dec.cpu(), enc, 20, beam_size=3)
    gpu_beam = beam_search(dec.to(CUDA), on_cuda, 20, beam_size=3)
    assert torch.equal(cpu_beam, gpu_beam.cpu())


def test_a_ray_task_receives_its_own_gpu() -> None:
    ray = pytest.importorskip("ray")
    from benchmarks.sweeps.ray_executor import init_local_ray

    init_local_ray(num_cpus=1, num_gpus=1)
    try:

        @ray.remote(num_gpus=1)
        def visible() -> tuple[list[int], str]:
            import os

            return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES", "")

        ids, env = ray.get(visible.remote())
        assert len(ids) == 1 and env == str(ids[0])
    finally:
        ray.shutdown()
