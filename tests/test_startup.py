"""Start-up: what every `manage.py` command loads (bench/startup.py measures its cost).

Heavy libraries load only where they are used; these tests keep them out of a plain
`manage.py check` (which loads every URL, hence every API view) and `manage.py help`
(which loads what every command loads: the apps, their admin and their jobs), and
prove that what loads them later still works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from apps.connections import layer, registry
from apps.core.urls import LazyView
from apps.worlds import api_urls
from apps.worlds.api import WorldViewSet
from tests.helpers import bench

# Imported by nothing a `check` needs; each one costs milliseconds to tens of them:
# the schema views, PyJWT, S3's botocore, redis-py and channels-redis (without a Redis
# they are never needed, and a `check` makes no Redis call), prometheus-client, tqdm.
LAZY = [
    # The API's views, and with them drf-spectacular's schema generator, which imports
    # the test client (apps/core/urls.py).
    "apps.worlds.api",
    "apps.ops.api",
    "drf_spectacular.openapi",
    "django.test",
    "drf_spectacular.views",
    "jwt",
    "botocore",
    "channels_redis",
    "prometheus_client",
    "tqdm",
]
if not settings.REDIS_URL:
    LAZY.append("redis")
# What `check` loads for the admin's template check only (DRF's template tags, hence
# its serializers) stays out of every other command.
LAZY_BEYOND_CHECK = [*LAZY, "redis", "rest_framework.serializers"]

RUN_THEN_LIST_MODULES = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", sys.argv[1]])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(command: str, var_dir) -> set[str]:
    """The modules a `manage.py COMMAND` child process has loaded when it is done."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["STAGEHAND_VAR_DIR"] = str(var_dir)
    done = subprocess.run(
        [sys.executable, "-c", RUN_THEN_LIST_MODULES, command],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def loaded_by_check(tmp_path_factory) -> set[str]:
    return loaded_by("check", tmp_path_factory.mktemp("var"))


def test_check_runs_without_loading_the_heavy_modules(loaded_by_check):
    assert "apps.worlds.models" in loaded_by_check  # the child did load Stagehand
    assert "apps.worlds.api_urls" in loaded_by_check  # and the API's URLs
    assert [module for module in LAZY if module in loaded_by_check] == []


def test_help_loads_no_library_it_does_not_use(tmp_path):
    loaded = loaded_by("help", tmp_path)
    assert {"apps.ops.admin", "apps.backups.tasks"} <= loaded  # admin and jobs
    assert [module for module in LAZY_BEYOND_CHECK if module in loaded] == []


def test_redis_errors_are_the_layers_once_redis_is_loaded():
    """What the services catch without importing redis-py is what the layer names."""
    assert registry.redis_errors() == layer.REDIS_ERRORS


def test_the_spelled_out_world_routes_are_the_routers():
    router = SimpleRouter()
    router.register("", WorldViewSet, basename="world")
    expected = [(str(url.pattern), url.name) for url in router.urls]
    assert [(str(url.pattern), url.name) for url in api_urls.urlpatterns] == expected
    # Each reaches the router's own view: the viewset, for the same methods (DRF adds
    # HEAD to a GET route's actions once it has answered).
    methods = {url.name: set(url.callback.actions) - {"head"} for url in router.urls}
    for url in api_urls.urlpatterns:
        assert url.callback.cls is WorldViewSet
        assert set(url.callback.actions) - {"head"} == methods[url.name]


def test_the_schema_views_are_built_on_first_use():
    view = resolve("/api/schema/").func
    assert isinstance(view, LazyView)
    # What DRF's and drf-spectacular's generators read is the real view's.
    assert view.cls is SpectacularAPIView
    assert view.csrf_exempt is True
    assert resolve("/api/docs/").func.initkwargs == {"url_name": "api-schema"}
    assert resolve("/api/docs/").func.cls is SpectacularSwaggerView


def test_the_schema_still_lists_the_schema_endpoint():
    paths = SchemaGenerator().get_schema(request=None, public=True)["paths"]
    assert "/api/schema/" in paths
    assert "/api/v1/worlds/" in paths


def test_a_lazy_view_never_imports_for_private_names():
    view = LazyView("no.such.module.View")
    with pytest.raises(AttributeError):
        view.__wrapped__  # noqa: B018  (functools.wraps probes for it)
    with pytest.raises(ImportError):
        view.cls  # noqa: B018


def test_the_benchmark_measures_every_command_against_both_anchors():
    """bench/startup.py as docs/benchmarks.md runs it, with one round."""
    # On the embedded defaults: the suite's DATABASE_URL names a database that only
    # exists under the test runner's "test_" prefix.
    out = bench("startup.py", "--runs", "1", "--json")
    figures = json.loads(out)
    assert figures["runs"] == 1 and figures["load"]["min"] >= 0
    rows = {row["command"]: row for row in figures["results"]}
    assert list(rows) == ["check", "help", "list_worlds"]
    assert rows["list_worlds"]["anchor_command"] == "help"
    for row in rows.values():
        # Stagehand loads more than either anchor, whatever the machine's load.
        assert row["cpu_s"] > row["empty_cpu_s"] > 0
        assert row["rss_mib"] > row["libraries_rss_mib"] > row["empty_rss_mib"] > 0
        ratio = row["cpu_s"] / row["empty_cpu_s"]
        assert row["cpu_ratio_empty"] == pytest.approx(ratio, abs=0.01)
