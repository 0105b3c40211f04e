"""Regenerate the settings documentation from the registry: ``python -m archiver.docs``."""

from __future__ import annotations

import re
from pathlib import Path

from archiver.settings import example_config, settings_markdown

ROOT = Path(__file__).resolve().parent.parent
README_SECTION = re.compile(r"(<!-- settings:start[^>]*-->\n).*?(\n<!-- settings:end -->)", re.S)


def readme_with_settings(readme: str) -> str:
    """The README text with its settings table replaced by the registry's."""
    return README_SECTION.sub(lambda m: m.group(1) + settings_markdown() + m.group(2), readme)


def main() -> None:
    """Write config/archiver.example.toml and the README's settings table."""
    (ROOT / "config" / "archiver.example.toml").write_text(example_config(), encoding="utf-8")
    readme = ROOT / "README.md"
    readme.write_text(readme_with_settings(readme.read_text(encoding="utf-8")),
                      encoding="utf-8")


if __name__ == "__main__":
    main()
