"""The console's CSP (script-src 'self', style-src 'self', no 'unsafe-inline') holds only if no
template carries inline script, event handlers or style attributes, and nothing loads from
elsewhere (no CDN)."""

import re
from pathlib import Path

import pytest

CONSOLE = Path(__file__).resolve().parents[2] / "console"
TEMPLATES = sorted((CONSOLE / "templates").glob("*.html"))
FORBIDDEN = re.compile(r"<script|\son[a-z]+\s*=|\sstyle\s*=|javascript:|<style|https?://",
                       re.IGNORECASE)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_inline_script_style_or_external_asset(template):
    found = FORBIDDEN.findall(template.read_text(encoding="utf-8"))
    assert not found, f"{template.name}: {found}"


def test_every_form_that_posts_carries_the_csrf_token():
    for template in TEMPLATES:
        text = template.read_text(encoding="utf-8")
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", text, re.S | re.I):
            assert 'name="csrf_token"' in form, f"{template.name}: a POST form without token"


def test_static_assets_are_vendored():
    assets = {p.name for p in (CONSOLE / "static").iterdir()}
    assert assets == {"console.css"}
    css = (CONSOLE / "static" / "console.css").read_text(encoding="utf-8")
    assert "@import" not in css and "url(" not in css
