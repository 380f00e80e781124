"""Golden outputs of `cartlab analyze --protocol nct04762485` and `cartlab report` (issue 14 acceptance).

Record once, before a refactoring, then check after it that every file is identical:

    .venv/bin/python benchmarks/golden.py record DIR     # writes DIR/{seed,cohort}/... and DIR/manifest.json
    .venv/bin/python benchmarks/golden.py check DIR      # re-runs into a temporary folder and compares

Inputs: the shipped seed case and a 200-subject synthetic cohort (seed 7). Each file is compared by
the SHA-256 of its normalised text: `analysis.json` without the engines' run times, HTML without
the generation date and version line, a PDF by its page count (its bytes depend on the folder it
is rendered in). A difference lists the files and, for CSV tables, the first
differing rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

N_SUBJECTS, SEED = 200, 7


def _cartlab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "cartlab", *args], check=True, capture_output=True, text=True)


def _normalise(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name == "analysis.json":
        meta = json.loads(data)
        # not compared: the version, the install path of the protocol file, and what the redesign
        # added or reshaped on purpose (issue 14: resolved options and criteria versions recorded)
        meta.pop("cartlab_version", None)
        meta.pop("options", None)
        meta.pop("criteria", None)
        (meta.get("protocol") or {}).pop("path", None)
        for e in meta.get("engines", []):
            e.pop("seconds", None)
        for i in meta.get("inputs", []):
            i.pop("sha256", None) if i.get("file") else None
        return json.dumps(meta, indent=1, sort_keys=True).encode()
    if path.suffix == ".pdf":
        # WeasyPrint's bytes depend on the absolute folder the page is rendered in (the same HTML
        # rendered in /tmp/pdfdet/cp1 and /tmp/pdfdet/cpx2: 298,393 vs 298,410 bytes, session 41), so
        # a PDF is compared by its page count; the HTML it is rendered from is compared above.
        pages, bodies = 0, [data]
        for m in re.finditer(rb"/Length (\d+)[^>]*>>\s*stream\r?\n", data):
            raw = data[m.end():m.end() + int(m.group(1))]
            try:
                bodies.append(zlib.decompress(raw))
            except zlib.error:
                pass
        for body in bodies:
            pages += len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", body))
        return f"PDF pages: {pages}".encode()
    if path.suffix == ".html":
        text = data.decode("utf-8")
        text = re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", text)
        text = re.sub(r"cartlab \d+\.\d+\.\d+\S*", "cartlab VERSION", text)
        return text.encode()
    return data


def produce(out: Path) -> None:
    """Write the goldens' inputs and outputs under ``out``."""
    from cartlab.datasets import seed_case_path

    out.mkdir(parents=True, exist_ok=True)
    seed = out / "seed" / "study"
    shutil.copytree(seed_case_path(), seed)
    cohort = out / "cohort" / "study"
    _cartlab("synthetic", "--out", str(cohort), "--n", str(N_SUBJECTS), "--seed", str(SEED))
    for case in (seed, cohort):
        _cartlab("analyze", str(case), "--protocol", "nct04762485", "--out", str(case.parent / "analysis"))
        _cartlab("report", str(case), "--protocol", "nct04762485", "--out", str(case.parent / "report"))


def manifest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(_normalise(p)).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and "study" not in p.relative_to(out).parts
            and p.name != "manifest.json"}


def _first_diff(a: Path, b: Path) -> str:
    if a.suffix != ".csv":
        return ""
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"line {i + 1}:\n    - {x[:300]}\n    + {y[:300]}"
    return f"{len(la)} vs {len(lb)} lines"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("record", "check"):
        print(__doc__)
        return 2
    target = Path(argv[1])
    if argv[0] == "record":
        if target.exists():
            shutil.rmtree(target)
        produce(target)
        (target / "manifest.json").write_text(json.dumps(manifest(target), indent=1))
        print(f"recorded {len(manifest(target))} files in {target}")
        return 0
    # the recorded files, normalised as now (the manifest lists them; their hashes are recomputed so a
    # change of normalisation applies to both sides)
    want = {k: hashlib.sha256(_normalise(target / k)).hexdigest()
            for k in json.loads((target / "manifest.json").read_text())}
    with tempfile.TemporaryDirectory() as tmp:
        now_dir = Path(tmp) / "now"
        produce(now_dir)
        got = manifest(now_dir)
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        for k in bad:
            detail = _first_diff(target / k, now_dir / k) if k in want and k in got else (
                "missing now" if k in want else "new file")
            print(f"DIFFERENT {k}: {detail}")
        print(f"{len(want) - len(bad)} of {len(want)} files identical" + ("" if bad else " (all)"))
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
