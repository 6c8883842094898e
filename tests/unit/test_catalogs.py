"""Every word a page shows has its Chinese: each message id in a template, and each one its
scripts ask for with t("…"), is translated in that page's zh_CN catalog (or the common
one); each page's en catalog lists the same ids."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from queue_server.web.i18n import LOCALE_DIR, Catalogs, catalog_for, choose_language

WEB = Path(__file__).parents[2] / "queue_server" / "web"
SCRIPT_STRING = re.compile(r"""\bt\(\s*(["'])((?:\\.|(?!\1).)+)\1""")


# A script's words come from its page's catalog: kiosk.js → kiosk, admin-ui.js → admin.
SCRIPT_CATALOGS = {"book": "booking", "manage": "booking", "follow": "booking"}


def catalog_ids(lang: str, page: str) -> dict[str, str]:
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{page}.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return {str(m.id): str(m.string or "") for m in read_po(handle, locale=lang) if m.id}


def pages() -> set[str]:
    return {p.stem for p in (LOCALE_DIR / "zh_CN" / "LC_MESSAGES").glob("*.po")}


def wanted_by_catalog() -> dict[str, set[str]]:
    """Message ids each catalog must hold, from the templates and scripts that use it."""
    wanted: dict[str, set[str]] = {}
    extracted = extract_from_dir(
        str(WEB),
        [("**/templates/**.html", "jinja2")],
        options_map={"**/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    )
    for filename, _, message, _, _ in extracted:
        if isinstance(message, str):
            page = catalog_for(Path(filename).name)
            wanted.setdefault(page if page != "base" else "common", set()).add(message)
    for path in (WEB / "static").glob("*.js"):
        stem = path.stem.split("-")[0]
        page = SCRIPT_CATALOGS.get(stem, stem)
        ids = {m.group(2) for m in SCRIPT_STRING.finditer(path.read_text())}
        wanted.setdefault(page, set()).update(ids)
    return wanted


def test_every_template_and_script_message_is_translated_to_chinese() -> None:
    common = catalog_ids("zh_CN", "common")
    problems = []
    for page, ids in sorted(wanted_by_catalog().items()):
        zh = {**common, **catalog_ids("zh_CN", page)}
        problems += [f"{page}: {m!r} missing" for m in sorted(ids) if m not in zh]
        problems += [f"{page}: {m!r} has no Chinese" for m in sorted(ids) if m in zh and not zh[m]]
    assert not problems, "\n".join(problems)


def test_both_languages_list_the_same_messages() -> None:
    for page in pages():
        assert set(catalog_ids("zh_CN", page)) == set(catalog_ids("en", page)), page


def test_catalogs_merge_and_answer_in_each_language() -> None:
    catalogs = Catalogs.load()
    assert catalogs.gettext("zh_CN", "Larger text") == "大字"
    assert catalogs.gettext("en", "Larger text") == "Larger text"
    # A page's own words first, then the common ones.
    assert catalogs.gettext("zh_CN", "Larger text", "kiosk") == "大字"


def test_the_page_language_follows_the_choice_then_the_browser() -> None:
    assert choose_language("en", "zh_CN", "zh-CN") == "en"
    assert choose_language(None, "en", "zh-CN") == "en"
    assert choose_language(None, None, "en-GB,en;q=0.9") == "en"
    assert choose_language(None, None, "zh-TW,zh;q=0.9") == "zh_CN"
    assert choose_language("fr", None, "fr-FR") == "zh_CN"  # the hall's language
