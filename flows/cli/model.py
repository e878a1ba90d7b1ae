"""Model commands: train, infer, evaluate, compare, and ``models list | show | promote`` over
the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from flows.cli.common import (
    EXIT_PARTIAL,
    ConfigOpt,
    DateArg,
    ModelOpt,
    OutputOpt,
    RegistryOpt,
    SeedingsOpt,
    StoreAlias,
    api_ready,
    app,
    err,
    fail,
    finish,
    load,
    out,
    period,
    run,
    store_option,
    user_errors,
    writable,
)
from pipeline.secrets import redact_text, redact_url


@app.command()
def train(
    start: DateArg,
    end: DateArg,
    seedings: SeedingsOpt = None,
    epochs: Annotated[int | None, typer.Option(help="epochs (reference: 100)")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="id in the registry (default: timestamped)")] = None,
    registry: RegistryOpt = None,
    processes: Annotated[int | None, typer.Option(help="DDP processes via torchrun (0 = one per GPU)")] = None,
    architecture: Annotated[str | None, typer.Option(help="sensornet (recommended) | raseedgan | srresnet | srgan | edsr_baseline | edsr | mdsr | esrgan | autoencoder")] = None,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Train a model (config key train.architecture: RaSeedGAN by default, SensorNet in the demo) on the
    prepared days from --start to --end
    (the last 20 % validate) and publish it."""
    try:
        cfg = load(config, **{"stores.seedings": store_option(seedings, store, "seedings"), "train.epochs": epochs,
                              "train.device": device, "stores.registry": registry, "split.processes": processes,
                              "train.architecture": architecture})
        from flows.train import train_flow

        api_ready()
        result = train_flow(cfg, *period(start, end), model_id)
    except user_errors() as exc:
        fail(exc)
    out.print(f"model [bold]{result['model_id']}[/] (epoch {result['kept_epoch']}) published to "
              f"{escape(str(result['checkpoint']))} after {result['seconds']:.0f} s")


