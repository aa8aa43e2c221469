"""The exception tree lives in two private modules and is public in ``fuseline_nb.errors``: every class
says so, tracebacks and pickles name ``fuseline_nb.errors``, and bytes pickled before the split load."""

from __future__ import annotations

import pickle
import traceback

import pytest

import fuseline_nb.errors as errors


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_public_under_fuseline_nb_errors(name: str) -> None:
    cls = getattr(errors, name)
    assert cls.__module__ == "fuseline_nb.errors"
    assert issubclass(cls, errors.FuselineError)


def test_a_traceback_names_the_public_module() -> None:
    try:
        raise errors.StorageLockedError("held by pid 12")
    except errors.StorageError as exc:
        assert traceback.format_exception_only(type(exc), exc)[-1] == (
            "fuseline_nb.errors.StorageLockedError: held by pid 12\n")


def test_errors_pickle_by_their_public_name_and_round_trip() -> None:
    samples = [
        errors.CycleError(["a", "b", "a"]),
        errors.MissingInputError.of({"x": ["a", "b"], "y": ["b"]}),
        errors.StepFailedError("r1", {"a": "ValueError: no"}, {"a": "Traceback ...\n"}),
        errors.BrokerRequestError(422, "invalid_request", "report.attempt: must be >= 1"),
        errors.RunNotFoundError("r9"),
        errors.DuplicateStepNameError("load"),
        errors.ImpossibleJoinError("j", "g", "a", "b", "x", "y"),
        errors.UnknownActionError("Review", "maybe", ["approve", "reject"]),
    ]
    for err in samples:
        data = pickle.dumps(err)
        assert b"fuseline_nb.errors" in data and b"_errors_" not in data
        back = pickle.loads(data)
        assert type(back) is type(err) and str(back) == str(err)  # (their args hold the message only)
        assert vars(back) == vars(err)
    assert pickle.loads(pickle.dumps(samples[1])).missing == {"x": ["a", "b"], "y": ["b"]}


def test_bytes_pickled_before_the_split_still_load() -> None:
    # pickle.dumps(MissingInputError.of({"x": ["a"]})) and of StorageLockedError("m"), made with errors.py whole
    old_missing = (b"\x80\x04\x95<\x00\x00\x00\x00\x00\x00\x00\x8c\x12fuseline_nb.errors\x94\x8c\x0f_missing_inputs"
                   b"\x94\x93\x94}\x94\x8c\x01x\x94]\x94\x8c\x01a\x94as\x85\x94R\x94.")
    assert str(pickle.loads(old_missing)) == (
        "step 'a' needs input 'x': pass it in the run's inputs, e.g. wf.run({'x': ...})")
    old_locked = pickle.dumps(errors.StorageLockedError("m"), protocol=4)
    assert old_locked.count(b"fuseline_nb.errors") == 1
    assert type(pickle.loads(old_locked)) is errors.StorageLockedError
