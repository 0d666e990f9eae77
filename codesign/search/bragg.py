"""Synthetic Bragg-peak patches for the NAC/BraggNN study (the real HEDM data is not obtainable here).

Why a generator: BraggNN (Liu et al., 2022) localises diffraction peaks on 11x11 detector patches
centred on a local maximum; NAC searched its architecture. The physics of such a patch: a peak with
a pseudo-Voigt profile (a mix of a Gaussian and a Lorentzian of the same centre, independent x/y
widths, as fitted by the reference pseudo-Voigt fitter the BraggNN paper compares against), a
sub-pixel centre near the patch centre, detector counts with Poisson noise on top of a flat
background. The task regresses the peak centre; the score is the mean Euclidean distance in pixels.
Inputs are min-max normalised per patch, as BraggNN does.
"""

from __future__ import annotations

import numpy as np

PATCH = 11
#: the centre is drawn within +-CENTRE_RANGE pixels of the patch centre (patches are cut around a local maximum)
CENTRE_RANGE = 1.0
SIGMA_RANGE = (0.5, 1.6)  # Gaussian sigma / Lorentzian half width, pixels, per axis
ETA_RANGE = (0.0, 1.0)  # Lorentzian fraction of the pseudo-Voigt
PEAK_COUNTS = (50.0, 2000.0)  # peak height in detector counts (log-uniform)
BACKGROUND_COUNTS = (0.0, 20.0)  # flat background, counts per pixel


def pseudo_voigt(xx: np.ndarray, yy: np.ndarray, cx: np.ndarray, cy: np.ndarray, sx: np.ndarray, sy: np.ndarray,
                 eta: np.ndarray) -> np.ndarray:  # fmt: skip
    """Unit-height 2-D pseudo-Voigt ``eta L + (1 - eta) G`` at pixel centres (per-sample parameters, shape (N, 1, 1))."""
    r2 = ((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2
    gauss = np.exp(-0.5 * r2 * (2.0 * np.log(2.0)))  # same FWHM convention for G and L: both half-max at r2 = 1
    lorentz = 1.0 / (1.0 + r2)
    return eta * lorentz + (1.0 - eta) * gauss


def bragg_patches(n: int, seed: int = 0, patch: int = PATCH) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy peak patches (N, 1, patch, patch), min-max normalised, and their true centres (N, 2):
    (row, column) offsets in pixels from the patch centre."""
    rng = np.random.default_rng(seed)
    shape = (n, 1, 1)
    cy, cx = (rng.uniform(-CENTRE_RANGE, CENTRE_RANGE, shape) for _ in range(2))
    sy, sx = (rng.uniform(*SIGMA_RANGE, shape) for _ in range(2))
    eta = rng.uniform(*ETA_RANGE, shape)
    height = np.exp(rng.uniform(*np.log(PEAK_COUNTS), shape))
    background = rng.uniform(*BACKGROUND_COUNTS, shape)
    coords = np.arange(patch) - (patch - 1) / 2.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    counts = rng.poisson(height * pseudo_voigt(xx, yy, cx, cy, sx, sy, eta) + background).astype(np.float32)
    lo = counts.min(axis=(1, 2), keepdims=True)
    span = np.maximum(counts.max(axis=(1, 2), keepdims=True) - lo, 1.0)
    x = ((counts - lo) / span).astype(np.float32)[:, None]
    y = np.concatenate([cy.reshape(n, 1), cx.reshape(n, 1)], axis=1).astype(np.float32)
    return x, y


def centroid_error(x: np.ndarray, y: np.ndarray) -> float:
    """Mean distance (pixels) of the intensity-weighted centroid, the classical estimate, to the truth."""
    img = x.reshape(len(x), PATCH, PATCH).astype(np.float64)
    coords = np.arange(PATCH) - (PATCH - 1) / 2.0
    w = img.sum(axis=(1, 2))
    est = np.stack([(img.sum(axis=2) * coords).sum(axis=1) / w, (img.sum(axis=1) * coords).sum(axis=1) / w], axis=1)
    return float(np.linalg.norm(est - y, axis=1).mean())