@app.command()
def infer(
    start: DateArg,
    end: DateArg,
    seedings: SeedingsOpt = None,
    model: ModelOpt = None,
    output: OutputOpt = None,
    registry: RegistryOpt = None,
    tile: Annotated[int | None, typer.Option(help="tile size in LR cells (default: whole domain)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="fields per forward pass")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda")] = None,
    force: Annotated[bool, typer.Option(help="recompute days already written by this model")] = False,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Reconstruct every prepared day from --start to --end into the output Zarr store."""
    try:
        cfg = load(config, **{"stores.seedings": store_option(seedings, store, "seedings"), "stores.output": output,
                              "stores.registry": registry, "infer.tile": tile, "infer.batch_size": batch_size,
                              "infer.device": device})
        writable(cfg, "output")
        from flows.infer import infer_flow

        result = run(infer_flow, cfg, *period(start, end), model, force=force, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    finish(result)


@app.command()
def evaluate(
    start: DateArg,
    end: DateArg,
    json_out: Annotated[Path, typer.Option("--json", help="where to write the metrics JSON")],
    seedings: SeedingsOpt = None,
    raw: Annotated[str | None, typer.Option(help="raw Zarr store, the truth (default: stores.raw)")] = None,
    model: ModelOpt = None,
    registry: RegistryOpt = None,
    plots: Annotated[Path | None, typer.Option(help="directory for maps and spectra PNGs")] = None,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Score the model against cubic, linear, bicubic-of-bins and the LR bins from --start to --end."""
    try:
        cfg = load(config, **{"stores.seedings": store_option(seedings, store, "seedings"), "stores.raw": raw,
                              "stores.registry": registry})
        from flows.evaluate import evaluate_flow, markdown_table

        api_ready()
        report = evaluate_flow(cfg, *period(start, end), str(json_out), model,
                               str(plots) if plots else None, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    out.print(markdown_table(report["methods"]))
    out.print(f"metrics: [bold]{escape(str(json_out))}[/]"
              + "".join(f"\n{k}: [bold]{escape(str(v))}[/]" for k, v in report["plots"].items()))


@app.command()
def compare(
    start: DateArg,
    end: DateArg,
    json_out: Annotated[Path, typer.Option("--json", help="where to write the comparison JSON")],
    seedings: SeedingsOpt = None,
    raw: Annotated[str | None, typer.Option(help="raw Zarr store (default: the one the seedings came from)")] = None,
    registry: Annotated[str | None, typer.Option(help="model registry directory (the zoo models are published there)")] = None,
    architectures: Annotated[str | None, typer.Option(help="comma-separated subset, e.g. raseedgan,edsr_baseline")] = None,
    epochs: Annotated[int | None, typer.Option(help="epochs for every architecture")] = None,
    batches: Annotated[int | None, typer.Option("--batches-per-epoch", help="batches per epoch for every architecture")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Markdown file for the table (e.g. docs/model-zoo.md)")] = None,
    config: ConfigOpt = None,
    store: StoreAlias = None,
) -> None:
    """Train every architecture of the zoo on the same seedings and budget; score them with the
    baselines on the last 20 % of --start … --end (held back) and write the table."""
    try:
        cfg = load(config, **{
            "stores.seedings": store_option(seedings, store, "seedings"), "stores.raw": raw, "stores.registry": registry,
            "compare.architectures": [a.strip() for a in architectures.split(",") if a.strip()] if architectures else None,
            "compare.epochs": epochs, "compare.max_batches_per_epoch": batches,
        })
        from flows.compare import compare_flow, markdown_table

        api_ready()
        report = compare_flow(cfg, *period(start, end), str(json_out),
                              str(markdown) if markdown else None, progress_bar=True)
    except user_errors() as exc:
        fail(exc)
    out.print(markdown_table(report["rows"]))
    out.print(f"table: [bold]{escape(str(json_out))}[/]" + (f" and [bold]{escape(str(markdown))}[/]" if markdown else ""))
    if not report["ok"]:
        err.print("[yellow]some architectures failed[/] (see their rows)")
        raise typer.Exit(EXIT_PARTIAL)


# ---- models: the registry -------------------------------------------------------------------
models_app = typer.Typer(help="List, inspect and promote the models of the registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _registry(registry: str | None, config: Path | None) -> Any:
    from storage.model_registry import ModelRegistry

    return ModelRegistry(registry or load(config).stores.registry)


def _architecture(meta: dict[str, Any]) -> str:
    return str(meta.get("architecture") or (meta.get("train") or {}).get("architecture") or "?")


def validation_scores(meta: dict[str, Any]) -> dict[str, Any]:
    """The validation scores of the kept epoch (or iteration), from the model's history."""
    history = [h for h in meta.get("history") or [] if isinstance(h, dict)]
    kept = meta.get("kept_epoch")
    chosen = next((h for h in history if kept is not None and kept in (h.get("epoch"), h.get("iteration"))), None)
    chosen = chosen or (history[-1] if history else {})
    return {k: v for k, v in chosen.items() if k.startswith("val_") or k in ("epoch", "iteration")}


@models_app.command("list")
def models_list(registry: RegistryOpt = None, config: ConfigOpt = None) -> None:
    """The published models, oldest first; the current one (what infer and daily use) marked *."""
    from rich.table import Table

    try:
        reg = _registry(registry, config)
        ids, current = reg.list(), reg.current()
        rows = [(i, reg.meta(i)) for i in ids]
    except (*user_errors(), ValueError) as exc:
        fail(exc)
    if not ids:
        out.print(f"no published model in {escape(redact_url(str(reg.root)))}")
        return
    table = Table(box=None, pad_edge=False)
    for name in ("", "id", "architecture", "training period", "created"):
        table.add_column(name)
    for model_id, meta in rows:
        period_ = meta.get("train_period") or ["?", "?"]
        table.add_row("*" if model_id == current else "", model_id, _architecture(meta),
                      " … ".join(str(p) for p in period_), str(meta.get("created", "?")))
    out.print(table, highlight=False)
    out.print(f"{len(ids)} model(s) in {escape(redact_url(str(reg.root)))}; current: {current or 'none'}",
              highlight=False)


@models_app.command("show")
def models_show(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="model id, 'current' or 'latest'")],
    registry: RegistryOpt = None,
    config: ConfigOpt = None,
) -> None:
    """A model's metadata (periods, kept epoch, seeding, training settings) and its validation scores."""
    import json

    try:
        reg = _registry(registry, config)
        resolved = reg.resolve(model_id)
        meta = reg.meta(resolved)
        current = reg.current()
    except (*user_errors(), ValueError) as exc:
        fail(exc)
    shown = {k: v for k, v in meta.items() if k != "history"}
    out.print(f"[bold]{resolved}[/]" + (" (current)" if resolved == current else ""))
    for key in ("architecture", "created", "train_period", "val_period", "kept_epoch", "n_train_days",
                "n_val_days", "train_seconds", "seedings_store", "raw_store", "metrics"):
        value = _architecture(meta) if key == "architecture" else shown.pop(key, None)
        if value is not None:
            text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
            out.print(f"{key}: {escape(redact_text(text))}", highlight=False)
    scores = validation_scores(meta)
    if scores:
        out.print("validation: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in scores.items()), highlight=False)
    rest = {k: v for k, v in shown.items() if k not in ("model_id",)}
    if rest:
        out.print_json(redact_text(json.dumps(rest, default=str)))


@models_app.command("promote")
def models_promote(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="published model id (or 'latest')")],
    registry: RegistryOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make a published model the current one: what infer and daily use from now on."""
    try:
        reg = _registry(registry, config)
        resolved = reg.resolve(model_id if model_id not in ("", "current") else "current")
        before = reg.current()
        reg.set_current(resolved)
    except (*user_errors(), ValueError) as exc:
        fail(exc)
    out.print(f"current model: [bold]{resolved}[/]" + (f" (was {before})" if before and before != resolved else ""))
