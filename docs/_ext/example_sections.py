"""Griffe extension for the API reference: a Google `Example:` section renders as code.

Griffe's Google parser knows the section `Examples:` (plural), which turns `>>>` lines into
highlighted `pycon` blocks; the singular `Example:` -- the house style, and what napoleon
accepts -- is parsed as an admonition whose `>>>` lines become nested Markdown blockquotes.
This extension renames the section header before the docstring is parsed. Wired in
`mkdocs.yml` (`plugins.mkdocstrings.handlers.python.options.extensions`); not part of the
package and not copied to the site (`exclude_docs`).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

# A section header is a line of its own, `Example:` at the docstring's indentation.
_EXAMPLE_HEADER = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rewrite `Example:` section headers to `Examples:` on every loaded object."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE_HEADER.sub(r"\g<indent>Examples:", obj.docstring.value)
