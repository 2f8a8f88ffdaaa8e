"""How frames are compared for alignment (:mod:`cryolib.processing.motion`): edge handling and weights.

Two views of each frame enter the cross-correlation. The *refinement* view removes the
wrap-around edge jump by the periodic-plus-smooth decomposition (exact, no windowing). The
*coarse* view, which only decides which peak is the right one, tapers the frame edges
instead: the smooth part is solved from single noisy border rows and also changes as the
specimen drifts across the border, which on a field with a straight carbon edge moved the
lowest rings' cross-correlation by ~100 px. Both views use the same ring weights: a Wiener
filter of the leave-one-out reference times a B-factor prior and a high-pass that drops the
lowest rings (:func:`cc_filter`).

Measured on simulated movies with known drift (all 22 analogs, 3 movies each plus 9 more of
gen-filament-carbon; 512² × 20 frames and 256² × 8 frames), the two changes together took the
worst rms error from 48.9 to 0.06 px at 512² (gen-filament-carbon_0011) and from 1.0 to
0.08 px at 256², with the median unchanged (0.034 and 0.041 px); at 1024² × 40 frames
(33 movies) nothing changed (worst 0.033 px). The result held with the high-pass at 3 or 8
rings and a taper of 1/16 or 1/8. The high-pass alone (periodic-plus-smooth in both views)
still missed one 256² movie by 3.1 px; tapering both views biased noise-free sub-pixel
shifts by up to 0.26 px.
"""

from __future__ import annotations

import torch

from cryolib.processing.motion_peaks import crop_spectrum

_COARSE_Z_FRACTION = 0.9  # the coarse search keeps the band holding this much of the peak's z
_TAPER_FRACTION = 1 / 16  # the coarse view falls to 0 over this share of each side
_HIGH_PASS_RINGS = 5.0  # rings (1/min(H, W) cycles/px) below which the CC weights fall off


def cc_filter(k2: torch.Tensor, n_min: int, bfactor_px2: float) -> torch.Tensor:
    """Fixed CC weights ``(Hk, Wk)``: B-factor prior ``exp(-B k²/4)`` times a high-pass.

    ``k2`` is k² (cycles²/px²), ``n_min`` = min(H, W) px, B in px². The high-pass
    ``1 - exp(-(r / 5)²)`` (r in rings of 1/min(H, W) cycles/px) drops the waves of a
    frame's own size: they locate a shift to a fraction of their period only, and their
    phase is the one most changed by content that enters and leaves at the frame border.
    """
    rings = k2.sqrt() * n_min
    return torch.exp(-bfactor_px2 * k2 / 4) * (1 - torch.exp(-((rings / _HIGH_PASS_RINGS) ** 2)))


def remove_smooth_component(
    g: torch.Tensor, x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor, n_c: tuple[int, int]
) -> torch.Tensor:
    """Subtract, in place, the smooth part of frames ``x`` from their cropped spectra ``g``.

    Moisan (2011) "periodic plus smooth" decomposition: the wrap-around jumps at the frame
    border define a boundary image v; the smooth part s solves the periodic Poisson
    equation Δs = v, S = V / (2cos 2πky + 2cos 2πkx - 4). Removing it removes the edge
    discontinuity (fixed to the detector in every frame) without windowing the content.
    """
    shape = tuple(x.shape[1:])
    rows = torch.fft.rfft(x[:, -1, :] - x[:, 0, :])[:, : kx.numel()]  # [F, Wk] top/bottom jump
    cols = torch.fft.fft(x[:, :, -1] - x[:, :, 0])  # [F, H] left/right jump
    cols = crop_spectrum(cols[:, :, None], (shape[0], 1), (n_c[0], 1))[:, :, 0]  # [F, Hk]
    lap = 2 * torch.cos(2 * torch.pi * ky)[:, None] + 2 * torch.cos(2 * torch.pi * kx)[None, :] - 4
    lap[0, 0] = 1.0  # DC: the mean is removed separately
    ey = (1 - torch.exp(2j * torch.pi * ky.double())).to(torch.complex64)[:, None] / lap
    ex = (1 - torch.exp(2j * torch.pi * kx.double())).to(torch.complex64)[None, :] / lap
    g.addcmul_(rows[:, None, :], ey[None], value=-1)  # V = A(kx)(1 - e^{2πi ky}) + …
    g.addcmul_(cols[:, :, None], ex[None], value=-1)  # … + B(ky)(1 - e^{2πi kx})
    return g


