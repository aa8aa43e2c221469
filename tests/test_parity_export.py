"""Parity with Fuseline's "Workflow export" page: ``wf.export(path)`` writes
YAML through ``YamlExporter``; a loader rebuilds the equal schema."""

from __future__ import annotations

import pytest
import yaml

from fuseline_nb import Depends, Exporter, FunctionStep, Step, Workflow, YamlExporter
from fuseline_nb.broker import MemoryBroker
from fuseline_nb.errors import WorkflowDefinitionError
from fuseline_nb.workflow.exporters import load_yaml, schema_from_yaml
from fuseline_nb.workflow.policies import RetryPolicy, StepTimeoutPolicy


def _workflow():
    class Review(Step):
        def run_step(self, score: int) -> str:
            return "approve" if score > 5 else "reject"

    review = Review(policies=[RetryPolicy(max_retries=3, wait=1), StepTimeoutPolicy(2.5)])
    publish = FunctionStep(lambda: "published", name="publish")
    archive = FunctionStep(lambda: "archived", name="archive")
    (review - "approve") >> publish
    (review - "reject") >> archive

    def notify(v: str = Depends(publish, archive)) -> str:
        return v

    return Workflow(outputs=[FunctionStep(notify)], workflow_id="review", version="3")


def test_export_writes_yaml_with_step_names_and_actions(tmp_path):
    path = tmp_path / "workflow.yaml"
    wf = _workflow()
    wf.export(str(path))
    data = yaml.safe_load(path.read_text())
    assert data["workflow_id"] == "review" and data["version"] == "3"
    assert list(data["steps"]) == wf.step_names  # keyed by name, in topological order
    actions = {(e["source"], e["target"]): e["action"] for e in data["edges"]}
    assert actions[("Review", "publish")] == "approve"
    assert actions[("Review", "archive")] == "reject"
    assert data["steps"]["Review"]["policies"][0] == {"name": "retry", "config": {"max_retries": 3, "wait": 1}}
    assert path.read_text() == wf.to_schema().to_yaml()
    assert data["outputs"] == ["notify"]


def test_round_trip_gives_the_equal_schema(tmp_path):
    path = tmp_path / "wf.yaml"
    wf = _workflow()
    YamlExporter().export(wf, path)
    loaded = load_yaml(path)
    assert loaded == wf.to_schema()
    assert YamlExporter.load(path) == loaded
    # The loaded schema is what a broker needs: same id, same structure.
    broker = MemoryBroker()
    broker.register_worker([loaded])
    broker.register_worker([wf.to_schema()])  # no SchemaMismatchError


def test_exporting_a_schema_directly_and_a_custom_exporter(tmp_path):
    wf = _workflow()
    p = tmp_path / "schema.yaml"
    YamlExporter().export(wf.to_schema(), p)
    assert load_yaml(p) == wf.to_schema()

    class Names(Exporter):
        def export(self, workflow, path):
            with open(path, "w") as fh:
                fh.write(",".join(workflow.step_names))

    q = tmp_path / "names.txt"
    wf.export(q, exporter=Names())
    assert q.read_text() == ",".join(wf.step_names)


def test_loader_names_the_file_when_it_is_not_a_schema(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(WorkflowDefinitionError, match=r"bad\.yaml is not a workflow schema"):
        load_yaml(bad)
    with pytest.raises(WorkflowDefinitionError, match="not valid YAML"):
        schema_from_yaml("a: [unclosed", source="x.yaml")
    with pytest.raises(TypeError, match="can only export"):
        YamlExporter().export(object(), tmp_path / "x.yaml")
