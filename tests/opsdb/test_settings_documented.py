"""Every environment variable the settings read is documented in README's settings table, and only those."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READERS = {"env_str", "env_bool", "env_int", "env_float", "env_list"}
# Read by a library, not by opsdb/settings.py, and documented with the settings all the same.
READ_BY_LIBRARIES = {"PROMETHEUS_MULTIPROC_DIR"}


def variables_read() -> set[str]:
    tree = ast.parse((ROOT / "opsdb" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called in READERS or called in ("getenv", "get") and _is_environ(func):
            names.add(node.args[0].value)
    return names


def _is_environ(func) -> bool:
    return isinstance(func, ast.Attribute) and "environ" in ast.unparse(func.value) or ast.unparse(func) == "os.getenv"


def variables_documented() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_readme_documents_every_setting_the_environment_can_change():
    read, documented = variables_read(), variables_documented()

    assert len(read) > 30  # the parser found the settings (it would pass vacuously otherwise)
    assert sorted(read - documented) == [], "read by opsdb/settings.py but missing from README's settings table"
    assert sorted(documented - read - READ_BY_LIBRARIES) == [], "in README's settings table but read by nothing"
