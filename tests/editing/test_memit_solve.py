"""The closed-form MEMIT solve ΔW = R Kᵀ (λC + K Kᵀ)⁻¹ on random problems (no model involved)."""

from __future__ import annotations

import pytest
import torch

from editdecay.editing.memit import solve_memit

D_K, D_V, N = 48, 32, 10


@pytest.fixture(scope="module")
def problem():
    g = torch.Generator().manual_seed(1234)
    K = torch.randn(D_K, N, generator=g, dtype=torch.float64)
    R = torch.randn(D_V, N, generator=g, dtype=torch.float64)
    A = torch.randn(D_K, 3 * D_K, generator=g, dtype=torch.float64)
    C = A @ A.T / (3 * D_K) + 0.1 * torch.eye(
        D_K, dtype=torch.float64
    )  # symmetric positive definite
    W = torch.randn(D_V, D_K, generator=g, dtype=torch.float64)
    assert torch.linalg.eigvalsh(C).min() > 0
    return K, R, C, W


def test_shape_and_dtype(problem):
    K, R, C, _ = problem
    dw = solve_memit(K, R, C, 1.0)
    assert dw.shape == (D_V, D_K)
    assert dw.dtype == torch.float64
    assert torch.isfinite(dw).all()


def test_tiny_lambda_writes_every_value_exactly(problem):
    """λ → 0: the update maps every key onto its residual, so (W + ΔW) K = W K + R."""
    K, R, C, W = problem
    dw = solve_memit(K, R, C, 1e-9)
    torch.testing.assert_close(dw @ K, R, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close((W + dw) @ K, W @ K + R, rtol=1e-5, atol=1e-7)


def test_large_lambda_shrinks_the_update(problem):
    K, R, C, _ = problem
    norms = [float(solve_memit(K, R, C, lam).norm()) for lam in (1e-3, 1.0, 1e3)]
    assert norms[0] > norms[1] > norms[2] > 0
    # and the keys are no longer written: the residual error grows toward ‖R‖
    err_small = float((solve_memit(K, R, C, 1e-3) @ K - R).norm())
    err_large = float((solve_memit(K, R, C, 1e3) @ K - R).norm())
    assert err_small < 0.01 * float(R.norm())
    assert err_large > 0.5 * float(R.norm())


def test_large_lambda_limit_is_r_kt_cinv_over_lambda(problem):
    """For λ ≫ ‖KKᵀ‖/‖C‖, λ·ΔW → R Kᵀ C⁻¹, i.e. ΔW vanishes like 1/λ."""
    K, R, C, _ = problem
    lam = 1e8
    limit = R @ K.T @ torch.linalg.inv(C)
    rel = float((lam * solve_memit(K, R, C, lam) - limit).norm() / limit.norm())
    assert rel < 1e-4
    # one decade of λ less and the first-order correction is ten times larger, still O(1/λ)
    rel_10x = float((lam / 10 * solve_memit(K, R, C, lam / 10) - limit).norm() / limit.norm())
    assert rel < rel_10x < 1e-3


@pytest.mark.parametrize("lam", [1e-2, 0.5, 10.0, 2000.0])
def test_matches_explicit_formula(problem, lam):
    K, R, C, _ = problem
    explicit = R @ K.T @ torch.linalg.inv(lam * C + K @ K.T)
    torch.testing.assert_close(solve_memit(K, R, C, lam), explicit, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("lam", [0.1, 5.0])
def test_is_the_minimiser_of_the_regularised_objective(problem, lam):
    """Gradient of ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ) vanishes at the solution: (ΔW K − R) Kᵀ + λ ΔW C = 0."""
    K, R, C, _ = problem
    dw = solve_memit(K, R, C, lam)
    grad = (dw @ K - R) @ K.T + lam * dw @ C
    assert float(grad.abs().max()) < 1e-9 * float(R.abs().max() * K.abs().max())
    # any perturbation of the solution costs more
    g = torch.Generator().manual_seed(7)

    def objective(m):
        return float(((m @ K - R) ** 2).sum() + lam * torch.trace(m @ C @ m.T))

    best = objective(dw)
    for _ in range(3):
        assert objective(dw + 1e-3 * torch.randn(dw.shape, generator=g, dtype=dw.dtype)) > best


def test_float32_inputs_are_solved_in_float64(problem):
    K, R, C, _ = problem
    K32, R32, C32 = K.float(), R.float(), C.float()
    dw = solve_memit(K32, R32, C32, 1.0)
    assert dw.dtype == torch.float64
    torch.testing.assert_close(
        dw, solve_memit(K32.double(), R32.double(), C32.double(), 1.0), rtol=0, atol=0
    )


def _random_post_norm(d: int = 16):
    """A Gemma 3 RMS norm with random scales, seeded."""
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    torch.manual_seed(0)
    norm = Gemma3RMSNorm(d, eps=1e-12)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(d) * 0.3)
    return norm


def test_pre_norm_change_inverts_an_rms_post_norm():
    from editdecay.editing.memit import pre_norm_change

    norm = _random_post_norm()
    v = torch.randn(3, 16) * 5.0
    v2 = torch.randn(3, 16)
    v2 = v2 / v2.pow(2).mean(-1, keepdim=True).sqrt() * v.pow(2).mean(-1, keepdim=True).sqrt()
    r = norm(v2) - norm(v)  # a reachable change of the normed output
    dv = pre_norm_change(norm, v, r)
    assert torch.allclose(v + dv, v2, atol=1e-4)
    assert torch.allclose(norm(v + dv), norm(v) + r, atol=1e-4)
    # v + Δv keeps v's rms
    torch.testing.assert_close((v + dv).pow(2).mean(-1), v.pow(2).mean(-1), rtol=1e-4, atol=0)


def _closest_output_check(norm, v, r):
    from editdecay.editing.memit import pre_norm_change

    s = norm(torch.ones(1, v.shape[-1]))[0].double()
    y = (norm(v) + r).double()
    x = (v + pre_norm_change(norm, v, r)).double()
    u = x / x.pow(2).mean(-1, keepdim=True).sqrt()
    torch.testing.assert_close(s * u, norm(x.float()).double(), rtol=1e-4, atol=1e-5)
    best = (s * u - y).norm(dim=-1)
    # any other output the norm can produce, s ⊙ u' with rms(u') = 1, is no closer to the wanted one
    active = s != 0
    g = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1e-2, 1e-1):
        for _ in range(50):
            # coordinates with s = 0 keep v's value (they cannot move the output), the rest keep their norm
            w = (
                u
                + scale * torch.randn(u.shape, generator=g, dtype=u.dtype) * u.abs().mean() * active
            )
            w = torch.where(
                active,
                w
                * (u * active).norm(dim=-1, keepdim=True)
                / (w * active).norm(dim=-1, keepdim=True),
                u,
            )
            assert ((s * w - y).norm(dim=-1) >= best - 1e-5 * y.norm(dim=-1)).all()
    return best, y, s


def test_pre_norm_change_reaches_the_closest_output_when_the_target_is_unreachable():
    norm = _random_post_norm()
    v = torch.randn(3, 16) * 5.0
    _closest_output_check(norm, v, 3.0 * norm(v).detach() + torch.randn(3, 16))


def test_pre_norm_change_is_not_pulled_onto_coordinates_with_a_tiny_scale():
    norm = _random_post_norm()
    with torch.no_grad():
        norm.weight[3] = -1 + 1e-3  # scale 1 + w = 1e-3 on coordinate 3
        norm.weight[7] = -1.0  # scale 0: coordinate 7 never reaches the output
    v = torch.randn(3, 16) * 5.0
    r = torch.randn(3, 16)
    with torch.no_grad():
        best, y, s = _closest_output_check(norm, v, r)
        # dividing the wanted output by the scale puts almost all of u on coordinate 3
        naive = y / s
        naive[:, 7] = 0
        naive = s * naive / naive.pow(2).mean(-1, keepdim=True).sqrt()
        assert ((naive - y).norm(dim=-1) > best).all()
        assert (best < r.norm(dim=-1)).all()  # closer than leaving the output as it was
