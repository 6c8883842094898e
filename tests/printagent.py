"""A real print agent (``onedoor printer-agent``) in a subprocess, printing to a FakePrinter
over TCP: for the end-to-end tests and the fault suite (bench/faults/printers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests.fakeprinter import FakePrinter
from tests.servers import ONEDOOR


class AgentProcess:
    def __init__(
        self,
        server: str,
        token: str | None,
        printer: FakePrinter,
        folder: Path,
        env: dict[str, str] | None = None,
        status_timeout: float = 0.3,
    ) -> None:
        """An agent for the server at base URL ``server``; its config, state and log in
        ``folder``; ``status_timeout`` is how long it waits for each status answer."""
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "printers.toml"
        self.config.write_text(
            f'[printer]\ntransport = "network"\nhost = "127.0.0.1"\nport = {printer.port}\n'
            f'paper_mm = 80\nencoding = "gb18030"\nstatus_timeout = {status_timeout}\n'
        )
        # "--token=…": a device token may start with "-" (those made before that was ruled
        # out). None: the agent reads ONEDOOR_PRINTER_TOKEN from ``env``.
        self.args = [*ONEDOOR, "printer-agent", "--server", server,
                     *([f"--token={token}"] if token is not None else []),
                     "--config", str(self.config), "--state-dir", str(folder / "agent-state")]  # fmt: skip
        self.env = env if env is not None else dict(os.environ)
        self.log = folder / "agent.log"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> AgentProcess:
        self.process = subprocess.Popen(self.args, env=self.env, stdout=self.log.open("a"),
                                        stderr=subprocess.STDOUT, text=True)  # fmt: skip
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """A slow agent: stopped (SIGSTOP) until ``resume``; its connection stays open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
