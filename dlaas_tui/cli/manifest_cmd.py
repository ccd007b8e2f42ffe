"""CLI commands: manifest validate | schema | convert.

`validate` is on the fast path (editors and pre-commit hooks call it): it imports the manifest
parser (pydantic, yaml) and nothing of the engines or stores.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .output import print_json, safe_text


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    group = sub.add_parser("manifest", help="validate, describe and convert training manifests")
    msub = group.add_subparsers(dest="manifest_command", metavar="SUBCOMMAND", required=True)

    validate = msub.add_parser(
        "validate",
        help="check manifests; every problem as FILE:LINE:COL (exit 0 valid, 2 invalid)",
        description="Check manifests and report every problem as FILE:LINE:COL: field: message. "
        "Warnings (unknown keys, likely mistakes) do not fail validation.",
    )
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--json", action="store_true", help="one JSON object per file, in a list")
    validate.set_defaults(func=cmd_validate)

    schema = msub.add_parser("schema", help="print the manifest's JSON Schema (for yaml-language-server)")
    schema.set_defaults(func=cmd_schema)

    convert = msub.add_parser("convert", help="print a manifest in WML's or plain FfDL's dialect")
    convert.add_argument("file", metavar="FILE")
    convert.add_argument("--to", required=True, choices=("wml", "ffdl"), help="target dialect")
    convert.set_defaults(func=cmd_convert)


def _summary(manifest: Any) -> dict[str, Any]:
    data = manifest.masked_dict()
    data["_derived"] = {
        "memory_bytes": manifest.memory_bytes,
        "memory_kubernetes": manifest.memory_kubernetes,
        "total_gpus": manifest.total_gpus,
        "max_duration_seconds": manifest.max_duration_seconds,
        "runs": manifest.sweep.run_count() if manifest.sweep else 1,
    }
    return data


def _describe(manifest: Any) -> str:
    learners = f"{manifest.learners} learner{'s' if manifest.learners != 1 else ''}"
    gpus = f"{manifest.gpus} GPU{'s' if manifest.gpus != 1 else ''}"
    if manifest.gpu_type and manifest.gpus:
        gpus += f" ({manifest.gpu_type})"
    parts = [f"{learners} x {gpus}, {manifest.cpus:g} CPU, {manifest.memory}"]
    if manifest.sweep:
        parts.append(f"{manifest.sweep.method} sweep of {manifest.sweep.run_count()} runs")
    return f"{manifest.name}: " + "; ".join(parts)


def cmd_validate(args: argparse.Namespace, ctx: Any) -> int:
    from backend.facade import check_manifest

    results = [check_manifest(path) for path in args.files]
    if args.json:
        print_json([
            {
                "file": r.source,
                "valid": r.ok,
                "errors": [p.to_json() for p in r.errors],
                "warnings": [p.to_json() for p in r.warnings],
                "manifest": _summary(r.manifest) if r.manifest is not None else None,
            }
            for r in results
        ])
    else:
        for r in results:
            for problem in r.problems:
                print(safe_text(str(problem)), file=sys.stderr if problem.severity == "error" else sys.stdout)
            if r.manifest is not None:
                print(safe_text(f"{r.source}: ok: {_describe(r.manifest)}"))
            else:
                count = len(r.errors)
                print(safe_text(f"{r.source}: invalid ({count} error{'s' if count != 1 else ''})"),
                      file=sys.stderr)
    return 0 if all(r.ok for r in results) else 2


def cmd_schema(args: argparse.Namespace, ctx: Any) -> int:
    from backend.facade import manifest_schema

    print_json(manifest_schema())
    return 0


def cmd_convert(args: argparse.Namespace, ctx: Any) -> int:
    from backend.facade import convert_manifest, load_manifest

    converted = convert_manifest(load_manifest(args.file), args.to)
    sys.stdout.write(converted.to_yaml())
    for note in converted.notes:
        print(safe_text(f"note: {note}"), file=sys.stderr)
    return 0
