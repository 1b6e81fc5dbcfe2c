"""The run report adds the stages' costs up and shows them in its page."""
import json

import tamer


def test_run_report_adds_up_stage_costs(tmp_path):
    recipe = {"name": "cost", "task": "digits", "stages": [{"train": {"epochs": 1}}, {"evaluate": {}}]}
    run = tamer.run(recipe, out=tmp_path / "run", progress=False)
    stages = [s.cost for s in run.stages]
    assert all(c and c["wall_s"] > 0 for c in stages)
    assert run.cost["wall_s"] == round(sum(c["wall_s"] for c in stages), 4)
    assert run.cost["peak_rss_bytes"] == max(c["peak_rss_bytes"] for c in stages)
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["cost"]["stages_measured"] == 2 and saved["stages"][0]["cost"]["flops_per_example"]["train_step"] > 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert "What it cost" in page and "FLOPs / example" in page
    assert "What it cost" in tamer.pipeline.run_page(tmp_path / "run", tmp_path / "again.html").read_text()
