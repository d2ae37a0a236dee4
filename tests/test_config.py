"""Config loading: defaults, validation errors that name the key, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest.config import category_key, config_from_dict, load_config
from digest.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_anywhere_uses_built_in_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    config = load_config()
    assert config.edition.window_days == 7
    assert config.sender.backend == "outbox"
    assert config.root == tmp_path
    assert config.posts_path == tmp_path / "posts"


def test_env_var_names_the_config(tmp_path, monkeypatch):
    path = write(tmp_path, '[site]\nname = "From env"\n')
    monkeypatch.setenv("DIGEST_CONFIG", str(path))
    assert load_config().site.name == "From env"


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    sub = tmp_path / "site"
    sub.mkdir()
    path = write(sub, '[posts]\nfolder = "content"\n[database]\nurl = "sqlite:///data/d.db"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_DATABASE_URL", raising=False)
    config = load_config(path)
    assert config.posts_path == sub / "content"
    assert config.database_url == f"sqlite:///{sub}/data/d.db"


def test_database_url_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_DATABASE_URL", "postgresql+psycopg://u:p@127.0.0.1/x")
    assert config_from_dict({}, root=tmp_path).database_url == "postgresql+psycopg://u:p@127.0.0.1/x"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[site]\nnmae = 'x'\n", "unknown key site.nmae"),
        ("[sitee]\n", "unknown section [sitee]"),
        ("[edition]\nwindow_days = 'seven'\n", "edition.window_days has the wrong type"),
        ("[edition]\nwindow_days = 0\n", "edition.window_days must be greater than 0"),
        ("[edition]\nnothing_new = 'always'\n", "edition.nothing_new is 'always'; use one of: skip, note"),
        ("[site]\ntimezone = 'Mars/Olympus'\n", "site.timezone is 'Mars/Olympus'"),
        ("[site]\nbase_url = 'example.com'\n", "site.base_url must start with https://"),
        ("[sender]\nbackend = 'pigeon'\n", "sender.backend is 'pigeon'"),
        ("[sender]\nfrom_email = 'nobody'\n", "sender.from_email 'nobody' is not an email address"),
        ("[[categories]]\nname = 'US'\n[[categories]]\nname = 'us'\n", "category 'us' is listed twice"),
        ("[[categories]]\ntitle = 'US'\n", "unknown key categories[1].title"),
        ("[site\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key_and_the_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_categories_as_names_or_tables(tmp_path):
    config = config_from_dict(
        {"categories": ["US", {"name": "Europe", "description": "EU and UK"}]}, root=tmp_path
    )
    assert config.category_order() == ["US", "Europe"]
    assert config.find_category(" europe ").description == "EU and UK"
    assert config.find_category("Asia") is None


def test_category_key_ignores_case_and_spacing():
    assert category_key("  Open  Source ") == category_key("open source") == "open source"


def test_the_shipped_config_toml_loads_and_documents_every_key():
    """config.toml at the top of the repo must stay valid and mention every known key."""
    import dataclasses

    from digest import config as cfg

    root = Path(__file__).resolve().parent.parent
    config = load_config(root / "config.toml")
    assert len(config.categories) >= 4
    text = (root / "config.toml").read_text(encoding="utf-8")
    for section_name, cls in cfg._SECTIONS.items():
        assert f"[{section_name}]" in text
        for field in dataclasses.fields(cls):
            assert f"{field.name} =" in text, f"config.toml does not document {section_name}.{field.name}"
