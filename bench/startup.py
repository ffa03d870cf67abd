"""Benchmark: start-up of `manage.py` against an empty Django project in the same run.

    .venv/bin/python bench/startup.py [--runs 7] [--json]

Creates two projects with ``django-admin startproject`` (the same Django, the same
Python, the same venv) in a scratch folder:

* empty: the project as startproject makes it, the anchor of the target;
* libraries: the same with Stagehand's third-party apps added to INSTALLED_APPS
  (channels, DRF, drf-spectacular, django-celery-beat, …), to tell how much of the
  start-up is those libraries' own and how much is Stagehand's code;

then runs, alternating and each ``--runs`` times, ``manage.py check`` and ``manage.py
help`` in each of them and Stagehand's ``check``, ``help`` and ``list_worlds``.

``list_worlds`` is compared with the anchors' ``help``: a command that only reads runs
no system checks (as Django's own ``shell``, ``dbshell`` and ``diffsettings``), so it
is the start-up every command pays plus its work (one query of an empty table and a
line of output), and the anchors have no table of their own to list.

Each figure is the median over the runs of the child's CPU time (user + system, from
``os.wait4``) and its peak resident memory (``ru_maxrss``). CPU time, not wall time:
on a shared machine the wall time measures the neighbours. The load average is
printed after each round. Target: every CPU ratio against the empty project <= 1.5x.

Stagehand runs in this environment (the embedded defaults unless DATABASE_URL and
friends say otherwise) with a scratch STAGEHAND_VAR_DIR, migrated once before timing.
Every project's code is compiled to bytecode first (``compileall``), as the production
image does at build time: with PYTHONDONTWRITEBYTECODE set (the images and some shells
set it) Python would otherwise compile Stagehand's modules again in every process,
which the anchors, a few lines of code each, hardly pay. One untimed run of each
command follows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.settings.base import THIRD_PARTY_APPS  # noqa: E402

TARGET = 1.5
ANCHORS = ("empty", "libraries")

# (command, arguments, the anchors' command it is compared with)
OURS = [
    ("check", ["check"], "check"),
    ("help", ["help"], "help"),
    ("list_worlds", ["list_worlds"], "help"),
]
THEIRS = [("check", ["check"]), ("help", ["help"])]


def run(cwd: Path, args: list[str], env: dict) -> tuple[float, float]:
    """Run ``manage.py ARGS`` in ``cwd``; return its CPU seconds and peak RSS in MiB."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    error = process.stderr.read().decode()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"manage.py {' '.join(args)} in {cwd} failed:\n{error}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def start_project(folder: Path, apps: list[str]) -> Path:
    """Create a startproject project in ``folder`` with ``apps`` added; return it."""
    folder.mkdir()
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "project", str(folder)],
        check=True,
    )
    if apps:
        with open(folder / "project" / "settings.py", "a") as settings:
            settings.write(f"\nINSTALLED_APPS += {apps!r}\n")
    return folder


def measure(runs: int, quiet: bool) -> tuple[dict, list[float]]:
    """Return the samples of every (project, command) and the load after each round."""
    with tempfile.TemporaryDirectory(prefix="stagehand-bench-startup-") as scratch:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        ours_env = {**env, "STAGEHAND_VAR_DIR": str(Path(scratch) / "var")}
        plan = [("ours", ROOT, ours_env, args, name) for name, args, _ in OURS]
        for anchor, apps in zip(ANCHORS, ([], THIRD_PARTY_APPS), strict=True):
            folder = start_project(Path(scratch) / anchor, apps)
            plan += [(anchor, folder, env, args, name) for name, args in THEIRS]
        anchors = [Path(scratch) / anchor for anchor in ANCHORS]
        for folder in (ROOT / "apps", ROOT / "config", *anchors):
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", folder], check=True
            )
        run(ROOT, ["migrate", "--noinput", "-v0"], ours_env)
        for _project, cwd, env_, args, _name in plan:
            run(cwd, args, env_)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {
            (project, name): [] for project, _cwd, _env, _args, name in plan
        }
        loads = []
        for round_ in range(runs):
            for project, cwd, env_, args, name in plan:
                samples[project, name].append(run(cwd, args, env_))
            loads.append(os.getloadavg()[0])
            if not quiet:
                print(f"round {round_ + 1}/{runs}: load average {loads[-1]:.2f}")
    return samples, loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="figures as JSON")
    options = parser.parse_args()
    samples, loads = measure(options.runs, options.json)

    def median(project: str, name: str) -> tuple[float, float]:
        cpu = statistics.median(s[0] for s in samples[project, name])
        rss = statistics.median(s[1] for s in samples[project, name])
        return cpu, rss

    results = []
    for name, _args, anchor in OURS:
        cpu, rss = median("ours", name)
        row = {"command": name, "anchor_command": anchor, "cpu_s": round(cpu, 3)}
        row["rss_mib"] = round(rss, 1)
        for project in ANCHORS:
            anchor_cpu, anchor_rss = median(project, anchor)
            row[f"{project}_cpu_s"] = round(anchor_cpu, 3)
            row[f"{project}_rss_mib"] = round(anchor_rss, 1)
            row[f"cpu_ratio_{project}"] = round(cpu / anchor_cpu, 2)
            row[f"rss_ratio_{project}"] = round(rss / anchor_rss, 2)
        results.append(row)
    load = {"min": round(min(loads), 2), "max": round(max(loads), 2)}
    if options.json:
        print(json.dumps({"runs": options.runs, "load": load, "results": results}))
        return

    print(
        f"\nmedians of {options.runs} alternating runs, "
        f"load average {load['min']:.2f} to {load['max']:.2f}"
    )
    header = (
        "command",
        "CPU",
        "empty",
        "ratio",
        "libraries",
        "ratio",
        "RSS",
        "empty",
        "libraries",
    )
    lines = [
        (
            f"{row['command']} (vs {row['anchor_command']})",
            f"{row['cpu_s']:.2f} s",
            f"{row['empty_cpu_s']:.2f} s",
            f"{row['cpu_ratio_empty']:.2f}x",
            f"{row['libraries_cpu_s']:.2f} s",
            f"{row['cpu_ratio_libraries']:.2f}x",
            f"{row['rss_mib']:.0f} MiB",
            f"{row['empty_rss_mib']:.0f} MiB",
            f"{row['libraries_rss_mib']:.0f} MiB",
        )
        for row in results
    ]
    widths = [max(map(len, column)) for column in zip(header, *lines, strict=True)]
    for line in (header, *lines):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    for project in ANCHORS:
        worst = max(row[f"cpu_ratio_{project}"] for row in results)
        verdict = "meets" if worst <= TARGET else "misses"
        print(
            f"worst CPU ratio to the {project} project {worst:.2f}x {verdict} {TARGET}x"
        )


if __name__ == "__main__":
    main()
