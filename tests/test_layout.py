"""The house rules that hold the layout together (DESIGN.md "Layout", ARCHITECTURE.md).

- Every setting the code reads has its default in ``jobadmin/conf.py`` (or is one of
  Django's own) and read as ``settings.NAME``: no ``getattr(settings, "NAME", default)``
  whose default hides an undeclared setting, and no environment read outside the settings.
- The import contract in ``pyproject.toml`` (import-linter) is kept: apps import downwards
  only and nothing imports ``console``. ``make lint`` runs it too; here it fails ``pytest``
  alone as well.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from django.conf import global_settings

ROOT = Path(__file__).resolve().parent.parent
APPS = ("jobs", "live", "monitoring", "console", "jobadmin")
SETTINGS_FILE = ROOT / "jobadmin" / "settings.py"
# The defaults module: it sets what a host left out, so it reads around ``settings.NAME``.
CONF_FILE = ROOT / "jobadmin" / "conf.py"
# Settings of other packages that jobadmin.conf gives a default where the host has none.
THIRD_PARTY = {"Q_CLUSTER", "CHANNEL_LAYERS", "ASGI_APPLICATION"}


def _sources() -> Iterator[Path]:
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts and path not in (SETTINGS_FILE, CONF_FILE):
                yield path


def _declared() -> set[str]:
    """What the apps may read: JobAdmin's settings (each with its default in ``jobadmin.conf``, so a
    host need not set it) and Django's own; not what only the standalone project's settings set."""
    conf = importlib.import_module("jobadmin.conf")
    return {*conf.SETTINGS, *THIRD_PARTY, *(name for name in dir(global_settings) if name.isupper())}


def _is(node: ast.AST, dotted: str) -> bool:
    """``node`` is the expression ``dotted`` (``settings``, ``os.environ``)."""
    *owner, name = dotted.split(".")
    if not owner:
        return isinstance(node, ast.Name) and node.id == name
    return isinstance(node, ast.Attribute) and node.attr == name and _is(node.value, ".".join(owner))


def settings_problems(tree: ast.AST, declared: set[str], where: str) -> list[str]:
    """What in one module reads a setting that is not declared, or reads around the settings."""
    problems = []
    allowed_environ_writes: set[int] = set()
    for node in ast.walk(tree):
        # os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...) chooses the settings; it reads none.
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "setdefault"
            and _is(node.func.value, "os.environ")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "DJANGO_SETTINGS_MODULE"
        ):
            allowed_environ_writes.add(id(node.func.value))
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and _is(node.func, "getattr") and node.args and _is(node.args[0], "settings"):
            problems.append(f"{line}: getattr(settings, ...): declare the setting and read settings.NAME")
        elif isinstance(node, ast.Attribute) and _is(node.value, "settings") and node.attr.isupper():
            if node.attr not in declared:
                problems.append(f"{line}: settings.{node.attr} has no default in jobadmin/conf.py")
        elif (_is(node, "os.environ") and id(node) not in allowed_environ_writes) or _is(node, "os.getenv"):
            problems.append(f"{line}: the environment is read in jobadmin/settings.py only")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if {alias.name for alias in node.names} & {"environ", "getenv"}:
                problems.append(f"{line}: the environment is read in jobadmin/settings.py only")
    return problems


def test_every_setting_the_code_reads_is_declared_in_the_settings_module() -> None:
    declared = _declared()
    problems = []
    for path in _sources():
        problems += settings_problems(ast.parse(path.read_text()), declared, str(path.relative_to(ROOT)))
    assert not problems, "\n".join(problems)


def test_the_settings_check_finds_each_way_around_the_settings() -> None:
    """The check itself: each of these is one problem; the declared read and the module choice are none."""
    declared = _declared()
    source = """
import os
from django.conf import settings
a = getattr(settings, "JOBADMIN_SOMETHING_NEW", 1)
b = settings.JOBADMIN_SOMETHING_NEW
c = os.environ.get("JOBADMIN_SOMETHING_NEW")
d = os.environ["X"]
e = os.getenv("X")
f = settings.JOBADMIN_QUEUES
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
"""
    problems = settings_problems(ast.parse(source), declared, "example.py")
    assert sorted(int(p.split(":")[1]) for p in problems) == [4, 5, 6, 7, 8], problems


def test_the_import_contract_is_kept() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


# --- The engine stands alone (DESIGN.md "Layout") ---------------------------------------------

# Above the engine: the jobs API and the jobs admin. Everything else in jobs/ is the engine.
ABOVE_THE_ENGINE = ("api", "admin")
# What the engine may not import: DRF's view layer (a params serializer, through DRF's
# validation API, is where the engine meets DRF), drf-spectacular and the admin.
NOT_FOR_THE_ENGINE = (
    "drf_spectacular",
    "django.contrib.admin",
    *(
        f"rest_framework.{name}"
        for name in (
            "authentication",
            "authtoken",
            "decorators",
            "filters",
            "generics",
            "metadata",
            "mixins",
            "negotiation",
            "pagination",
            "parsers",
            "permissions",
            "renderers",
            "request",
            "response",
            "routers",
            "schemas",
            "throttling",
            "urls",
            "versioning",
            "views",
            "viewsets",
        )
    ),
)


def engine_modules() -> list[str]:
    """The engine's top-level modules and packages: jobs/ without jobs.api, jobs.admin and the migrations."""
    names = set()
    for path in (ROOT / "jobs").iterdir():
        if path.name in (*ABOVE_THE_ENGINE, "migrations", "__init__.py", "__pycache__", "static", "templates"):
            continue
        if path.suffix == ".py" or (path / "__init__.py").exists():
            names.add(f"jobs.{path.stem}")
    return sorted(names)


def engine_imports_against_the_layout(paths: Iterator[Path]) -> list[str]:
    problems = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                if any(target == bad or target.startswith(bad + ".") for bad in NOT_FOR_THE_ENGINE):
                    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    problems.append(f"{where}:{node.lineno} imports {target}")
    return problems


def test_the_import_contract_names_every_engine_module() -> None:
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (engine,) = [c for c in contracts if c["name"].startswith("The engine imports neither")]
    assert sorted(engine["source_modules"]) == engine_modules()


def test_the_engine_imports_no_view_layer_and_no_admin() -> None:
    paths = (
        path
        for path in sorted((ROOT / "jobs").rglob("*.py"))
        if path.relative_to(ROOT / "jobs").parts[0] not in (*ABOVE_THE_ENGINE, "migrations")
    )
    assert engine_imports_against_the_layout(paths) == []


def test_the_engine_check_sees_each_forbidden_import(tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(
        "from rest_framework import serializers\n"  # allowed: params serializers
        "from rest_framework.views import APIView\n"
        "from rest_framework import viewsets\n"
        "import drf_spectacular.utils\n"
        "from django.contrib import admin\n"
        "from django.contrib.admin import ModelAdmin\n"
    )
    problems = engine_imports_against_the_layout(iter([example]))
    assert sorted({int(p.split(":")[1].split()[0]) for p in problems}) == [2, 3, 4, 5, 6], problems
