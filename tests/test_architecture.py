"""The dependency rule, enforced: the import contracts in `.importlinter` hold, and a broken one fails the check."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(config: Path) -> subprocess.CompletedProcess:
    """Run import-linter on the repository with `config` (no cache, so edits are always seen)."""
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_import_contracts_are_kept():
    result = lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_contract_the_code_breaks_fails_the_check(tmp_path):
    """The checker sees real imports: a contract forbidding the backend the engine it runs on is reported broken."""
    config = tmp_path / "broken.ini"
    config.write_text((ROOT / ".importlinter").read_text() + "\n[importlinter:contract:backend-without-engine]\n"
                      "name = backend without the engine\ntype = forbidden\nsource_modules =\n    backend.api.live\n"
                      "forbidden_modules =\n    neuron_atlas.engine.interventions\n")
    result = lint(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "backend without the engine BROKEN" in result.stdout
    assert "backend.api.live -> neuron_atlas.engine.interventions" in result.stdout
