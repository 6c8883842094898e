"""Spoken announcements rendered by espeak-ng, when the machine has it, cached on disk."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path

VOICES = {"zh": "cmn", "en": "en"}
TIMEOUT_S = 10.0


class SpeechUnavailable(Exception):
    """No espeak-ng here, or it failed: the board falls back to the browser's voice."""


async def render(text: str, lang: str, cache: Path) -> Path:
    """A WAV file of ``text`` spoken in ``lang`` (zh or en), made once and then reused."""
    voice = VOICES[lang]
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed")
    cache.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local folder, instant
    name = hashlib.sha256(f"{voice}\0{text}".encode()).hexdigest()[:32]
    target = cache / f"{name}.wav"
    if target.exists():
        return target
    partial = target.with_suffix(".part")
    # Text goes in as an argument list, never through a shell; -s slows it for a hall.
    process = await asyncio.create_subprocess_exec(
        exe, "-v", voice, "-s", "140", "-w", str(partial), text,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except TimeoutError:
        process.kill()
        raise SpeechUnavailable("espeak-ng took too long") from None
    if process.returncode != 0 or not partial.exists():
        raise SpeechUnavailable(f"espeak-ng failed: {err.decode(errors='replace')[:200]}")
    partial.replace(target)
    return target
