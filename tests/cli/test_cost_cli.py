import json

from bhvit.models.cli import main
from click.testing import CliRunner


def test_cost_cli_prints_thesis_sweep_by_default():
    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0, result.output
    for value in ("48.26", "2548.8", "1.55", "49.3", "6.11", "176.8", "13.68", "382.3", "binary+fpds"):
        assert value in result.output


def test_cost_cli_json_rows_have_documented_keys():
    result = CliRunner().invoke(main, ["--width", "1", "--width", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [round(r["memory_mib"], 2) for r in rows] == [1.55, 13.68]
    for key in ("memory_mib", "mops", "flops", "bops", "deployable_mib"):
        assert key in rows[0]


def test_cost_cli_per_layer_and_plot(tmp_path):
    png = tmp_path / "fig2.png"
    result = CliRunner().invoke(main, ["--precision", "fp32", "--per-layer", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "stages.2.blocks.0.attn.products" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cost_cli_rejects_bad_image_size_with_usage_error():
    result = CliRunner().invoke(main, ["--img-size", "100"])
    assert result.exit_code == 2
    assert "multiple of patch_size" in result.output


def test_cost_cli_search_marks_pareto_front_and_plots(tmp_path):
    png = tmp_path / "front.png"
    result = CliRunner().invoke(
        main, ["--search", "--budget", "10:300", "--width", "1", "--width", "2", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    assert "candidates fit" in result.output and " *" in result.output
    assert png.stat().st_size > 1000
