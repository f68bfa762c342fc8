"""Commands given the wrong folder or file: one line naming the cause, rc 2, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES_AFDB
from rayfold.cli import main
from rayfold.io import storage as io
from rayfold.model import schema


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", ["stats", "report"])
def test_a_typo_is_not_a_run_folder(tmp_path, capsys, command):
    typo = tmp_path / "typo"
    assert main([command, str(typo)]) == 2
    assert "not_a_run_folder" in _error_line(capsys)
    assert not typo.exists()


def test_report_refuses_an_input_folder_and_writes_nothing_into_it(tmp_path, capsys):
    inputs = tmp_path / "inputs"
    shutil.copytree(EXAMPLES_AFDB, inputs)
    before = sorted(p.relative_to(inputs) for p in inputs.rglob("*"))
    assert main(["report", str(inputs)]) == 2
    assert "not_a_run_folder" in _error_line(capsys)
    assert sorted(p.relative_to(inputs) for p in inputs.rglob("*")) == before


def test_sample_from_a_run_without_clusters_is_one_line(tmp_path, capsys):
    out = str(tmp_path / "empty_run")
    for name, table in (("members", schema.MEMBERS), ("clusters", schema.CLUSTERS)):
        io.write_parquet(table.empty_table(), io.join_uri(out, name, "part-0.parquet"))
    assert main(["sample", out, "--n", "10"]) == 2
    assert "cannot_sample" in _error_line(capsys)


@pytest.mark.parametrize("command", [["run", str(EXAMPLES_AFDB), "--engine", "builtin"],
                                     ["fragment", str(EXAMPLES_AFDB)],
                                     ["cluster", str(EXAMPLES_AFDB), "--engine", "builtin"]])
def test_out_that_is_a_file_is_refused_before_ray_starts(tmp_path, capsys, command):
    import ray

    target = tmp_path / "results.parquet"
    target.write_bytes(b"not a folder")
    ray_before = ray.is_initialized()
    assert main([*command, "--out", str(target), "--no-progress"]) == 2
    assert "out_is_a_file" in _error_line(capsys)
    assert target.read_bytes() == b"not a folder"
    assert ray.is_initialized() == ray_before  # refused before any Ray was started


def test_ray_that_cannot_start_gives_one_line(capsys, monkeypatch):
    """Ray's own start-up failures (seen: 'node timed out during startup' on a busy machine) end in
    one line after a second try; here a start-up that always fails stands in for it."""
    import ray

    from rayfold.model.errors import InputError
    from rayfold.runtime.session import start_local_ray

    calls = []

    def failing_init(*args, **kwargs):
        calls.append(kwargs)
        raise RuntimeError("The current node timed out during startup. This could happen because ...\nmore")

    monkeypatch.setattr(ray, "init", failing_init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # nothing was started; keep a session's Ray alive
    with pytest.raises(InputError, match="ray_start_failed: could not start a local Ray after 2 tries: "
                                         "The current node timed out during startup"):
        start_local_ray()
    assert len(calls) == 2


def test_existing_run_folder_is_accepted(tmp_path):
    from rayfold.io.runfolder import RunFolder

    out = Path(tmp_path / "run")
    for name, table in (("members", schema.MEMBERS), ("clusters", schema.CLUSTERS)):
        io.write_parquet(table.empty_table(), io.join_uri(str(out), name, "part-0.parquet"))
    RunFolder(str(out)).require_results()


def test_sync_belongs_to_run_only():
    from rayfold.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "in", "--out", "o", "--sync"]).sync is True
    assert parser.parse_args(["run", "in", "--out", "o"]).sync is False
    with pytest.raises(SystemExit):  # fragmenting has nothing to withdraw from
        parser.parse_args(["fragment", "in", "--out", "o", "--sync"])


@pytest.mark.parametrize("command", [["fragment", str(EXAMPLES_AFDB), "--preset", "seed", "--set"],
                                     ["run", str(EXAMPLES_AFDB), "--fragment-preset", "seed", "--fragment-set"]])
def test_a_preset_takes_overrides_that_are_checked_before_any_work(tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([*command, "max_rg_ratio=none", "split_max_rg_ratio=often", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "bad_setting" in line and "split_max_rg_ratio" in line
    assert not out.exists()


def test_an_unknown_preset_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fragment", str(EXAMPLES_AFDB), "--preset", "chainsaw", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'chainsaw'" in capsys.readouterr().err
