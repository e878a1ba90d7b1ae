"""DDP for real: ``torchrun --nproc_per_node 2 -m model.train_entry`` on CPU (gloo), two epochs
on a tiny synthetic source, then: checkpoints written once (rank 0), replicas identical while
the ranks read disjoint shards (so the gradients were averaged). SRGAN
adds batch norm in both nets (two discriminator forwards before one backward)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.synthetic import SyntheticSource, estimate_norm

ROOT = Path(__file__).resolve().parents[1]
SOURCE = {"hr_shape": [16, 32], "upsampling": 4, "sensors_per_bin": 4, "seed": 5}


@pytest.mark.slow  # ~15-35 s per architecture: torchrun with two processes
@pytest.mark.parametrize("architecture", ["raseedgan", "srgan"])
def test_torchrun_two_processes_keep_identical_replicas(architecture, tmp_path):
    norm = estimate_norm(SyntheticSource(32, **{**SOURCE, "hr_shape": (16, 32)}))
    np.savez(tmp_path / "norm.npz", lr_mean=norm.lr_mean, lr_std=norm.lr_std,
             hr_mean=norm.hr_mean, hr_std=norm.hr_std)
    workdir = tmp_path / "work"
    spec = {
        "train": {"factory": "model.synthetic:synthetic_source",
                  "kwargs": {**SOURCE, "n_samples": 12, "fresh": True}},
        "val": {"factory": "model.synthetic:synthetic_source", "kwargs": {**SOURCE, "n_samples": 5, "offset": 12}},
        "norm": str(tmp_path / "norm.npz"),
        "config": {"architecture": architecture, "epochs": 2, "batch_size": 2, "n_features": 8, "n_res_blocks": 1, "checkpoint_every": 1,
                   "pretrain_epochs": 1, "device": "cpu", "lr_generator": 1e-3, "lr_discriminator": 1e-3},
        "workdir": str(workdir),
        "upsampling": 4,
        "extra_meta": {"model_id": "ddp-test"},
        "digests": True,
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "model.train_entry", "--spec", str(tmp_path / "spec.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("epoch 2:") == 1  # only rank 0 reports

    digests = [json.loads((workdir / f"digest-rank{r}.json").read_text()) for r in (0, 1)]
    assert all(d["world_size"] == 2 for d in digests)
    assert digests[0]["generator_parameters"] == digests[1]["generator_parameters"]
    assert digests[0]["discriminator_parameters"] == digests[1]["discriminator_parameters"]
    if architecture == "raseedgan":  # no batch norm: the whole state is identical
        assert digests[0]["generator"] == digests[1]["generator"]
        assert digests[0]["discriminator"] == digests[1]["discriminator"]

    # identical replicas prove gradient averaging only if the ranks read different samples
    # (without averaging, disjoint shards would drive the replicas apart): each epoch, the two
    # ranks' shards are disjoint and together cover the training set
    for epoch in (0, 1):
        shards = [{int(line.split()[1]) for line in (workdir / f"samples-rank{r}.txt").read_text().splitlines()
                   if int(line.split()[0]) == epoch} for r in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == 6 and not shards[0] & shards[1], shards
        assert shards[0] | shards[1] == set(range(12))

    result = json.loads((workdir / "result.json").read_text())
    assert result["world_size"] == 2 and len(result["history"]) == 2
    assert result["history"][1]["train_d"] > 0  # the adversarial epoch ran under DDP
    assert sorted(p.name for p in workdir.glob("*.pt")) == ["epoch-0001.pt", "epoch-0002.pt", "kept.pt", "last.pt"]
    ckpt = load_checkpoint(workdir / "last.pt", with_discriminator=True)
    assert ckpt.epoch == 2 and ckpt.extra["model_id"] == "ddp-test"
    assert not any(k.startswith("module.") for k in ckpt.raw["generator"]["state_dict"])
    assert Path(result["kept_checkpoint"]).exists()
