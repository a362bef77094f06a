"""Lints one rendered permission policy with parliament (fed on stdin).

Usage: run_parliament.py DOCUMENTS_JSON DOCUMENT_NAME

Runs the default and the community auditors at every severity. A finding is
accepted only if parliament-ignores.yaml lists its issue, this document and
the exact flagged actions, with a reason. Exit 0 means no other finding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))


def load_ignores() -> list[dict]:
    with open(os.path.join(HERE, "parliament-ignores.yaml"), encoding="utf-8") as f:
        ignores = yaml.safe_load(f) or []
    for entry in ignores:
        if not str(entry.get("reason", "")).strip():
            raise SystemExit(f"parliament-ignores.yaml: entry without a reason: {entry}")
    return ignores


def accepted(finding: dict, document: str, ignores: list[dict]) -> dict | None:
    actions = sorted(finding.get("location", {}).get("actions") or [])
    for entry in ignores:
        if (entry["issue"] == finding["issue"] and entry["document"] == document
                and sorted(entry["actions"]) == actions):
            return entry
    return None


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    docs_path, name = sys.argv[1], sys.argv[2]
    with open(docs_path, encoding="utf-8") as f:
        policy = json.load(f)[name]
    parliament = os.path.join(os.path.dirname(sys.executable), "parliament")
    proc = subprocess.run(
        [parliament, "--include-community-auditors", "--minimum_severity", "INFO", "--json"],
        input=policy, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        print(f"parliament failed (exit {proc.returncode}):\n{proc.stderr}", file=sys.stderr)
        return 1
    findings = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 1 and not findings:
        print("parliament exited 1 without findings", file=sys.stderr)
        return 1
    ignores = load_ignores()
    failed = 0
    for finding in findings:
        entry = accepted(finding, name, ignores)
        if entry:
            print(f"accepted {finding['issue']} {finding['location'].get('actions')}: {entry['reason']}")
        else:
            failed += 1
            print(f"FINDING {json.dumps(finding)}")
    print(f"{name}: {len(findings)} finding(s), {failed} not accepted")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
