"""FAVOR+ and the model on CUDA against the float64 CPU result: fp32 and bf16 autocast.

Skipped where torch sees no CUDA device. fp32 on the GPU must agree with the float64 oracle to
float32 rounding; under bf16 autocast the inputs of FAVOR+ are bf16 (as the q/k/v projection
produces them there) while FAVOR+ itself computes in float32, so the error is that of rounding
q, k and v to bf16 (8 bits of mantissa), checked against the oracle evaluated on the same rounded
inputs (tight) and on the unrounded ones (loose).
"""

from __future__ import annotations

import copy

import pytest
import torch

from protein_performer.attention import favor_attention, gaussian_orthogonal_matrix
from protein_performer.model import PerformerConfig, PerformerLM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

KERNELS = ["softmax", "relu"]
B, H, L, D, M = 2, 3, 300, 16, 32  # L spans several causal chunks of 64
REAL = (300, 211)  # real tokens per row: the second row is padded


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, H, L, D) float64 on CPU, the (M, D) projection and a (B, L) padding mask."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, H, L, D, generator=g, dtype=torch.float64) for _ in range(3))
    w = gaussian_orthogonal_matrix(M, D, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    mask = torch.arange(L)[None, :] < torch.tensor(REAL)[:, None]  # (B, L), True at real tokens
    return q, k, v, w, mask


def _real(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Outputs at real positions only (padded queries are unspecified): (N, D) in float64 on CPU."""
    return x.detach().double().cpu().transpose(1, 2)[mask]  # (B, L, H, D) -> (N, H, D)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
def test_favor_fp32_on_cuda_matches_float64_cpu(kernel, causal):
    q, k, v, w, mask = _inputs()
    want = favor_attention(q, k, v, w, kernel=kernel, causal=causal, key_padding_mask=mask, chunk_size=64)
    got = favor_attention(*(t.float().cuda() for t in (q, k, v, w)), kernel=kernel, causal=causal,
                          key_padding_mask=mask.cuda(), chunk_size=64)
    assert got.dtype == torch.float32 and got.is_cuda
    torch.testing.assert_close(_real(got, mask), _real(want, mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("qk_dtype", [torch.bfloat16, torch.float32], ids=["qkv_bf16", "qk_fp32_v_bf16"])
def test_favor_under_bf16_autocast_matches_float64_cpu(kernel, causal, qk_dtype):
    """Under autocast the q/k/v projection hands over bf16; in the model, rotary (float32 cos and
    sin) then promotes q and k back to float32 while v stays bf16. Both must work."""
    q, k, v, w, mask = _inputs(seed=3)
    rounded = [t.to(torch.bfloat16).double() for t in (q, k, v)]  # what the bf16 projection hands over
    want_rounded = favor_attention(*rounded, w, kernel=kernel, causal=causal, key_padding_mask=mask, chunk_size=64)
    want = favor_attention(q, k, v, w, kernel=kernel, causal=causal, key_padding_mask=mask, chunk_size=64)
    q_in, k_in, v_in = (t.cuda().to(dt) for t, dt in zip(rounded, (qk_dtype, qk_dtype, torch.bfloat16)))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = favor_attention(q_in, k_in, v_in, w.float().cuda(), kernel=kernel, causal=causal,
                              key_padding_mask=mask.cuda(), chunk_size=64)
    assert got.dtype == torch.bfloat16 and got.is_cuda
    # FAVOR+ runs in float32 inside autocast: only the bf16 rounding of its output is left.
    torch.testing.assert_close(_real(got, mask), _real(want_rounded, mask), rtol=1e-2, atol=1e-2)
    err = (_real(got, mask) - _real(want, mask)).norm() / _real(want, mask).norm()
    assert err < 2e-2, f"relative error {err:.3g} against the unrounded float64 result"


def _model_pair(causal: bool) -> tuple[PerformerLM, PerformerLM]:
    """The same tiny model on CPU (float64, the oracle) and on CUDA (fp32)."""
    config = PerformerConfig(dim=32, depth=2, heads=4, ff_mult=2, nb_features=16, causal=causal, dropout=0.0)
    model = PerformerLM(config).eval()
    gpu = copy.deepcopy(model).cuda()
    return model.double(), gpu


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 25, (2, 150), generator=torch.Generator().manual_seed(7))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 97:] = False
    return ids, mask


@pytest.mark.parametrize("causal", [False, True])
def test_model_forward_on_cuda_matches_cpu(causal):
    cpu, gpu = _model_pair(causal)
    ids, mask = _tokens()
    with torch.no_grad():
        want = cpu(ids, mask).logits[mask]  # (N, vocab) at real tokens
        got = gpu(ids.cuda(), mask.cuda()).logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            got_bf16 = gpu(ids.cuda(), mask.cuda()).logits
    torch.testing.assert_close(got[mask.cuda()].double().cpu(), want, rtol=1e-4, atol=1e-4)
    err = (got_bf16[mask.cuda()].double().cpu() - want).norm() / want.norm()
    assert err < 2e-2, f"bf16 autocast logits: relative error {err:.3g} against float64 CPU"
