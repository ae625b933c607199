"""The control channel: steer a running trainer (pause, resume, stop, save, stage N, rollback CKPT, snapshot).

The trainer (rank 0) serves TCP on 127.0.0.1 at an ephemeral port from a background thread; the port and a random
secret are in `run_dir/control.json`, mode 0600, so only the run's owner can read them. A request is one JSON line
`{"secret": ..., "command": ..., "arg": ...}`; the reply, one JSON line, comes only after the trainer applied the
command between two steps (and wrote its event). `ControlClient` is what `amt-core ctl` and the studio use.
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import secrets
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from amt_core.atomic import atomic_write_json
from amt_core.errors import UserError

CONTROL_FILE = "control.json"


class Command(StrEnum):
    """The control commands; the value is the word on the wire, in `amt-core ctl` and in `command` events."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    SAVE = "save"
    SNAPSHOT = "snapshot"
    STAGE = "stage"
    """Takes the stage number (1-based)."""
    ROLLBACK = "rollback"
    """Takes a checkpoint name from checkpoints/."""
    STATUS = "status"
    """Answered by the server thread from the trainer's last published status, without waiting for a step."""

    @property
    def takes_argument(self) -> bool:
        return self in (Command.STAGE, Command.ROLLBACK)

    @classmethod
    def parse(cls, name: object, arg: object = None) -> Command:
        """The command named `name`, checked to have its argument.

        Raises:
            UserError: an unknown name, or a missing argument.
        """
        try:
            command = cls(str(name))
        except ValueError:
            raise UserError(f"unknown command {name!r}; expected one of {', '.join(cls)}") from None
        if command.takes_argument and arg in (None, ""):
            raise UserError(f"command {command} needs an argument (e.g. 'stage 2', 'rollback step_00000100')")
        return command


_MAX_REQUEST = 64 * 1024


@dataclass
class PendingCommand:
    """A command waiting for the trainer; `finish` wakes the connection that sent it."""

    command: Command
    arg: str | None
    reply: dict = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    def finish(self, ok: bool, **fields: Any) -> None:
        self.reply = {"ok": ok, **fields}
        self.done.set()


class _Handler(socketserver.StreamRequestHandler):
    def setup(self) -> None:
        # An idle or slow client gets `read_timeout_s` to send its line; without it each idle connection would hold
        # a thread forever (300 idle connections held 306 threads).
        self.timeout = self.server.control.read_timeout_s  # type: ignore[attr-defined]
        super().setup()

    def handle(self) -> None:
        server: ControlServer = self.server.control  # type: ignore[attr-defined]
        try:
            line = self.rfile.readline(_MAX_REQUEST)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except (ValueError, OSError):
            self._send({"ok": False, "error": "bad request: one JSON object a line"})
            return
        given = str(request.get("secret", ""))
        if not hmac.compare_digest(given.encode(), server.secret.encode()):
            self._send({"ok": False, "error": "wrong secret"})
            return
        arg = request.get("arg")
        try:
            command = Command.parse(request.get("command", ""), arg)
        except UserError as err:
            self._send({"ok": False, "error": str(err)})
            return
        if command is Command.STATUS:
            self._send({"ok": True, **server.status})
            return
        pending = PendingCommand(command, None if arg is None else str(arg))
        server.queue.put(pending)
        if not pending.done.wait(server.reply_timeout_s):
            self._send({"ok": False, "error": "the trainer did not apply the command in time"})
            return
        self._send(pending.reply)

    def _send(self, reply: dict) -> None:
        try:
            self.wfile.write((json.dumps(reply) + "\n").encode())
        except OSError:
            pass


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ControlServer:
    """Serves the control channel from a daemon thread; the trainer drains `pending()` between steps."""

    def __init__(self, run_dir: str | Path, reply_timeout_s: float = 600.0, read_timeout_s: float = 10.0) -> None:
        self.run_dir = Path(run_dir)
        self.read_timeout_s = read_timeout_s
        self.secret = secrets.token_hex(32)
        self.queue: queue.Queue[PendingCommand] = queue.Queue()
        self.reply_timeout_s = reply_timeout_s
        self.status: dict[str, Any] = {}
        self._server = _TCPServer(("127.0.0.1", 0), _Handler)
        self._server.control = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="amt-control", daemon=True)

    def start(self) -> None:
        """Write control.json (0600) and start serving."""
        path = self.run_dir / CONTROL_FILE
        endpoint = {"host": "127.0.0.1", "port": self.port, "secret": self.secret, "pid": os.getpid()}
        atomic_write_json(path, endpoint, indent=None, perm=0o600)  # the secret: readable by the owner only
        self._thread.start()

    def publish(self, status: dict[str, Any]) -> None:
        """What `status` answers from now on (the trainer's step, stage, state, branch)."""
        self.status = status

    def pending(self) -> list[PendingCommand]:
        """Commands received since the last call (never blocks)."""
        items = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items

    def wait(self, timeout_s: float) -> PendingCommand | None:
        """Block up to `timeout_s` for the next command (used while paused)."""
        try:
            return self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Refuse what is still queued, stop serving and remove control.json."""
        for pending in self.pending():
            pending.finish(False, error="the trainer is shutting down")
        self._server.shutdown() if self._thread.is_alive() else None
        self._server.server_close()
        try:
            info = json.loads((self.run_dir / CONTROL_FILE).read_text())
            if info.get("port") == self.port:
                (self.run_dir / CONTROL_FILE).unlink()
        except (OSError, ValueError):
            pass


class ControlClient:
    """Sends commands to the trainer of a run directory."""

    def __init__(self, run_dir: str | Path, timeout_s: float = 600.0) -> None:
        self.run_dir = Path(run_dir)
        self.timeout_s = timeout_s

    def _info(self) -> dict:
        path = self.run_dir / CONTROL_FILE
        if not self.run_dir.is_dir():
            raise UserError(f"{self.run_dir} is not a run directory")
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(
                f"the run in {self.run_dir} is not running (no {CONTROL_FILE}); start or resume it"
            ) from None
        except PermissionError:
            raise UserError(f"cannot read {path}: only the run's owner may steer it") from None
        except ValueError:
            raise UserError(f"{path} is unreadable; is the run still starting? try again") from None

    def send(self, command: Command | str, arg: str | int | None = None, secret: str | None = None) -> dict:
        """Send one command and return the trainer's reply once it took effect.

        Raises:
            UserError: unknown command, the run is not running, or the trainer refused the command.
        """
        command = Command.parse(command, arg)
        info = self._info()
        request = {"secret": info["secret"] if secret is None else secret, "command": str(command), "arg": arg}
        try:
            with socket.create_connection((info.get("host", "127.0.0.1"), int(info["port"])), timeout=10) as sock:
                sock.settimeout(self.timeout_s)
                sock.sendall((json.dumps(request) + "\n").encode())
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except ConnectionRefusedError:
            raise UserError(
                f"the run in {self.run_dir} is not running (nothing listens on port {info['port']}, "
                f"pid {info.get('pid')}); resume it with amt-core train --resume --run-dir {self.run_dir}"
            ) from None
        except TimeoutError:
            raise UserError(f"the trainer of {self.run_dir} did not answer within {self.timeout_s:.0f} s") from None
        except OSError as err:
            raise UserError(f"cannot reach the trainer of {self.run_dir}: {err}") from None
        try:
            reply = json.loads(data)
        except ValueError:
            raise UserError(f"the trainer of {self.run_dir} closed the connection without a reply") from None
        if not reply.get("ok"):
            raise UserError(f"the trainer refused '{command}': {reply.get('error', 'no reason given')}")
        return reply
