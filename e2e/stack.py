"""Drive a compose project the way an operator does, and remember every command run.

The commands are recorded as an operator would type them (``docker compose -f
production.yml exec django python manage.py info``), so test_3_guide.py can check that
every command docs/deploy.md shows was run by this test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_COMMANDS: list[str] = []


def compose_binary() -> list[str]:
    """``docker compose`` (v2) where the plugin exists, else Debian's docker-compose."""
    if (
        subprocess.run(["docker", "compose", "version"], capture_output=True).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither 'docker compose' nor 'docker-compose' is installed")


def record(command: str) -> None:
    RUN_COMMANDS.append(" ".join(command.split()))


def sh(
    *args: str,
    timeout: float = 600,
    check: bool = True,
    env: dict | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


@dataclass
class Stack:
    """One compose project in its own copy of the repository."""

    directory: Path
    file: str  # production.yml or local.yml, as the operator names it
    project: str
    overrides: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def _base(self) -> list[str]:
        files = ["-f", self.file]
        for override in self.overrides:
            files += ["-f", override]
        return [*compose_binary(), "-p", self.project, *files]

    def compose(
        self,
        *args: str,
        timeout: float = 900,
        check: bool = True,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run ``docker compose -f FILE ARGS`` in the copy, as an operator would."""
        shown = [a for a in args if a != "-T"]
        record(f"docker compose -f {self.file} {shlex.join(shown)}")
        return subprocess_in(
            self.directory, [*self._base(), *args], timeout, check, self.env, input
        )

    def manage(
        self,
        *args: str,
        service: str = "django",
        check: bool = True,
        timeout: float = 600,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        return self.compose(
            "exec",
            "-T",
            service,
            "python",
            "manage.py",
            *args,
            check=check,
            timeout=timeout,
            input=input,
        )

    def manage_json(self, *args: str) -> object:
        return json.loads(self.manage(*args, "--json").stdout)

    def container(self, service: str) -> str:
        out = self.compose("ps", "-q", service).stdout.split()
        assert out, f"no container for {service}"
        return out[0]

    def state(self, service: str) -> dict:
        return json.loads(sh("docker", "inspect", self.container(service)).stdout)[0][
            "State"
        ]

    def wait_healthy(self, services: list[str], bound: float) -> float:
        """Wait until each service runs (and is healthy where it has a healthcheck)."""
        start = time.monotonic()
        pending = list(services)
        while pending:
            for service in list(pending):
                try:
                    state = self.state(service)
                except AssertionError:
                    continue
                health = state.get("Health", {}).get("Status")
                if state.get("Running") and health in (None, "healthy"):
                    pending.remove(service)
            if not pending:
                break
            if time.monotonic() - start > bound:
                logs = self.compose(
                    "logs", "--tail", "60", *pending, check=False
                ).stdout
                raise AssertionError(
                    f"not healthy within {bound:.0f} s: {pending}\n{logs}"
                )
            time.sleep(2)
        return time.monotonic() - start


def subprocess_in(
    directory: Path,
    args: list[str],
    timeout: float,
    check: bool,
    extra_env: dict[str, str],
    input: str | None,
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        args,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **extra_env},
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def copy_checkout(target: Path) -> Path:
    """Copy the files git would check out (tracked and new, not ignored) into target."""
    files = sh(
        "git",
        "-C",
        str(ROOT),
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)
    return target
