"""dvc.yaml's code deps follow the code: every project module a stage's script imports, directly or through other
modules, lies under one of that stage's deps, so an edit to it reruns the stage. The only modules a stage need not
list are those of `core/` (errors, atomic writes, file digests) and `config/` (reading and checking params.yaml,
whose values DVC tracks itself): they decide whether a stage runs, never what it computes. The package's own
__init__ holds nothing (a test below keeps it so)."""
import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
EXEMPT = ("src/bloodcells/core/", "src/bloodcells/config/", "src/bloodcells/__init__.py")


def module_file(name):
    """The file of the project module `name` (bloodcells.x.y), or None when it is not one of the project's."""
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_modules(path):
    """The project modules one file imports, with the packages that hold them (an import runs their __init__)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*parts, base] if base else parts)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {module for module in found if module_file(module)}


def transitive_files(script):
    seen, todo = set(), [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [module_file(module) for module in imported_modules(path)]
    return seen


def stage_definitions():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        yield name, stage.get("do", stage)


def uncovered(stage):
    scripts = re.findall(r"python (src/\w+\.py)", stage["cmd"])
    assert scripts, f"no script in {stage['cmd']!r}"
    deps = [str(dep).rstrip("/") for dep in stage.get("deps", []) if "${" not in str(dep)]
    missing = set()
    for script in scripts:
        for path in transitive_files(ROOT / script):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith(EXEMPT):
                continue
            if not any(relative == dep or relative.startswith(dep + "/") for dep in deps):
                missing.add(relative)
    return sorted(missing)


def test_every_module_a_stage_imports_is_one_of_its_deps():
    missing = {name: files for name, stage in stage_definitions() if (files := uncovered(stage))}
    assert not missing, "dvc.yaml deps miss modules their stage imports:\n" + "\n".join(
        f"  {name}: {', '.join(files)}" for name, files in missing.items())


def test_the_import_walk_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    """The check itself: an import inside a function, a relative import and a package's __init__ all count."""
    package = tmp_path / "bloodcells"
    (package / "sub").mkdir(parents=True)
    for path in (package / "__init__.py", package / "sub" / "__init__.py"):
        path.write_text("")
    (package / "sub" / "a.py").write_text("from . import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..sub.c import g\n")
    (package / "sub" / "c.py").write_text("g = 1\n")
    (tmp_path / "stage.py").write_text("import os\nfrom bloodcells.sub import a\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    files = {path.relative_to(tmp_path).as_posix() for path in transitive_files(tmp_path / "stage.py")}
    assert files == {"stage.py", "bloodcells/__init__.py", "bloodcells/sub/__init__.py", "bloodcells/sub/a.py",
                     "bloodcells/sub/b.py", "bloodcells/sub/c.py"}


def test_the_exempt_package_init_holds_no_code():
    body = ast.parse((SRC / "bloodcells" / "__init__.py").read_text()).body
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)
