"""Every environment variable Stagehand reads is documented in docs/configuration.md.

That is every variable the settings read, and every one the container scripts under
compose/ read (entrypoint, start scripts, the Caddyfile).
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READ = re.compile(r"env(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"")
# $NAME and ${NAME…} in shell, {$NAME…} in a Caddyfile.
SCRIPT_READ = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)|\{\$([A-Z][A-Z0-9_]*)")
# The shell's own, not Stagehand's configuration.
SHELL_VARIABLES = {"PATH", "HOME", "PWD", "HOSTNAME"}


def variables_read_by_settings() -> set[str]:
    names: set[str] = set()
    # apps/core/environment.py reads EMAIL_URL for the settings (email_settings).
    paths = [
        *(ROOT / "config" / "settings").glob("*.py"),
        ROOT / "apps/core/environment.py",
    ]
    for path in paths:
        names |= set(READ.findall(path.read_text()))
    return names


def container_scripts() -> list[Path]:
    """The scripts the images run: files starting with #!, and Caddyfiles.

    compose/test/ is left out: it builds stand-in base images for CI only.
    """
    scripts = []
    for path in sorted((ROOT / "compose").rglob("*")):
        if not path.is_file() or (ROOT / "compose" / "test") in path.parents:
            continue
        if path.name == "Caddyfile" or path.read_bytes().startswith(b"#!"):
            scripts.append(path)
    return scripts


def variables_read_by_scripts() -> set[str]:
    names: set[str] = set()
    for path in container_scripts():
        for shell, caddy in SCRIPT_READ.findall(path.read_text()):
            names.add(shell or caddy)
    return names - SHELL_VARIABLES


def documented() -> set[str]:
    return set(
        re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs/configuration.md").read_text())
    )


def test_the_settings_read_variables():
    # Guards the regular expression: if it stopped matching, the next test would pass vacuously.
    assert {
        "DATABASE_URL",
        "REDIS_URL",
        "DJANGO_SECRET_KEY",
    } <= variables_read_by_settings()


def test_every_variable_is_documented():
    assert sorted(variables_read_by_settings() - documented()) == []


def test_the_scripts_read_variables():
    # The same guard for the scripts' expression: the entrypoint and start scripts
    # are found, and both spellings ($NAME, ${NAME:-default}) are read.
    scripts = {p.relative_to(ROOT).as_posix() for p in container_scripts()}
    assert "compose/production/django/entrypoint" in scripts
    assert "compose/production/django/start" in scripts
    assert {"POSTGRES_HOST", "POSTGRES_WAIT_TRIES", "WEB_CONCURRENCY"} <= (
        variables_read_by_scripts()
    )
    assert SCRIPT_READ.findall('x="$A_B" y=${C:-1} {$D:acme}') == [
        ("A_B", ""),
        ("C", ""),
        ("", "D"),
    ]


def test_every_variable_the_scripts_read_is_documented():
    assert sorted(variables_read_by_scripts() - documented()) == []
