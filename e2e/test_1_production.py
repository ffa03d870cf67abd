"""production.yml on a real engine: what a new operator does on an empty host, in order.

The tests of this module run in file order on one stack (conftest.production): the
stack comes up healthy, serves HTTPS through Caddy, lives through the operator's day
through ``docker compose exec``, comes back from killed containers and a daemon
restart, and its image holds no secret and no development file.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time

import pytest

from e2e.conftest import DOMAIN, MARKER
from e2e.https import Site, frames
from e2e.stack import ROOT, Stack, sh

SERVICES = [
    "postgres",
    "redis",
    "s3",
    "mail",
    "django",
    "celeryworker",
    "celerybeat",
    "flower",
    "caddy",
]
LONG_RUNNING = SERVICES
BOUND = 300  # seconds for the whole stack to be healthy after `up -d`
LABEL = "e2e0001.production"  # STAGEHAND_COMMIT.STAGEHAND_ENVIRONMENT


def site(stack: Stack) -> Site:
    port = stack.compose("port", "caddy", "443").stdout.strip().rsplit(":", 1)[1]
    ca = stack.compose(
        "exec", "-T", "caddy", "cat", "/data/caddy/pki/authorities/local/root.crt"
    ).stdout
    return Site(DOMAIN, int(port), ca)


def until(what: str, check, bound: float = 120, every: float = 2):
    start = time.monotonic()
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() - start > bound:
            raise AssertionError(f"{what}: not within {bound:.0f} s")
        time.sleep(every)


def test_the_stack_builds_and_every_service_becomes_healthy(production: Stack):
    started = time.monotonic()
    production.compose("build", timeout=2400)
    built = time.monotonic() - started
    production.compose("up", "-d", timeout=900)
    took = production.wait_healthy(SERVICES, BOUND)
    print(f"\nbuild {built:.0f} s; every service healthy {took:.0f} s after up -d")
    production.compose("logs", "--tail", "100", "django")
    production.compose("logs", "--tail", "100", "celeryworker")
    ps = production.compose("ps").stdout
    for service in SERVICES:
        assert service in ps


def test_every_long_running_service_has_a_restart_policy(production: Stack):
    for service in LONG_RUNNING:
        info = json.loads(
            sh("docker", "inspect", production.container(service)).stdout
        )[0]
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", service


def test_healthchecks_pass_through_the_load_balancers_path_without_errors(production):
    # A few probes have run by now (every 15 s); none may log an error.
    time.sleep(20)
    health = production.state("django")["Health"]
    assert health["Status"] == "healthy"
    assert all(probe["ExitCode"] == 0 for probe in health["Log"][-3:]), health["Log"]
    logs = production.compose("logs", "--no-color", "django").stdout
    assert "/readyz" in logs or health["FailingStreak"] == 0
    assert not re.search(r"\bERROR\b|Traceback", logs), logs[-3000:]


def test_readyz_admin_and_static_files_through_caddy_over_https(production: Stack):
    https = site(production)
    status, _, body = https.get("/readyz")
    assert status == 200, body
    status, _, body = https.get("/ops-e2e/login/")
    assert status == 200, body
    css = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', body)
    assert css, "the login page links no hashed admin CSS (collected at build time)"
    status, headers, body = https.get(css.group(1).decode())
    assert status == 200 and b"body" in body
    assert "max-age=315360000" in headers.get("cache-control", ""), headers
    # Plain HTTP is redirected to HTTPS by Caddy.
    port = production.compose("port", "caddy", "80").stdout.strip().rsplit(":", 1)[1]
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=20)
    conn.request("GET", "/readyz", headers={"Host": DOMAIN})
    response = conn.getresponse()
    assert response.status in (301, 308), response.status
    assert response.getheader("Location", "").startswith(f"https://{DOMAIN}/")
    conn.close()


def test_the_operators_day_through_docker_compose_exec(production: Stack):
    production.manage("check", "--deploy")
    info = production.manage("info")
    assert "FAIL" not in info.stdout and "unavailable" not in info.stdout, info.stdout
    assert "postgresql" in info.stdout.lower() and "sqlite" not in info.stdout.lower()
    config = production.manage("config").stdout
    assert "DJANGO_SECRET_KEY" in config and MARKER not in config, config
    production.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "alice",
        "--email",
        "alice@stagehand.test",
    )
    production.manage(
        "create_world",
        "--noinput",
        "--id",
        "e2e",
        "--title",
        "Compose test",
        "--domain",
        DOMAIN,
    )
    token = production.manage("generate_token", "e2e", "--raw").stdout.strip()
    assert token.count(".") == 2

    https = site(production)
    with https.websocket("/ws/world/e2e/") as ws:
        ws.send(json.dumps(["authenticate", {"token": token}]))
        reply = frames(ws, 1)[0]
        assert reply[0] == "authenticated", reply
        listed = until(
            "connections list shows the socket",
            lambda: [
                row
                for row in production.manage_json("connections", "list")
                if row.get("label") == LABEL
                and row.get("connections", row.get("count"))
            ],
        )
        assert listed
        production.manage("connections", "list")

    scheduled = production.manage("jobs", "scheduled").stdout
    assert "backup" in scheduled

    out = production.manage("backup").stdout
    backups = production.manage_json("backups")
    assert backups, out
    newest = backups[0]
    assert newest["name"] in out
    production.manage("backups")
    keys = production.compose(
        "exec",
        "-T",
        "s3",
        "python",
        "-c",
        "import boto3;print('\\n'.join(o.key for o in boto3.resource('s3',"
        "endpoint_url='http://127.0.0.1:5000',aws_access_key_id='x',"
        "aws_secret_access_key='x',region_name='us-east-1')"
        ".Bucket('stagehand-e2e').objects.all()))",
    ).stdout.split()
    assert any(k.startswith("backup/") and newest["name"] in k for k in keys), keys

    production.manage(
        "create_world",
        "--noinput",
        "--id",
        "afterbackup",
        "--title",
        "Made after the backup",
        "--domain",
        "after.stagehand.test",
    )
    assert "afterbackup" in production.manage("list_worlds").stdout
    production.manage("restore", "latest", "--dry-run", timeout=900)
    production.manage("restore", "latest", "--noinput", timeout=900)
    worlds = production.manage("list_worlds").stdout
    assert "afterbackup" not in worlds and "e2e" in worlds

    # The worker and beat still work on the restored database.
    sent = production.manage("jobs", "run", "-d", "log-test").stdout
    task_id = sent.split()[0]

    def log_test_succeeded():
        runs = production.manage_json("jobs", "history", "log-test")
        return [
            r for r in runs if r["task_id"] == task_id and r["outcome"] == "success"
        ]

    until("log-test run on the worker", log_test_succeeded, bound=180)
    production.manage("jobs", "history", "log-test")

    def beat_ok():
        components = production.manage_json("stats")
        return [c for c in components if c["name"] == "beat" and c["status"] == "ok"]

    until("beat ticking after the restore", beat_ok, bound=180)
    production.manage("stats")
    production.manage("prune_backups", "--keep", "14", "--dry-run")

    terms = "# Code of conduct\n\nBe kind.\n"
    production.manage(
        "import_terms", "conduct", "1", "/dev/stdin", "--optional", input=terms
    )


def test_a_test_mail_reaches_the_smtp_server(production: Stack):
    production.manage("sendtestemail", "ops@stagehand.test")
    until(
        "the mail sink received the message",
        lambda: (
            "ops@stagehand.test" in production.compose("logs", "mail").stdout
            and f"stagehand@{DOMAIN}" in production.compose("logs", "mail").stdout
        ),
        bound=60,
    )


def test_an_upgrade_backs_up_before_migrating_and_moves_browsers(production: Stack):
    """docs/deploy.md, "Updating": backup, build, up -d, force_reload of the old label.

    One migration is rolled back first, so the new container finds one pending and
    takes a backup before applying it (MIGRATE_BACKUP=auto with S3 configured).
    """
    listed = production.manage("showmigrations", "jobs").stdout
    applied = re.findall(r"\[X\] (\d{4}_\w+)", listed)
    production.manage("migrate", "jobs", applied[-2], "--noinput")
    production.manage("backup")
    production.env["STAGEHAND_COMMIT"] = "e2e0002"
    production.compose("build", timeout=2400)
    production.compose("up", "-d", timeout=900)
    production.wait_healthy(SERVICES, BOUND)
    logs = production.compose("logs", "--no-color", "django").stdout
    assert re.search(r"[Bb]ackup \S+ .*before applying 1 migration", logs), logs[-3000:]
    last = production.manage("showmigrations", "jobs").stdout.strip().splitlines()[-1]
    assert last.strip() == f"[X] {applied[-1]}", last
    production.manage("connections", "list")
    production.manage(
        "connections", "force_reload", "--interval-ms", "50", "e2e0001.*", check=False
    )


def test_more_workers_on_the_same_broker(production: Stack):
    production.compose("up", "-d", "--scale", "celeryworker=2", timeout=600)
    until(
        "two workers answer",
        lambda: (
            production.manage("worker", "status", check=False).stdout.count("@") >= 2
            or len(production.compose("ps", "-q", "celeryworker").stdout.split()) == 2
        ),
        bound=180,
    )
    production.manage("worker", "status")


@pytest.mark.parametrize("service", ["django", "celeryworker", "celerybeat"])
def test_a_crashed_container_comes_back_by_its_restart_policy(production, service):
    """The container's main process dies with SIGKILL, as in a crash or an OOM kill.

    Not `docker kill`: the engine counts that as an operator's stop and, like
    `docker stop`, it is never undone by a restart policy (docs/deploy.md).
    """
    before = json.loads(sh("docker", "inspect", production.container(service)).stdout)[
        0
    ]
    sh("kill", "-KILL", str(before["State"]["Pid"]))
    until(
        f"{service} restarted",
        lambda: (
            json.loads(sh("docker", "inspect", production.container(service)).stdout)[
                0
            ]["RestartCount"]
            > before["RestartCount"]
        ),
        bound=120,
    )
    production.wait_healthy([service], BOUND)


def test_a_docker_daemon_restart_brings_the_whole_stack_back(production: Stack):
    sh(str(ROOT / "compose/test/engine"), "restart", timeout=300)
    took = production.wait_healthy(SERVICES, BOUND)
    print(f"\nevery service healthy again {took:.0f} s after the daemon restarted")
    assert site(production).get("/readyz")[0] == 200


def test_the_entrypoint_says_what_postgresql_refused_and_stops_at_once(production):
    production.compose("run", "--rm", "--no-deps", "django", "true", timeout=120)
    for env, words in (
        # With password logins PostgreSQL does not tell a missing role from a wrong
        # password (it would tell an attacker which roles exist).
        (
            "POSTGRES_USER=nosuchrole",
            'password authentication failed for user "nosuchrole"',
        ),
        ("POSTGRES_PASSWORD=wrong", "password authentication failed"),
        ("POSTGRES_DB=nosuchdb", 'database "nosuchdb" does not exist'),
    ):
        started = time.monotonic()
        result = production.compose(
            "run",
            "--rm",
            "--no-deps",
            "-e",
            env,
            "django",
            "true",
            check=False,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert words in result.stderr, result.stderr
        assert time.monotonic() - started < 60


def test_down_and_up_keep_the_database(production: Stack):
    """docs/deploy.md: stop with `down` (never `down -v`): the volume keeps the data."""
    production.compose("down", "--timeout", "30", timeout=300)
    production.compose("up", "-d", timeout=900)
    production.wait_healthy(SERVICES, BOUND)
    assert "e2e" in production.manage("list_worlds").stdout


def test_the_image_holds_no_secret_no_dev_file_and_runs_as_a_user(
    production, image_size
):
    image = "stagehand_production_django"
    config = json.loads(sh("docker", "image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "django"
    assert production.compose("exec", "-T", "django", "id", "-u").stdout.strip() != "0"
    listing = sh(
        "docker", "run", "--rm", "--entrypoint", "ls", image, "-a", "/app"
    ).stdout
    for name in (".venv", ".git", "var", "tests", "bench", ".envs", "e2e", "docs"):
        assert name not in listing.split(), listing
    # Compiled at build time: at run time nothing writes bytecode (the Dockerfile).
    cache = "/app/apps/worlds/__pycache__"
    compiled = sh("docker", "run", "--rm", "--entrypoint", "ls", image, cache).stdout
    assert "services.cpython-311.pyc" in compiled.split(), compiled
    # The planted secret is in every production env file of the build context.
    container = sh("docker", "create", image).stdout.strip()
    try:
        export = subprocess.Popen(
            ["docker", "export", container], stdout=subprocess.PIPE
        )
        found, tail = False, b""
        assert export.stdout
        for chunk in iter(lambda: export.stdout.read(1 << 20), b""):
            if MARKER.encode() in tail + chunk:
                found = True
            tail = chunk[-64:]
        export.wait()
        export.stdout.close()
    finally:
        sh("docker", "rm", container)
    assert not found, "the image contains a secret from .envs/.production/"
    print(f"\nimage stagehand_production_django: {image_size / 1e6:.0f} MB")
    # The image with the checkout's .venv and .git was 1.38 GB; today's is about 0.6.
    assert image_size < 800e6
