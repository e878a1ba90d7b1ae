"""One validated configuration for every command: defaults < TOML file < command-line options.

Each room defines the typed section it owns (``pipeline.seeding.SeedingParams`` …); this module
composes them. Unknown keys and invalid values are rejected with a message naming the key.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from model.config import ARCHITECTURES, Network, SensorNetConfig, TrainConfig
from pipeline.errors import SeedfieldError
from pipeline.observations import ObservationSettings, ValidRange
from pipeline.secrets import redact_options, redact_url
from pipeline.seeding import SeedingParams
from pipeline.steps import Cadence
from storage.cf import DEFAULT_METADATA


class ConfigError(SeedfieldError):
    """The configuration is invalid; the message names the key and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ArchiveSettings(_Section):
    """Where the netCDF files are, which variable and time step they hold, how to read them."""

    source: str | None = Field(None, description="directory, glob, or URL pattern with {date:%Y%m%d}")
    variable: str = Field("sst", description="the field's variable name in the files")
    valid_range: ValidRange = Field((-3.0, 45.0), description="physical range, °C")
    step: str | None = Field(
        None,
        description="time step of the store: '1D' (daily), 'Nh' (e.g. '1h', '3h'), '1MS' (monthly) "
        "or 'climatology'; None = detected from the files (daily when they cannot tell)",
    )
    grid_file: str | None = Field(
        None, description="a netCDF file whose 1-D latitude and longitude define a new store's grid (a land-sea "
        "mask or a grid description); None = the grid of the first files, when they agree"
    )
    land_mask_file: str | None = Field(
        None, description="a netCDF land-sea mask on the store's grid; a new store's static land_mask is "
        "taken from it and kept as given; None = the cells where no ingested step has a valid value"
    )
    land_mask_variable: str | None = Field(None, description="the mask's variable; None = the file's only 2-D field")
    land_mask_means: Literal["land", "sea"] = Field(
        "land", description="what a mask value above 0.5 means: 'land' (a land flag or fraction, ERA5's lsm) or "
        "'sea' (an ocean flag, NOAA's lsmask); a missing value is land"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options")
    credentials_block: str | None = Field(
        None, description="name of a Prefect Secret block whose value (a JSON object) is merged over "
        "storage_options when a command starts: fsspec options such as key/secret, or username/password "
        "for an HTTP archive"
    )

    @field_serializer("source", when_used="json")
    def _shown_source(self, v: str | None) -> str | None:
        return None if v is None else redact_url(v)  # Prefect's parameters and `config show`

    @field_serializer("storage_options", when_used="json")
    def _shown_options(self, v: dict[str, Any]) -> dict[str, Any]:
        return redact_options(v)

    @field_validator("step")
    @classmethod
    def _known_step(cls, v: str | None) -> str | None:
        return None if v is None else Cadence.parse(v).code


class IngestSettings(_Section):
    """How ingest work is cut into Prefect tasks."""

    files_per_task: int = Field(8, ge=1, description="archive files per task (one Dask job each)")


class StoreSettings(_Section):
    """The project's stores (local paths or fsspec URLs)."""

    raw: str = "seedfield-data/raw.zarr"
    seedings: str = "seedfield-data/seedings.zarr"
    output: str = "seedfield-data/reconstruction.zarr"
    observations: str = "seedfield-data/observations.zarr"
    registry: str = "seedfield-data/models"
    storage_options: dict[str, Any] = Field(default_factory=dict)
    credentials_block: str | None = Field(
        None, description="name of a Prefect Secret block whose value (a JSON object of fsspec options, e.g. "
        "key and secret) is merged over storage_options when a command starts"
    )

    @field_serializer("raw", "seedings", "output", "observations", "registry", when_used="json")
    def _shown_path(self, v: str) -> str:
        return redact_url(v)  # Prefect's parameters and `config show`

    @field_serializer("storage_options", when_used="json")
    def _shown_options(self, v: dict[str, Any]) -> dict[str, Any]:
        return redact_options(v)


class DaskSettings(_Section):
    """Where the per-day work runs: a LocalCluster by default, or an existing cluster."""

    address: str | None = Field(None, description="scheduler address, e.g. tcp://10.0.0.5:8786")
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = Field("4GiB", description="per LocalCluster worker")
    inline_max_jobs: int = Field(
        2, ge=0, description="a run of at most this many jobs runs them in its own process, without "
                             "starting a LocalCluster (0: always a cluster); ignored when address is set")


class StatsSettings(_Section):
    """Period of the normalisation statistics (default: the days being prepared)."""

    start: str | None = None
    end: str | None = None


class SplitSettings(_Section):
    """Chronological split of the training period (paper: the last 20 % of days validate)."""

    val_fraction: float = Field(0.2, gt=0, lt=1)
    processes: int = Field(0, ge=0, description="DDP processes via torchrun; 0 = one per GPU if >1 GPU, else 1")
    slot_wait_s: float = Field(
        6 * 3600.0, ge=0, description="seconds a training waits for the registry's training slot (one training at a "
        "time) before it gives up with the holder's name"
    )


class InferSettings(_Section):
    """Batched, optionally tiled inference."""

    batch_size: int = Field(8, ge=1)
    tile: int | None = Field(None, ge=4, description="tile size in LR cells; None = whole domain")
    overlap: int = Field(12, ge=0, description="context around each tile, LR cells (≥ 12 keeps seams below 1e-2 of the output std)")
    device: str = Field("auto", pattern="^(auto|cpu|cuda(:[0-9]+)?)$")
    days_per_task: int = Field(16, ge=1)
    cv_fraction: float = Field(
        0.2, gt=0, lt=1, description="sensors withheld per step for the daily QA's cross-validated scores"
    )
    self_ensemble: bool = Field(
        False, description="average over the 8 flips/transposes (8× compute; flips break geography)"
    )


class EvaluateSettings(_Section):
    """Metrics against the full-resolution truth."""

    data_range: float | None = Field(None, gt=0, description="PSNR/SSIM range, °C; None = truth max−min over the period")
    plot_day: str | None = Field(None, description="day for the maps; None = the first evaluated day")
    dineof_steps: int = Field(
        120, ge=0, description="DINEOF learns its EOFs on the last this many training steps (0 = no DINEOF); "
        "its cost grows with steps × cells × EOFs (240 steps of a 128×256 domain: ~8 min on 2 cores)"
    )
    kriging: bool = Field(True, description="ordinary kriging with a variogram fitted on the training sensors")
    cv_folds: int = Field(5, ge=2, description="leave-platform-out cross-validation (observations): platform folds")
    cv_seed: int = Field(0, ge=0, description="seed of the platforms' fold draw (fixed per platform over the whole period)")


class CompareSettings(_Section):
    """`seedfield compare`: every architecture trained on the same seedings with the same budget."""

    architectures: list[Network] = Field(default_factory=lambda: ["sensornet", *ARCHITECTURES])
    epochs: int = Field(4, ge=1, description="epochs for every architecture")
    pretrain_epochs: int = Field(2, ge=0, description="pixel-loss-only epochs first (GANs; ESRGAN's PSNR model)")
    max_batches_per_epoch: int | None = Field(25, ge=1, description="batches per epoch (None = all days)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="last part of the period held back for the scores")
    val_fraction: float | None = Field(None, gt=0, lt=1, description="validating part of the rest; None = split.val_fraction")
    paper_sizes: bool = Field(True, description="each architecture at its paper's size; False = [train] sizes for all")
    keep_checkpoints: bool = Field(False, description="keep each model's per-epoch checkpoints (large for EDSR)")

    @model_validator(mode="after")
    def _adversarial_epochs_left(self) -> CompareSettings:
        if self.pretrain_epochs >= self.epochs:
            raise ValueError(
                f"compare.pretrain_epochs ({self.pretrain_epochs}) must be smaller than compare.epochs "
                f"({self.epochs}): the GANs need adversarial epochs after the pixel-loss ones"
            )
        return self


class MetadataSettings(_Section):
    """ACDD-1.3 discovery attributes a new store carries (storage/cf.py fills the rest from the
    data). The defaults say that nobody chose them: no licence or author is invented."""

    license: str = Field(DEFAULT_METADATA["license"], description="licence of the stores' data, e.g. 'CC-BY-4.0'")
    creator_name: str = Field(DEFAULT_METADATA["creator_name"], description="person or group who made the data")
    creator_type: Literal["person", "group", "institution", "position"] = "person"
    creator_email: str = DEFAULT_METADATA["creator_email"]
    creator_url: str = DEFAULT_METADATA["creator_url"]
    institution: str = DEFAULT_METADATA["institution"]
    project: str = DEFAULT_METADATA["project"]
    publisher_name: str = DEFAULT_METADATA["publisher_name"]
    publisher_email: str = DEFAULT_METADATA["publisher_email"]
    publisher_url: str = DEFAULT_METADATA["publisher_url"]
    naming_authority: str = Field(DEFAULT_METADATA["naming_authority"], description="prefix of the stores' ids")
    acknowledgement: str = DEFAULT_METADATA["acknowledgement"]

    def attrs(self) -> dict[str, str]:
        """The global attributes, as passed to a store's creation."""
        return {k: str(v) for k, v in self.model_dump().items()}


class SeedfieldConfig(_Section):
    """The whole configuration."""

    @model_validator(mode="before")
    @classmethod
    def _recommended_network(cls, data: Any) -> Any:
        """``train.architecture`` defaults to the recommended SensorNet (docs/model.md); the
        zoo's own TrainConfig keeps RaSeedGAN, the reference, as its default."""
        if isinstance(data, dict):
            train = data.get("train")
            if train is None:
                data = {**data, "train": {"architecture": "sensornet"}}
            elif isinstance(train, dict) and "architecture" not in train:
                data = {**data, "train": {**train, "architecture": "sensornet"}}
        return data

    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    observations: ObservationSettings = Field(default_factory=ObservationSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    stores: StoreSettings = Field(default_factory=StoreSettings)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    seeding: SeedingParams = Field(default_factory=SeedingParams)
    stats: StatsSettings = Field(default_factory=StatsSettings)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sensornet: SensorNetConfig = Field(default_factory=SensorNetConfig)
    split: SplitSettings = Field(default_factory=SplitSettings)
    infer: InferSettings = Field(default_factory=InferSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    compare: CompareSettings = Field(default_factory=CompareSettings)
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _explain(err: ValidationError) -> str:
    known = _known_keys(SeedfieldConfig)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"config key {key!r}: unknown key{hint}")
        else:
            given = e.get("input")
            lines.append(f"config key {key!r}: {e['msg']} (got {given!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                credentials: bool = True) -> SeedfieldConfig:
    """Defaults, then the TOML file at ``path``, then ``overrides`` (dotted keys; None = unset);
    then, when ``credentials``, the options of the Prefect Secret blocks the configuration names
    (:mod:`flows.credentials`)."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            tree = tomllib.loads(p.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {p} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
    try:
        config = SeedfieldConfig.model_validate(tree)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(_explain(exc).replace("invalid configuration", f"invalid configuration{where}", 1)) from exc
    if credentials and (config.archive.credentials_block or config.stores.credentials_block
                        or config.observations.credentials_block):
        from flows.credentials import with_credentials  # Prefect loads only when a block is named

        config = with_credentials(config)
    return config
