"""Resume after a kill: PeSFT never resumes a Trainer checkpoint cut short while it was written;
PeRPO resumes from its rolling checkpoint (every ``perpo.resume_every`` steps) or a sweep folder,
whichever is later, and only under the same configuration fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

from omni_r1.stages.perpo import resumable_checkpoint as perpo_resumable
from omni_r1.stages.perpo import resume_folder
from omni_r1.stages.pesft import RESUME_KEY, TRAINER_STATE, resumable_checkpoint


def trainer_checkpoint(folder, complete: bool) -> None:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    if complete:
        (folder / TRAINER_STATE).write_text("{}")


def test_pesft_skips_and_removes_a_half_written_trainer_checkpoint(tmp_path):
    (tmp_path / RESUME_KEY).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / RESUME_KEY).write_text(json.dumps({"key": "k"}))
    trainer_checkpoint(tmp_path / "checkpoint-4", complete=True)
    trainer_checkpoint(tmp_path / "checkpoint-8", complete=False)  # killed while Trainer saved it
    assert resumable_checkpoint(tmp_path, "k") == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-8").exists()
    assert resumable_checkpoint(tmp_path, "other") is None


def perpo_state(folder, step: int, fingerprint: str) -> None:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step, "extra": {"fingerprint": fingerprint}}))


def test_perpo_resumes_from_the_later_of_rolling_and_sweep_checkpoints(tmp_path):
    out_root = tmp_path / "perpo"
    perpo_state(out_root / "step_10", 10, "aaa")
    perpo_state(resume_folder(out_root), 14, "aaa")
    assert resume_folder(out_root) == tmp_path / "perpo_resume"
    assert perpo_resumable(out_root, "aaa") == tmp_path / "perpo_resume"
    perpo_state(out_root / "step_20", 20, "aaa")
    assert perpo_resumable(out_root, "aaa") == out_root / "step_20"
    assert perpo_resumable(out_root, "bbb") is None  # another configuration: both removed
    assert not out_root.exists() and not resume_folder(out_root).exists()


def test_pesft_state_file_does_not_depend_on_where_the_run_resumed():
    from omni_r1.stages.pesft import timing_free_state

    def state(train_loss: float) -> dict:
        history = [{"step": 1, "loss": 2.5, "train_runtime": 9.0}, {"step": 2, "train_loss": train_loss}]
        return {"global_step": 2, "log_history": history}

    uninterrupted, resumed = timing_free_state(state(5.5)), timing_free_state(state(2.4))
    assert uninterrupted == resumed
    assert json.loads(uninterrupted)["log_history"][0] == {"step": 1, "loss": 2.5}


def test_a_kill_while_removing_the_resume_folder_leaves_nothing_to_resume(tmp_path, monkeypatch):
    import shutil

    from omni_r1.stages import pesft

    resume = tmp_path / "pesft_resume"
    trainer_checkpoint(resume / "checkpoint-24", complete=True)
    (resume / RESUME_KEY).write_text(json.dumps({"key": "k"}))

    def killed_midway(path, ignore_errors=False):  # deletes the weights, then the process dies
        for weights in sorted(Path(path).rglob("model.safetensors")):
            weights.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    try:
        pesft.remove_resume_dir(resume)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    # a checkpoint that kept its trainer_state.json but lost its weights must not be resumed
    assert resumable_checkpoint(resume, "k") is None
    pesft.remove_resume_dir(resume)  # absent: nothing to do
