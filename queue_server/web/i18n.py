"""Translations of the pages: gettext catalogs (Babel ``.po`` files), Chinese and English.

Each page keeps its own catalog (``locale/<lang>/LC_MESSAGES/<page>.po``, message ids in
English), so one page's wording never overrides another's ("Done" is 完成 on the kiosk
and 办结 at the counter); what every page shares is in ``common.po``, the fallback. The
files are read and compiled in memory when the app starts, so nothing built is kept in
the repository. ``make i18n`` checks that every message has its Chinese.

A page's language: ``?lang=`` (remembered in a cookie), else the cookie, else the
browser's ``Accept-Language``, else Chinese — the hall's language.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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


COMMON = "common"


def _compile(path: Path, lang: str) -> Translations:
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


@dataclass(frozen=True)
class Catalogs:
    """Every page's translations per language (``(lang, page)`` → translations), read once."""

    catalogs: Mapping[tuple[str, str], Translations]

    @classmethod
    def load(cls) -> Catalogs:
        found = {}
        for lang in LANGUAGES:
            for path in sorted((LOCALE_DIR / lang / "LC_MESSAGES").glob("*.po")):
                found[(lang, path.stem)] = _compile(path, lang)
        return cls(found)

    def _chain(self, lang: str, page: str) -> list[Translations]:
        lang = lang if lang in LANGUAGES else DEFAULT
        return [t for key in ((lang, page), (lang, COMMON)) if (t := self.catalogs.get(key))]

    def gettext(self, lang: str, message: str, page: str = COMMON) -> str:
        """``message`` in ``lang`` from the page's catalog, else the common one."""
        for translations in self._chain(lang, page):
            text = str(translations.gettext(message))
            if text != message:
                return text
        return message

    def ngettext(self, lang: str, singular: str, plural: str, n: int, page: str = COMMON) -> str:
        fallback = singular if n == 1 else plural
        for translations in self._chain(lang, page):
            text = str(translations.ngettext(singular, plural, n))
            if text != fallback:
                return text
        return fallback


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
        return catalogs.gettext(
            context.get("lang", DEFAULT), message, context.get("catalog", COMMON)
        )

    @pass_context
    def ngettext(context: Context, singular: str, plural: str, n: int) -> str:
        return catalogs.ngettext(
            context.get("lang", DEFAULT), singular, plural, n, context.get("catalog", COMMON)
        )

    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["merge"] = lambda first, second: {**first, **second}
    env.globals["LANGUAGES"] = LANGUAGES
    env.globals["HTML_LANG"] = HTML_LANG


# Which catalog a template's words come from (by default its own name).
PAGE_CATALOGS = {
    "book.html": "booking",
    "manage.html": "booking",
    "follow.html": "booking",
    "_picker_strings.html": "booking",
    "_alert_strings.html": "common",
}


def catalog_for(template: str) -> str:
    return PAGE_CATALOGS.get(template, template.removesuffix(".html"))
