"""``plot_layer_scores``: the table of :func:`~skfeaturize.selection.rank_layers` as score by layer."""

from __future__ import annotations

from .._optional import import_optional
from ..exceptions import TransferabilityError
from ._rank import CV_COLUMNS

_NEEDED = ("backbone", "layer", "pooling", "layer_index", "score")
_VECTOR = "none"  # the pooling of a vector layer (pre_logits): one block shared by every pooling's line
_CV_LABELS = {"cv_accuracy": "CV accuracy", "cv_r2": "CV R²"}
_SCORING_LABELS = {"logme": "LogME", "logme_standardized": "LogME (standardised)"}


def plot_layer_scores(table, path=None, ax=None):
    """Draw a :func:`rank_layers` table: score by layer, one line per pooling, one panel per backbone.

    With a ``cv_accuracy`` (or ``cv_r2``) column, the cross-validated score is drawn dashed in the same
    colour on a second y axis, so the two rankings can be compared by eye. A vector layer (pooling
    ``"none"``, e.g. ``pre_logits``) ends every pooling's line.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of :func:`rank_layers` (any row order). ``rank_layers(...).pipe(plot_layer_scores,
        path="layers.png")`` chains it.
    path : str or path, optional
        Save the figure there as PNG.
    ax : matplotlib Axes or list of Axes, optional
        Draw into these, one per backbone; by default a new figure (no pyplot, so no window opens).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import_optional("matplotlib", extra="dev")
    from matplotlib.figure import Figure

    _check_table(table)
    backbones = list(dict.fromkeys(table["backbone"]))
    if ax is None:
        fig = Figure(figsize=(1.0 + 5.0 * len(backbones), 4.0), layout="constrained")
        axes = list(fig.subplots(1, len(backbones), squeeze=False)[0])
    else:
        axes = list(getattr(ax, "flat", ax if isinstance(ax, (list, tuple)) else [ax]))  # flat: an ndarray
        if len(axes) != len(backbones):
            raise TransferabilityError(f"ax= gives {len(axes)} Axes for {len(backbones)} backbones "
                                       f"{backbones}; pass one Axes per backbone, or ax=None.")
    cv = next((c for c in CV_COLUMNS.values() if c in table.columns), None)
    for axis, backbone in zip(axes, backbones, strict=True):
        scoring = table.attrs.get("scoring", "score")
        _draw(axis, table[table["backbone"] == backbone], cv, _SCORING_LABELS.get(scoring, scoring))
        axis.set_title(str(backbone))
    fig = axes[0].figure
    if path is not None:
        fig.savefig(path, dpi=120, format="png")
    return fig


def _check_table(table) -> None:
    missing = [c for c in _NEEDED if c not in getattr(table, "columns", ())]
    if missing or len(table) == 0:
        raise TransferabilityError(
            f"plot_layer_scores needs the table of rank_layers (columns {list(_NEEDED)}, at least one row); "
            f"got {type(table).__name__}" + (f" without {missing}" if missing else " with no rows") + "."
        )


def _draw(axis, rows, cv, scoring) -> None:
    rows = rows.sort_values("layer_index", kind="stable")
    names = rows.drop_duplicates("layer_index").set_index("layer_index")["layer"]
    poolings = [p for p in dict.fromkeys(rows["pooling"]) if p != _VECTOR] or [_VECTOR]
    twin = axis.twinx() if cv is not None else None
    for i, pooling in enumerate(poolings):
        line = rows[(rows["pooling"] == pooling) | (rows["pooling"] == _VECTOR)]
        x, colour = line["layer_index"].to_numpy(), f"C{i}"
        axis.plot(x, line["score"].to_numpy(), "o-", color=colour, label=f"{pooling} ({scoring})")
        if twin is not None:
            twin.plot(x, line[cv].to_numpy(), "s--", color=colour, alpha=0.7,
                      label=f"{pooling} ({_CV_LABELS[cv]})")
    axis.set_xticks(list(names.index), [str(n) for n in names], rotation=30, ha="right")
    axis.set_xlabel("layer")
    axis.set_ylabel(f"{scoring} score (higher is better)")
    axis.grid(alpha=0.3)
    handles, labels = axis.get_legend_handles_labels()
    if twin is not None:
        twin.set_ylabel(f"{_CV_LABELS[cv]} (dashed)")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axis.legend(handles, labels, loc="best", fontsize="small")
