"""Requests waiting for the model together share one call; each gets its own answer, or its own error."""

import threading
import time

import numpy as np
import pytest

from defectscope.serve.coalesce import Coalescer
from helpers.waiting import wait_until


class GatedModel:
    """Scores an image as its first pixel; the first call blocks until released, so others queue behind it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[float], str | None]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def score(self, images, class_name):
        values = [float(image.flat[0]) for image in images]
        self.calls.append((values, class_name))
        if len(self.calls) == 1:
            self.started.set()
            assert self.release.wait(10)
        if any(v < 0 for v in values):
            raise ValueError(f"cannot score {values}")
        return [(v, class_name) for v in values]


def image(value: float) -> np.ndarray:
    return np.full((4, 4, 3), value, np.float32)


def queue_behind_a_running_call(
    coalescer: Coalescer, model: GatedModel, requests: list[tuple[list[float], str | None]]
):
    """Start one request that holds the model, queue `requests` behind it, release; their answers (or errors)."""
    answers: dict[int, object] = {}

    def ask(key: int, values: list[float], class_name: str | None) -> None:
        try:
            answers[key] = coalescer.score([image(v) for v in values], class_name)
        except (ValueError, RuntimeError, KeyboardInterrupt) as err:
            answers[key] = err

    first = threading.Thread(target=ask, args=(-1, [100.0], requests[0][1]))
    first.start()
    assert model.started.wait(10)
    threads = []
    for key, (values, class_name) in enumerate(requests):
        threads.append(threading.Thread(target=ask, args=(key, values, class_name)))
        threads[-1].start()
        deadline = time.monotonic() + 10
        while len(coalescer._waiting) < key + 1 and time.monotonic() < deadline:  # queued in this order
            time.sleep(0.005)
    model.release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return answers


def test_a_lone_request_is_scored_at_once_in_its_own_call():
    model = GatedModel()
    model.release.set()
    coalescer = Coalescer(model.score, max_images=4)
    assert coalescer.score([image(1), image(2)], "a") == [(1.0, "a"), (2.0, "a")]
    assert model.calls == [([1.0, 2.0], "a")]


def test_requests_that_wait_together_share_one_call_and_get_their_own_detections():
    model = GatedModel()
    coalescer = Coalescer(model.score, max_images=4)
    answers = queue_behind_a_running_call(coalescer, model, [([1.0], None), ([2.0, 3.0], None), ([4.0], None)])
    assert model.calls == [([100.0], None), ([1.0, 2.0, 3.0, 4.0], None)]
    assert answers == {-1: [(100.0, None)], 0: [(1.0, None)], 1: [(2.0, None), (3.0, None)], 2: [(4.0, None)]}


def test_a_call_holds_one_class_and_at_most_max_images_first_come_first_served():
    model = GatedModel()
    coalescer = Coalescer(model.score, max_images=3)
    answers = queue_behind_a_running_call(
        coalescer, model, [([1.0], "a"), ([2.0], "b"), ([3.0, 4.0], "a"), ([5.0], "a"), ([6.0], "b")])
    assert [c for c in model.calls[1:]] == [([1.0, 3.0, 4.0], "a"), ([2.0, 6.0], "b"), ([5.0], "a")]
    assert answers[2] == [(3.0, "a"), (4.0, "a")] and answers[4] == [(6.0, "b")]


def test_a_part_that_breaks_the_model_fails_its_own_request_only():
    model = GatedModel()
    coalescer = Coalescer(model.score, max_images=4)
    answers = queue_behind_a_running_call(coalescer, model, [([1.0], None), ([-1.0], None), ([2.0], None)])
    assert answers[0] == [(1.0, None)] and answers[2] == [(2.0, None)]
    assert isinstance(answers[1], ValueError) and "-1.0" in str(answers[1])
    assert coalescer.score([image(7)]) == [(7.0, None)]  # and the model is free again


def test_an_interrupt_during_a_shared_call_is_not_retried_and_answers_nobody_wrongly():
    """Ctrl-C is not a part's fault: the thread running the call stops with it, the model is not
    run again, and the requests in that call get an error, not an empty answer."""
    model = GatedModel()
    real = model.score

    def interrupted(images, class_name):
        if len(images) > 1:
            model.calls.append(([float(i.flat[0]) for i in images], class_name))
            raise KeyboardInterrupt
        return real(images, class_name)

    coalescer = Coalescer(interrupted, max_images=4)
    answers = queue_behind_a_running_call(coalescer, model, [([1.0], None), ([2.0], None), ([3.0], None)])
    assert model.calls == [([100.0], None), ([1.0, 2.0, 3.0], None)]  # no retry one by one
    assert sum(isinstance(a, KeyboardInterrupt) for a in answers.values()) == 1  # the thread that ran it
    others = [a for key, a in answers.items() if key >= 0 and not isinstance(a, KeyboardInterrupt)]
    assert len(others) == 2 and all(isinstance(a, RuntimeError) for a in others)
    assert all("before this request was answered" in str(a) for a in others)
    assert coalescer.score([image(7)]) == [(7.0, None)]  # and the model is free again


def test_a_model_that_answers_too_few_detections_fails_the_request_instead_of_shortening_it():
    coalescer = Coalescer(lambda images, class_name: [(1.0, class_name)], max_images=4)
    with pytest.raises(RuntimeError, match="1 detections for 2 images"):
        coalescer.score([image(1), image(2)])


def test_max_images_must_be_positive():
    with pytest.raises(ValueError, match="max_images"):
        Coalescer(lambda images, class_name: [], 0)


def test_max_calls_must_be_positive():
    with pytest.raises(ValueError, match="max_calls"):
        Coalescer(lambda images, class_name: [], 4, max_calls=0)


def test_with_two_calls_allowed_a_second_batch_runs_beside_the_first():
    both_inside = threading.Barrier(2, timeout=10)  # broken if the second call cannot start

    def score(images, class_name):
        both_inside.wait()
        return [(float(i.flat[0]), class_name) for i in images]

    coalescer = Coalescer(score, max_images=4, max_calls=2)
    answers: dict[int, object] = {}
    threads = [threading.Thread(target=lambda k=k: answers.update({k: coalescer.score([image(k)])}))
               for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not both_inside.broken
    assert answers == {0: [(0.0, None)], 1: [(1.0, None)]}


@pytest.mark.parametrize("max_calls", [1, 2, 3])
def test_never_more_calls_at_once_than_allowed_and_every_request_gets_its_own_answer(max_calls):
    inside, most, calls = [0], [0], []
    count_lock = threading.Lock()

    def score(images, class_name):
        with count_lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            calls.append(len(images))
        time.sleep(0.002)
        with count_lock:
            inside[0] -= 1
        return [(float(i.flat[0]), class_name) for i in images]

    coalescer = Coalescer(score, max_images=3, max_calls=max_calls)
    answers: dict[int, object] = {}

    def ask(k: int) -> None:
        for r in range(10):
            value = 100 * k + r
            answers[value] = coalescer.score([image(value)], "a")

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert answers == {v: [(float(v), "a")] for v in (100 * k + r for k in range(8) for r in range(10))}
    assert 1 <= most[0] <= max_calls and max(calls) <= 3 and sum(calls) == 80


class GatedByValue:
    """Scores a batch as its values; a batch whose first value has a gate waits until it opens."""

    def __init__(self, gated: tuple[float, ...]) -> None:
        self.gates = {value: threading.Event() for value in gated}
        self.entered = {value: threading.Event() for value in gated}
        self.calls: list[list[float]] = []

    def score(self, images, class_name):
        values = [float(i.flat[0]) for i in images]
        self.calls.append(values)
        if values[0] in self.gates:
            self.entered[values[0]].set()
            assert self.gates[values[0]].wait(10)
        return [(v, class_name) for v in values]


def ask(coalescer: Coalescer, value: float, answers: dict[float, object]) -> threading.Thread:
    """A client thread asking for one part; its answer lands in `answers` under its value."""
    thread = threading.Thread(target=lambda: answers.update({value: coalescer.score([image(value)])}))
    thread.start()
    return thread


def test_a_request_taken_into_another_threads_call_waits_for_it_while_a_call_is_free():
    """Two calls allowed, both busy (A, B); C and D queue; A ends and one thread takes C and D into
    one call; B ends: the other thread finds a call free and nothing left to take, and must wait
    for its own answer instead of starting an empty call."""
    model = GatedByValue((1.0, 2.0, 3.0))
    coalescer = Coalescer(model.score, max_images=4, max_calls=2)
    answers: dict[float, object] = {}
    threads = [ask(coalescer, 1.0, answers), ask(coalescer, 2.0, answers)]
    assert model.entered[1.0].wait(10) and model.entered[2.0].wait(10)
    threads.append(ask(coalescer, 3.0, answers))
    assert wait_until(lambda: len(coalescer._waiting) == 1)  # C queues before D: C heads the batch
    threads.append(ask(coalescer, 4.0, answers))
    assert wait_until(lambda: len(coalescer._waiting) == 2)
    model.gates[1.0].set()  # A ends: C and D go into one call, which blocks
    assert model.entered[3.0].wait(10)
    model.gates[2.0].set()  # B ends: a call is free, and the thread of C or D that did not run has nothing to take
    time.sleep(0.05)
    model.gates[3.0].set()
    for t in threads:
        t.join(10)
    assert model.calls == [[1.0], [2.0], [3.0, 4.0]] or model.calls == [[2.0], [1.0], [3.0, 4.0]]
    assert answers == {v: [(v, None)] for v in (1.0, 2.0, 3.0, 4.0)}


def test_a_request_in_another_threads_call_is_answered_when_that_call_ends_not_after_more_work():
    """Two calls allowed: C and D share a call run by one of their threads; B ends and E arrives.
    The other thread of C and D must not take E: its answer would wait for E's call."""
    model = GatedByValue((1.0, 2.0, 3.0, 5.0))
    coalescer = Coalescer(model.score, max_images=4, max_calls=2)
    answers: dict[float, object] = {}
    threads = [ask(coalescer, 1.0, answers), ask(coalescer, 2.0, answers)]
    assert model.entered[1.0].wait(10) and model.entered[2.0].wait(10)
    threads.append(ask(coalescer, 3.0, answers))
    assert wait_until(lambda: len(coalescer._waiting) == 1)
    threads.append(ask(coalescer, 4.0, answers))
    assert wait_until(lambda: len(coalescer._waiting) == 2)
    model.gates[1.0].set()  # C and D go into one call
    assert model.entered[3.0].wait(10)
    threads.append(ask(coalescer, 5.0, answers))
    assert wait_until(lambda: len(coalescer._waiting) == 1)
    model.gates[2.0].set()  # a call is free: E's own thread takes E
    assert model.entered[5.0].wait(10)
    model.gates[3.0].set()  # C and D are scored: both answered now, while E's call still runs
    assert wait_until(lambda: 3.0 in answers and 4.0 in answers)
    assert 5.0 not in answers
    model.gates[5.0].set()
    for t in threads:
        t.join(10)
    assert answers == {v: [(v, None)] for v in (1.0, 2.0, 3.0, 4.0, 5.0)}
