"""The editor's live preview: `digest preview --serve`.

``build`` turns (config, category set, as-of) into everything the page shows, capturing errors
instead of raising them, and writes the files and manifest; it has no web dependencies and is
shared with the plain `digest preview`. ``app`` is the small Starlette app on 127.0.0.1 that
shows a build, watches posts, templates and config.toml, and tells the page to reload.
"""

from __future__ import annotations
