"""The board page and its spoken announcements."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import File, Template

from . import speech
from .board import announcement_text

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
BOARD_ROLES = frozenset({"board", "admin", "manager", "clerk"})
NUMBER = re.compile(r"^[A-Z]{1,2}\d{3,5}$")


class BoardPage(Controller):
    """``/board/{hall}``: what the hall's big screens open (with ``?token=`` of a board)."""

    opt = {"roles": BOARD_ROLES}
    include_in_schema = False

    @get("/board/{hall_id:int}")
    async def board(self, hall_id: FromPath[int], halls: NamedDependency[Any]) -> Template:
        hall = await halls(hall_id)
        return Template(template_name="board.html", context={"hall": hall})

    @get("/api/halls/{hall_id:int}/speech", include_in_schema=True, tags=["board"])
    async def speak(
        self,
        hall_id: FromPath[int],
        number: Annotated[str, QueryParameter(pattern=NUMBER.pattern, description="e.g. A023")],
        counter: Annotated[int, QueryParameter(ge=1, le=9999)],
        lang: Annotated[Literal["zh", "en"], QueryParameter()],
        speech_cache: NamedDependency[Path],
    ) -> File:
        """The call of ``number`` to ``counter`` spoken (WAV), rendered by espeak-ng.

        503 when the server has no espeak-ng: the board then uses the browser's voice.
        """
        zh, en = announcement_text(number, counter)
        try:
            path = await speech.render(zh if lang == "zh" else en, lang, speech_cache)
        except speech.SpeechUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"no server speech: {exc}") from None
        except FileNotFoundError:
            raise NotFoundException("speech could not be rendered") from None
        return File(path=path, media_type="audio/wav", content_disposition_type="inline")
