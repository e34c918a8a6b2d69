"""Run paths are printed relative to the working folder when inside it, else absolute, by every command."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nnctl.runs.display import display_path
from tests.conftest import invoke, run_path


def test_inside_the_working_folder_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "a") == "runs/a"
    assert display_path("runs/a/../b") == "runs/b"
    assert display_path(tmp_path) == "."
    assert display_path(tmp_path.parent / "elsewhere") == str(tmp_path.parent / "elsewhere")


def test_a_resolved_link_inside_a_linked_working_folder_is_relative(tmp_path, monkeypatch):
    (tmp_path / "real" / "runs").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path / "link")
    assert display_path((tmp_path / "real" / "runs").resolve()) == "runs"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_npz, tiny_config_text):
    folder = tmp_path_factory.mktemp("display")
    make_npz(folder / "tiny.npz")
    (folder / "tiny.yaml").write_text(tiny_config_text, encoding="utf-8")
    return SimpleNamespace(folder=folder)


def test_every_command_prints_the_run_path_the_same_way(trained, monkeypatch):
    import json

    monkeypatch.chdir(trained.folder)
    result = invoke("train", "tiny.yaml", "--quiet", "--runs-dir", trained.folder / "runs")  # an absolute --runs-dir
    assert result.exit_code == 0, result.output
    run = run_path(result.stdout)
    assert not run.is_absolute() and str(run).startswith("runs/tiny/")
    listed = json.loads(invoke("runs", "--json").stdout)
    assert [row["path"] for row in listed] == [str(run)]
    compared = json.loads(invoke("compare", "runs/tiny/latest", run, "--json").stdout)
    assert compared["paths"] == [str(run), str(run)]
