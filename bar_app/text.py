"""Text from files and users, made safe to show in Streamlit's markdown: shown as typed, never as
markup. An image link in a run's summary or events must not make the browser fetch another host, a
URL there is not made a link, and a folder named `*x*` is not italic."""
from __future__ import annotations

import re

# CommonMark's backslash-escapable punctuation, plus `$` (Streamlit's LaTeX) and `:` (its emoji and
# colour directives such as :red[...])
_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")
# GFM turns bare URLs and e-mail addresses into links after escapes are read: an invisible word
# joiner (U+2060) inside "://", after "www" and after "@" keeps them text
JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\\\.)|(?<=@)", re.IGNORECASE)


def literal(text) -> str:
    """`text` as markdown that renders to exactly `text` on one line (newlines become spaces), with
    invisible word joiners where a URL or an e-mail address would otherwise become a link."""
    escaped = _SPECIAL.sub(r"\\\1", re.sub(r"[\r\n]+", " ", str(text)))
    return _AUTOLINK.sub(JOINER, escaped)


def shown(text: str) -> str:
    """What a reader sees of `literal(text)` (for tests): the text without its word joiners."""
    return text.replace(JOINER, "")
