"""The calibration's plots (PNG, matplotlib's Agg canvas: no display needed).

``ptc_iso<ISO>.png``: the photon transfer of one ISO (the flat pairs' points by CFA site and the
fitted line whose slope is K); ``fit_read.png`` / ``fit_row.png``: the read and row noise of each
ISO against K on log axes with the fit ``log σ = slope·log K + bias`` of the profile. Written by
``scripts/calibrate_noise.py --plots``; what they show: docs/noise_calibration.md.
"""
from __future__ import annotations

import os
from typing import List, Mapping

import numpy as np

from ..errors import DataError

#: plot colour of each CFA letter
SITE_COLOURS = {"R": "#d81a1a", "G": "#1a991a", "B": "#1a33e6"}
#: size of each figure in inches and its resolution
FIGSIZE, DPI = (6.4, 4.8), 100


def signed(value: float, digits: int = 2) -> str:
    """``value`` as the second term of a sum: ``+ 1.26`` or ``− 1.26`` (a true minus sign)."""
    return f"{'−' if value < 0 else '+'} {abs(value):.{digits}f}"


def _figure():
    """A new (figure, axes) on matplotlib's Agg canvas; DataError when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise DataError("the calibration plots need matplotlib: pip install matplotlib "
                        "(or leave out --plots)") from None
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: str) -> str:
    """Write ``fig`` as a PNG at ``path``; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def photon_transfer_figure(ptc, cfa: str, iso: int):
    """The photon transfer of one ISO (a :class:`cans.noise.calibration.PhotonTransfer`): variance
    against mean per CFA site of ``cfa`` (e.g. ``"RGGB"``) and the fitted line; a matplotlib Figure."""
    fig, ax = _figure()
    for s in range(4):
        sel = ptc.sites == s
        if np.any(sel):
            ax.scatter(ptc.means[sel], ptc.variances[sel], s=14, color=SITE_COLOURS[cfa[s]],
                       marker="os^D"[s], label=f"site {s} ({cfa[s]})")
    xs = np.linspace(0.0, float(np.max(ptc.means)) * 1.05, 50)
    ax.plot(xs, ptc.K * xs + ptc.intercept, color="black", linewidth=1.2,
            label=f"fit: var = {ptc.K:.4g}·mean {signed(ptc.intercept)} DN²  (K = {ptc.K:.4g} DN/e⁻)")
    ax.set_title(f"Photon transfer, ISO {iso} ({ptc.levels} brightness levels)")
    ax.set_xlabel("mean of a flat pair above black (DN)")
    ax.set_ylabel("half the variance of the pair's difference (DN²)")
    ax.set_xlim(left=0.0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def fit_figure(per_iso: Mapping[int, Mapping[str, float]], fit: Mapping[str, float], name: str):
    """``name`` (``"read"`` or ``"row"``) sigma of each ISO against K on log axes and the profile's
    fit ``log σ = slope·log K + bias`` (natural logs, as in the profile); a matplotlib Figure."""
    isos = sorted(per_iso)
    log_k = np.log([per_iso[i]["K"] for i in isos])
    log_sigma = np.log(np.maximum([per_iso[i][f"{name}_sigma"] for i in isos], 1e-12))
    slope, bias, jitter = fit[f"{name}_slope"], fit[f"{name}_bias"], fit[f"{name}_jitter"]
    fig, ax = _figure()
    ax.scatter(log_k, log_sigma, s=24, color="#1a33e6", zorder=3, label="measured (one point per ISO)")
    for iso, x, y in zip(isos, log_k, log_sigma):
        ax.annotate(f"ISO {iso}", (x, y), textcoords="offset points", xytext=(5, -12), fontsize="small")
    span = max(float(np.ptp(log_k)), 1e-3)
    xs = np.linspace(log_k.min() - 0.05 * span, log_k.max() + 0.05 * span, 50)
    ax.plot(xs, slope * xs + bias, color="black", linewidth=1.2,
            label=f"fit: log σ = {slope:.2f}·log K {signed(bias)}  (residual σ {jitter:.3f})")
    ax.set_title(f"{name.capitalize()} noise against system gain")
    ax.set_xlabel("log K (K in DN/e⁻)")
    ax.set_ylabel(f"log σ of the {name} noise (σ in DN)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return fig


def write_plots(profile: Mapping[str, object], details: Mapping[int, tuple], folder: str) -> List[str]:
    """PNG plots of a calibration in ``folder`` (created): ``ptc_iso<ISO>.png`` for each ISO of
    ``details`` (ISO -> (DarkStats, PhotonTransfer), as :func:`cans.noise.calibration.calibrate`
    returns them) and ``fit_read.png`` / ``fit_row.png`` from the profile. Returns the paths."""
    os.makedirs(folder, exist_ok=True)
    cfa = str(profile["camera"]["cfa"])
    written = [_save(photon_transfer_figure(ptc, cfa, iso), os.path.join(folder, f"ptc_iso{iso}.png"))
               for iso, (_, ptc) in sorted(details.items())]
    for name in ("read", "row"):
        written.append(_save(fit_figure(profile["per_iso"], profile["fit"], name),
                             os.path.join(folder, f"fit_{name}.png")))
    return written


__all__ = ["SITE_COLOURS", "signed", "photon_transfer_figure", "fit_figure", "write_plots"]
