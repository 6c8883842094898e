"""What every page shares: choosing its language, rendering it, and QR codes as SVG."""

from __future__ import annotations

import io
from typing import Annotated, Any
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter
from litestar.response import Template

from queue_server.api.auth import PUBLIC

from .i18n import COOKIE, HTML_LANG, LANGUAGES, catalog_for, choose_language

YEAR = 365 * 24 * 3600
AnyRequest = Request[Any, Any, Any]


def language(request: AnyRequest) -> str:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(COOKIE),
        request.headers.get("accept-language"),
    )


def render(request: AnyRequest, template: str, **context: Any) -> Template:
    """``template`` in the request's language; a ``?lang=`` choice is remembered."""
    lang = language(request)
    query = dict(request.query_params)
    # The switch keeps the rest of the address (a kiosk's ?token=, a booking's ?code=).
    lang_urls = {code: "?" + urlencode({**query, "lang": code}) for code in LANGUAGES}
    response = Template(
        template_name=template,
        context={"lang": lang, "html_lang": HTML_LANG[lang], "path": request.url.path,
                 "lang_urls": lang_urls, "catalog": catalog_for(template), **context},
    )  # fmt: skip
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(COOKIE, lang, max_age=YEAR, samesite="lax", httponly=False)
    return response


class QrCode(Controller):
    opt = PUBLIC
    include_in_schema = False

    @get("/qr.svg", media_type="image/svg+xml", cache_control=None)
    async def qr(
        self, text: Annotated[str, QueryParameter(name="data", min_length=1, max_length=400)]
    ) -> Response[bytes]:
        """A QR code of ``data`` (a follow or booking link) as SVG, for pages to show."""
        image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, border=2)
        buffer = io.BytesIO()
        image.save(buffer)
        return Response(
            buffer.getvalue(),
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )
