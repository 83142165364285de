"""Per-frame logs: CSV/JSONL by extension, readable while the run goes on, always a new file, numbered run folders."""

from __future__ import annotations

import csv
import json

import pytest
from bhvit.device.log import FrameLog, next_run_dir

RECORD = {"frame": 0, "label": "pug", "topk": [["pug", 0.9], ["beagle", 0.1]], "total_ms": 1.5}


def test_jsonl_log_is_flushed_after_every_record(tmp_path):
    log = FrameLog(tmp_path / "run.jsonl")
    log.write(RECORD)
    log.write(RECORD | {"frame": 1})
    lines = (tmp_path / "run.jsonl").read_text().splitlines()  # read before close
    assert [json.loads(line)["frame"] for line in lines] == [0, 1]
    log.close()


def test_csv_log_has_header_and_joined_topk(tmp_path):
    with FrameLog(tmp_path / "run.csv") as log:
        log.write(RECORD)
        rows = list(csv.DictReader((tmp_path / "run.csv").open()))
    assert rows == [{"frame": "0", "label": "pug", "topk": "pug:0.9;beagle:0.1", "total_ms": "1.5"}]
    assert log.records == 1


@pytest.mark.parametrize("name", ["run.csv", "run.jsonl"])
def test_existing_log_is_never_overwritten_or_appended_to(tmp_path, name):
    (tmp_path / name).write_text("earlier run\n")
    with pytest.raises(FileExistsError):
        FrameLog(tmp_path / name)
    assert (tmp_path / name).read_text() == "earlier run\n"


def test_log_with_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown extension, need one of \['.csv', '.jsonl', '.ndjson'\]"):
        FrameLog(tmp_path / "run.txt")


def test_run_dirs_are_numbered_and_never_reused(tmp_path):
    first, second = next_run_dir(tmp_path), next_run_dir(tmp_path)
    (tmp_path / "notes").mkdir()
    assert (first.name, second.name, next_run_dir(tmp_path).name) == ("001", "002", "003")
