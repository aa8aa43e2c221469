"""Audit (session 7): data fingerprints must differ for data that differs (a shared one is a wrong cache hit).

A data fingerprint keys the cache (a step whose inputs' fingerprints were seen is served the stored
result) and tells whether a global a step reads changed (the workers get the workflow again). Values
that hash from their buffers must not lose what the buffers do not hold: whether it is a Series or its
one-column frame, a masked array's mask, a structured dtype's fields, an Arrow dictionary, a
categorical's categories, the index's name; and a subclass of ``str``/``int`` whose ``repr`` is its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import fuseline_nb as fl
from fuseline_nb.workflow.datafingerprint import data_fingerprint
from fuseline_nb.workflow.value import Value
from tests.cells import Cells, notebook

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")


class Secret(str):
    """A str whose repr hides it (a token, a password)."""

    def __repr__(self) -> str:
        return "Secret('***')"


def _pairs() -> dict[str, tuple[object, object]]:
    dictionary = pa.DictionaryArray.from_arrays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # numpy's word on np.matrix
        matrix = np.matrix([[1, 2], [3, 4]])
    return {
        "a Series and its one-column frame": (pd.Series([1, 2], name="a"), pd.DataFrame({"a": [1, 2]})),
        "a Series without a name and a frame with column 0": (pd.Series([1, 2]), pd.DataFrame({0: [1, 2]})),
        "masked arrays with other masks": (np.ma.array([1, 2], mask=[0, 1]), np.ma.array([1, 2], mask=[0, 0])),
        "a masked array and its data": (np.ma.array([1, 2], mask=[0, 1]), np.array([1, 2])),
        "a matrix and an array": (matrix, np.array([[1, 2], [3, 4]])),
        "structured arrays with other field names": (np.zeros(2, [("a", "<i8")]), np.zeros(2, [("b", "<i8")])),
        "structured arrays with other field types": (np.zeros(2, [("a", "<i8")]), np.zeros(2, [("a", "<f8")])),
        "Arrow dictionaries": (dictionary(pa.array([0, 1]), pa.array(["x", "y"])),
                               dictionary(pa.array([0, 1]), pa.array(["p", "q"]))),
        "Arrow tables of dictionaries": (pa.table({"c": dictionary(pa.array([0, 1]), pa.array(["x", "y"]))}),
                                         pa.table({"c": dictionary(pa.array([0, 1]), pa.array(["p", "q"]))})),
        "an Arrow list of dictionaries": (pa.array([["x"]], pa.list_(pa.dictionary(pa.int8(), pa.string()))),
                                          pa.array([["y"]], pa.list_(pa.dictionary(pa.int8(), pa.string())))),
        "a chunked array and an array": (pa.chunked_array([[1, 2]]), pa.array([1, 2])),
        "categoricals with other categories": (pd.DataFrame({"c": pd.Categorical(["x", "y"])}),
                                               pd.DataFrame({"c": pd.Categorical(["x", "y"], ["x", "y", "z"])})),
        "ordered and unordered categoricals": (pd.DataFrame({"c": pd.Categorical([1, 2])}),
                                               pd.DataFrame({"c": pd.Categorical([1, 2], ordered=True)})),
        "frames with other index names": (pd.DataFrame({"a": [1]}, index=pd.Index([5], name="i")),
                                          pd.DataFrame({"a": [1]}, index=pd.Index([5], name="j"))),
        "frames with other column axis names": (pd.DataFrame({"a": [1]}).rename_axis(columns="q"),
                                                pd.DataFrame({"a": [1]})),
        "str subclasses with a repr of their own": (Secret("a"), Secret("b")),
        "a str subclass and the str": (Secret("a"), "a"),
    }


@pytest.mark.parametrize("case", sorted(_pairs()))
def test_different_data_has_different_fingerprints(case: str) -> None:
    one, other = _pairs()[case]
    assert data_fingerprint(one) != data_fingerprint(other)
    assert Value.of(one).fingerprint != Value.of(other).fingerprint


@pytest.mark.parametrize("case", sorted(_pairs()))
def test_equal_data_still_has_equal_fingerprints(case: str) -> None:
    one, other = _pairs()[case]
    import copy

    assert data_fingerprint(one) == data_fingerprint(copy.deepcopy(one))
    assert data_fingerprint(other) == data_fingerprint(copy.deepcopy(other))


@pytest.fixture
def cells() -> Iterator[Cells]:
    with notebook("import fuseline_nb as fl\nimport pandas as pd\n") as c:
        yield c


PIPELINE = """
    def pick(n):
        frame = pd.DataFrame({{'a': list(range(n))}})
        return {pick}
    def total(x=fl.Depends(pick)):
        return x.sum()
    wf = fl.Workflow(outputs=[fl.FunctionStep(total)], workflow_id='audit7-series')
"""


@pytest.mark.slow
def test_a_step_edited_to_return_a_frame_instead_of_a_series_is_not_served_the_series_result(
        cells: Cells, tmp_path) -> None:
    # Before: the frame's fingerprint was the Series' one, so 'total' was served its cached scalar (3)
    # instead of running on the frame (a Series of one value) — with no word.
    with fl.Session(tmp_path / "h.duckdb", workers=1, cache=True) as session:
        cells.run(PIPELINE.format(pick="frame['a']"))
        assert session.submit(cells["wf"], {"n": 3}).wait(timeout=60) == 3
        cells.run(PIPELINE.format(pick="frame[['a']]"))
        run = session.submit(cells["wf"], {"n": 3})
        got = run.wait(timeout=60)
        assert isinstance(got, pd.Series) and got.to_dict() == {"a": 3}
        assert not run.info().steps["total"].cached
