"""Drawing workflows: checked on the DOT source; rendering tests need Graphviz's dot."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest

import fuseline_nb as fl
from fuseline_nb import Depends, FunctionStep, RunInfo, Status, StepInfo, Workflow
from fuseline_nb.examples import tour
from fuseline_nb.views.display import INSTALL_HINT, render_svg, workflow_mimebundle
from fuseline_nb.views.draw import draw, layout_plan
from fuseline_nb.views.palette import FILL
from fuseline_nb.workflow.schema import EdgeSchema, StepSchema, WorkflowSchema

_NODE = re.compile(r'^\t(\S+) \[label=("(?:[^"\\]|\\.)*"|<<.*>>|\S+)(.*)\]$', re.M)


def nodes(source: str) -> dict[str, tuple[str, str]]:
    """Label → (DOT id, attributes) of every node in a DOT source."""
    return {label.strip('"'): (node, attrs) for node, label, attrs in _NODE.findall(source)}


def edge_lines(source: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if re.match(r"^\t\S+ -> ", line)]


def step(name: str, value: object = 1) -> FunctionStep:
    return FunctionStep(lambda: value, name=name)


def review_workflow() -> Workflow:
    review, publish, archive, notify = step("review"), step("publish"), step("archive"), step("notify")
    _ = (review - "approve") >> publish
    _ = (review - "reject") >> archive
    _ = (review - "escalate") >> archive
    _ = publish >> notify
    return Workflow(outputs=[notify])


class TestLabels:
    def test_nodes_are_labelled_by_step_name(self):
        src = fl.draw(review_workflow()).source
        assert set(nodes(src)) == {"review", "publish", "archive", "notify"}

    def test_action_edges_carry_their_action_and_default_edges_none(self):
        src = fl.draw(review_workflow()).source
        n = {k: v[0] for k, v in nodes(src).items()}
        lines = edge_lines(src)
        assert f"{n['review']} -> {n['publish']} [label=approve]" in lines
        assert f"{n['publish']} -> {n['notify']}" in lines

    def test_several_actions_on_one_edge_are_listed(self):
        src = fl.draw(review_workflow()).source
        n = {k: v[0] for k, v in nodes(src).items()}
        assert f'{n["review"]} -> {n["archive"]} [label="reject | escalate"]' in edge_lines(src)

    def test_outputs_are_drawn_with_a_double_border(self):
        src = fl.draw(review_workflow()).source
        assert "peripheries=2" in nodes(src)["notify"][1]
        assert "peripheries" not in nodes(src)["review"][1]

    def test_awkward_names_are_labels_not_dot_syntax(self):
        a, b = step('load: "raw" data'), step("x -> y")
        _ = a >> b
        src = fl.draw(Workflow(outputs=[b])).source
        assert 'label="load: \\"raw\\" data"' in src
        assert len(edge_lines(src)) == 1

    def test_schema_draws_the_same_as_its_workflow(self):
        wf = review_workflow()
        assert fl.draw(wf.to_schema()).source == fl.draw(wf).source


class TestOrGroups:
    def test_depends_on_several_steps_meets_in_an_any_of_node(self):
        src = fl.draw(tour).source
        n = {k: v[0] for k, v in nodes(src).items()}
        junction = n["any of"]
        lines = edge_lines(src)
        assert f"{n['mirror_a']} -> {junction} [style=dashed]" in lines
        assert f"{n['mirror_b']} -> {junction} [style=dashed]" in lines
        assert f"{junction} -> {n['Report']} [style=dashed]" in lines
        # the AND parents go straight to the join
        assert f"{n['Total']} -> {n['Report']}" in lines

    def test_pipe_operator_group_is_drawn_the_same_way(self):
        a, b, c = step("a"), step("b"), step("c")
        _ = (a | b) >> c
        src = fl.draw(Workflow(outputs=[c])).source
        n = {k: v[0] for k, v in nodes(src).items()}
        assert f"{n['a']} -> {n['any of']} [style=dashed]" in edge_lines(src)
        assert sum(1 for line in edge_lines(src) if line.startswith(f"{n['any of']} ->")) == 1

    def test_two_groups_get_two_junctions(self):
        a, b, c, d = step("a"), step("b"), step("c"), step("d")

        def join(x=Depends(a, b), y=Depends(c, d)) -> int:
            return 1

        src = fl.draw(Workflow(outputs=[FunctionStep(join)])).source
        assert src.count('label="any of"') == 2


class TestColours:
    def test_states_fill_nodes(self):
        states = {"review": Status.SUCCEEDED, "publish": "FAILED", "archive": "skipped", "notify": "CANCELLED"}
        found = nodes(fl.draw(review_workflow(), states).source)
        for name, state in (("review", "SUCCEEDED"), ("publish", "FAILED"), ("archive", "SKIPPED"),
                            ("notify", "CANCELLED")):
            assert f'fillcolor="{FILL[state]}"' in found[name][1], name

    def test_run_info_colours_and_queued_differs_from_pending(self):
        info = RunInfo("r", "w", Status.RUNNING, {
            "review": StepInfo(Status.RUNNING), "publish": StepInfo(Status.PENDING, queued_at=1.0),
        })
        found = nodes(fl.draw(review_workflow(), info).source)
        assert f'fillcolor="{FILL["RUNNING"]}"' in found["review"][1]
        assert f'fillcolor="{FILL["QUEUED"]}"' in found["publish"][1]
        assert f'fillcolor="{FILL["PENDING"]}"' in found["notify"][1]  # missing means pending

    def test_legend_counts_every_state_present(self):
        src = fl.draw(review_workflow(), {"review": "SUCCEEDED", "publish": "FAILED"}).source
        assert f'<TD BGCOLOR="{FILL["SUCCEEDED"]}">succeeded 1</TD>' in src
        assert f'<TD BGCOLOR="{FILL["PENDING"]}">pending 2</TD>' in src
        assert "cancelled" not in src

    def test_no_states_no_legend_and_legend_can_be_turned_off(self):
        assert "TABLE" not in fl.draw(review_workflow()).source
        assert "TABLE" not in fl.draw(review_workflow(), {"review": "FAILED"}, legend=False).source

    def test_unknown_state_is_refused_with_the_choices(self):
        with pytest.raises(ValueError, match=r"unknown state: 'DONE' \(must be one of \['PENDING'"):
            fl.draw(review_workflow(), {"review": "DONE"})


class TestBigGraphs:
    @staticmethod
    def chain(n: int) -> WorkflowSchema:
        steps = tuple(StepSchema(f"s{i}") for i in range(n))
        edges = tuple(EdgeSchema(f"s{i}", f"s{i + 1}") for i in range(n - 1))
        return WorkflowSchema("chain", steps=steps, edges=edges, outputs=(f"s{n - 1}",))

    def test_beyond_max_nodes_the_rest_folds_into_one_node_and_says_so(self):
        src = fl.draw(self.chain(400)).source
        found = nodes(src)
        assert "s149" in found and "s150" not in found
        assert "… 250 more steps" in found
        assert "showing 150 of 400 steps (draw(..., max_nodes=400) shows all)" in src
        assert f"{found['s149'][0]} -> {found['… 250 more steps'][0]} [style=dashed]" in edge_lines(src)

    def test_folded_node_is_coloured_by_what_is_going_on_inside(self):
        states = {f"s{i}": "SUCCEEDED" for i in range(400)} | {"s399": "RUNNING"}
        found = nodes(fl.draw(self.chain(400), states).source)
        assert f'fillcolor="{FILL["RUNNING"]}"' in found["… 250 more steps"][1]

    def test_max_nodes_is_adjustable_and_validated(self):
        assert "more steps" not in fl.draw(self.chain(400), max_nodes=400).source
        with pytest.raises(ValueError, match="max_nodes must be >= 1, not 0"):
            layout_plan(self.chain(3), max_nodes=0)


class TestMisuse:
    def test_rankdir_is_validated(self):
        with pytest.raises(ValueError, match=r"unknown rankdir: 'down' \(must be one of"):
            fl.draw(tour, rankdir="down")
        assert "rankdir=TB" in fl.draw(tour, rankdir="TB").source

    def test_not_a_workflow(self):
        with pytest.raises(TypeError, match="draw\\(\\) takes a Workflow or a WorkflowSchema, not 42"):
            fl.draw(42)


@pytest.mark.needs_dot
class TestRendering:
    def test_workflow_displays_as_svg(self):
        bundle = tour._repr_mimebundle_()
        assert set(bundle) == {"image/svg+xml", "text/plain"}
        svg = bundle["image/svg+xml"]
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        for name in tour.step_names:
            assert f">{name}</text>" in svg
        assert ">any of</text>" in svg and ">reject</text>" in svg

    def test_awkward_names_render(self):
        a, b = step("a:b"), step('c "d"')
        _ = a >> b
        svg, problem = render_svg(fl.draw(Workflow(outputs=[b])))
        assert problem is None and ">a:b</text>" in svg and "c &quot;d&quot;" in svg

    def test_without_dot_the_dot_text_and_install_hint_not_a_traceback(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PATH", str(tmp_path))  # a real PATH with no dot on it
        bundle = workflow_mimebundle(tour)
        assert set(bundle) == {"text/plain"}
        text = bundle["text/plain"]
        assert INSTALL_HINT in text and "apt-get install graphviz" in text
        assert "digraph tour {" in text and "Traceback" not in text
        assert tour._repr_mimebundle_() == bundle


def test_importing_views_stays_light():
    code = ("import sys, fuseline_nb, fuseline_nb.views; "
            "print(sorted(m for m in ('graphviz', 'ipywidgets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _chain(n: int) -> Workflow:
    steps = [FunctionStep(lambda: 1, name=f"step_{i}") for i in range(n)]
    for a, b in itertools.pairwise(steps):
        _ = a >> b
    return Workflow(outputs=[steps[-1]], workflow_id=f"chain{n}")


@pytest.mark.needs_dot
def test_a_200_step_chain_folds_into_rows_that_fit_a_cell() -> None:
    svg, _ = render_svg(draw(_chain(200), max_nodes=200))
    width, height = (float(x) for x in re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg).groups())
    assert width < 1200, width  # was 16,761 px in one line
    assert height > width  # rows of ten, one below the other
    unwrapped, _ = render_svg(draw(_chain(200), max_nodes=200, wrap=1000))
    assert float(re.search(r'<svg width="([\d.]+)pt"', unwrapped).group(1)) > 10_000


def test_the_legend_is_the_graph_label_not_a_node() -> None:
    dot = draw(_chain(3), {"step_0": "SUCCEEDED"})
    assert "cluster_legend" not in dot.source and "legend" not in dot.source.split("label=<")[0]
    assert 'labelloc=b' in dot.source and "succeeded 1" in dot.source and "pending 2" in dot.source


def test_show_inputs_draws_each_run_input_once_with_an_edge_to_its_readers() -> None:
    def load(path: str) -> str:
        return path

    def scale(text: str = Depends(load), factor: int = 2) -> int:
        return len(text) * factor

    wf = Workflow(outputs=[FunctionStep(scale)], workflow_id="inputs")
    plain = draw(wf).source
    shown = draw(wf, show_inputs=True).source
    assert "cds" not in plain
    assert shown.count("shape=cds") >= 1 and "label=path" in shown
    assert re.search(r"nin0 -> n\d+ \[arrowsize=0.4 style=dotted\]", shown)
