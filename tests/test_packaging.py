"""A plain (non-editable) install finds the shipped prompts/ and constitutions/."""

import subprocess
import sys
import zipfile

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    [path] = out.glob("synth-*.whl")
    return path


def test_wheel_carries_prompts_and_constitutions(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("prompts", "constitutions"):
        expected = {f"synth/_data/{shipped}/{p.relative_to(REPO / shipped)}" for p in (REPO / shipped).rglob("*") if p.is_file()}
        assert expected and expected <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "synth = synth.cli:main" in entry_points


def test_installed_wheel_finds_its_data(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import synth, synth.resources as r; print(synth.__file__); "
            "print(r.data_dir('constitutions') / 'harmless.yaml'); print(r.data_dir('prompts'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0].startswith(str(target))
    assert out[1].startswith(str(target)) and (tmp_path / out[1]).is_file()
    assert out[2].startswith(str(target))
