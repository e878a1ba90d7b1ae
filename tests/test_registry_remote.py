"""The model registry on a local folder and on a real local S3 (moto's server): publish, list,
meta, current, fingerprint, checkpoint round-trip through the inference engine factory the infer
flow uses, the local work folder and the training slot's lock of a remote registry."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.config import InferSettings
from flows.infer import engine_for
from model.checkpoint import save_checkpoint
from model.data import Normalisation
from model.generator import RaSeedGenerator
from storage.model_registry import ModelRegistry, RegistryError, local_dir
from tests.helpers_s3 import S3_BUCKET, S3_KEY, S3_SECRET, s3_options

PNG = b"\x89PNG\r\n\x1a\n" + b"not really a picture"


def tiny_checkpoint(path: Path, seed: int) -> RaSeedGenerator:
    torch.manual_seed(seed)
    gen = RaSeedGenerator(upsampling=2, n_features=4, n_res_blocks=1, upsample_features=8)
    rng = np.random.default_rng(seed)
    norm = Normalisation(rng.normal(15, 2, (4, 4)), rng.uniform(0.5, 2, (4, 4)),
                         rng.normal(15, 2, (8, 8)), rng.uniform(0.5, 2, (8, 8)))
    save_checkpoint(path, generator=gen, epoch=1, norm=norm, config={"time_features": False}, history=[])
    return gen


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path, monkeypatch):
    monkeypatch.setenv("SEEDFIELD_CACHE_DIR", str(tmp_path / "cache"))
    if request.param == "local":
        return ModelRegistry(tmp_path / "models")
    endpoint, _client = request.getfixturevalue("s3_endpoint")
    return ModelRegistry(f"s3://{S3_BUCKET}/deep/models", s3_options(endpoint))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_round_trip_local_and_s3(registry, tmp_path):
    """test_registry_round_trip_local_and_s3[s3] is the S3 round trip."""
    assert registry.list() == [] and registry.current() is None
    with pytest.raises(RegistryError, match="no current model"):
        registry.resolve(None)
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    gen_a, gen_b = tiny_checkpoint(first, 1), tiny_checkpoint(second, 2)

    registry.publish("m-a", first, {"note": "first"}, files={"loss.png": PNG})
    time.sleep(1.1)  # S3 keeps modification times to the second: "oldest first" needs them apart
    registry.publish("m-b", second, {"note": "second"}, make_current=False)

    assert registry.list() == ["m-a", "m-b"]
    assert registry.current() == "m-a" and registry.resolve("latest") == "m-b"
    meta = registry.meta("m-a")
    assert meta["note"] == "first" and meta["model_id"] == "m-a" and meta["files"] == ["loss.png"]
    assert meta["checkpoint_sha256"] == sha256(first) == registry.fingerprint("m-a")
    assert registry.fingerprint("m-b") == sha256(second) != registry.fingerprint("m-a")
    assert registry.read_file("m-a", "loss.png") == PNG and registry.read_file("m-b", "loss.png") is None
    registry.set_current("m-b")
    assert registry.current() == "m-b" and registry.resolve(None) == "m-b"
    registry.update_meta("m-b", score=1.5)
    assert registry.meta("m-b")["score"] == 1.5 and registry.meta("m-b")["note"] == "second"
    with pytest.raises(RegistryError, match=r"no published model 'nope'.*known: m-a, m-b"):
        registry.resolve("nope")
    with pytest.raises(RegistryError, match="use letters"):
        registry.set_current("../escape")

    # the inference engine factory of the infer flow loads the very weights that were published
    for model_id, gen in (("m-a", gen_a), ("m-b", gen_b)):
        engine, config = engine_for(registry, model_id, InferSettings(device="cpu"))
        assert config == {"time_features": False}
        assert_same_weights(engine.generator, gen)

    # republished under the same id: the fingerprint and the loaded weights follow the new file
    time.sleep(1.1)
    registry.publish("m-a", second, {"note": "retrained"})
    assert registry.fingerprint("m-a") == sha256(second) and registry.meta("m-a")["note"] == "retrained"
    engine, _ = engine_for(registry, "m-a", InferSettings(device="cpu"))
    assert_same_weights(engine.generator, gen_b)


def assert_same_weights(loaded: torch.nn.Module, original: torch.nn.Module) -> None:
    got, want = loaded.state_dict(), original.state_dict()
    assert got.keys() == want.keys()
    for name, value in want.items():
        assert torch.equal(got[name].cpu(), value), name


def test_workdir_is_local_and_discarding_needs_an_unpublished_model(registry, tmp_path):
    work = registry.workdir("w-1")
    assert work.is_dir() and work.name == "work" and work.parent.name == "w-1"
    if registry.local:
        assert work == (tmp_path / "models" / "w-1" / "work").resolve()
    else:
        assert work.is_relative_to(tmp_path / "cache" / "registries")
        assert local_dir(registry.url) == work.parent.parent
    (work / "last.pt").write_bytes(b"x")
    assert not registry.stale_workdir("w-1")  # not published: an interrupted training, resumed
    ckpt = tmp_path / "w.pt"
    tiny_checkpoint(ckpt, 3)
    time.sleep(0.05)
    registry.publish("w-1", ckpt, {})
    assert registry.stale_workdir("w-1")  # the published training's own checkpoints
    time.sleep(0.05)
    (work / "last.pt").write_bytes(b"y")
    assert not registry.stale_workdir("w-1")  # a retraining since: resumed
    registry.drop_workdir("w-1")
    assert not work.exists() and registry.list() == ["w-1"]
    with pytest.raises(RegistryError, match="is published"):
        registry.discard_unpublished("w-1")
    registry.publish("w-2", ckpt, {}, make_current=False, files={"loss.png": PNG})
    registry.workdir("failed")
    registry.write_meta("failed", {"half": True})
    registry.discard_unpublished("failed")
    assert registry.list() == ["w-1", "w-2"]
    assert not (local_dir(registry.url) / "failed").exists()


def test_a_remote_registry_keeps_no_secret_and_locks_on_this_host(s3_endpoint, tmp_path, monkeypatch):
    from flows.locks import slot

    endpoint, client = s3_endpoint
    monkeypatch.setenv("SEEDFIELD_CACHE_DIR", str(tmp_path / "cache"))
    registry = ModelRegistry(f"s3://{S3_BUCKET}/models", s3_options(endpoint))
    ckpt = tmp_path / "s.pt"
    tiny_checkpoint(ckpt, 4)
    registry.publish("s-1", ckpt, {"train": {"note": "x"}}, files={"loss.png": PNG})
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=S3_BUCKET)["Contents"])
    assert keys == ["models/CURRENT", "models/s-1/loss.png", "models/s-1/meta.json", "models/s-1/model.pt"]
    meta = client.get_object(Bucket=S3_BUCKET, Key="models/s-1/meta.json")["Body"].read()
    assert S3_KEY.encode() not in meta and S3_SECRET.encode() not in meta
    assert json.loads(meta)["checkpoint_sha256"] == sha256(ckpt)
    assert S3_SECRET not in repr(registry)
    # the training slot of a remote registry is a local lock file in its cache folder
    with slot(local_dir(registry.url), "training", "test", wait_s=0.0):
        locks = list((tmp_path / "cache").rglob("*.lock"))
        assert len(locks) == 1 and locks[0].is_relative_to(local_dir(registry.url).parent)
        with pytest.raises(Exception, match="gave up"), slot(local_dir(registry.url), "training", "2nd", wait_s=0.0):
            pass
