"""`migrate_safely`: a backup before pending migrations, then migrate.

Each test runs the command as the container does, in a child process, on a database
of its own (a SQLite file, or a new PostgreSQL database) that has real pending
migrations: fully migrated, then the search and connections apps rolled back.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import psycopg
import pytest
from django.conf import settings

from tests.conftest import database_url
from tests.helpers import manage

from .conftest import bucket_keys

ROOT = Path(__file__).resolve().parent.parent.parent
ROLLED_BACK = ("search", "connections")
PG_PREFIX = f"{settings.DATABASES['default']['NAME']}_mig_"
BACKUP_LINE = re.compile(
    r"^Backup ((sqlite|postgresql)-backup-\d{14}-\d{6}-[0-9a-f]{6}\.(sqlite3\.gz|dump)) "
    r"taken before "
    r"applying 2 migrations\.$",
    re.MULTILINE,
)


def pg_admin() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def child_env(var: Path, database_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "MIGRATE_", "CELERY_", "REDIS_", "PYTEST"))
        and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        STAGEHAND_VAR_DIR=str(var),
        DATABASE_URL=database_url,
    )
    return env


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory):
    """engine -> a database fully migrated, then with ROLLED_BACK rolled back.

    Built once per engine; each test works on a copy of it.
    """
    made: dict[str, str] = {}

    def get(engine: str) -> str:
        if engine not in made:
            if engine == "sqlite":
                path = tmp_path_factory.mktemp("template") / "template.sqlite3"
                made[engine] = url = f"sqlite:///{path}"
            else:
                made[engine] = name = f"{PG_PREFIX}tpl_{uuid.uuid4().hex[:8]}"
                with pg_admin() as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                url = database_url(name)
            env = child_env(tmp_path_factory.mktemp("var"), url)
            steps = [("migrate", "--noinput")]
            steps += [("migrate", app, "zero") for app in ROLLED_BACK]
            for args in steps:
                result = manage(env, *args, timeout=180)
                assert result.returncode == 0, result.stderr
        return made[engine]

    yield get
    if "postgresql" in made:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{made["postgresql"]}" WITH (FORCE)')


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def site(request, rolled_back, tmp_path):
    """A copy of the rolled-back database; ``run`` runs manage.py on it."""
    template = rolled_back(request.param)
    name = None
    if request.param == "sqlite":
        path = tmp_path / "site.sqlite3"
        shutil.copyfile(template.removeprefix("sqlite:///"), path)
        url = f"sqlite:///{path}"
    else:
        name = f"{PG_PREFIX}{uuid.uuid4().hex[:8]}"
        with pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = database_url(name)
    var = tmp_path / "var"
    env = child_env(var, url)

    def applied(app: str) -> list[str]:
        if request.param == "sqlite":
            with sqlite3.connect(path) as conn:
                rows = conn.execute(
                    "SELECT name FROM django_migrations WHERE app = ?", [app]
                ).fetchall()
            conn.close()
        else:
            with psycopg.connect(url) as conn:
                rows = conn.execute(
                    "SELECT name FROM django_migrations WHERE app = %s", [app]
                ).fetchall()
        return [r[0] for r in rows]

    assert applied("search") == [] and applied("worlds") != []
    yield SimpleNamespace(
        engine=request.param,
        run=lambda *args, **extra: manage({**env, **extra}, *args, timeout=180),
        applied=applied,
        backups=var / "backups" / "backup",
    )
    if name:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


SQLITE_ONLY = pytest.mark.parametrize("site", ["sqlite"], indirect=True)


def backed_up_migrations(site, path: Path) -> set[str]:
    """The apps django_migrations names in a backup file."""
    if site.engine == "sqlite":
        plain = path.with_suffix("")
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        with sqlite3.connect(plain) as conn:
            rows = conn.execute("SELECT DISTINCT app FROM django_migrations").fetchall()
        conn.close()
        return {r[0] for r in rows}
    data = subprocess.run(
        ["pg_restore", "--data-only", "--table=django_migrations", "-f", "-", path],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(re.findall(r"^\d+\t(\w+)\t", data, re.MULTILINE))


def test_always_takes_a_backup_of_the_old_schema_then_migrates(site):
    result = site.run("migrate_safely", "--noinput", MIGRATE_BACKUP="always")
    assert result.returncode == 0, result.stderr
    found = BACKUP_LINE.search(result.stdout)
    assert found, result.stdout
    name = found.group(1)
    assert name.startswith(f"{site.engine}-backup-")
    # The backup line comes before migrate's own output.
    assert result.stdout.index(name) < result.stdout.index("Applying search.0001")
    assert sorted(p.name for p in site.backups.iterdir()) == [name, f"{name}.json"]
    apps_in_backup = backed_up_migrations(site, site.backups / name)
    assert "worlds" in apps_in_backup
    assert not apps_in_backup & set(ROLLED_BACK)  # taken before the migrations
    assert site.applied("search") != []
    assert site.applied("connections") != []


@SQLITE_ONLY
def test_nothing_pending_takes_no_backup_and_still_runs_migrate(site):
    assert site.run("migrate", "--noinput").returncode == 0
    result = site.run("migrate_safely", "--noinput", MIGRATE_BACKUP="always")
    assert result.returncode == 0, result.stderr
    assert "No migrations to apply; no backup needed." in result.stdout
    assert "No migrations to apply." in result.stdout  # migrate's own line
    assert not site.backups.exists()


@SQLITE_ONLY
def test_never_migrates_without_a_backup(site):
    result = site.run("migrate_safely", "--noinput", MIGRATE_BACKUP="never")
    assert result.returncode == 0, result.stderr
    assert "No backup before applying 2 migrations: MIGRATE_BACKUP=never." in (
        result.stdout
    )
    assert not site.backups.exists()
    assert site.applied("search") != []


@SQLITE_ONLY
def test_auto_with_a_local_folder_says_why_it_takes_none(site):
    result = site.run("migrate_safely", "--noinput")  # MIGRATE_BACKUP's default
    assert result.returncode == 0, result.stderr
    assert (
        "No backup before applying 2 migrations: MIGRATE_BACKUP=auto backs up only "
        "to S3 (AWS_STORAGE_BUCKET_NAME); set MIGRATE_BACKUP=always"
    ) in result.stdout
    assert not site.backups.exists()
    assert site.applied("search") != []


def s3_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_S3_REGION_NAME": "us-east-1",
    }


def test_auto_backs_up_to_s3_under_backup(site, moto_server):
    host, port = moto_server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"stagehand-{uuid.uuid4().hex[:12]}"
    result = site.run("migrate_safely", "--noinput", **s3_env(endpoint, bucket))
    assert result.returncode == 0, result.stderr
    found = BACKUP_LINE.search(result.stdout)
    assert found, result.stdout
    s3 = SimpleNamespace(
        bucket=bucket,
        client=boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ),
    )
    name = found.group(1)
    assert bucket_keys(s3) == [f"backup/{name}", f"backup/{name}.json"]
    s3.client.close()
    assert site.applied("search") != []


def test_a_failed_backup_stops_before_any_migration(site):
    with socket.socket() as unused:  # bound, never listening: connections refused
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
        result = site.run(
            "migrate_safely", "--noinput", **s3_env(endpoint, "stagehand-gone")
        )
    assert result.returncode == 1
    assert "CommandError: Backup before migrating failed: " in result.stderr
    assert "No migration was applied." in result.stderr
    assert "MIGRATE_BACKUP=never" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Applying" not in result.stdout
    assert site.applied("search") == []


@SQLITE_ONLY
def test_an_unknown_policy_is_refused_before_anything(site):
    result = site.run("migrate_safely", "--noinput", MIGRATE_BACKUP="sometimes")
    assert result.returncode == 1
    assert "MIGRATE_BACKUP must be one of auto, always, never, not 'sometimes'." in (
        result.stderr
    )
    assert site.applied("search") == []


def test_a_new_database_has_nothing_to_back_up(tmp_path):
    env = child_env(tmp_path / "var", f"sqlite:///{tmp_path / 'new.sqlite3'}")
    result = manage(
        {**env, "MIGRATE_BACKUP": "always"}, "migrate_safely", "--noinput", timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^No backup before applying \d+ migrations: the database is new, nothing to "
        r"lose\.$",
        result.stdout,
        re.MULTILINE,
    )
    assert not (tmp_path / "var" / "backups" / "backup").exists()
