import json

from rayfold.cluster.steps import Steps


class Counter:
    calls = 0


def test_a_step_adds_its_time_and_the_aligners_new_calls_and_a_step_entered_twice_adds_up():
    aligner = Counter()
    steps = Steps(aligner)
    with steps("audit"):
        aligner.calls += 3
    with steps("cohesion"):
        pass
    with steps("audit"):
        aligner.calls += 2
    record = json.loads(steps.to_json())
    assert list(record) == ["audit", "cohesion"]  # the order they first ran in
    assert record["audit"]["alignments"] == 5 and record["cohesion"]["alignments"] == 0
    assert record["audit"]["seconds"] >= 0


def test_a_step_that_raises_is_still_recorded():
    aligner = Counter()
    steps = Steps(aligner)
    try:
        with steps("search round 1"):
            aligner.calls += 1
            raise RuntimeError("worker lost")
    except RuntimeError:
        pass
    assert json.loads(steps.to_json())["search round 1"]["alignments"] == 1
