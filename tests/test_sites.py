"""Jekyll and Hugo conventions: what a site owner moving their blog onto digest expects."""

from __future__ import annotations

import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from digest.config import config_from_dict
from digest.model import PostImage
from digest.permalink import post_url
from digest.posts import load_posts
from digest.sites import link_resolver, with_site_config

UTC = ZoneInfo("UTC")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def jekyll_site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    write(
        root / "_config.yml",
        "title: Ruby News\nurl: https://www.ruby.example\nbaseurl: /en\npermalink: pretty\n"
        "timezone: Europe/Berlin\n",
    )
    write(root / "blog/_posts/2026-01-05-hello.md", "---\ntitle: Hello\nauthor: Ann Lee\n---\nHi.\n")
    write(root / "news/_posts/2026-01-06-release.md", "---\ncategories: [Releases]\n---\nOut now.\n")
    write(root / "_drafts/2026-01-07-draft.md", "---\ntitle: Draft\n---\nNot yet.\n")
    write(root / "_site/blog/2026-01-05-hello.md", "---\ntitle: Built copy\n---\nCopy.\n")
    return root


def test_jekyll_categories_come_from_folders_and_underscore_folders_are_skipped(jekyll_site: Path) -> None:
    posts = {p.path: p for p in load_posts(jekyll_site, tz=UTC).posts}
    assert sorted(posts) == ["blog/_posts/2026-01-05-hello.md", "news/_posts/2026-01-06-release.md"]
    assert posts["blog/_posts/2026-01-05-hello.md"].categories == ("blog",)
    assert posts["news/_posts/2026-01-06-release.md"].categories == ("news", "Releases")
    assert posts["blog/_posts/2026-01-05-hello.md"].author == "Ann Lee"


def test_config_yml_fills_what_config_toml_leaves_unset_and_says_so_once(
    jekyll_site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="digest.sites")
    config = config_from_dict({}, root=jekyll_site)
    site = with_site_config(config, jekyll_site / "blog" / "_posts").site
    assert (site.base_url, site.name, site.permalink, site.timezone) == (
        "https://www.ruby.example/en",
        "Ruby News",
        "pretty",
        "Europe/Berlin",
    )
    assert "site.base_url from _config.yml: https://www.ruby.example/en" in caplog.text
    with_site_config(config, jekyll_site)
    assert caplog.text.count("site.base_url from _config.yml") == 1
    own = config_from_dict({"site": {"base_url": "https://mine.example"}}, root=jekyll_site)
    assert with_site_config(own, jekyll_site).site.base_url == "https://mine.example"


@pytest.fixture
def hugo_site(tmp_path: Path) -> Path:
    root = tmp_path / "hugo"
    write(
        root / "hugo.toml",
        'baseURL = "https://gohugo.example/"\ntitle = "Hugo News"\n[permalinks]\nnews = "/:year/:month/:filename/"\n',
    )
    news = root / "content" / "news"
    write(news / "_index.md", "---\ntitle: News\n---\nList page.\n")
    write(news / "0.60.0-relnotes/index.md", "---\ndate: 2026-01-05\nimages: [cover.png]\n---\nGoldmark.\n")
    (news / "0.60.0-relnotes" / "cover.png").write_bytes(b"\x89PNG")
    write(news / "bundle-b/index.md", "---\ndate: 2026-01-06\nauthors: [Ann, Bo]\n---\nB.\n")
    (news / "bundle-b" / "featured-hugo.jpg").write_bytes(b"\xff\xd8")
    write(
        news / "toml.md",
        '+++\ntitle = "Toml"\ndate = 2026-01-07\ndraft = true\nurl = "/custom/path/"\n+++\nBody.\n',
    )
    write(
        news / "slugged/index.md", "---\ndate: 2026-01-08\nslug: my-slug\ncover:\n  image: c.png\n---\nS.\n"
    )
    return root


