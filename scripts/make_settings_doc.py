"""Regenerate docs/settings.md from the settings' declarations in bar_core/config.py.

    python scripts/make_settings_doc.py           # write it
    python scripts/make_settings_doc.py --check   # exit 1 if the committed file is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bar_core.config import settings_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write docs/settings.md from bar_core/config.py's declarations.")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if docs/settings.md differs")
    p.add_argument("--out", type=Path, default=DOC, help=f"file to write (default: {DOC})")
    args = p.parse_args(argv)
    text = settings_markdown()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'out of date; run scripts/make_settings_doc.py'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
