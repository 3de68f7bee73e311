"""The checked-in gRPC code is what scripts/gen_proto.sh makes from proto/ (regenerate if this fails)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "serve" / "grpc" / "_generated"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)], check=True,
                   env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}, cwd=ROOT)
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    checked_in = {p.relative_to(GENERATED): p.read_bytes() for p in GENERATED.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts}
    assert sorted(fresh) == sorted(checked_in)
    stale = [str(name) for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale generated code: {stale}; run scripts/gen_proto.sh"
