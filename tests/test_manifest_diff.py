"""Manifest diff: posts added/removed/changed by content hash, subject and count changes, as data and text."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from digest.manifest_diff import ManifestError, diff_manifests, diff_text, load_manifest


def post(path: str, title: str, digest: str) -> dict[str, Any]:
    return {"path": path, "title": title, "url": f"https://x.test/{path}", "date": "", "content_hash": digest}


def manifest() -> dict[str, Any]:
    return {
        "edition": "2026-W02",
        "template_version": "abc",
        "categories": [],
        "window": {"start_utc": "2026-01-02T00:00:00+00:00", "end_utc": "2026-01-09T00:00:00+00:00"},
        "sections": [
            {"name": "US", "posts": [post("us/a.md", "A", "h-a"), post("both.md", "Both", "h-b")]},
            {"name": "Europe", "posts": [post("eu/c.md", "C", "h-c"), post("both.md", "Both", "h-b")]},
        ],
        "post_count": 4,
        "subject": "Brief: 4 new posts",
        "counts": {"(all)": 3, "US": 2, "Europe": 2},
    }


def test_identical_manifests_have_no_changes():
    diff = diff_manifests(manifest(), manifest())
    assert not diff.changed
    assert diff.posts == ()
    assert diff.unchanged == 3  # both.md counted once, though it is in two sections
    assert "No changes" in diff.summary()
    assert "No changes" in diff_text(diff)


def test_added_removed_changed_and_subject():
    old = manifest()
    new = copy.deepcopy(old)
    us = new["sections"][0]["posts"]
    us[0]["content_hash"] = "h-a2"  # edited body, same title
    us.append(post("us/new.md", "New one", "h-n"))
    new["sections"][1]["posts"] = [post("both.md", "Both", "h-b")]  # eu/c.md gone
    new["subject"] = "Brief: 4 new posts!"
    new["counts"] = {"(all)": 3, "US": 3, "Europe": 1}

    diff = diff_manifests(old, new)
    kinds = {p.path: p.change for p in diff.posts}
    assert kinds == {"us/a.md": "changed", "us/new.md": "added", "eu/c.md": "removed"}
    assert diff.unchanged == 1
    assert diff.subject is not None and diff.subject.new == "Brief: 4 new posts!"
    changed = diff.by_change("changed")[0]
    assert changed.old_hash == "h-a" and changed.new_hash == "h-a2"
    assert "content h-a → h-a2" in changed.detail
    sets = {c.name: (c.old, c.new) for c in diff.counts}
    assert sets["US"] == (2, 3) and sets["Europe"] == (2, 1) and sets["(all)"] == (3, 3)
    sections = {c.name: c.delta for c in diff.sections}
    assert sections == {"US": 1, "Europe": -1}
    assert diff.summary() == "1 added, 1 removed, 1 changed, 1 unchanged; subject changed"

    data = diff.to_dict()
    json.dumps(data)  # JSON-able
    assert data["changed"] is True
    assert [p["change"] for p in data["posts"]] == ["added", "removed", "changed"]

    text = diff_text(diff)
    assert "us/new.md" in text and "eu/c.md" in text and "Brief: 4 new posts!" in text
    assert "added" in text and "removed" in text


def test_title_change_and_section_move():
    old = manifest()
    new = copy.deepcopy(old)
    new["sections"][0]["posts"][0]["title"] = "A, retitled"
    moved = new["sections"][1]["posts"].pop(0)  # eu/c.md moves to US
    new["sections"][0]["posts"].append(moved)
    diff = diff_manifests(old, new)
    kinds = {p.path: p for p in diff.posts}
    assert kinds["us/a.md"].change == "changed"
    assert kinds["us/a.md"].old_title == "A"
    assert kinds["eu/c.md"].change == "moved"
    assert "section Europe → US" in kinds["eu/c.md"].detail


def test_template_and_window_changes_are_fields():
    old = manifest()
    new = copy.deepcopy(old)
    new["template_version"] = "def"
    new["edition"] = "2026-W03"
    new["window"]["end_utc"] = "2026-01-16T00:00:00+00:00"
    names = {f.name for f in diff_manifests(old, new).fields}
    assert names == {"template version", "edition", "window end"}


def test_load_manifest_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"bad.json: not valid JSON"):
        load_manifest(bad)
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}', encoding="utf-8")
    with pytest.raises(ManifestError, match="not a digest manifest"):
        load_manifest(other)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(manifest()), encoding="utf-8")
    assert load_manifest(good)["edition"] == "2026-W02"
