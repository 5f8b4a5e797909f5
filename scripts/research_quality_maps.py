"""Research record for issue 12: error maps before (V1 seed protocol) and after (the recipe).

    python scripts/research_quality_maps.py v1.npz recipe.npz out.png

The .npz files are written by ``research_quality.py --save`` (the recipe's
with the baselines, which any run with "auto" weights has).
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def az_err(a, b):
    d = np.abs(a - b) % np.pi
    return np.degrees(np.minimum(d, np.pi - d))


def main() -> None:
    before, after, out = np.load(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
    rows = [("pixel-wise WFA", after, "p"), ("regularised WFA", after, "r"),
            ("V1 seed protocol", before, ""), ("issue-12 recipe", after, "")]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 11), constrained_layout=True)
    limits = (200.0, 400.0, 90.0)
    for i, (name, d, p) in enumerate(rows):
        errs = (d[p + "blos"] - d["tblos"], d[p + "bt"] - d["tbt"], az_err(d[p + "az"], d["taz"]))
        labels = ("B_los error [G]", "B_t error [G]", "azimuth error [deg]")
        for j, (e, lab, lim) in enumerate(zip(errs, labels, limits)):
            ax = axes[i, j]
            cmap = "RdBu_r" if j < 2 else "magma"
            im = ax.imshow(e, origin="lower", cmap=cmap, vmin=-lim if j < 2 else 0, vmax=lim)
            rms = np.sqrt(np.nanmean(e ** 2)) if j < 2 else np.nanmean(e)
            ax.set_title(f"{name}\n{lab}: {'rms' if j < 2 else 'mean'} {rms:.1f}", fontsize=8)
            ax.set_xticks([]); ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("synthetic plage (seed 0, noise 1e-3): errors against the truth", fontsize=10)
    fig.savefig(out, dpi=70)


if __name__ == "__main__":
    main()
