"""Text from files and users, made safe to show in Streamlit's markdown: shown as typed, never as
markup. An image link in a run's summary or events must not make the browser fetch another host, and
a folder named `*x*` is not italic."""
from __future__ import annotations

import re

# CommonMark's backslash-escapable punctuation, plus `$` (Streamlit's LaTeX) and `:` (its emoji and
# colour directives such as :red[...])
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def literal(text) -> str:
    """`text` as markdown that renders to exactly `text` on one line (newlines become spaces)."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
