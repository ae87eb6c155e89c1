"""Every relative link of README.md and docs/ names a file inside the repository (a design
file kept elsewhere is a dead link for everyone else)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    dead = []
    for page in pages:
        for link in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto: ...
                continue
            target = (page.parent / link).resolve()
            if not target.exists() or not target.is_relative_to(ROOT):
                dead.append(f"{page.relative_to(ROOT)}: {link}")
    assert dead == []
