"""Translations of the pages: gettext catalogs (Babel ``.po`` files), Chinese and English.

Each page keeps its own catalog file (``locale/<lang>/LC_MESSAGES/<page>.po``, message ids
in English); all files of a language are read and merged when the app starts, compiled in
memory, so nothing built is kept in the repository. ``make i18n`` extracts new message ids
from the templates into the catalogs.

A page's language: ``?lang=`` (remembered in a cookie), else the cookie, else the
browser's ``Accept-Language``, else Chinese — the hall's language.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"zh_CN": "中文", "en": "English"}
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}
DEFAULT = "zh_CN"
COOKIE = "onedoor_lang"


def _load(lang: str) -> Translations:
    merged: Translations | None = None
    for path in sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=lang)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        part = Translations(buffer)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    return merged or Translations()


@dataclass(frozen=True)
class Catalogs:
    """Every language's merged translations, read once."""

    by_lang: Mapping[str, Translations]

    @classmethod
    def load(cls) -> Catalogs:
        return cls({lang: _load(lang) for lang in LANGUAGES})

    def gettext(self, lang: str, message: str) -> str:
        return str(self.by_lang.get(lang, self.by_lang[DEFAULT]).gettext(message))

    def ngettext(self, lang: str, singular: str, plural: str, n: int) -> str:
        translations = self.by_lang.get(lang, self.by_lang[DEFAULT])
        return str(translations.ngettext(singular, plural, n))


def choose_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The page language for a request (see the module docstring)."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT


def install(env: Environment, catalogs: Catalogs) -> None:
    """Give the template environment gettext that follows each render's ``lang``."""

    @pass_context
    def gettext(context: Context, message: str) -> str:
        return catalogs.gettext(context.get("lang", DEFAULT), message)

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int) -> str:
        return catalogs.ngettext(context.get("lang", DEFAULT), singular, plural, n)

    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["merge"] = lambda first, second: {**first, **second}
    env.globals["LANGUAGES"] = LANGUAGES
    env.globals["HTML_LANG"] = HTML_LANG


def js_strings(catalogs: Catalogs, lang: str, messages: list[str]) -> dict[str, Any]:
    """The translations a page's script needs, keyed by their English message id."""
    return {message: catalogs.gettext(lang, message) for message in messages}
