"""Execute an analysis notebook through papermill on a runs folder (the tests of stability and early_bird)."""

from __future__ import annotations

from pathlib import Path


def run_analysis_notebook(name: str, runs_root: Path, tmp_path: Path) -> set[str]:
    """Execute notebooks/<name>.ipynb with ``runs_root``; return the names of the figure files it wrote."""
    import papermill as pm

    from tickets_core.sweep.notebook import NOTEBOOKS_DIR
    from tickets_core.sweep.execute import ensure_importable

    ensure_importable()
    figures = tmp_path / "figures"
    pm.execute_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
                        parameters={"runs_root": str(runs_root), "figures_dir": str(figures)},
                        progress_bar=False, cwd=str(NOTEBOOKS_DIR))
    return {p.name for p in figures.iterdir()}
