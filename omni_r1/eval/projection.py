"""A 2-D view of generated-image embeddings, correct vs incorrect (the paper's Figure 4).

Each prediction with at least one generated image is one point: the mean codebook vector
of its generated images (stored by the evaluation as ``image_embedding``), projected to 2-D
by PCA (centred SVD, deterministic up to the sign, which is fixed so the largest
loading of each component is positive) or by UMAP when the ``umap`` package is importable
and asked for. The scatter is coloured by the judge's verdict and written as a PNG with
matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

CORRECT_COLOUR = "#1a9850"
INCORRECT_COLOUR = "#d73027"


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Project ``points`` [N, D] onto their first two principal components: [N, 2].

    Fewer than two points or dimensions give zeros in the missing components.
    """
    centred = points - points.mean(axis=0, keepdims=True)  # [N, D]
    coords = np.zeros((points.shape[0], 2))
    if points.shape[0] < 2:
        return coords
    _, _, components = np.linalg.svd(centred, full_matrices=False)  # [r, D]
    top = components[:2]  # [k, D], k <= 2
    signs = np.sign(top[np.arange(top.shape[0]), np.abs(top).argmax(axis=1)])  # [k]
    coords[:, : top.shape[0]] = centred @ (top * signs[:, None]).T  # [N, k]
    return coords


def umap_2d(points: np.ndarray) -> np.ndarray:
    """UMAP embedding [N, 2] (needs the optional ``umap-learn`` package)."""
    import umap

    neighbours = max(2, min(15, points.shape[0] - 1))
    return umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=0).fit_transform(points)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


PROJECTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"pca": pca_2d, "umap": umap_2d}


def choose_projection(name: str) -> str:
    """``auto`` → ``umap`` when importable, else ``pca``; ``umap`` without the package raises."""
    if name == "auto":
        return "umap" if umap_available() else "pca"
    if name == "umap" and not umap_available():
        raise ImportError("report.projection: umap asked for but `umap` is not installed (pip install umap-learn)")
    if name not in PROJECTIONS:
        raise KeyError(f"unknown projection {name!r} (known: auto, {', '.join(PROJECTIONS)})")
    return name


def project(embeddings: Sequence[Sequence[float]], method: str) -> np.ndarray:
    """Embeddings [N, D] → coordinates [N, 2] by ``method`` (see :func:`choose_projection`)."""
    if len(embeddings) == 0:
        return np.zeros((0, 2))
    points = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)  # [N, D]
    if method == "umap" and points.shape[0] < 4:
        method = "pca"  # UMAP needs a neighbourhood; too few points for one
    return PROJECTIONS[method](points)


def plot_projection(
    coords: np.ndarray, correct: Sequence[bool], path: Path | str, title: str
) -> Path:
    """Scatter ``coords`` [N, 2] coloured by verdict; writes a PNG and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    verdicts = np.asarray(correct, dtype=bool)
    for value, colour, label in ((True, CORRECT_COLOUR, "correct"), (False, INCORRECT_COLOUR, "incorrect")):
        chosen = verdicts == value
        axes.scatter(coords[chosen, 0], coords[chosen, 1], s=18, c=colour, label=f"{label} ({chosen.sum()})")
    if len(coords) == 0:
        axes.text(0.5, 0.5, "no generated images", ha="center", va="center", transform=axes.transAxes)
    axes.set_title(title)
    axes.set_xlabel("component 1")
    axes.set_ylabel("component 2")
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
