"""`defectscope serve` refuses bad input before any server starts; the library imports without the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from defectscope.cli.main import main
from helpers.serving import REPO_ROOT, make_checkpoint, serve_env


def serve_fails(capsys, *args: str) -> str:
    assert main(["serve", *args, "--port", "1"]) == 2  # port 1 would fail if a server ever started
    return capsys.readouterr().err


def test_a_missing_checkpoint_is_exit_2_naming_it(capsys, tmp_path):
    err = serve_fails(capsys, str(tmp_path / "no_such_run"))
    assert "no_such_run" in err and "checkpoint not found" in err


def test_a_file_that_is_not_a_checkpoint_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not safetensors at all")
    assert "not a readable safetensors file" in serve_fails(capsys, str(bad))


def test_an_uncalibrated_checkpoint_is_exit_2(capsys, tmp_path):
    path = make_checkpoint(tmp_path / "ckpt", ["widget"], calibrate=False)
    assert "no calibrated image_threshold" in serve_fails(capsys, str(path))


@pytest.mark.parametrize("flag", [["--max-upload-mb", "0"], ["--max-image-pixels", "-5"], ["--model.lr", "1"]])
def test_bad_flags_are_exit_2(capsys, tiny_checkpoint, flag):
    assert "error" in serve_fails(capsys, str(tiny_checkpoint), *flag)


def test_no_concurrent_calls_is_exit_2_naming_the_flag(capsys, tiny_checkpoint):
    assert "--concurrent-calls must be positive" in serve_fails(capsys, str(tiny_checkpoint), "--concurrent-calls", "0")


@pytest.mark.parametrize(("threads", "calls", "cores", "expected"),
                         [(None, 1, 8, None), (3, 2, 8, 3), (None, 2, 2, 1), (None, 2, 8, 4), (None, 3, 2, 1)])
def test_several_calls_at_once_share_the_cores_unless_threads_are_given(monkeypatch, threads, calls, cores, expected):
    from defectscope.export import runtime

    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    assert runtime.threads_per_call(threads, calls) == expected


BLOCK_SERVE_EXTRA = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("fastapi", "uvicorn", "starlette", "python_multipart", "multipart"):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_the_library_and_cli_import_without_the_serve_extra(tiny_checkpoint):
    code = BLOCK_SERVE_EXTRA + (
        "import defectscope, defectscope.engine.detector, defectscope.serve.settings\n"
        "from defectscope.cli.main import build_parser, main\n"
        "build_parser()\n"
        f"sys.exit(main(['serve', {str(tiny_checkpoint)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=serve_env(),
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'defectscope[serve]'" in done.stderr


def test_the_heap_arenas_are_limited_before_the_model_loads(capsys, monkeypatch, tmp_path):
    import defectscope.serve.slots as slots

    asked = []
    monkeypatch.setattr(slots, "limit_heap_arenas", asked.append)
    serve_fails(capsys, str(tmp_path / "no_such_run"))  # the model is never loaded, the limit is already set
    serve_fails(capsys, str(tmp_path / "no_such_run"), "--heap-arenas", "0")
    assert asked == [2, 0]
    assert "--heap-arenas must be 0" in serve_fails(capsys, str(tmp_path / "no_such_run"), "--heap-arenas", "-1")


def test_limiting_the_heap_arenas_asks_glibc_and_leaves_a_users_setting(monkeypatch):
    import ctypes.util

    from defectscope.serve.slots import limit_heap_arenas

    if not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or "musl"):
        pytest.skip("mallopt(M_ARENA_MAX) is glibc's")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_heap_arenas(0) is False  # glibc's default: nothing to set
    assert limit_heap_arenas(8) is True  # glibc accepted it (8: this test process's own default on 1 core)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_heap_arenas(2) is False
