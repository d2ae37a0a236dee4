"""The package installs as users install it: a wheel, in a fresh virtual environment.

Builds the wheel from this checkout (``pip wheel``, no build isolation, so no index is needed:
the [test] extra installs setuptools), installs it into a new venv with no access to the
checkout, and runs ``digest preview`` on the sample posts from a folder with no config, then
with a site's own templates folder that overrides one template. The new venv borrows the
test environment's third-party packages through a .pth line (so nothing is downloaded); digest
itself comes only from the wheel, which the test asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    # A copy of what the build reads, so it cannot leave build/ or *.egg-info in the checkout.
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "digest", "templates"):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.exists():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        cwd=tmp,
    )
    (wheel,) = dist.glob("digest-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "digest/templates/edition.mjml.j2" in names and "digest/templates/edition.txt.j2" in names
    assert not any(n.startswith("templates/") for n in names), "templates only inside the package"

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    purelib = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # Third-party packages from the test environment, after the venv's own (digest: the wheel's).
    (purelib / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=tmp,
    )
    return venv / "bin"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PYTHON"))}
    env["DIGEST_SECRET"] = "wheel-test-secret-0123456789-abcdef"
    env["HOME"] = str(tmp)
    return env


def test_the_wheel_renders_the_sample_posts(installed: Path, tmp_path: Path) -> None:
    where = _run(
        [
            str(installed / "python"),
            "-c",
            "import digest.config as c; print(c.__file__); print(c.BUILTIN_TEMPLATES)",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
    ).stdout.split()
    assert str(installed.parent) in where[0], f"digest imported from {where[0]}, not the wheel"
    assert where[1].startswith(str(installed.parent)) and where[1].endswith("digest/templates")

    args = ["preview", "--posts", str(ROOT / "posts"), "--as-of", "2026-01-09", "--categories", "US,Europe"]
    _run([str(installed / "digest"), *args, "--out", "build"], cwd=tmp_path, env=_env(tmp_path))
    html = (tmp_path / "build" / "digest.html").read_text(encoding="utf-8")
    text = (tmp_path / "build" / "digest.txt").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "</html>" in html
    assert "Europe" in html and "US" in text.upper()


def test_a_sites_own_templates_still_override_the_packaged_ones(installed: Path, tmp_path: Path) -> None:
    own = tmp_path / "mytemplates"
    own.mkdir()
    (own / "edition.txt.j2").write_text("Our own text: {{ edition.post_count }} posts.\n", encoding="utf-8")
    (tmp_path / "config.toml").write_text('[edition]\ntemplates = "mytemplates"\n', encoding="utf-8")
    args = ["preview", "--posts", str(ROOT / "posts"), "--as-of", "2026-01-09", "--categories", "US,Europe"]
    _run([str(installed / "digest"), *args, "--out", "build"], cwd=tmp_path, env=_env(tmp_path))
    assert (tmp_path / "build" / "digest.txt").read_text(encoding="utf-8").startswith("Our own text: ")
    assert "<mj-" not in (tmp_path / "build" / "digest.html").read_text(encoding="utf-8")
