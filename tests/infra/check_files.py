"""Assertions on the buildspecs, the workflows and terraform/.

Usage: check_files.py {buildspec|batch-buildspecs|export-buildspec|workflow|release|terraform-root|checkov-skips} REPO_ROOT

The buildspec checks also run each build phase in bash with a stub `ecrbuild`
on PATH that records its arguments, so they prove which ecrbuild command
each (batch) build runs, not only what the text says.

Each subcommand prints every assertion as "ok" or "FAIL" and exits 1 if any
failed.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile

import yaml

PHASES = ("install", "pre_build", "build", "post_build")

# Anything that talks to the registry on its own. ecrbuild is the only pusher.
FORBIDDEN = [
    (re.compile(r"\bdocker\s+(image\s+)?push\b"), "docker push"),
    (re.compile(r"\bdocker\s+login\b"), "docker login"),
    (re.compile(r"\bget-login(-password)?\b"), "aws ecr get-login / get-login-password"),
    (re.compile(r"\becr\s+put-image\b"), "aws ecr put-image"),
    (re.compile(r"\bdocker\s+buildx\b"), "docker buildx (can push with --push)"),
    (re.compile(r"--push\b"), "a --push flag"),
]

# ecrbuild in command position: start of a line, or after ; & | $( then do.
ECRBUILD_CALL = re.compile(r"(?:^|[;&|]|\$\(|\bthen\b|\bdo\b)[ \t]*ecrbuild\b(?P<rest>[^\n;&|]*)", re.M)
ECRBUILD_RUN = re.compile(r'^[ \t]*ecrbuild[ \t]+--sha[ \t]+"\$CODEBUILD_RESOLVED_SOURCE_VERSION"(?:[ \t]|$)', re.M)


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        print(("ok    " if ok else "FAIL  ") + message)
        if not ok:
            self.items.append(message)

    def exit_code(self) -> int:
        return 1 if self.items else 0


def _commands(phase: dict) -> list[str]:
    out = []
    for block in ("commands", "finally"):
        for cmd in phase.get(block) or []:
            out.append(str(cmd))
    return out


SHA = "0123456789abcdef0123456789abcdef01234567"


def _load_yaml(path: str):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _check_phases(f: Failures, spec: dict, label: str, download_vars: tuple[tuple[str, str], ...]) -> dict:
    """What every buildspec here must satisfy: ecrbuild is the only pusher."""
    f.check(str(spec.get("version")) == "0.2", f"{label}: version is 0.2 (got {spec.get('version')!r})")
    f.check((spec.get("env") or {}).get("shell") == "bash", f"{label}: env.shell is bash (the commands use bash)")

    phases = spec.get("phases") or {}
    f.check(set(phases) <= set(PHASES), f"{label}: only known phases ({sorted(phases)})")
    f.check("post_build" not in phases,
            f"{label}: no post_build phase (CodeBuild runs it even after a failed build)")
    f.check("build" in phases, f"{label}: a build phase exists")

    for name, phase in phases.items():
        for cmd in _commands(phase or {}):
            for pattern, label_ in FORBIDDEN:
                f.check(not pattern.search(cmd), f"{label}: {name}: no {label_}")
            if name != "build":
                for m in ECRBUILD_CALL.finditer(cmd):
                    f.check(m.group("rest").strip() == "--version",
                            f"{label}: {name}: ecrbuild is only run for --version outside the build phase "
                            f"(found 'ecrbuild{m.group('rest')}')")
            # Every command block must at least parse as bash.
            syntax = subprocess.run(["bash", "-n"], input=cmd, capture_output=True, text=True)
            f.check(syntax.returncode == 0, f"{label}: {name}: command parses as bash {syntax.stderr.strip()}")

    for name in ("install", "build"):
        f.check((phases.get(name) or {}).get("on-failure") == "ABORT", f"{label}: {name}: on-failure is ABORT")

    install = "\n".join(_commands(phases.get("install") or {}))
    for url_var, sum_var in download_vars:
        f.check(url_var in install and sum_var in install, f"{label}: install reads {url_var} and {sum_var}")
    if "ECRBUILD_DOWNLOAD_URL" in install:
        f.check(re.search(r"sha256sum\s+--check", install) is not None,
                f"{label}: install: a downloaded ecrbuild is verified with sha256sum --check")
    return phases


def _check_cargo_fallback(f: Failures, spec: dict, label: str) -> None:
    install = "\n".join(_commands((spec.get("phases") or {}).get("install") or {}))
    f.check("--locked" in install, f"{label}: install: cargo builds with --locked (Cargo.lock decides the versions)")
    cache_paths = ((spec.get("cache") or {}).get("paths")) or []
    f.check(any(p.startswith("target/") for p in cache_paths), f"{label}: cache: target/ is cached")
    f.check(any(".cargo" in p for p in cache_paths), f"{label}: cache: the cargo home is cached")


def run_build_phase(spec: dict, env: dict[str, str]) -> tuple[int, list[dict], str]:
    """Runs the build phase's commands in bash, in order, with a stub ecrbuild.

    Returns (exit code, calls, stderr); each call is {"argv": [...], "ECR_REPOSITORY": ...}.
    """
    build = (spec.get("phases") or {}).get("build") or {}
    with tempfile.TemporaryDirectory() as tmp:
        stub_dir = os.path.join(tmp, "bin")
        os.mkdir(stub_dir)
        log = os.path.join(tmp, "calls")
        stub = os.path.join(stub_dir, "ecrbuild")
        with open(stub, "w", encoding="utf-8") as fh:
            fh.write('#!/bin/bash\n{ printf \'%s\\n\' "ECR_REPOSITORY=${ECR_REPOSITORY:-}" "$#"; '
                     'printf \'%s\\n\' "$@"; } >>"$ECRBUILD_STUB_LOG"\n')
        os.chmod(stub, 0o755)
        full_env = {"PATH": f"{stub_dir}:/usr/bin:/bin", "HOME": tmp, "ECRBUILD_STUB_LOG": log,
                    "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA}
        full_env.update(env)
        rc, err = 0, ""
        for cmd in build.get("commands") or []:
            proc = subprocess.run(["bash", "-c", str(cmd)], env=full_env, capture_output=True, text=True, check=False)
            err += proc.stderr
            if proc.returncode != 0:
                rc = proc.returncode
                break
        calls = []
        if os.path.exists(log):
            lines = open(log, encoding="utf-8").read().split("\n")
            i = 0
            while i + 1 < len(lines):
                repo = lines[i].split("=", 1)[1]
                n = int(lines[i + 1])
                calls.append({"argv": lines[i + 2:i + 2 + n], "ECR_REPOSITORY": repo})
                i += 2 + n
    return rc, calls, err


def check_buildspec(root: str) -> int:
    f = Failures()
    spec = _load_yaml(os.path.join(root, "buildspec.yml"))
    phases = _check_phases(f, spec, "buildspec.yml", (("ECRBUILD_DOWNLOAD_URL", "ECRBUILD_DOWNLOAD_SHA256"),))
    _check_cargo_fallback(f, spec, "buildspec.yml")
    f.check("batch" not in spec, "buildspec.yml: no batch section (the batch buildspecs are separate files)")

    build_cmds = _commands(phases.get("build") or {})
    runs = [c for c in build_cmds if ECRBUILD_RUN.search(c)]
    f.check(len(runs) == 1, 'the build phase runs ecrbuild --sha "$CODEBUILD_RESOLVED_SOURCE_VERSION" exactly once')
    calls = sum(len(ECRBUILD_CALL.findall(c)) for c in build_cmds)
    f.check(calls == 1, f"the build phase calls ecrbuild once and nothing else calls it there (found {calls})")

    rc, calls, err = run_build_phase(spec, {})
    f.check(rc == 0 and [c["argv"] for c in calls] == [["--sha", SHA]],
            f"run: the build phase runs exactly `ecrbuild --sha <commit>` (rc {rc}, calls {calls}) {err.strip()}")
    rc, calls, err = run_build_phase(spec, {"ECRBUILD_WAIT_SCAN": "1"})
    f.check(rc == 0 and [c["argv"] for c in calls] == [["--sha", SHA, "--wait-scan"]],
            f"run: with ECRBUILD_WAIT_SCAN=1 it adds --wait-scan (rc {rc}, calls {calls}) {err.strip()}")
    return f.exit_code()


def _compute_types_allowed(root: str) -> list[str]:
    text = open(os.path.join(root, "terraform", "variables.tf"), encoding="utf-8").read()
    m = re.search(r'variable\s+"batch_compute_types_allowed"\s*\{.*?default\s*=\s*\[(.*?)\]', text, re.S)
    return re.findall(r'"([A-Z0-9_]+)"', m.group(1)) if m else []


def check_multiarch(f: Failures, root: str) -> None:
    label = "buildspec-multiarch.yml"
    spec = _load_yaml(os.path.join(root, label))
    _check_phases(f, spec, label, (("ECRBUILD_DOWNLOAD_URL", "ECRBUILD_DOWNLOAD_SHA256"),
                                   ("ECRBUILD_DOWNLOAD_URL_AARCH64", "ECRBUILD_DOWNLOAD_SHA256_AARCH64")))
    _check_cargo_fallback(f, spec, label)
    batch = spec.get("batch") or {}
    f.check(set(batch) == {"fast-fail", "build-graph"} and batch.get("fast-fail") is True,
            f"{label}: batch is a build-graph with fast-fail: true (got {sorted(batch)})")
    graph = batch.get("build-graph") or []
    entries = {e.get("identifier"): e for e in graph}
    f.check([e.get("identifier") for e in graph] == ["amd64", "arm64", "index"],
            f"{label}: the graph is amd64, arm64, index (got {list(entries)})")
    allowed = _compute_types_allowed(root)
    f.check(bool(allowed), "terraform/variables.tf: batch_compute_types_allowed has a default")
    for ident, entry in entries.items():
        env = entry.get("env") or {}
        f.check("buildspec" not in entry, f"{label}: {ident} runs this buildspec (no other file)")
        f.check((env.get("variables") or {}).get("ECRBUILD_BATCH_STEP") == ident,
                f"{label}: {ident} sets ECRBUILD_BATCH_STEP={ident}")
        f.check(env.get("compute-type") in allowed,
                f"{label}: {ident} compute type {env.get('compute-type')} is in batch_compute_types_allowed {allowed}")
    amd64, arm64, index = (entries.get(k) or {} for k in ("amd64", "arm64", "index"))
    f.check((amd64.get("env") or {}).get("type") == "LINUX_CONTAINER" and
            (amd64.get("env") or {}).get("privileged-mode") is True and "depend-on" not in amd64,
            f"{label}: amd64 is a privileged LINUX_CONTAINER build with no dependency")
    f.check((arm64.get("env") or {}).get("type") == "ARM_CONTAINER" and
            "aarch64" in str((arm64.get("env") or {}).get("image")) and
            (arm64.get("env") or {}).get("privileged-mode") is True and "depend-on" not in arm64,
            f"{label}: arm64 is a privileged ARM_CONTAINER build on an aarch64 image with no dependency")
    f.check(index.get("depend-on") == ["amd64", "arm64"] and (index.get("env") or {}).get("privileged-mode") is False,
            f"{label}: index depends on amd64 and arm64 and is not privileged (no Docker)")

    expected = {
        "amd64": [["--sha", SHA, "--platform", "linux/amd64", "--defer-index"]],
        "arm64": [["--sha", SHA, "--platform", "linux/arm64", "--defer-index"]],
        "index": [["index", "--sha", SHA, "--platform", "linux/amd64,linux/arm64"]],
    }
    for ident, argv in expected.items():
        variables = {k: str(v) for k, v in (((entries.get(ident) or {}).get("env") or {}).get("variables") or {}).items()}
        rc, calls, err = run_build_phase(spec, variables)
        f.check(rc == 0 and [c["argv"] for c in calls] == argv,
                f"run {label} {ident}: exactly `ecrbuild {' '.join(argv[0])}` (rc {rc}, calls {calls}) {err.strip()}")
    rc, calls, _ = run_build_phase(spec, {})
    f.check(rc != 0 and not calls, f"run {label} as a plain build: fails without calling ecrbuild (rc {rc}, calls {calls})")


def check_services(f: Failures, root: str) -> None:
    label = "buildspec-services.yml"
    path = os.path.join(root, label)
    text = open(path, encoding="utf-8").read()
    spec = yaml.safe_load(text)
    _check_phases(f, spec, label, (("ECRBUILD_DOWNLOAD_URL", "ECRBUILD_DOWNLOAD_SHA256"),))
    _check_cargo_fallback(f, spec, label)
    f.check(re.search(r"^#.*ecrbuild plan --output json", text, re.M) is not None,
            f"{label}: a comment says that `ecrbuild plan --output json` lists the services")
    batch = spec.get("batch") or {}
    entries = batch.get("build-list") or []
    f.check("build-list" in batch and "build-graph" not in batch and "build-matrix" not in batch,
            f"{label}: batch is a build-list (got {sorted(batch)})")
    f.check(len(entries) >= 1, f"{label}: at least one service")
    services = []
    for entry in entries:
        ident = str(entry.get("identifier"))
        service = str(((entry.get("env") or {}).get("variables") or {}).get("ECRBUILD_SERVICE", ""))
        services.append(service)
        f.check(re.fullmatch(r"[A-Za-z0-9_]+", ident) is not None and ident == service.replace("-", "_"),
                f"{label}: identifier {ident!r} is the service name {service!r} (hyphens as underscores)")
        f.check("buildspec" not in entry and "depend-on" not in entry,
                f"{label}: {ident} runs this buildspec, independently")
    f.check(len(set(services)) == len(services), f"{label}: each service once ({services})")

    # Each service's repository: ecrbuild itself reads ECRBUILD_SERVICE_REPOSITORIES (set by Terraform),
    # else ecrbuild.toml; the buildspec passes nothing but the service.
    mapping = " ".join(f"{s}=avarobotics-prod-{s}" for s in services)
    for service in services:
        rc, calls, err = run_build_phase(spec, {"ECRBUILD_SERVICE": service, "ECRBUILD_SERVICE_REPOSITORIES": mapping})
        f.check(rc == 0 and [c["argv"] for c in calls] == [["--sha", SHA, "--service", service]],
                f"run {label} {service}: exactly `ecrbuild --sha <commit> --service {service}` "
                f"(rc {rc}, calls {calls}) {err.strip()}")
    rc, calls, _ = run_build_phase(spec, {"ECRBUILD_SERVICE_REPOSITORIES": mapping})
    f.check(rc != 0 and not calls, f"run {label} as a plain build: fails without calling ecrbuild")


def check_export_buildspec(root: str) -> int:
    """The inline buildspec of the export project (modules/policies/buildspecs/export.yml)."""
    f = Failures()
    label = "export buildspec"
    spec = _load_yaml(os.path.join(root, "terraform", "modules", "policies", "buildspecs", "export.yml"))
    phases = _check_phases(f, spec, label, (("ECRBUILD_DOWNLOAD_URL", "ECRBUILD_DOWNLOAD_SHA256"),))
    install = "\n".join(_commands(phases.get("install") or {}))
    f.check("cargo" not in install and re.search(r'if \[ -z "\$\{ECRBUILD_DOWNLOAD_URL:-\}" \]', install) is not None,
            f"{label}: install needs the prebuilt binary (NO_SOURCE: nothing to build ecrbuild from)")
    f.check("batch" not in spec and "cache" not in spec, f"{label}: no batch, no cache")
    everything = "\n".join(c for p in phases.values() for c in _commands(p or {}))
    f.check(re.search(r"\bdocker\b", everything) is None, f"{label}: no docker command (the project is not privileged)")

    env = {"IMAGE_URI": "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/avarobotics-prod-api:" + SHA,
           "ARTIFACT_BUCKET": "avarobotics-prod-api-exports-123456789012",
           "ARTIFACT_KEY": "exports/api/" + SHA + ".tar"}
    rc, calls, err = run_build_phase(spec, env)
    f.check(rc == 0 and [c["argv"] for c in calls] == [
        ["export", env["IMAGE_URI"], "--to", f"s3://{env['ARTIFACT_BUCKET']}/{env['ARTIFACT_KEY']}"]],
        f"run {label}: exactly `ecrbuild export \"$IMAGE_URI\" --to \"s3://$ARTIFACT_BUCKET/$ARTIFACT_KEY\"` "
        f"(rc {rc}, calls {calls}) {err.strip()}")
    for missing in ("IMAGE_URI", "ARTIFACT_BUCKET", "ARTIFACT_KEY"):
        partial = {k: v for k, v in env.items() if k != missing}
        rc, calls, _ = run_build_phase(spec, partial)
        f.check(rc != 0 and not calls, f"run {label} without {missing}: fails before ecrbuild runs")
    return f.exit_code()


def check_batch_buildspecs(root: str) -> int:
    f = Failures()
    check_multiarch(f, root)
    check_services(f, root)
    return f.exit_code()


def check_workflow(root: str) -> int:
    f = Failures()
    path = os.path.join(root, ".github", "workflows", "start-image-build.yml")
    with open(path, encoding="utf-8") as fh:
        wf = yaml.safe_load(fh)
    # YAML 1.1 reads the key `on` as True.
    on = wf.get("on", wf.get(True))
    f.check(isinstance(on, dict) and set(on) == {"push"}, f"triggered by push only (got {on!r})")
    push = (on or {}).get("push") or {}
    branch = _example_branch(root)
    f.check(push.get("branches") == [branch],
            f"push branches are exactly [{branch!r}], the branch the role trusts (got {push.get('branches')!r})")
    f.check("tags" not in push, "no tag trigger (a tag's sub is refs/tags/…, which the role refuses)")

    perms = wf.get("permissions") or {}
    f.check(perms.get("id-token") == "write", "permissions: id-token: write")
    writes = sorted(k for k, v in perms.items() if v == "write" and k != "id-token")
    f.check(not writes, f"no other write permission (got {writes})")

    jobs = wf.get("jobs") or {}
    assumed = started = False
    for job_name, job in jobs.items():
        f.check("environment" not in job,
                f"job {job_name}: no environment (it would change the OIDC sub and the role would refuse it)")
        for step in job.get("steps") or []:
            uses = str(step.get("uses", ""))
            if uses.startswith("aws-actions/configure-aws-credentials@"):
                with_ = step.get("with") or {}
                assumed = bool(with_.get("role-to-assume"))
                f.check("aws-access-key-id" not in with_ and "aws-secret-access-key" not in with_,
                        "configure-aws-credentials uses OIDC, not stored keys")
            run = str(step.get("run", ""))
            if "aws codebuild start-build" in run:
                started = True
                f.check("--buildspec-override" not in run, "start-build passes no buildspec override")
                starts = re.findall(r"aws codebuild (start-build(?:-batch)?)\b((?:[^\n]*\\\n)*[^\n]*)", run)
                for command, args in starts:
                    f.check("--source-version" in args and '"$GITHUB_SHA"' in args,
                            f"{command} pins the pushed commit (--source-version \"$GITHUB_SHA\")")
                f.check(sorted(c for c, _ in starts) in (["start-build"], ["start-build", "start-build-batch"]),
                        f"starts a build, or a batch build (enable_batch_builds), and nothing else ({[c for c, _ in starts]})")
                if any(c == "start-build-batch" for c, _ in starts):
                    f.check(re.search(r'if \[ "\$\{BATCH:-false\}" = "true" \]', run) is not None and
                            str((step.get("env") or {}).get("BATCH")) == "${{ vars.CODEBUILD_BATCH }}",
                            "start-build-batch only when the repository variable CODEBUILD_BATCH is true")
    f.check(assumed, "a step assumes a role with aws-actions/configure-aws-credentials (role-to-assume)")
    f.check(started, "a step runs aws codebuild start-build")
    return f.exit_code()


RELEASE_TARGETS = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]


def check_release(root: str) -> int:
    f = Failures()
    path = os.path.join(root, ".github", "workflows", "release.yml")
    with open(path, encoding="utf-8") as fh:
        wf = yaml.safe_load(fh)
    on = wf.get("on", wf.get(True))
    f.check(on == {"push": {"tags": ["v*"]}}, f"release: triggered by pushed tags v* only (got {on!r})")
    f.check(wf.get("permissions") == {"contents": "read"}, f"release: workflow permissions are contents: read (got {wf.get('permissions')!r})")

    jobs = wf.get("jobs") or {}
    writers = {name: job.get("permissions") for name, job in jobs.items() if "permissions" in job}
    f.check(len(writers) == 1 and list(writers.values()) == [{"contents": "write"}],
            f"release: exactly one job has permissions, contents: write and nothing else (got {writers})")
    publish_name = next(iter(writers), "")
    publish = jobs.get(publish_name) or {}

    build_jobs = {name: job for name, job in jobs.items() if name != publish_name}
    targets, built = [], []
    for name, job in build_jobs.items():
        matrix = ((job.get("strategy") or {}).get("matrix") or {})
        for entry in matrix.get("include") or []:
            targets.append(entry.get("target"))
            f.check(str(entry.get("runner", "")).startswith("ubuntu-"),
                    f"release: {entry.get('target')} builds on a GitHub-hosted Linux runner ({entry.get('runner')})")
        for step in job.get("steps") or []:
            run = str(step.get("run", ""))
            if re.search(r"\bcargo\b[^\n]*\bbuild\b", run):
                line = next(l for l in run.splitlines() if re.search(r"\bcargo\b.*\bbuild\b", l))
                built.append(line)
                f.check("--locked" in line and "--release" in line and '--target "$TARGET"' in line,
                        f"release: {name} runs cargo build --locked --release --target (got {line.strip()!r})")
                f.check("statically linked" in run, f"release: {name} refuses a binary that is not static")
    f.check(sorted(targets) == sorted(RELEASE_TARGETS), f"release: builds exactly {RELEASE_TARGETS} (got {targets})")
    f.check(len(built) == 1, f"release: one cargo build step, run per target ({len(built)})")

    f.check(publish.get("needs") in ("build", ["build"]) and "build" in build_jobs,
            f"release: the publishing job needs the build job (needs {publish.get('needs')!r})")
    runs = "\n".join(str(s.get("run", "")) for s in publish.get("steps") or [])
    f.check(re.search(r"sha256sum\s+ecrbuild-x86_64-unknown-linux-musl\s+ecrbuild-aarch64-unknown-linux-musl\s*>\s*SHA256SUMS", runs)
            is not None, "release: SHA256SUMS covers both binaries")
    f.check(re.search(r"assets=\(ecrbuild-x86_64-unknown-linux-musl ecrbuild-aarch64-unknown-linux-musl SHA256SUMS\)", runs)
            is not None and "gh release create" in runs and '"${assets[@]}"' in runs,
            "release: both binaries and SHA256SUMS are attached to the GitHub release")

    # Same convention as the other workflow: actions pinned to a release tag
    # (or a commit SHA), never to a branch.
    for job in jobs.values():
        for step in job.get("steps") or []:
            uses = str(step.get("uses", ""))
            if uses:
                ref = uses.rsplit("@", 1)[-1] if "@" in uses else ""
                f.check(re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref) is not None,
                        f"release: {uses} is pinned to a release tag or a commit")
    return f.exit_code()


def _example_branch(root: str) -> str:
    text = open(os.path.join(root, "terraform", "terraform.tfvars.example"), encoding="utf-8").read()
    m = re.search(r'^\s*github_branch\s*=\s*"([^"]+)"', text, re.M)
    return m.group(1) if m else "main"


TAGGABLE = {
    "aws_ecr_repository", "aws_codebuild_project", "aws_cloudwatch_log_group", "aws_iam_role",
    "aws_iam_policy", "aws_iam_openid_connect_provider", "aws_s3_bucket", "aws_sfn_state_machine",
}
UNTAGGABLE = {
    "aws_ecr_lifecycle_policy", "aws_iam_role_policy_attachment", "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_public_access_block", "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_policy",
}


def _blocks(text: str):
    """Yields (kind, type, name, body) of top-level resource/data blocks (brace matching)."""
    for m in re.finditer(r'^(resource|data)\s+"([^"]+)"\s+"([^"]+)"\s*\{', text, re.M):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), m.group(2), m.group(3), text[m.end():i - 1]


def check_terraform_root(root: str) -> int:
    f = Failures()
    tf_dir = os.path.join(root, "terraform")
    files = sorted(glob.glob(os.path.join(tf_dir, "*.tf")))
    text = {os.path.basename(p): open(p, encoding="utf-8").read() for p in files}
    joined = "\n".join(text.values())
    policies_main = open(os.path.join(root, "terraform", "modules", "policies", "main.tf"), encoding="utf-8").read()

    for expected in ("versions.tf", "variables.tf", "outputs.tf", "ecr.tf", "codebuild.tf", "iam.tf", "oidc.tf"):
        f.check(expected in text, f"terraform/{expected} exists")

    f.check(re.search(r'module\s+"policies"\s*\{[^}]*source\s*=\s*"\./modules/policies"', joined, re.S) is not None,
            'the root uses module "policies" from ./modules/policies')
    docs = re.findall(r"^\s*(assume_role_policy|policy|definition)\s*=\s*(.+)$", joined, re.M)
    f.check(len(docs) >= 6, f"found the role, permission and lifecycle documents ({len(docs)})")
    for attr, value in docs:
        f.check(value.strip().startswith("module.policies."),
                f"{attr} = {value.strip()} comes from module.policies")
    for name, body in text.items():
        f.check("jsonencode(" not in body and "aws_iam_policy_document" not in body and "<<" not in body,
                f"{name}: builds no policy document itself (no jsonencode, policy data source or heredoc)")

    f.check(re.search(r"provider\s+\"aws\"\s*\{.*?default_tags\s*\{", joined, re.S) is not None,
            "the aws provider sets default_tags")
    seen_types = set()
    for kind, rtype, rname, body in _blocks(joined):
        if kind != "resource":
            continue
        seen_types.add(rtype)
        if rtype in TAGGABLE:
            f.check(re.search(r"^\s*tags\s*=\s*\{[^}]*\bName\s*=", body, re.M) is not None,
                    f"{rtype}.{rname} has tags with a Name")
        else:
            f.check(rtype in UNTAGGABLE, f"{rtype}.{rname}: known whether taggable (update check_files.py)")
    for rtype in ("aws_ecr_repository", "aws_ecr_lifecycle_policy", "aws_codebuild_project",
                  "aws_cloudwatch_log_group", "aws_iam_openid_connect_provider"):
        f.check(rtype in seen_types, f"declares {rtype}")

    versions = text.get("versions.tf", "")
    f.check(re.search(r'required_version\s*=\s*">=\s*1\.6"', versions) is not None, "terraform >= 1.6")
    f.check(re.search(r'version\s*=\s*">=\s*6\.8,\s*<\s*7\.0"', versions) is not None, "hashicorp/aws >= 6.8, < 7.0")
    variables = text.get("variables.tf", "")
    f.check(re.search(r'variable\s+"region"\s*\{[^}]*default\s*=\s*"ap-northeast-1"', variables, re.S) is not None,
            "region defaults to ap-northeast-1")
    ecr = text.get("ecr.tf", "")
    f.check('image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION"' in ecr, "ECR: IMMUTABLE_WITH_EXCLUSION")
    f.check(re.search(r'compact\(\["latest"', joined) is not None and 'filter_type = "WILDCARD"' in ecr,
            "ECR: `latest` is a WILDCARD exclusion filter")
    f.check(re.search(r"mutable_tag_filters\s*=\s*concat\(local\.moving_tags,\s*\[module\.policies\.staging_tag_pattern\]\)", joined)
            is not None and re.search(r"for_each\s*=\s*local\.mutable_tag_filters", ecr) is not None,
            "ECR: the staging tags (ecrbuild-staging-*) are a WILDCARD exclusion filter beside the moving tags")
    f.check(re.search(r'staging_tag_pattern\s*=\s*"ecrbuild-staging-\*"', policies_main) is not None,
            "ECR: the staging wildcard is ecrbuild-staging-*, the prefix ecrbuild pushes under")
    f.check(re.search(r"scan_on_push\s*=\s*true", ecr) is not None, "ECR: scan on push")
    f.check(re.search(r"force_delete\s*=\s*var\.force_delete", ecr) is not None, "ECR: force_delete is a variable")
    f.check(re.search(r'resource\s+"aws_ecr_repository"\s+"image"\s*\{\s*for_each\s*=\s*local\.repositories\b', ecr) is not None,
            "ECR: one repository per service (for_each = local.repositories)")
    f.check(re.search(r'resource\s+"aws_ecr_lifecycle_policy"\s+"image"\s*\{\s*for_each\s*=\s*aws_ecr_repository\.image\b', ecr)
            is not None, "ECR: the lifecycle policy is on every service repository")
    for rtype in ("aws_ecr_repository", "aws_ecr_lifecycle_policy"):
        f.check(re.search(r'moved\s*\{\s*from\s*=\s*%s\.image\s+to\s*=\s*%s\.image\["api"\]' % (rtype, rtype), ecr)
                is not None, f"ECR: {rtype}.image moves to the default service's instance (no replacement on upgrade)")
    f.check(re.search(r"repository_names\s*=\s*values\(local\.repositories\)", joined) is not None,
            "the policies module gets every service repository (ECR statements scoped to exactly those)")
    f.check("untagged_expire_days" not in re.sub(r'variable\s+"untagged_expire_days"\s*\{.*?\n\}', "", joined, flags=re.S),
            "no untagged-image expiry is passed anywhere (it would break multi-platform indexes)")
    codebuild = text.get("codebuild.tf", "")
    f.check(re.search(r"privileged_mode\s*=\s*true", codebuild) is not None, "CodeBuild: privileged mode")
    for env in ("ECR_REPOSITORY", "AWS_ACCOUNT_ID", "AWS_REGION", "ECRBUILD_SERVICE_REPOSITORIES"):
        f.check(re.search(r'name\s*=\s*"%s"' % env, codebuild) is not None, f"CodeBuild: sets {env}")
    f.check(re.search(r'buildspec\s*=\s*var\.enable_batch_builds\s*\?\s*var\.batch_buildspec\s*:\s*"buildspec\.yml"', codebuild)
            is not None, "CodeBuild: source buildspec is buildspec.yml, or batch_buildspec with batch builds on")
    batch = re.search(r'dynamic\s+"build_batch_config"\s*\{(.*?)\n  \}', codebuild, re.S)
    batch_body = batch.group(1) if batch else ""
    f.check("for_each = var.enable_batch_builds ? [1] : []" in batch_body, "CodeBuild: build_batch_config only with enable_batch_builds")
    f.check(re.search(r"service_role\s*=\s*aws_iam_role\.codebuild_batch\[0\]\.arn", batch_body) is not None,
            "CodeBuild: batches run with their own batch service role")
    f.check(re.search(r"combine_artifacts\s*=\s*false", batch_body) is not None, "CodeBuild: combine_artifacts = false")
    f.check(re.search(r"restrictions\s*\{[^}]*compute_types_allowed[^}]*maximum_builds_allowed", batch_body, re.S) is not None,
            "CodeBuild: batch restrictions on compute types and build count")
    f.check(re.search(r"timeout_in_mins\s*=", batch_body) is not None, "CodeBuild: batch timeout")
    f.check(re.search(r"retention_in_days\s*=", codebuild) is not None, "log group has a retention")
    _check_export_root(f, text.get("export.tf", ""))
    return f.exit_code()


def _resource_body(text: str, rtype: str, name: str) -> str:
    for kind, t, n, body in _blocks(text):
        if kind == "resource" and t == rtype and n == name:
            return body
    return ""


def _check_export_root(f: Failures, export: str) -> None:
    f.check(bool(export), "terraform/export.tf exists (the export pipeline)")
    for kind, rtype, name, body in _blocks(export):
        if kind == "resource":
            f.check(re.match(r"\s*count\s*=\s*var\.enable_export \? 1 : 0\b", body) is not None,
                    f"export: {rtype}.{name} exists only with enable_export")
    pab = _resource_body(export, "aws_s3_bucket_public_access_block", "export")
    for attr in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        f.check(re.search(r"\b%s\s*=\s*true\b" % attr, pab) is not None, f"export bucket: {attr} = true")
    f.check('object_ownership = "BucketOwnerEnforced"' in _resource_body(export, "aws_s3_bucket_ownership_controls", "export"),
            "export bucket: BucketOwnerEnforced (no ACLs)")
    sse = _resource_body(export, "aws_s3_bucket_server_side_encryption_configuration", "export")
    f.check('var.export_kms_key_arn == null ? "AES256" : "aws:kms"' in sse and "kms_master_key_id = var.export_kms_key_arn" in sse,
            "export bucket: default encryption AES256, or KMS with export_kms_key_arn")
    lifecycle = _resource_body(export, "aws_s3_bucket_lifecycle_configuration", "export")
    f.check(re.search(r"expiration\s*\{\s*days\s*=\s*var\.export_expire_days", lifecycle) is not None,
            "export bucket: exports expire after export_expire_days")
    f.check(re.search(r"abort_incomplete_multipart_upload\s*\{\s*days_after_initiation\s*=\s*1\s*\}", lifecycle) is not None,
            "export bucket: incomplete multipart uploads are aborted after 1 day")
    f.check("policy = module.policies.export_bucket_policy" in _resource_body(export, "aws_s3_bucket_policy", "export"),
            "export bucket: the TLS-only bucket policy from module.policies")
    project = _resource_body(export, "aws_codebuild_project", "export")
    f.check(re.search(r'source\s*\{\s*type\s*=\s*"NO_SOURCE"\s*buildspec\s*=\s*module\.policies\.export_buildspec\s*\}', project)
            is not None, "export project: NO_SOURCE with the inline buildspec from module.policies")
    f.check(re.search(r"privileged_mode\s*=\s*false", project) is not None, "export project: not privileged")
    f.check('compute_type                = "BUILD_GENERAL1_SMALL"' in project, "export project: BUILD_GENERAL1_SMALL")
    f.check("group_name = aws_cloudwatch_log_group.export[0].name" in project, "export project: its own log group")
    f.check("service_role   = aws_iam_role.export[0].arn" in project, "export project: its own role")
    sfn = _resource_body(export, "aws_sfn_state_machine", "export")
    f.check('type       = "STANDARD"' in sfn, "state machine: STANDARD")
    f.check("definition = module.policies.state_machine_definition" in sfn, "state machine: definition from module.policies")
    f.check("role_arn   = aws_iam_role.export_states[0].arn" in sfn, "state machine: its own role")
    f.check(re.search(r"include_execution_data\s*=\s*false", sfn) is not None and
            'log_destination = "${aws_cloudwatch_log_group.export_states[0].arn}:*"' in sfn,
            "state machine: logs to its own log group, without execution data")
    f.check(re.search(r"tracing_configuration\s*\{\s*enabled\s*=\s*true\s*\}", sfn) is not None, "state machine: X-Ray tracing on")


def check_checkov_skips(root: str) -> int:
    f = Failures()
    path = os.path.join(root, "terraform", ".checkov.yaml")
    lines = open(path, encoding="utf-8").read().splitlines()
    config = yaml.safe_load("\n".join(lines))
    skips = config.get("skip-check") or []
    f.check(all(isinstance(s, str) and re.fullmatch(r"CKV2?_[A-Z]+_\d+", s) for s in skips),
            f"skips are plain check ids (a glob or framework-wide skip would hide new checks): {skips}")
    for skip in skips:
        line = next((l for l in lines if re.match(r"\s*-\s*%s\b" % re.escape(skip), l)), "")
        reason = line.split("#", 1)[1].strip() if "#" in line else ""
        f.check(len(reason) >= 20, f"{skip} has a written reason: {reason!r}")
    return f.exit_code()


def main() -> int:
    commands = {
        "buildspec": check_buildspec,
        "batch-buildspecs": check_batch_buildspecs,
        "export-buildspec": check_export_buildspec,
        "workflow": check_workflow,
        "release": check_release,
        "terraform-root": check_terraform_root,
        "checkov-skips": check_checkov_skips,
    }
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
