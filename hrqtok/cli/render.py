"""How the commands show their results on stderr: rich tables of reports, one-line summaries.
stdout never gets these; it carries data only."""

from __future__ import annotations

from rich.table import Table

from hrqtok.cli.console import err


def level_table(report: dict) -> Table:
    table = Table(title="codebook usage per level")
    for column in ("level", "used", "perplexity", "norm. entropy", "largest share", "dead"):
        table.add_column(column, justify="right")
    for row in report["levels"]:
        table.add_row(str(row["level"]), f"{row['used']}/{row['size']}",
                      f"{row['perplexity']:.1f}", f"{row['normalised_entropy']:.3f}",
                      f"{row['largest_share']:.1%}", str(row["dead"]))
    return table


def render_report(report: dict) -> None:
    model = report["model"]
    err.print(f"[bold]{model['path']}[/]: {model['geometry']}, {model['levels']} levels × "
              f"{model['codebook_size']} codes, latent {model['latent_dim']}, "
              f"{report['items']} items")
    err.print(level_table(report))
    prefixes = Table(title="prefix tree")
    for column in ("depth", "distinct prefixes", "mean branching"):
        prefixes.add_column(column, justify="right")
    for row in report["prefixes"]:
        prefixes.add_row(str(row["depth"]), str(row["prefixes"]), f"{row['branching']:.2f}")
    err.print(prefixes)
    c = report["collisions"]
    err.print(f"collisions: {c['distinct_ids']} distinct {model['levels']}-code ids for "
              f"{c['items']} items; {c['collision_rate']:.1%} of items share their codes; "
              f"largest group {c['largest_group']} (disambiguation vocabulary "
              f"{c['disambiguation_size']})")
    radii = ", ".join(f"L{r['level']} {r['norm_mean']:.3f}" for r in report["codebooks"])
    err.print(f"codebook mean norm: {radii}")
    vectors = report.get("vectors")
    if vectors:
        norm, rec = vectors["latent_norm"], vectors["reconstruction"]
        label = "‖log0 z‖" if model["geometry"] == "hyperbolic" else "‖z‖"
        err.print(f"latent {label}: mean {norm['mean']:.3f}, std {norm['std']:.3f}, "
                  f"CV {norm['cv']:.3f}")
        err.print(f"reconstruction: MSE {rec['mse']:.3g}, cosine {rec['cosine']:.4f}")
    if report.get("hierarchy"):
        render_hierarchy(report["hierarchy"])
    quality = report.get("quality") or {}
    for warning in quality.get("warnings", []):
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if quality.get("depth"):
        err.print(f"note: {quality['depth']}", highlight=False)
    if "prefix" in report:
        render_prefix(report["prefix"])
    if "plot" in report:
        plot = report["plot"]
        err.print(f"wrote the figure ({', '.join(plot['panels'])}) to {plot['path']}",
                  highlight=False)


def render_prefix(found: dict) -> None:
    """The items under a prefix: id, multitoken and (when known) text, one per line."""
    prefix = " ".join(map(str, found["tokens"]))
    err.print(f"{found['count']} items start with {prefix}:")
    for item in found["items"]:
        text = f"  {item['text']}" if "text" in item else ""
        err.print(f"  {item['id']}  {' '.join(map(str, item['tokens']))}{text}", highlight=False,
                  markup=False)


def render_hierarchy(report: dict) -> None:
    table = Table(title=f"closure ranking ({report['train_pairs']} train / "
                        f"{report['test_pairs']} held-out pairs)")
    for column in ("points", "train MR", "train MAP", "held-out MR", "held-out MAP"):
        table.add_column(column, justify="right")
    for kind, row in report["ranking"].items():
        table.add_row(kind, f"{row['train']['mean_rank']:.2f}", f"{row['train']['map']:.3f}",
                      f"{row['test']['mean_rank']:.2f}", f"{row['test']['map']:.3f}")
    err.print(table)
    agree = report["prefix_agreement"]

    def shares(key: str) -> str:
        return " / ".join(f"{x:.1%}" for x in agree[key])

    err.print(f"noun and hypernym share the first 1/2/… tokens: {shares('closure_pairs')} "
              f"(direct parent {shares('parent_pairs')}; random nouns {shares('random_pairs')})")


def fit_summary(metrics: dict, model: str) -> None:
    """The lines `fit` prints: what was fitted, how long it took, code usage and collisions."""
    f, table = metrics["fit"], metrics["table"]
    c = table["collisions"]
    used = " / ".join(f"{lv['used']}" for lv in table["levels"])
    size = table["levels"][0]["size"] if table["levels"] else 0
    if "hierarchy" in metrics:
        err.print(f"fitted {f['nodes']} nouns on {f['train_pairs']} closure pairs in "
                  f"{f['epochs']} epochs ({f['seconds']:.1f} s, {f['pairs_per_second']:,.0f} "
                  f"pairs/s) -> {model}")
        render_hierarchy(metrics["hierarchy"])
        err.print(f"codes used per level: {used} of {size}; collisions {c['collision_rate']:.1%}")
        return
    if "kmeans_iterations" in f:
        iterations = "/".join(map(str, f["kmeans_iterations"]))
        err.print(f"fitted {f['items']} items by {f['quantizer']} ({iterations} Lloyd "
                  f"iterations per level, {f['seconds']:.1f} s) -> {model}")
    else:
        err.print(f"fitted {f['items']} items with {f['quantizer']} in {f['epochs']} epochs "
                  f"({f['stopped']}, best epoch {f['best_epoch']}, {f['seconds']:.1f} s) -> {model}")
    err.print(f"codes used per level: {used} of {size}; collisions {c['collision_rate']:.1%}; "
              f"reconstruction cosine {metrics['vectors']['reconstruction']['cosine']:.4f}")
