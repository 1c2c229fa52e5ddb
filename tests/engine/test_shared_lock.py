"""SharedLock: scoring calls share it, a change of the model holds it alone and is not starved."""

import threading
import time

from defectscope.engine.shared_lock import SharedLock
from helpers.waiting import wait_until


def test_readers_hold_it_at_once():
    lock = SharedLock()
    both_inside = threading.Barrier(2, timeout=10)  # broken (an error) if the second reader cannot enter

    def read() -> None:
        with lock.shared():
            both_inside.wait()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not both_inside.broken and lock.readers == 0


def test_a_writer_waits_for_the_readers_inside_and_keeps_new_readers_out():
    lock = SharedLock()
    events: list[str] = []
    release_first = threading.Event()

    def first_reader() -> None:
        with lock.shared():
            events.append("reader 1 in")
            release_first.wait(10)
            events.append("reader 1 out")

    def writer() -> None:
        with lock.exclusive():
            events.append("writer in")
            time.sleep(0.05)  # a reader let in now would show inside the writer's span
            events.append("writer out")

    def late_reader() -> None:
        with lock.shared():
            events.append("reader 2 in")

    r1 = threading.Thread(target=first_reader)
    r1.start()
    assert wait_until(lambda: lock.readers == 1)
    w = threading.Thread(target=writer)
    w.start()
    assert wait_until(lambda: lock._writers_waiting == 1)
    r2 = threading.Thread(target=late_reader)  # arrives while the writer waits: goes after it
    r2.start()
    time.sleep(0.05)
    assert events == ["reader 1 in"]
    release_first.set()
    for t in (r1, w, r2):
        t.join(10)
    assert events == ["reader 1 in", "reader 1 out", "writer in", "writer out", "reader 2 in"]


def test_writers_hold_it_one_at_a_time():
    lock = SharedLock()
    inside, most = [0], [0]
    count_lock = threading.Lock()

    def write() -> None:
        for _ in range(20):
            with lock.exclusive():
                with count_lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with count_lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most[0] == 1


def test_an_error_inside_releases_it():
    lock = SharedLock()
    for hold in (lock.shared, lock.exclusive):
        try:
            with hold():
                raise ValueError("inside")
        except ValueError:
            pass
    with lock.exclusive():  # would wait forever if either had kept it
        assert lock.readers == 0
