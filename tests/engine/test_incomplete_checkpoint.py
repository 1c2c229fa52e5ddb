"""A run folder whose checkpoint never came to be: `train --resume` says there is nothing to resume
and gives the command that starts the run again, instead of "checkpoint not found".

A save writes a temporary folder `.last.XXXX.tmp` and renames it into place; a kill during the very
first save leaves only that folder. Here the kill is simulated: the rename fails and the cleanup that
a SIGKILL would skip is skipped (tests/engine/test_resume.py kills a real run inside its first save).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from defectscope.cli.main import main
from defectscope.config import config_to_yaml, load_config
from defectscope.engine import checkpoint as checkpoint_module
from defectscope.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from defectscope.models import create_model


class Killed(BaseException):
    """Stands for the SIGKILL: nothing after it runs."""


@pytest.fixture
def stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run folder as a kill inside its first save leaves it: config.yaml, the marker, a log, and only
    the temporary folder of checkpoints/last."""
    run = tmp_path / "run"
    cfg = load_config(None, ["--model.name", "ae_ssim", "--model.base_channels", "4", "--model.latent_dim", "8",
                             "--data.image_size", "32", "--output_dir", str(run)])
    run.mkdir()
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    (run / ".defectscope-run").write_text("written by defectscope\n")
    (run / "train_log.jsonl").write_text('{"step": 1}\n')
    model = create_model("ae_ssim", cfg.model, 32)

    def killed(*args: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "_replace_dir", killed)
        patch.setattr(checkpoint_module.shutil, "rmtree", lambda *args, **kwargs: None)  # a kill cleans nothing
        with pytest.raises(Killed):
            save_checkpoint(run / "checkpoints" / "last", model, cfg, ["mtsd"], step=1, trainer_state={"step": 1})
    assert not (run / "checkpoints" / "last").exists()
    assert [p.name for p in (run / "checkpoints").iterdir()][0].startswith(".last.")
    return run


@pytest.mark.parametrize("asked", ["checkpoints/last", "checkpoints/last/model.safetensors"])
def test_a_kill_in_the_first_save_says_to_start_again(stopped_run, asked):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(stopped_run / asked)
    message = str(err.value)
    assert message.startswith(f"{stopped_run / 'checkpoints' / 'last'}: no complete checkpoint")
    assert "stopped while it wrote its first one" in message and ".last." in message
    assert "nothing to resume from" in message
    assert f"`defectscope train {stopped_run / 'config.yaml'} --overwrite`" in message


def test_train_resume_on_it_is_a_clean_error_with_the_command(stopped_run, capsys):
    last = stopped_run / "checkpoints" / "last"
    assert main(["train", str(stopped_run / "config.yaml"), "--resume", str(last), "--no-test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectscope train: error: ") and "Traceback" not in err
    assert "no complete checkpoint" in err and f"defectscope train {stopped_run / 'config.yaml'} --overwrite" in err


def test_a_run_stopped_before_any_save_says_so(stopped_run):
    for leftover in (stopped_run / "checkpoints").iterdir():
        for file in leftover.iterdir():
            file.unlink()
        leftover.rmdir()
    with pytest.raises(CheckpointError, match=r"no complete checkpoint — the run stopped before it saved one"):
        load_checkpoint(stopped_run / "checkpoints" / "last")


def test_a_path_that_never_held_a_run_is_still_not_found(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nowhere" / "checkpoints" / "last")
