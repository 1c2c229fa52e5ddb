"""Run by the crash tests: `defectscope train CONFIG --no-test`, optionally killing itself inside a save.

MODE "none": train; the test kills this process from outside at a moment it picks.
MODE "write": SIGKILL in save N, once the weights are in the temporary folder.
MODE "swap": SIGKILL in save N, between the two renames that swap the new folder in.
"""

import os
import signal
import sys

from defectscope.cli.main import main
from defectscope.engine import checkpoint


def kill_inside_save(mode: str, n: int) -> None:
    saves = 0
    save_file, replace = checkpoint.save_file, os.replace

    def save_file_then_die(*args, **kwargs):
        nonlocal saves
        saves += 1
        save_file(*args, **kwargs)
        if mode == "write" and saves == n:
            os.kill(os.getpid(), signal.SIGKILL)

    def replace_then_die(src, dst):
        replace(src, dst)
        if mode == "swap" and saves == n and str(dst).endswith(".last.old"):
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.save_file = save_file_then_die
    os.replace = replace_then_die  # this process only lives to be killed


if __name__ == "__main__":
    config, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode != "none":
        kill_inside_save(mode, n)
    sys.exit(main(["train", config, "--no-test"]))