def ring_weights(
    power_each: torch.Tensor,
    total: torch.Tensor,
    n_frames: int,
    shells: torch.Tensor,
    filt: torch.Tensor,
    smooth_gain: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """CC weights of a leave-one-out reference, from the frames themselves.

    Per ring, signal power S = (|Σ a|² - Σ |a|²) / (F (F-1)) and per-frame noise power
    N = Σ |a|² / F - S (``power_each`` = Σ_f |a_f|², ``total`` = Σ_f a_f of the aligned
    frames). The weight is ``filt`` · S / (S + N / (F-1)) · (1 - P / N): a Wiener filter of
    the reference, which follows the data (it low-passes smooth textures, keeps the Thon rings
    of CTF-modulated ice and widens as the alignment improves), times the share of the noise
    that does not come from the periodic-plus-smooth correction. That correction is solved
    from single noisy border rows and columns, so it adds noise of power
    P = ``smooth_gain`` · N_white (see :func:`smooth_noise_gain`; N_white, the white noise
    level, is estimated as the median of N / (1 + ``smooth_gain``)): at 1024² tens of times the
    shot noise in the lowest rings. Weighting by 1 / (noise power) is what a maximum-likelihood
    shift estimate does; without it these rings, which also carry the strongest signal of a
    particle-free field (the ice-thickness gradient), swamped its CC with broad humps displaced
    by their noise. N is floored at N_white + P, so the factor stays 1 where the data are
    noise-free.

    Returns the weights ``(Hk, Wk)`` float32; the noise power ``(Hk, Wk)`` of each weighted
    cross-power term, w² (F-1) N (F S + N) (for the peak significance); and the smallest ring
    radius (1/min(H, W) cycles/px) within which the predicted peak z — Σ w (F-1) S over the
    root of Σ w² (S + N)(F-1)((F-1) S + N), noise and the signal's own sidelobes — reaches
    ``_COARSE_Z_FRACTION`` of its value over the whole spectrum (the coarse search band).
    """
    n = n_frames
    power_sum = total[0].real.square() + total[0].imag.square()  # |Σ a|²
    idx = shells.flatten()
    counts = torch.bincount(idx).double()
    norm = counts.clamp(min=1)
    cross = torch.bincount(idx, weights=(power_sum - power_each).flatten().double()) / norm
    each = torch.bincount(idx, weights=power_each.flatten().double()) / norm
    signal = (cross / (n * (n - 1))).clamp(min=0)
    noise = (each / n - signal).clamp(min=1e-30)
    s_map, n_map = signal[shells], noise[shells]  # [Hk, Wk]
    white = (n_map / (1 + smooth_gain)).median()
    smooth = white * smooth_gain  # P
    n_map = torch.maximum(n_map, white + smooth)
    w = s_map / (s_map + n_map / (n - 1)) * (1 - smooth / n_map) * filt.double()  # [Hk, Wk]
    noise_var = w.square() * (n - 1) * n_map * (n * s_map + n_map)
    mean = torch.cumsum(torch.bincount(idx, weights=(w * (n - 1) * s_map).flatten()), dim=0)
    var = noise_var + w.square() * (n - 1) ** 2 * s_map.square()
    var = torch.cumsum(torch.bincount(idx, weights=var.flatten()), dim=0)
    z = mean / var.sqrt().clamp(min=1e-300)
    radius = int((z >= _COARSE_Z_FRACTION * z.max()).nonzero()[0, 0]) if z.max() > 0 else 0
    return w.to(torch.float32), noise_var, radius


def smooth_noise_gain(
    ky: torch.Tensor, kx: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """Noise power added by :func:`remove_smooth_component`, over white noise's ``(Hk, Wk)``.

    White noise of variance σ² per pixel has power σ² H W per coefficient. Its border jumps
    (a row or column difference, variance 2σ²) have power 2σ² W and 2σ² H, and the smooth
    part V / λ carries them as σ² [W sin²(π ky) + H sin²(π kx)] / (2 Λ²) with
    Λ = sin²(π ky) + sin²(π kx): relative to σ² H W about 1 / (2π² n k²) on an n × n
    frame, i.e. n / (2π² r²) in ring r (26× in ring 1 at 512², 52× at 1024²; below 1
    beyond ring √(n/20)).
    """
    h, w = shape
    sy = torch.sin(torch.pi * ky.double()).square()[:, None]
    sx = torch.sin(torch.pi * kx.double()).square()[None, :]
    lap = (sy + sx).square()
    lap[0, 0] = 1.0
    gain = (w * sy + h * sx) / (2 * h * w * lap)
    gain[0, 0] = 0.0
    return gain


def edge_taper(shape: tuple[int, int]) -> torch.Tensor:
    """Separable cosine (Tukey) window ``(H, W)``: 1 inside, falling to 0 over the outer
    ``_TAPER_FRACTION`` of each side."""
    def ramp(n: int) -> torch.Tensor:
        m = max(1, round(_TAPER_FRACTION * n))
        w = torch.ones(n, dtype=torch.float32)
        edge = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(m) + 0.5) / m)
        w[:m], w[n - m :] = edge, edge.flip(0)
        return w

    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]


def tapered_spectra(x: torch.Tensor, n_c: tuple[int, int]) -> torch.Tensor:
    """Cropped rfft2 ``(F, Hk, Wk)`` of mean-free frames times :func:`edge_taper`."""
    shape = tuple(x.shape[1:])
    x = (x - x.mean(dim=(1, 2), keepdim=True)) * edge_taper(shape)
    t = crop_spectrum(torch.fft.rfft2(x), shape, n_c).clone()
    t[:, 0, 0] = 0
    return t


def weighted_cross(
    g: torch.Tensor,
    ramp: torch.Tensor,
    power_each: torch.Tensor,
    shells: torch.Tensor,
    filt: torch.Tensor,
    smooth_gain: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Weighted cross-power spectra ``(F, Hk, Wk)`` of frames ``g`` with their leave-one-out
    references aligned by ``ramp``; plus the noise power and coarse band of :func:`ring_weights`."""
    aligned = g * ramp  # frames moved back onto the reference
    total = aligned.sum(dim=0, keepdim=True)
    weight, noise_var, radius = ring_weights(power_each, total, len(g), shells, filt, smooth_gain)
    reference = torch.sub(total, aligned, out=aligned)  # leave-one-out sums, in place
    return reference.conj_physical_().mul_(g).mul_(weight), noise_var, radius  # CC peaks at s_f
