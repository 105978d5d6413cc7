"""One palette for every figure (run/plots.py's PNGs, train/plots.py's, the dashboard's plotly charts),
and one rule mapping names to it: the distinct names, sorted, take the colours in order. The same
set of models (or kernel variants) therefore gets the same colours in every figure that shows them,
whatever order the rows came in."""
from __future__ import annotations

from collections.abc import Iterable

# plotly's default qualitative palette (also readable in matplotlib): ten colours, then they repeat
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52")


def colour_map(names: Iterable) -> dict[str, str]:
    """name -> colour: the distinct names (as text), sorted, mapped to PALETTE in order."""
    distinct = sorted({str(n) for n in names})
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(distinct)}