def test_hugo_bundles_toml_drafts_urls_images_and_list_pages(hugo_site: Path) -> None:
    news = hugo_site / "content" / "news"
    posts = {p.path: p for p in load_posts(news, tz=UTC).posts}
    assert "_index.md" not in posts
    relnotes = posts["0.60.0-relnotes/index.md"]
    assert (relnotes.slug, relnotes.image) == ("0.60.0-relnotes", PostImage("./cover.png"))
    bundle = posts["bundle-b/index.md"]
    assert (bundle.image, bundle.author) == (PostImage("./featured-hugo.jpg"), "Ann, Bo")
    toml = posts["toml.md"]
    assert (toml.title, toml.published, toml.permalink) == ("Toml", False, "/custom/path/")
    assert (posts["slugged/index.md"].slug, posts["slugged/index.md"].image) == (
        "my-slug",
        PostImage("c.png"),
    )

    config = with_site_config(config_from_dict({}, root=hugo_site), news)
    assert (config.site.base_url, config.site.name) == ("https://gohugo.example", "Hugo News")
    url = post_url(relnotes, base_url=config.site.base_url, pattern=config.site.permalink, tz=UTC)
    assert url == "https://gohugo.example/2026/01/0.60.0-relnotes/"
    assert post_url(toml, base_url=config.site.base_url, pattern=config.site.permalink, tz=UTC) == (
        "https://gohugo.example/custom/path/"
    )


def test_hugo_without_permalinks_uses_the_section_path(tmp_path: Path) -> None:
    write(tmp_path / "config.toml", 'baseURL = "https://h.example/"\n')
    news = tmp_path / "content" / "news"
    write(news / "x/index.md", "---\ndate: 2026-01-05\n---\nX.\n")
    config = with_site_config(config_from_dict({}, root=tmp_path), news)
    post = load_posts(news, tz=UTC).posts[0]
    assert post_url(post, base_url=config.site.base_url, pattern=config.site.permalink, tz=UTC) == (
        "https://h.example/news/x/"
    )


def test_bad_toml_front_matter_skips_the_post_with_a_reason(tmp_path: Path) -> None:
    write(tmp_path / "2026-01-05-bad.md", "+++\ntitle = \n+++\nBody.\n")
    write(tmp_path / "2026-01-06-open.md", "+++\ntitle = 'x'\nBody.\n")
    result = load_posts(tmp_path, tz=UTC)
    reasons = {s.path: s.reason for s in result.skipped}
    assert "not valid TOML" in reasons["2026-01-05-bad.md"]
    assert "no closing +++" in reasons["2026-01-06-open.md"]


def test_link_resolver_finds_posts_by_file_stem_and_bundle_folder(jekyll_site: Path, hugo_site: Path) -> None:
    posts = [
        *load_posts(jekyll_site, tz=UTC).posts,
        *load_posts(hugo_site / "content" / "news", tz=UTC).posts,
    ]
    resolve = link_resolver(posts, lambda p: "https://x.example/" + p.slug)
    assert resolve("post_url", "2026-01-05-hello") == "https://x.example/hello"
    assert resolve("link", "_posts/2026-01-06-release.md") == "https://x.example/release"
    assert resolve("ref", "/news/0.60.0-relnotes") == "https://x.example/0.60.0-relnotes"
    assert resolve("link", "_docs/history.md") is None


def test_hugo_multilingual_blog_with_posts_folder_and_config_default(tmp_path: Path) -> None:
    write(
        tmp_path / "config" / "_default" / "hugo.yaml",
        "baseURL: https://k8s.example/\ntitle: Kubernetes\npermalinks:\n  blog: /:section/:year/:month/:day/:slug/\n",
    )
    posts_dir = tmp_path / "content" / "en" / "blog" / "_posts"
    write(
        posts_dir / "2022-05-03-release.md",
        "---\ntitle: Release\ndate: 2022-05-03\nslug: kubernetes-1-24\n---\n**Authors:** Ann Lee (Acme)\n\nWe shipped.\n",
    )
    config = with_site_config(config_from_dict({}, root=tmp_path), posts_dir)
    assert config.site.permalink == "/blog/:year/:month/:day/:title/"
    post = load_posts(posts_dir, tz=UTC).posts[0]
    assert post_url(post, base_url=config.site.base_url, pattern=config.site.permalink, tz=UTC) == (
        "https://k8s.example/blog/2022/05/03/kubernetes-1-24/"
    )
