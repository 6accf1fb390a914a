"""Time every bad-input case of tests/test_bad_input.py and write the table of
docs/bad-inputs.md: exit status, the one line a user sees, seconds, earlier outputs intact.

    python bench/bad_inputs.py --out docs/bad-inputs.md
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import test_bad_input as cases  # noqa: E402


def the_line(text: str) -> str:
    """The message a user reads: the error line, else the warning, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for marker in ("llmworks: error:", "W&B", "Could not override", "Available options", "Error"):
        found = [ln for ln in lines if marker in ln]
        if found:
            return found[0][:220]
    return lines[-1][:220] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--only", nargs="+", help="time only the cases whose names hold one of these"
    )
    args = parser.parse_args()
    if args.only and args.out:
        parser.error("--only prints its rows; --out rewrites the whole table")
    root, base, files = cases.make_workspace(Path(tempfile.mkdtemp()))
    rows = []
    for case in cases.CASES:
        if args.only and not any(word in case.name for word in args.only):
            continue
        before = cases.snapshot(root)
        start = time.perf_counter()
        proc = cases.run_case(case, root, base, files)
        seconds = time.perf_counter() - start
        after = cases.snapshot(root)
        intact = all(after.get(k) == v for k, v in before.items() if "tokenizers/bpe" not in k)
        line = the_line(proc.stderr if proc.returncode else proc.stdout + proc.stderr)
        line = line.replace(str(root), "<workspace>")
        rows.append((case.name, case.shown, proc.returncode, line, seconds, intact))
        print(f"{case.name}: exit {proc.returncode} in {seconds:.1f} s", flush=True)
    if not args.only and cases._tmpfs_in_namespace():
        rc, err, intact, seconds = cases.encode_on_a_full_disk(root, base, root / "full_disk")
        line = the_line(err).replace(str(root), "<workspace>")
        rows.append(
            ("disk full during encode (a private tmpfs)", "encode", rc, line, seconds, intact)
        )
        print(f"disk full during encode: exit {rc} in {seconds:.1f} s", flush=True)
    header = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({platform.processor() or 'CPU'}), 2 cores, by `python bench/bad_inputs.py`; every "
        "row is also a test (tests/test_bad_input.py). Seconds include Python start-up and "
        "imports: ~1.7 s for a stage without tensors, ~2.5 s for the training and finetune "
        "stages' checks of their sections, the Trainer's arguments and hardware, and the "
        "files they start from (before Lightning loads), ~7 s where the problem shows only "
        "once the stage runs (a diverging loss).\n\n"
        "| input | stage | exit | what the user reads | seconds | earlier outputs intact |\n"
        "|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {n} | `{s}` | {rc} | {line.replace('|', '/')} | {sec:.1f} | {'yes' if ok else 'NO'} |\n"
        for n, s, rc, line, sec, ok in rows
    )
    print(table)
    if args.out:
        args.out.write_text(
            args.out.read_text().split("<!-- table -->")[0] + "<!-- table -->\n" + table
        )


if __name__ == "__main__":
    main()
