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


def test_cost_cli_model_options_default_to_the_named_model():
    """test_bhvit is costed at its own 64 px and 10 classes, not bhvit_tiny's 224 px and 37 classes."""
    own = CliRunner().invoke(main, ["--model", "test_bhvit", "--width", "1", "--json"])
    explicit = CliRunner().invoke(
        main, ["--model", "test_bhvit", "--width", "1", "--img-size", "64", "--num-classes", "10", "--json"]
    )
    large = CliRunner().invoke(
        main, ["--model", "test_bhvit", "--width", "1", "--img-size", "224", "--num-classes", "37", "--json"]
    )
    assert own.exit_code == explicit.exit_code == large.exit_code == 0, own.output
    assert json.loads(own.output) == json.loads(explicit.output) != json.loads(large.output)


def test_cost_cli_study_rows_without_search_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["--study-rows", str(tmp_path / "rows.toml")])
    assert result.exit_code == 2
    assert "--study-rows writes the Pareto front of a search: add --search" in result.output
    assert not (tmp_path / "rows.toml").exists()
