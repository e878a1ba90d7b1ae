"""The trainer on tiny synthetic sparse fields (16×32 HR, ×4, 16 features, 2 blocks, CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint
from model.data import SparseFieldDataset
from model.synthetic import SyntheticSource, estimate_norm
from model.trainer import EpochRecord, TrainConfig, Trainer, select_kept_epoch

TRAIN = SyntheticSource(16, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1)
VAL = SyntheticSource(4, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1, offset=16)
# statistics over more days of the same field family, so that every HR cell has enough samples
NORM = estimate_norm(SyntheticSource(64, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=1))
CONFIG = TrainConfig(
    epochs=4, batch_size=4, lr_generator=1e-3, lr_discriminator=1e-3, pretrain_epochs=1,
    checkpoint_every=3, n_features=16, n_res_blocks=2, device="cpu", seed=3,
)


class Killed(RuntimeError):
    pass


def make_trainer(workdir: Path, config: TrainConfig = CONFIG, **kw) -> Trainer:
    return Trainer(config, SparseFieldDataset(TRAIN, NORM), SparseFieldDataset(VAL, NORM), NORM,
                   workdir, upsampling=4, extra_meta={"model_id": "test"}, **kw)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("train") / "run"
    seen: list[EpochRecord] = []
    result = make_trainer(workdir, on_epoch=seen.append).fit()
    return workdir, result, seen


def test_select_kept_epoch_rule():
    assert select_kept_epoch([(5, 1.0), (10, 0.8), (15, 0.9), (20, 0.5)]) == 10  # before the first rise
    assert select_kept_epoch([(5, 1.0), (10, 0.8), (15, 0.7)]) == 15  # never rises: the last
    assert select_kept_epoch([(5, 1.0), (10, 1.2)]) == 5
    assert select_kept_epoch([(5, 1.0), (10, 1.0), (15, 1.1)]) == 10  # equal is not a rise
    assert select_kept_epoch([(10, 0.8), (5, 1.0), (15, 0.9)]) == 10  # order by epoch
    assert select_kept_epoch([(5, 1.0), (10, math.nan)]) == 5  # divergence counts as a rise
    assert select_kept_epoch([(7, 2.0)]) == 7
    with pytest.raises(ValueError):
        select_kept_epoch([])


def test_losses_decrease_and_records_are_complete(uninterrupted):
    _, result, seen = uninterrupted
    hist = result.history
    assert [r.epoch for r in hist] == [1, 2, 3, 4] and seen == hist
    assert hist[-1].train_content < hist[0].train_content
    assert hist[-1].val_content < hist[0].val_content
    assert hist[0].train_adversarial == 0 and hist[0].train_d == 0  # content-only pretraining
    assert all(r.train_d > 0 and r.train_adversarial > 0 for r in hist[1:])
    assert all(r.samples_per_s > 0 and r.seconds > 0 for r in hist)


def test_checkpoints_and_kept_follow_the_rule(uninterrupted):
    workdir, result, _ = uninterrupted
    names = sorted(p.name for p in workdir.iterdir())
    assert names == ["epoch-0003.pt", "epoch-0004.pt", "kept.pt", "last.pt"]
    val = {r.epoch: r.val_content for r in result.history}
    assert result.kept_epoch == select_kept_epoch([(3, val[3]), (4, val[4])])
    assert result.kept_checkpoint.read_bytes() == (workdir / f"epoch-{result.kept_epoch:04d}.pt").read_bytes()
    last = load_checkpoint(result.last_checkpoint, with_discriminator=True)
    assert last.epoch == 4 and len(last.history) == 4 and last.config["n_features"] == 16
    assert last.extra["model_id"] == "test" and last.extra["checkpoint_epochs"] == [3, 4]
    assert last.generator.upsampling == 4 and last.norm.equals(NORM)
    assert last.raw["g_optimizer"] is not None and last.raw["d_optimizer"] is not None


def test_resume_after_a_kill_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    _, result, _ = uninterrupted

    def kill_after_two(rec: EpochRecord) -> None:
        if rec.epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        make_trainer(tmp_path, on_epoch=kill_after_two).fit()
    assert not (tmp_path / "epoch-0003.pt").exists()
    steps: list[tuple[int, int, dict[str, float]]] = []
    resumed = make_trainer(tmp_path, on_progress=lambda done, total, numbers: steps.append((done, total, numbers)))
    assert resumed.resumed and resumed.start_epoch == 2
    res = resumed.fit()
    assert [r.epoch for r in res.history] == [1, 2, 3, 4]
    # progress: every batch of epochs 3 and 4, counted from the start of the whole training
    per_epoch = math.ceil(len(TRAIN) / CONFIG.batch_size)
    assert [s[0] for s in steps] == list(range(2 * per_epoch + 1, 4 * per_epoch + 1))
    assert {s[1] for s in steps} == {4 * per_epoch}
    assert [s[2]["epoch"] for s in steps] == [3] * per_epoch + [4] * per_epoch
    assert all(math.isfinite(s[2]["loss"]) and s[2]["batches"] == per_epoch for s in steps)
    a = load_checkpoint(result.last_checkpoint, with_discriminator=True)
    b = load_checkpoint(res.last_checkpoint, with_discriminator=True)
    for name in ("generator", "discriminator"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"  # bit-identical, as docs/model.md says
    for ra, rb in zip(result.history, res.history, strict=True):
        assert (ra.val_content, ra.train_content) == (rb.val_content, rb.train_content)
    assert res.kept_epoch == result.kept_epoch


def test_a_finished_run_resumes_to_nothing_and_budget_knob(tmp_path, uninterrupted):
    cfg = CONFIG.model_copy(update={"epochs": 1, "max_batches_per_epoch": 1, "pretrain_epochs": 0})
    res = make_trainer(tmp_path, cfg).fit()
    assert res.kept_epoch == 1 and res.history[0].train_adversarial > 0
    again = make_trainer(tmp_path, cfg)
    assert again.start_epoch == 1 and again.fit().history == res.history


def test_mismatched_setups_are_refused(tmp_path, uninterrupted):
    workdir, _, _ = uninterrupted
    with pytest.raises(ValueError, match="time_features"):
        Trainer(CONFIG, SparseFieldDataset(TRAIN, NORM, time_features=True), SparseFieldDataset(VAL, NORM),
                NORM, tmp_path, upsampling=4)
    with pytest.raises(ValueError, match="same architecture"):
        make_trainer(workdir, CONFIG.model_copy(update={"n_res_blocks": 3}))
    with pytest.raises(ValueError, match="extra"):
        TrainConfig(epochs=2, unknown_key=1)
