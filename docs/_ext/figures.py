"""MkDocs hook: every figure in a page is a link to its full-size image.

Multi-panel benchmark figures are scaled down to the content column; a click (or a tap on a
phone) opens the PNG at full size in the browser, which can zoom it. A Markdown image on a
paragraph of its own renders as `<p><img ...></p>`; this wraps such images in
`<a class="ll-figure" href="<src>">`. Wired in `mkdocs.yml` (`hooks:`); not copied to the site.
"""

from __future__ import annotations

import re
from typing import Any

# An image alone in its paragraph (what `![alt](path)` on its own line renders to).
_FIGURE = re.compile(r"<p>\s*(<img\b[^>]*?\bsrc=\"(?P<src>[^\"]+)\"[^>]*>)\s*</p>")


def wrap_figures(html: str) -> str:
    """Wrap every stand-alone `<img>` in a link to its own `src`."""
    return _FIGURE.sub(
        lambda m: (
            f'<p><a class="ll-figure" href="{m["src"]}" title="open the full-size image">'
            f"{m[1]}</a></p>"
        ),
        html,
    )


def on_page_content(html: str, **kwargs: Any) -> str:
    """MkDocs event: the page's HTML body, after Markdown."""
    return wrap_figures(html)
