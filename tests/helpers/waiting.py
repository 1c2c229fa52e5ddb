"""Polling for a condition another thread makes true, with a deadline (a test must not hang)."""

import time


def wait_until(condition, seconds: float = 10.0) -> bool:
    """Whether `condition()` became true within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
