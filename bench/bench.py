#!/usr/bin/env python3
"""ecrbuild benchmark driver (run it through bench/run.sh, which prepares the rig and the binary).

Every comparison runs side by side in one process, interleaved A B A B ..., and reports medians,
because the machine has 2 cores and other work runs at the same time. Each command is timed with
os.wait4 and GNU time: wall time, user+sys CPU of the process and everything it waited for, peak
RSS (GNU time's %M), and the CPU time the Docker daemon spent meanwhile.

Scenarios (BENCH_ONLY=warm,skip,labels,tags,cold,big,rss,platforms,export,services[,bigcold] selects some;
default: all but bigcold):
  warm     api/ image, new commit, unchanged sources: ecrbuild vs the shell pipeline
  skip     re-run of an already published SHA: ecrbuild (skips) vs the shell pipeline (re-runs)
  labels   daemon cost of per-build labels (why ecrbuild writes its provenance labels in the registry):
           cached CLI build without / with three unique labels
  tags     ecrbuild warm re-runs from shallow clones in a repository holding 0 and 1,000 SHA tags of
           commits git does not know (each labelled as a `latest` candidate)
  cold     the same as warm with --no-cache on both sides
  big      ~1 GiB / ~50k files, half excluded, FROM scratch + COPY, --no-push --no-cache: ecrbuild
           --full-context (the whole context streamed) vs `docker build` (CLI, classic builder) vs a
           pre-made tar piped into `docker build -` (the floor: the daemon's own unpacking), plus
           ecrbuild's default (only what COPY reads); inputs in the page cache
  rss      peak RSS of ecrbuild --full-context (and the docker CLI, for reference) on 100 MiB, 1 GiB,
           2 GiB contexts
  bigcold  big, with our inputs evicted from the page cache before each run (disk-bound)
  platforms  api/ with a source change per run (the `go build` step re-runs, as on a real commit):
           ecrbuild --platform linux/amd64,linux/arm64 (BuildKit, the build stage cross-compiles natively)
           vs --platform linux/amd64 alone; and vs building the arm64 binary under QEMU emulation, as
           buildx with QEMU would (every Go tool run through qemu-x86_64 user-mode emulation via
           `go build -toolexec`: there is no arm64 Go image offline, and user-mode QEMU translates x86-64
           code the same way it translates arm64, so the compile costs what an emulated arm64 compiler
           would). Both sides use a bench Go image whose build cache also holds the arm64 standard
           library, so only the api package is compiled, as for amd64 in the rig's image.
  export   a ~500 MiB image (FROM scratch, 5 layers of random data, pushed by ecrbuild to the ECR stand-in)
           written to S3 (moto): `ecrbuild export` vs the seed's pipeline (ECR login, `docker pull`,
           `docker save -o`, `aws s3 cp`), from an empty image store each time; wall, peak RSS, temporary disk
  services ecrbuild.toml services mode on a five-service fixture repository (cart, catalog, checkout, orders,
           ui; one repository each, fresh per run; checkout and orders also COPY a shared lib/), pushed to the
           rig's anonymous registry with --auth none:
             (a) a commit that changes only the README: ecrbuild (every service reused from the registry, no
                 daemon) vs the naive buildspec shell (for each service `docker build` tagged SHA and latest,
                 `docker push` of both) and vs the path-filter shell (`git diff --name-only HEAD~1 HEAD`;
                 builds nothing here);
             (b) a commit that changes one service (a different one each round): ecrbuild (that one built,
                 four reused) vs the naive shell (five builds, four cached) vs the path-filter shell (the
                 changed directory built and pushed; checkout and orders also watch lib/).
           Each side works in its own clone of the fixture, so its changes are new to the daemon's layer
           cache and never reach another side. The images are the runtime stage of a prebuilt service, COPY
           only (FROM, WORKDIR, COPY lib/, COPY the service's 1 MiB binary and files, ENV, EXPOSE, USER,
           ENTRYPOINT), from two small bases made by `docker import` and pushed to the anonymous registry
           (no network here): a compile would add the same seconds to every side that builds the service,
           so COPY only measures what the sides differ in, the builds and pushes each one runs or avoids,
           and is the strict case for (b) against the path-filter shell. And the single-service row: api/
           as the service `api` of this repository's own ecrbuild.toml (`--service api`, pointed at a fresh
           ECR stand-in repository by ECRBUILD_SERVICE_REPOSITORIES), a new commit with unchanged sources
           (reused), vs the `warm` scenario's shell pipeline. Every ecrbuild run's JSON `action`s, and the
           services each shell built, are checked: a run that took another path fails the benchmark.
"""

import base64
import io
import json
import os
import platform
import random
import re
import shutil
import stat
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

MIB = 1 << 20
GIB = 1 << 30
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
N = env_int("BENCH_N", 1 if QUICK else 5)
N_COLD = env_int("BENCH_N_COLD", N)
N_RSS = env_int("BENCH_N_RSS", 1 if QUICK else min(N, 3))
N_BIGCOLD = env_int("BENCH_N_BIGCOLD", 1 if QUICK else min(N, 3))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "warm,skip,labels,tags,cold,big,rss,platforms,export,services")
                  .split(",")))
CACHE = os.environ.get("BENCH_CACHE", "/var/lib/ecrbuild-rig/bench-cache")
ECRBUILD = os.path.abspath(os.environ.get("ECRBUILD", os.path.join(REPO_ROOT, "target/release/ecrbuild")))
TIME = "/usr/bin/time"  # GNU time (Debian package `time`)
REGISTRY_LOG = "/var/lib/ecrbuild-rig/logs/registry-ecr.log"
AWS = os.environ.get("BENCH_AWS", "/var/lib/ecrbuild-rig/bench-venv/bin/aws")
GO_IMAGE = os.environ.get("ECRBUILD_RIG_GO_IMAGE", "local/golang:bookworm")
ECR = os.environ.get("ECRBUILD_RIG_ECR_REGISTRY", "127.0.0.1:5002")
ANON = os.environ.get("ECRBUILD_RIG_REGISTRY", "127.0.0.1:5000")

MOTO = os.environ.get("ECRBUILD_RIG_MOTO", "http://127.0.0.1:5001")
# The exported image: layers x bytes of random data each.
EXPORT_LAYERS = (5, 100 * MIB) if not QUICK else (3, 20 * MIB)

# Context trees: (total bytes, files). Half of each is excluded by its .dockerignore.
if QUICK:
    BIG = (192 * MIB, 10_000)
    RSS_TREES = [(24 * MIB, 1_200), BIG, (384 * MIB, 20_000)]
else:
    BIG = (1 * GIB, 50_000)
    RSS_TREES = [(100 * MIB, 5_000), BIG, (2 * GIB, 100_000)]


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def human_size(n):
    return f"{n / GIB:.0f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


class Failed(Exception):
    pass


def daemon_cpu():
    """CPU seconds dockerd has used so far, including the helpers it re-executes and reaps (the
    `docker-untar` that unpacks a build context): utime + stime + cutime + cstime. Other users of the
    daemon add to it too, which is one more reason for medians."""
    try:
        with open("/var/run/docker.pid") as f:
            pid = f.read().strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return float("nan")


def measure(argv, *, cwd, env, logfile, stdin_path=None, stdout_path=None):
    """Run argv to completion; return wall seconds, CPU seconds (user+sys) of the process and what it
    waited for, peak RSS in KiB, and the daemon's CPU seconds over the same interval.

    The command runs under GNU time, whose %M is the peak RSS we report. Not os.wait4's ru_maxrss of a
    child spawned straight from Python: the kernel carries the pre-exec address space's high-water mark
    into the child (exec_mmap -> setmax_mm_hiwater_rss), and with fork or vfork that is Python's own
    RSS, about 14 MiB here (even /bin/true "peaks" at 14 MiB that way). GNU time forks from a ~1 MiB
    process, so its %M is the command's own."""
    with open(logfile, "ab") as err, tempfile.NamedTemporaryFile("r", prefix="time-") as timing:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        stdout = open(stdout_path, "wb") if stdout_path else err
        try:
            err.write(f"\n$ {' '.join(argv)}\n".encode())
            err.flush()
            daemon_before = daemon_cpu()
            started = time.perf_counter()
            proc = subprocess.Popen([TIME, "-q", "-f", "%M", "-o", timing.name, *argv], cwd=cwd, env=env,
                                    stdin=stdin, stdout=stdout, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            daemon = daemon_cpu() - daemon_before
            proc.returncode = os.waitstatus_to_exitcode(status)
            timing.seek(0)
            lines = timing.read().split()
        finally:
            if stdin_path:
                stdin.close()
            if stdout_path:
                stdout.close()
    if proc.returncode != 0:
        with open(logfile, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        raise Failed(f"{argv[0]} exited {proc.returncode}; log {logfile}:\n{tail}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "rss_kib": int(lines[-1]),
        "daemon_cpu": daemon,
    }


def quiet(argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def docker_tags(repository):
    out = quiet(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository]).stdout
    return [line for line in out.split() if not line.endswith(":<none>")]


def image_id(reference):
    out = quiet(["docker", "image", "inspect", "--format", "{{.Id}}", reference])
    return out.stdout.strip() if out.returncode == 0 else None


def rmi(*references):
    refs = [r for r in references if r]
    if refs:
        quiet(["docker", "rmi", *refs])


class Bench:
    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="ecrbuild-bench-")
        self.logfile = os.path.join(self.work, "bench.log")
        self.env = dict(os.environ)
        self.env["DOCKER_BUILDKIT"] = "0"
        self.env.pop("RUST_LOG", None)
        # The AWS CLI (v1) reads the region from AWS_DEFAULT_REGION; CodeBuild sets both.
        self.env.setdefault("AWS_DEFAULT_REGION", self.env.get("AWS_REGION", "us-east-1"))
        self.runs = {}  # name -> list of measurements
        self.extra = {}
        self.created_images = set()
        self.sha_counter = 0
        # Fresh repositories per run: ecrbuild's `latest` bookkeeping reads every SHA tag of the repository
        # (see BENCHMARKS.md), so its cost depends on how many tags earlier runs left behind.
        run_id = datetime.now().strftime("%Y%m%d%H%M%S")
        self.ecr_repository = f"bench/api-{run_id}"
        self.shell_repository = f"bench/api-shell-{run_id}"

    # ------------------------------------------------------------ helpers

    def record(self, name, result):
        self.runs.setdefault(name, []).append(result)
        return result

    def interleaved(self, i, steps):
        """Run the (name, thunk) steps once each, in an order rotated by i so that no side always goes
        first (the daemon may still be cleaning up after the previous build); record and return them."""
        k = i % len(steps)
        return {name: self.record(name, thunk()) for name, thunk in steps[k:] + steps[:k]}

    def median(self, name, key="wall"):
        values = [r[key] for r in self.runs.get(name, [])]
        return statistics.median(values) if values else None

    def fake_sha(self):
        self.sha_counter += 1
        return f"{int(time.time() * 1e6):024x}{self.sha_counter:016x}"[-40:]

    # ------------------------------------------------------------ api workspace (warm, cold, skip)

    def prepare_api(self):
        """A private git checkout holding api/ and the repository's .dockerignore, so each run can use a
        real new commit (ecrbuild's default `--latest auto` then moves latest forward, like the shell)
        and nothing other people edit in the working tree changes the build."""
        self.api = os.path.join(self.work, "api-context")
        os.makedirs(self.api)
        shutil.copytree(os.path.join(REPO_ROOT, "api"), os.path.join(self.api, "api"))
        shutil.copy(os.path.join(REPO_ROOT, ".dockerignore"), self.api)
        git = ["git", "-C", self.api, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        quiet(["git", "init", "-q", "-b", "main", self.api], check=True)
        quiet(git + ["add", "-A"], check=True)
        quiet(git + ["commit", "-q", "-m", "api"], check=True)
        self.git = git

    def new_commit(self, git=None):
        """A new commit of what is staged in `git`'s checkout (the api checkout by default; empty if nothing
        is staged); returns its SHA."""
        git = git or self.git
        self.sha_counter += 1
        # A minute apart: in a shallow clone the commit times are all that orders two commits.
        self.commit_time = max(getattr(self, "commit_time", int(time.time())), int(time.time())) + 60
        env = dict(os.environ, GIT_COMMITTER_DATE=f"@{self.commit_time} +0000",
                   GIT_AUTHOR_DATE=f"@{self.commit_time} +0000")
        quiet(git + ["commit", "-q", "--allow-empty", "-m", f"bench {self.sha_counter}"], check=True, env=env)
        return quiet(git + ["rev-parse", "HEAD"], check=True).stdout.strip()

    def shallow_clone(self):
        """A depth-1 clone of the current commit, as CodeBuild (git_clone_depth = 1) and actions/checkout
        make: git there knows no other commit."""
        clone = tempfile.mkdtemp(prefix="shallow-", dir=self.work)
        quiet(["git", "clone", "-q", "--depth", "1", f"file://{self.api}", clone], check=True)
        return clone

    def ecrbuild_api(self, sha, *flags, repository=None, cwd=None):
        repository = repository or self.ecr_repository
        argv = [ECRBUILD, "--sha", sha, "--repository", repository, "--registry", ECR, "--auth", "ecr",
                "--create-repository", "--build-arg", f"GO_IMAGE={GO_IMAGE}", "--output", "json", *flags]
        out = os.path.join(self.work, "ecrbuild.json")
        result = measure(argv, cwd=cwd or self.api, env=self.env, logfile=self.logfile, stdout_path=out)
        with open(out) as f:
            summary = json.load(f)
        result["summary"] = summary
        ref = f"{ECR}/{repository}:{sha}"
        self.created_images.add(image_id(ref))
        rmi(ref)  # `latest` keeps the newest image (and the layer cache) alive
        return result

    def shell_api(self, sha, *flags):
        repository = self.shell_repository
        image = f"{ECR}/{repository}"
        # $EPOCHREALTIME marks (a bash builtin: no extra process) give the per-step breakdown.
        script = f"""set -euo pipefail
mark() {{ echo "$1 $EPOCHREALTIME" >> "$BENCH_MARKS"; }}
mark start
{AWS} ecr get-login-password | docker login --username AWS --password-stdin {ECR}
mark login
docker build -f api/Dockerfile --build-arg GO_IMAGE={GO_IMAGE} {' '.join(flags)} -t {image}:{sha} .
mark build
docker tag {image}:{sha} {image}:latest
mark tag
docker push {image}:{sha}
mark push_sha
docker push {image}:latest
mark push_latest
"""
        config = tempfile.mkdtemp(prefix="docker-config-", dir=self.work)
        marks = os.path.join(config, "marks")
        env = dict(self.env, DOCKER_CONFIG=config, BENCH_MARKS=marks)
        try:
            result = measure(["bash", "-c", script], cwd=self.api, env=env, logfile=self.logfile)
            with open(marks) as f:
                points = [line.split() for line in f]
            result["phases"] = {name: float(t) - float(prev) for (_, prev), (name, t) in zip(points, points[1:])}
        finally:
            shutil.rmtree(config, ignore_errors=True)
        self.created_images.add(image_id(f"{image}:{sha}"))
        rmi(f"{image}:{sha}")
        return result

    def scenario_warm(self):
        log(f"warm: warming up both sides, then {N} interleaved pairs")
        self.ecrbuild_api(self.new_commit())
        self.shell_api(self.new_commit())
        for i in range(N):
            sha = self.new_commit()
            r = self.interleaved(i, [("warm/ecrbuild", lambda: self.ecrbuild_api(sha)),
                                     ("warm/shell", lambda: self.shell_api(sha))])
            a, b = r["warm/ecrbuild"], r["warm/shell"]
            log(f"  warm {i + 1}/{N}: ecrbuild {a['wall']:.2f}s  shell {b['wall']:.2f}s")
        self.published_sha = sha

    def scenario_skip(self):
        sha = getattr(self, "published_sha", None)
        if sha is None:
            sha = self.new_commit()
            self.ecrbuild_api(sha)
            self.shell_api(sha)
        log(f"skip: {N} interleaved pairs re-running published {sha[:12]}")
        for i in range(N):
            r = self.interleaved(i, [("skip/ecrbuild", lambda: self.ecrbuild_api(sha)),
                                     ("skip/shell", lambda: self.shell_api(sha))])
            a, b = r["skip/ecrbuild"], r["skip/shell"]
            if not a["summary"].get("skipped"):
                raise Failed("ecrbuild did not take the skip path for an already published SHA")
            log(f"  skip {i + 1}/{N}: ecrbuild {a['wall']:.2f}s  shell {b['wall']:.2f}s")

    def registry(self, method, path, body=None, headers=None):
        request = urllib.request.Request(f"http://{ECR}{path}", data=body, method=method, headers=headers or {})
        password = os.environ.get("ECRBUILD_RIG_ECR_PASSWORD", "")
        token = base64.b64encode(f"AWS:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request) as response:
            return response.read(), response.headers

    def registry_requests(self, repository):
        """How many requests the registry has logged for `repository` so far."""
        try:
            with open(REGISTRY_LOG, errors="replace") as f:
                return sum(1 for line in f if " - - [" in line and f" /v2/{repository}/" in line)
        except OSError:
            return 0

    def scenario_tags(self):
        """`latest` at scale: warm runs from shallow clones (git knows no other commit) in a repository
        holding 0 and one holding 1,000 extra SHA tags of commits git does not know, each labelled as a
        `latest` candidate (registry-side copies of the first image, labels included). After the tags
        appear, one run reads them and records them (reported apart); then the two repositories are
        measured side by side."""
        counts = (0, 50) if QUICK else (0, 1000)
        media = "application/vnd.docker.distribution.manifest.v2+json"
        repositories = {}
        for count in counts:
            repository = f"{self.ecr_repository}-tags{count}"
            repositories[count] = repository
            first = self.new_commit()
            self.ecrbuild_api(first, repository=repository, cwd=self.shallow_clone())
            manifest, _ = self.registry("GET", f"/v2/{repository}/manifests/{first}", headers={"Accept": media})
            for _ in range(count):
                self.registry("PUT", f"/v2/{repository}/manifests/{os.urandom(20).hex()}", body=manifest,
                              headers={"Content-Type": media})
            before = self.registry_requests(repository)
            result = self.record(f"tagsfirst/{count}",
                                 self.ecrbuild_api(self.new_commit(), repository=repository,
                                                   cwd=self.shallow_clone()))
            result["registry_requests"] = self.registry_requests(repository) - before
            log(f"tags: {count} unknown SHA tags; first run after they appeared: {result['wall']:.2f}s, "
                f"{result['registry_requests']} registry requests")
        log(f"tags: {N} interleaved pairs of warm runs from shallow clones")

        def warm(count):
            repository = repositories[count]
            clone = self.shallow_clone()
            sha = quiet(["git", "-C", clone, "rev-parse", "HEAD"], check=True).stdout.strip()
            before = self.registry_requests(repository)
            result = self.ecrbuild_api(sha, repository=repository, cwd=clone)
            result["registry_requests"] = self.registry_requests(repository) - before
            shutil.rmtree(clone, ignore_errors=True)
            return result

        for i in range(N):
            self.new_commit()
            r = self.interleaved(i, [(f"tags/{count}", lambda c=count: warm(c)) for count in counts])
            log(f"  tags {i + 1}/{N}: " + "  ".join(
                f"{count} tags {r[f'tags/{count}']['wall']:.2f}s "
                f"({r[f'tags/{count}']['registry_requests']} requests)" for count in counts))
        for repository in repositories.values():
            rmi(*docker_tags(f"{ECR}/{repository}"))

    def scenario_cold(self):
        log(f"cold: {N_COLD} interleaved pairs with --no-cache")
        for i in range(N_COLD):
            sha = self.new_commit()
            r = self.interleaved(i, [("cold/ecrbuild", lambda: self.ecrbuild_api(sha, "--no-cache")),
                                     ("cold/shell", lambda: self.shell_api(sha, "--no-cache"))])
            a, b = r["cold/ecrbuild"], r["cold/shell"]
            log(f"  cold {i + 1}/{N_COLD}: ecrbuild {a['wall']:.2f}s  shell {b['wall']:.2f}s")

    def scenario_labels(self):
        """What the per-build labels cost the daemon: the classic builder turns each `labels` entry into
        its own LABEL step (a container create + commit), and a label whose value changes per build
        never hits the cache. Same cached api/ build through the CLI, without and with three labels."""
        log(f"labels: {N} interleaved pairs of cached CLI builds, without / with 3 per-build labels")
        build = ["docker", "build", "-q", "-f", "api/Dockerfile", "--build-arg", f"GO_IMAGE={GO_IMAGE}"]
        measure(build + ["-t", "bench/labels:plain", "."], cwd=self.api, env=self.env, logfile=self.logfile)
        for i in range(N):
            unique = [f"--label=bench.{k}={self.fake_sha()}" for k in ("a", "b", "c")]
            run = lambda extra, tag: measure(build + extra + ["-t", tag, "."], cwd=self.api, env=self.env,
                                             logfile=self.logfile)
            r = self.interleaved(i, [("labels/plain", lambda: run([], "bench/labels:plain")),
                                     ("labels/three", lambda: run(unique, "bench/labels:three"))])
            a, b = r["labels/plain"], r["labels/three"]
            rmi("bench/labels:three")
            log(f"  labels {i + 1}/{N}: none {a['wall']:.2f}s  three {b['wall']:.2f}s")
        rmi("bench/labels:plain")

    # ------------------------------------------------------------ platforms

    CROSS_IMAGE = "bench/golang-cross:v1"

    def cross_go_image(self):
        """The rig's Go image with the arm64 standard library compiled into its build cache too (once)."""
        if quiet(["docker", "image", "inspect", self.CROSS_IMAGE]).returncode == 0:
            return
        log(f"platforms: making {self.CROSS_IMAGE} (go build std for arm64, once)")
        name = f"bench-cross-{os.getpid()}"
        quiet(["docker", "rm", "-f", name])
        quiet(["docker", "run", "--name", name, "--network", "none", "-e", "CGO_ENABLED=0", "-e", "GOARCH=arm64",
               GO_IMAGE, "go", "build", "-trimpath", "std"], check=True)
        quiet(["docker", "commit", name, self.CROSS_IMAGE], check=True)
        quiet(["docker", "rm", name])

    def source_change(self):
        """A new commit that changes api/'s sources, so `COPY api/` and `go build` run again."""
        self.sha_counter += 1
        with open(os.path.join(self.api, "api", "bench_stamp.go"), "w") as f:
            f.write(f'package main\n\nconst benchStamp = "{self.sha_counter}-{time.time()}"\n')
        quiet(self.git + ["add", "-A"], check=True)
        quiet(self.git + ["commit", "-q", "-m", f"bench {self.sha_counter}"], check=True)
        return quiet(self.git + ["rev-parse", "HEAD"], check=True).stdout.strip()

    def ecrbuild_platforms(self, platforms, repository):
        sha = self.source_change()
        argv = [ECRBUILD, "--sha", sha, "--repository", repository, "--registry", ANON, "--auth", "none",
                "--build-arg", f"GO_IMAGE={self.CROSS_IMAGE}", "--platform", platforms, "--output", "json"]
        out = os.path.join(self.work, "ecrbuild.json")
        result = measure(argv, cwd=self.api, env=self.env, logfile=self.logfile, stdout_path=out)
        with open(out) as f:
            result["summary"] = json.load(f)
        refs = [f"{ANON}/{repository}:{sha}-{p.replace('/', '-')}" for p in platforms.split(",")]
        self.created_images.update(image_id(r) for r in refs)
        rmi(*refs)
        return result

    def emulated_arm64_compile(self):
        """The arm64 binary compiled with every Go tool under user-mode QEMU (see the module docstring)."""
        self.source_change()
        qemu = shutil.which("qemu-x86_64-static") or "/usr/bin/qemu-x86_64-static"
        script = ("cd /src/api && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 /qemu /usr/bin/go build -toolexec /qemu "
                  "-trimpath -ldflags='-s -w' -o /tmp/api . && test -s /tmp/api")
        argv = ["docker", "run", "--rm", "--network", "none", "-v", f"{qemu}:/qemu:ro", "-v", f"{self.api}:/src:ro",
                "-e", "GOFLAGS=-mod=readonly", "-e", "GOTOOLCHAIN=local", "-e", "GOPROXY=off",
                self.CROSS_IMAGE, "sh", "-c", script]
        return measure(argv, cwd=self.api, env=self.env, logfile=self.logfile)

    def scenario_platforms(self):
        if not os.path.exists(shutil.which("qemu-x86_64-static") or "/usr/bin/qemu-x86_64-static"):
            raise Failed("platforms: qemu-user-static is not installed (scripts/rig.sh up installs it)")
        self.cross_go_image()
        run_id = datetime.now().strftime("%Y%m%d%H%M%S")
        two, one = f"bench/platforms-two-{run_id}", f"bench/platforms-one-{run_id}"
        log(f"platforms: warming up, then {N} interleaved runs of two platforms / one platform / QEMU compile")
        self.ecrbuild_platforms("linux/amd64,linux/arm64", two)
        self.ecrbuild_platforms("linux/amd64", one)
        for i in range(N):
            r = self.interleaved(i, [
                ("platforms/two", lambda: self.ecrbuild_platforms("linux/amd64,linux/arm64", two)),
                ("platforms/one", lambda: self.ecrbuild_platforms("linux/amd64", one)),
                ("platforms/qemu", self.emulated_arm64_compile),
            ])
            log(f"  platforms {i + 1}/{N}: two {r['platforms/two']['wall']:.2f}s  one {r['platforms/one']['wall']:.2f}s"
                f"  arm64 compile under QEMU {r['platforms/qemu']['wall']:.2f}s")
        for repository in (two, one):
            rmi(*docker_tags(f"{ANON}/{repository}"))
        # The next scenarios see api/ as committed before.
        os.remove(os.path.join(self.api, "api", "bench_stamp.go"))
        quiet(self.git + ["add", "-A"], check=True)
        quiet(self.git + ["commit", "-q", "-m", "bench: drop the stamp"], check=True)

    def cleanup_created(self):
        """Remove the untagged images our builds left behind (e.g. the build stage of every --no-cache api
        build): the images whose creation appears in our own build output (a step that did not say "Using
        cache") and that are now dangling. Images other builds created, or that are still in use as cache
        parents, are left alone."""
        created, previous = set(), ""
        with open(self.logfile, errors="replace") as f:
            for line in f:
                found = re.search(r"---> ([0-9a-f]{12})\s*$", line)
                if found and "Using cache" not in previous:
                    created.add(found.group(1))
                if line.strip():
                    previous = line
        dangling = set(quiet(["docker", "images", "-q", "-f", "dangling=true"]).stdout.split())
        rmi(*sorted(created & dangling))

    def cleanup_api(self):
        for repository in (self.ecr_repository, self.shell_repository, f"{self.ecr_repository}-svc"):
            rmi(*docker_tags(f"{ECR}/{repository}"))
        rmi(*sorted(i for i in self.created_images if i))
        self.created_images.clear()

    # ------------------------------------------------------------ big contexts

    def tree(self, total, files):
        """Generate (once, cached) a tree and a tar of exactly what ecrbuild sends from it."""
        name = f"tree-{total // MIB}M-{files}f-v1"
        root = os.path.join(CACHE, name)
        tar = root + ".tar"
        if not os.path.exists(root + ".complete"):
            log(f"generating {name} (once; cached in {CACHE})")
            os.makedirs(CACHE, exist_ok=True)
            subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bench/gen_tree.py"), root,
                            "--bytes", str(total), "--files", str(files)], check=True)
            open(root + ".complete", "w").close()
        if not os.path.exists(tar + ".complete"):
            listing = quiet([ECRBUILD, "context", "--list", "--context", root, "-f",
                             os.path.join(root, "Dockerfile")], check=True).stdout
            with open(root + ".list", "w") as f:
                f.write(listing)
            subprocess.run(["tar", "-C", root, "--no-recursion", "--verbatim-files-from", "-T", root + ".list",
                            "--owner=0", "--group=0", "--numeric-owner", "--format=gnu", "-cf", tar], check=True)
            open(tar + ".complete", "w").close()
        return root, tar

    def context_facts(self, root):
        out = quiet([ECRBUILD, "context", "--context", root, "-f", os.path.join(root, "Dockerfile")],
                    check=True).stdout.split()
        return int(out[0]), int(out[2])  # entries, bytes of file data

    # Page cache. This VM runs DAMON proactive reclaim (kdamond, action `pageout`), which evicts page cache
    # that has not been touched for a while, so a tree generated earlier is partly on disk again. Each
    # timed run therefore starts from a known state of its own inputs: all in cache ("hot", the default
    # big-context figures) or none of it (`bigcold`, evicted with POSIX_FADV_DONTNEED on our files only).

    def cache_inputs(self, root, tar, hot):
        paths = [os.path.join(root, line) for line in open(root + ".list").read().splitlines()]
        paths.append(tar)
        buffer = bytearray(1 << 20)
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue  # directories: their metadata is cached by the walk below
                if hot:
                    while os.readv(fd, [buffer]):
                        pass
                else:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        if hot:
            for _ in os.walk(root):
                pass

    def ecrbuild_big(self, root, tar, hot=True, full=True):
        """ecrbuild on a big tree. `full` (--full-context) streams the whole context, as the CLI does: the
        streaming, CPU and memory figures. Without it, ecrbuild sends only what the Dockerfile's COPY reads
        (its default)."""
        self.cache_inputs(root, tar, hot)
        sha = self.fake_sha()
        argv = [ECRBUILD, "--sha", sha, "--repository", "bench/big", "--registry", ANON, "--auth", "none",
                "--no-push", "--no-cache", "--context", root, "-f", os.path.join(root, "Dockerfile"),
                "--output", "json"] + (["--full-context"] if full else [])
        out = os.path.join(self.work, "ecrbuild.json")
        result = measure(argv, cwd=self.work, env=self.env, logfile=self.logfile, stdout_path=out)
        with open(out) as f:
            result["summary"] = json.load(f)
        rmi(*docker_tags(f"{ANON}/bench/big"))
        return result

    def cli_big(self, root, tar, hot=True):
        self.cache_inputs(root, tar, hot)
        argv = ["docker", "build", "-q", "--no-cache", "-f", os.path.join(root, "Dockerfile"),
                "-t", "bench/big:cli", root]
        result = measure(argv, cwd=self.work, env=self.env, logfile=self.logfile)
        rmi("bench/big:cli")
        return result

    def floor_big(self, root, tar, hot=True):
        """The daemon's own cost: a pre-made tar of exactly what ecrbuild sends, piped into `docker build -`."""
        self.cache_inputs(root, tar, hot)
        argv = ["docker", "build", "-q", "--no-cache", "-t", "bench/big:floor", "-"]
        result = measure(argv, cwd=self.work, env=self.env, logfile=self.logfile, stdin_path=tar)
        rmi("bench/big:floor")
        return result

    def scenario_big(self, hot=True):
        root, tar = self.tree(*BIG)
        entries, data = self.context_facts(root)
        self.extra["big"] = {"tree_bytes": BIG[0], "tree_files": BIG[1], "sent_entries": entries,
                             "sent_bytes": data, "tar_bytes": os.path.getsize(tar)}
        prefix = "big" if hot else "bigcold"
        n = N if hot else N_BIGCOLD
        log(f"{prefix}: {human_size(BIG[0])} / {BIG[1]} files, sending {entries} entries / {data / MIB:.0f} MiB, "
            f"{'hot' if hot else 'cold'} page cache; {'warm-up, then ' if hot else ''}{n} interleaved rounds")
        if hot:
            self.ecrbuild_big(root, tar), self.cli_big(root, tar), self.floor_big(root, tar)
        for i in range(n):
            r = self.interleaved(i, [(f"{prefix}/ecrbuild", lambda: self.ecrbuild_big(root, tar, hot)),
                                     (f"{prefix}/cli", lambda: self.cli_big(root, tar, hot)),
                                     (f"{prefix}/floor", lambda: self.floor_big(root, tar, hot)),
                                     (f"{prefix}/selected", lambda: self.ecrbuild_big(root, tar, hot, full=False))])
            a, b, c, d = (r[f"{prefix}/{k}"] for k in ("ecrbuild", "cli", "floor", "selected"))
            log(f"  {prefix} {i + 1}/{n}: ecrbuild --full-context {a['wall']:.2f}s cpu {a['cpu']:.2f}s | "
                f"cli {b['wall']:.2f}s cpu {b['cpu']:.2f}s | floor {c['wall']:.2f}s | "
                f"ecrbuild default {d['wall']:.2f}s")
        if hot:
            self.record_rss(BIG, "big/ecrbuild", "big/cli")

    def record_rss(self, tree, ecr_name, cli_name):
        key = human_size(tree[0])
        for name, side in ((ecr_name, "ecrbuild"), (cli_name, "cli")):
            for r in self.runs[name]:
                self.record(f"rss/{side}/{key}", r)

    def scenario_rss(self):
        for tree in RSS_TREES:
            if tree == BIG and "big" in ONLY:
                continue  # measured by the big-context scenario
            root, tar = self.tree(*tree)
            key = human_size(tree[0])
            log(f"rss: {key} context, {N_RSS} interleaved pairs")
            for i in range(N_RSS):
                r = self.interleaved(i, [(f"rss/ecrbuild/{key}", lambda: self.ecrbuild_big(root, tar)),
                                         (f"rss/cli/{key}", lambda: self.cli_big(root, tar))])
                a, b = r[f"rss/ecrbuild/{key}"], r[f"rss/cli/{key}"]
                log(f"  rss {key} {i + 1}/{N_RSS}: ecrbuild {a['rss_kib'] / 1024:.1f} MiB  "
                    f"cli {b['rss_kib'] / 1024:.1f} MiB")

    # ------------------------------------------------------------ export

    def export_image(self):
        """The image to export, pushed once per run: FROM scratch + one COPY per generated random file
        (cached under $BENCH_CACHE), so every layer is incompressible and the registry holds about
        layers x size bytes of gzip."""
        layers, size = EXPORT_LAYERS
        root = os.path.join(CACHE, f"export-{layers}x{size // MIB}m")
        if not os.path.exists(os.path.join(root, ".complete")):
            os.makedirs(root, exist_ok=True)
            log(f"export: generating {layers} x {human_size(size)} of random data in {root}")
            for i in range(layers):
                with open(os.path.join(root, f"layer{i}.bin"), "wb") as f:
                    for _ in range(size // MIB):
                        f.write(os.urandom(MIB))
            with open(os.path.join(root, "Dockerfile"), "w") as f:
                f.write("FROM scratch\n" + "".join(f"COPY layer{i}.bin /data/layer{i}.bin\n" for i in range(layers)))
            open(os.path.join(root, ".complete"), "w").close()
        repository = f"bench/export-{self.ecr_repository.rsplit('-', 1)[-1]}"
        sha = self.fake_sha()
        argv = [ECRBUILD, "--sha", sha, "--repository", repository, "--registry", ECR, "--auth", "ecr",
                "--create-repository", "--no-latest", "--context", root, "-f", os.path.join(root, "Dockerfile")]
        measure(argv, cwd=root, env=self.env, logfile=self.logfile)
        reference = f"{ECR}/{repository}:{sha}"
        rmi(reference)  # the shell side starts from an empty store, as a fresh CodeBuild host does
        return reference

    def aws(self, *args):
        return quiet([AWS, "--endpoint-url", MOTO, *args], env=self.env)

    def ecrbuild_export(self, reference, bucket, i):
        argv = [ECRBUILD, "export", reference, "--to", f"s3://{bucket}/exports/ecrbuild-{i}.tar", "--auth", "ecr"]
        result = measure(argv, cwd=self.work, env=self.env, logfile=self.logfile)
        result["temp_bytes"] = 0
        return result

    def shell_export(self, reference, bucket, i):
        out = os.path.join(self.work, "export.tar")
        script = f"""set -euo pipefail
{AWS} ecr get-login-password | docker login --username AWS --password-stdin {ECR}
docker pull {reference}
docker save {reference} -o {out}
stat -c %s {out} > {out}.size
{AWS} --endpoint-url {MOTO} s3 cp {out} s3://{bucket}/exports/shell-{i}.tar --only-show-errors
"""
        config = tempfile.mkdtemp(prefix="docker-config-", dir=self.work)
        try:
            result = measure(["bash", "-c", script], cwd=self.work, env=dict(self.env, DOCKER_CONFIG=config),
                             logfile=self.logfile)
            with open(f"{out}.size") as f:
                result["temp_bytes"] = int(f.read())
        finally:
            shutil.rmtree(config, ignore_errors=True)
            for path in (out, f"{out}.size"):
                if os.path.exists(path):
                    os.remove(path)
            rmi(reference)
        return result

    def scenario_export(self):
        reference = self.export_image()
        bucket = f"ecrbuild-bench-{datetime.now().strftime('%Y%m%d%H%M%S')}"
        made = self.aws("s3", "mb", f"s3://{bucket}")
        if made.returncode != 0:
            raise Failed(f"aws s3 mb s3://{bucket}: {made.stderr}")
        log(f"export: {reference} to s3://{bucket}; {N} interleaved pairs")
        for i in range(N):
            r = self.interleaved(i, [("export/ecrbuild", lambda: self.ecrbuild_export(reference, bucket, i)),
                                     ("export/shell", lambda: self.shell_export(reference, bucket, i))])
            a, b = r["export/ecrbuild"], r["export/shell"]
            log(f"  export {i + 1}/{N}: ecrbuild {a['wall']:.2f}s {a['rss_kib'] / 1024:.1f} MiB | "
                f"shell {b['wall']:.2f}s, {b['temp_bytes'] / MIB:.0f} MiB on disk")
        self.aws("s3", "rb", f"s3://{bucket}", "--force")

    # ------------------------------------------------------------ services (ecrbuild.toml)

    SERVICES = ("cart", "catalog", "checkout", "orders", "ui")  # name order, as ecrbuild lists them
    LIB_USERS = ("checkout", "orders")  # the two that COPY the shared lib/
    SIDES = ("ecrbuild", "naive", "filter")

    def checked(self, argv, what, **kw):
        out = quiet(argv, **kw)
        if out.returncode != 0:
            raise Failed(f"{what}: {' '.join(argv)} exited {out.returncode}: {out.stderr.strip()[-1500:]}")
        return out.stdout

    def service_bases(self):
        """The fixture's two base images, in the rig's anonymous registry: small root filesystems made with
        `docker import` (there is no network to pull real ones from), imported once (kept, like the cross
        Go image) and pushed every run (a no-op when the registry holds them). ecrbuild identifies a base
        by the registry's digest for it, which the daemon's copy then matches."""
        refs = {}
        for name, size in (("svcbase-app", 2 * MIB), ("svcbase-web", 1 * MIB)):
            ref = f"{ANON}/bench/{name}:v1"
            if image_id(ref) is None:
                tar_path = os.path.join(self.work, f"{name}.tar")
                rnd = random.Random(name)
                with tarfile.open(tar_path, "w") as tar:
                    def add(path, data=None, mode=0o644):
                        info = tarfile.TarInfo(path)
                        if data is None:
                            info.type, info.mode = tarfile.DIRTYPE, 0o755
                            tar.addfile(info)
                        else:
                            info.size, info.mode = len(data), mode
                            tar.addfile(info, io.BytesIO(data))
                    for directory in ("etc", "usr", "usr/lib", "tmp", "app"):
                        add(directory)
                    add("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
                                      b"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")
                    add("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
                    add("etc/os-release", f'NAME="ecrbuild bench {name}"\nID=bench\n'.encode())
                    add(f"usr/lib/lib{name}.so", rnd.randbytes(size), 0o755)
                self.checked(["docker", "import", tar_path, ref], f"services: importing {ref}")
                os.remove(tar_path)
            self.checked(["docker", "push", ref], f"services: pushing {ref}")
            refs[name] = ref
        return refs

    def svc_repository(self, side, service):
        return f"bench/svc-{self.svc_run}/{side}/{service}"

    def write_services_fixture(self, root, bases):
        """Five services (ui, catalog, cart, orders, checkout), one repository each, their Dockerfiles in
        src/<service>/; checkout and orders COPY the shared lib/ too. Each image is the runtime stage of a
        prebuilt service: COPY only (see the module docstring)."""
        def write(path, data):
            path = os.path.join(root, path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb" if isinstance(data, bytes) else "w") as f:
                f.write(data)
        write("README.md", "# shop\n\nFive services, one image each.\n")
        write(".dockerignore", ".git\n**/*.md\n")
        rnd = random.Random("lib")
        for i in range(8):
            lines = "".join(f"// {i}.{j} " + "x" * 64 + "\n" for j in range(100))
            write(f"lib/shared/part{i}.go", "package shared\n\n" + lines)
        write("lib/shared/data.bin", rnd.randbytes(256 * 1024))
        toml = ["# The benchmark's fixture: five services, one repository each (fresh per run).",
                "[defaults]", f'registry = "{ANON}"', ""]
        for service in self.SERVICES:
            rnd = random.Random(service)
            app = f"src/{service}/app"
            write(f"{app}/bin/{service}", rnd.randbytes(1 * MIB))
            write(f"{app}/config.json", json.dumps({"service": service, "port": 8080}) + "\n")
            write(f"{app}/version.txt", "1\n")
            if service == "ui":
                write(f"{app}/static/bundle.js", rnd.randbytes(512 * 1024))
                for i in range(40):
                    write(f"{app}/static/assets/a{i:02}.css", f".c{i} {{ color: #{i:06x}; }}\n" * (50 + i))
            base = bases["svcbase-web" if service == "ui" else "svcbase-app"]
            lib = "COPY lib/ /app/lib/\n" if service in self.LIB_USERS else ""
            write(f"src/{service}/Dockerfile",
                  f"# {service}: the runtime image of a prebuilt service\n"
                  f"FROM {base}\nWORKDIR /app\n{lib}COPY {app}/ /app/\nENV SERVICE={service} PORT=8080\n"
                  f"EXPOSE 8080\nUSER 65532:65532\nENTRYPOINT [\"/app/bin/{service}\"]\n")
            toml += [f"[services.{service}]", f'dockerfile = "src/{service}/Dockerfile"',
                     f'repository = "{self.svc_repository("ecrbuild", service)}"', ""]
        write("ecrbuild.toml", "\n".join(toml))

    def prepare_services(self):
        """The fixture repository, and one clone of it per side (ecrbuild, naive shell, path-filter shell):
        each side's history moves on its own, so a side's changes are new to the daemon's layer cache and
        never reach another side's input."""
        self.svc_run = datetime.now().strftime("%Y%m%d%H%M%S")
        bases = self.service_bases()
        template = os.path.join(self.work, "services-fixture")
        self.write_services_fixture(template, bases)
        git = ["git", "-C", template, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        self.checked(["git", "init", "-q", "-b", "main", template], "services: git init")
        self.checked(git + ["add", "-A"], "services: git add")
        self.checked(git + ["commit", "-q", "-m", "shop: five services"], "services: git commit")
        self.svc_clones = {}
        for side in self.SIDES:
            clone = os.path.join(self.work, f"services-{side}")
            self.checked(["git", "clone", "-q", template, clone], "services: git clone")
            self.svc_clones[side] = (clone, ["git", "-C", clone, "-c", "user.name=bench",
                                             "-c", "user.email=bench@localhost"])

    def svc_commit(self, side, change=None):
        """A new commit on one side: the README (change None), or a source file of service `change`
        (content unique to the side and the commit). Returns its SHA."""
        clone, git = self.svc_clones[side]
        stamp = f"{side} {self.sha_counter + 1} {time.time()}\n"
        path = "README.md" if change is None else f"src/{change}/app/version.txt"
        with open(os.path.join(clone, path), "a") as f:
            f.write(stamp)
        self.checked(git + ["add", "-A"], "services: git add")
        return self.new_commit(git)

    def ecrbuild_services(self, sha, expect):
        """ecrbuild in services mode on the ecrbuild clone. `expect`: service -> action; anything else fails
        the scenario, so a figure never comes from a path other than the one it names."""
        clone, _ = self.svc_clones["ecrbuild"]
        argv = [ECRBUILD, "--sha", sha, "--auth", "none", "--output", "json"]
        out = os.path.join(self.work, "ecrbuild.json")
        result = measure(argv, cwd=clone, env=self.env, logfile=self.logfile, stdout_path=out)
        with open(out) as f:
            summary = json.load(f)
        result["summary"] = summary
        actions = {s.get("service"): s.get("action") for s in summary.get("services", [])}
        if actions != expect:
            raise Failed(f"services: ecrbuild at {sha[:12]} did {actions}, expected {expect}; log {self.logfile}")
        for service, action in actions.items():
            if action == "built":
                ref = f"{ANON}/{self.svc_repository('ecrbuild', service)}:{sha}"
                self.created_images.add(image_id(ref))
                rmi(ref)  # `latest` keeps the newest image (and the layer cache) alive
        return result

    def shell_services(self, side, sha, expect, everything=False):
        """The shell a buildspec would run, with the docker CLI: for each service, `docker build` tagged SHA
        and latest, `docker push` of both. naive: all five on every commit. filter (path filter): only the
        services under whose directories `git diff --name-only HEAD~1 HEAD` shows a change (checkout and
        orders also list lib/); `everything` builds all five (its first commit). `expect`: the services it
        must build."""
        clone, _ = self.svc_clones[side]
        prefix = f"{ANON}/bench/svc-{self.svc_run}/{side}"
        script = f"""set -euo pipefail
build() {{
    local image="{prefix}/$1"
    docker build -f "src/$1/Dockerfile" -t "$image:$SHA" -t "$image:latest" .
    docker push "$image:$SHA"
    docker push "$image:latest"
    echo "$1" >> "$BENCH_BUILT"
}}
"""
        if side == "naive" or everything:
            script += f"for service in {' '.join(self.SERVICES)}; do build \"$service\"; done\n"
        else:
            script += """changed=$(git diff --name-only HEAD~1 HEAD)
touched() {  # touched PREFIX...: does this commit change a path under one of them?
    local path prefix
    while IFS= read -r path; do
        for prefix in "$@"; do
            case $path in "$prefix"*) return 0 ;; esac
        done
    done <<<"$changed"
    return 1
}
"""
            for service in self.SERVICES:
                paths = f"src/{service}/" + (" lib/" if service in self.LIB_USERS else "")
                script += f"if touched {paths}; then build {service}; fi\n"
        config = tempfile.mkdtemp(prefix="docker-config-", dir=self.work)
        built_file = os.path.join(config, "built")
        env = dict(self.env, DOCKER_CONFIG=config, BENCH_BUILT=built_file, SHA=sha)
        try:
            result = measure(["bash", "-c", script], cwd=clone, env=env, logfile=self.logfile)
            built = open(built_file).read().split() if os.path.exists(built_file) else []
        finally:
            shutil.rmtree(config, ignore_errors=True)
        result["built"] = built
        if sorted(built) != sorted(expect):
            raise Failed(f"services: the {side} shell at {sha[:12]} built {built}, expected {sorted(expect)}; "
                         f"log {self.logfile}")
        for service in built:
            ref = f"{prefix}/{service}:{sha}"
            self.created_images.add(image_id(ref))
            rmi(ref)
        return result

    def services_round(self, prefix, i, change):
        """One interleaved round: a new commit on each side (the README, or service `change`), then each side
        on its commit. Returns the measurements by name."""
        shas = {side: self.svc_commit(side, change) for side in self.SIDES}
        changed = [] if change is None else [change]
        expect = {s: ("built" if s == change else "reused") for s in self.SERVICES}
        steps = [("ecrbuild", lambda: self.ecrbuild_services(shas["ecrbuild"], expect)),
                 ("naive", lambda: self.shell_services("naive", shas["naive"], self.SERVICES)),
                 ("filter", lambda: self.shell_services("filter", shas["filter"], changed))]
        if prefix is None:  # warm-up, not recorded
            return {name: thunk() for name, thunk in steps}
        return self.interleaved(i, [(f"{prefix}/{name}", thunk) for name, thunk in steps])

    def scenario_services(self):
        """(a) a README-only commit and (b) a commit changing one service (a different one each round), on
        the five-service fixture: ecrbuild (services mode) vs the naive shell vs the path-filter shell."""
        self.prepare_services()
        try:
            log("services: first build of the five services on each side, then a warm-up round of (a) and (b)")
            first = {side: quiet(self.svc_clones[side][1] + ["rev-parse", "HEAD"], check=True).stdout.strip()
                     for side in self.SIDES}
            self.ecrbuild_services(first["ecrbuild"], {s: "built" for s in self.SERVICES})
            self.shell_services("naive", first["naive"], self.SERVICES)
            self.shell_services("filter", first["filter"], self.SERVICES, everything=True)
            self.services_round(None, 0, None)
            self.services_round(None, 0, self.SERVICES[-1])
            log(f"services (a): {N} interleaved rounds, a README-only commit on each side")
            for i in range(N):
                r = self.services_round("services/a", i, None)
                log(f"  services (a) {i + 1}/{N}: ecrbuild {r['services/a/ecrbuild']['wall']:.2f}s  "
                    f"naive {r['services/a/naive']['wall']:.2f}s  path filter {r['services/a/filter']['wall']:.2f}s")
            log(f"services (b): {N} interleaved rounds, a commit changing one service on each side")
            for i in range(N):
                change = self.SERVICES[i % len(self.SERVICES)]
                r = self.services_round("services/b", i, change)
                log(f"  services (b) {i + 1}/{N} ({change}): ecrbuild {r['services/b/ecrbuild']['wall']:.2f}s  "
                    f"naive {r['services/b/naive']['wall']:.2f}s  path filter {r['services/b/filter']['wall']:.2f}s")
        finally:
            # By tag and by digest: an image the registry gave a digest stays (untagged) until both are gone,
            # and the sides' first builds share images, which `docker rmi ID` refuses to remove.
            for side in self.SIDES:
                for service in self.SERVICES:
                    repository = f"{ANON}/{self.svc_repository(side, service)}"
                    out = quiet(["docker", "images", "--digests", "--format", "{{.Tag}} {{.Digest}}", repository])
                    refs = set()
                    for line in out.stdout.splitlines():
                        tag, digest = (line.split() + ["", ""])[:2]
                        refs.update([f"{repository}:{tag}"] if tag not in ("", "<none>") else [])
                        refs.update([f"{repository}@{digest}"] if digest.startswith("sha256:") else [])
                    rmi(*sorted(refs))

    # The single-service row: api/ as the service `api` of this repository's own ecrbuild.toml.

    def prepare_api_services(self):
        """A second api checkout holding this repository's ecrbuild.toml as it is; its `api` service is
        pointed at a repository fresh per run through ECRBUILD_SERVICE_REPOSITORIES (as Terraform points it
        at the repository it made). Apart from the api checkout, where the other scenarios run ecrbuild's
        single-image command (a found ecrbuild.toml would switch them to services mode)."""
        source = os.path.join(REPO_ROOT, "ecrbuild.toml")
        if not os.path.exists(source):
            raise Failed("services: this repository has no ecrbuild.toml")
        root = os.path.join(self.work, "api-services")
        os.makedirs(root)
        shutil.copytree(os.path.join(REPO_ROOT, "api"), os.path.join(root, "api"))
        shutil.copy(os.path.join(REPO_ROOT, ".dockerignore"), root)
        shutil.copy(source, root)
        self.api_services_repository = f"{self.ecr_repository}-svc"
        git = ["git", "-C", root, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        self.checked(["git", "init", "-q", "-b", "main", root], "services: git init")
        self.checked(git + ["add", "-A"], "services: git add")
        self.checked(git + ["commit", "-q", "-m", "api"], "services: git commit")
        self.api_services = (root, git)

    def ecrbuild_api_service(self, sha, expect):
        root, _ = self.api_services
        argv = [ECRBUILD, "--sha", sha, "--service", "api", "--registry", ECR, "--auth", "ecr",
                "--create-repository", "--build-arg", f"GO_IMAGE={GO_IMAGE}", "--output", "json"]
        out = os.path.join(self.work, "ecrbuild.json")
        env = dict(self.env, ECRBUILD_SERVICE_REPOSITORIES=f"api={self.api_services_repository}")
        result = measure(argv, cwd=root, env=env, logfile=self.logfile, stdout_path=out)
        with open(out) as f:
            summary = json.load(f)
        result["summary"] = summary
        actions = {s.get("service"): s.get("action") for s in summary.get("services", [])}
        if actions != {"api": expect}:
            raise Failed(f"services: ecrbuild --service api at {sha[:12]} did {actions}, expected api {expect}; "
                         f"log {self.logfile}")
        ref = f"{ECR}/{self.api_services_repository}:{sha}"
        self.created_images.add(image_id(ref))
        rmi(ref)
        return result

    def scenario_services_api(self):
        self.prepare_api_services()
        _, git = self.api_services
        log(f"services (api): warming up both sides, then {N} interleaved pairs")
        self.ecrbuild_api_service(self.new_commit(git), "built")
        self.ecrbuild_api_service(self.new_commit(git), "reused")
        self.shell_api(self.new_commit(git))
        for i in range(N):
            sha = self.new_commit(git)
            r = self.interleaved(i, [("services/api/ecrbuild", lambda: self.ecrbuild_api_service(sha, "reused")),
                                     ("services/api/shell", lambda: self.shell_api(sha))])
            log(f"  services (api) {i + 1}/{N}: ecrbuild {r['services/api/ecrbuild']['wall']:.2f}s  "
                f"shell {r['services/api/shell']['wall']:.2f}s")

    # ------------------------------------------------------------ report

    def machine(self):
        def first(argv):
            out = quiet(argv)
            return out.stdout.strip() if out.returncode == 0 else "?"
        mem_kib = int(open("/proc/meminfo").read().split()[1])
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(),
            "memory": f"{mem_kib / (1 << 20):.1f} GiB",
            "kernel": platform.release(),
            "docker_server": first(["docker", "version", "--format", "{{.Server.Version}}"]),
            "docker_cli": first(["docker", "version", "--format", "{{.Client.Version}}"]),
            "ecrbuild": first([ECRBUILD, "--version"]),
            "binary_bytes": os.path.getsize(ECRBUILD),
            "loadavg_end": open("/proc/loadavg").read().split()[:3],
        }

    def table(self, machine):
        rows = []

        def ratio_row(label, a_name, b_name, key, target, unit="s"):
            a, b = self.median(a_name, key), self.median(b_name, key)
            if a is None or b is None:
                return
            ratio = a / b
            ok = "" if target is None else ("met" if ratio <= target else "MISSED")
            rows.append((label, f"{a:.2f} {unit}", f"{b:.2f} {unit}", f"{ratio:.2f}x",
                         "" if target is None else f"<= {target:.2f}x", ok))

        ratio_row("warm re-run, wall (vs shell pipeline)", "warm/ecrbuild", "warm/shell", "wall", 0.30)
        ratio_row("cold --no-cache, wall (vs shell pipeline)", "cold/ecrbuild", "cold/shell", "wall", 0.95)
        ratio_row("published SHA re-run, wall (vs shell pipeline)", "skip/ecrbuild", "skip/shell", "wall", None)
        ratio_row("warm re-run, client CPU (vs shell pipeline)", "warm/ecrbuild", "warm/shell", "cpu", None)
        ratio_row("cached CLI build with 3 labels (vs none)", "labels/three", "labels/plain", "wall", None)
        tag_counts = sorted(int(k.split("/")[1]) for k in self.runs if k.startswith("tags/"))
        if len(tag_counts) == 2:
            few, many = (f"tags/{c}" for c in tag_counts)
            ratio_row(f"warm re-run from a shallow clone, wall, {tag_counts[1]} vs {tag_counts[0]} unknown SHA "
                      f"tags in the repository", many, few, "wall", 1.25)
        ratio_row("api/ for linux/amd64 + linux/arm64, wall (vs linux/amd64 alone)", "platforms/two", "platforms/one",
                  "wall", 1.50)
        ratio_row("api/ for amd64 + arm64, cross-compiled (vs the arm64 compile alone under QEMU)", "platforms/two",
                  "platforms/qemu", "wall", None)
        ratio_row("5 services, README-only commit, wall (vs naive shell: build + push all 5)", "services/a/ecrbuild",
                  "services/a/naive", "wall", 0.10)
        services_a = self.median("services/a/ecrbuild")
        if services_a is not None:
            rows.append(("5 services, README-only commit, wall", f"{services_a:.2f} s", "", "", "<= 0.25 s",
                         "met" if services_a <= 0.25 else "MISSED"))
        ratio_row("5 services, README-only commit, wall (vs path-filter shell: builds none)", "services/a/ecrbuild",
                  "services/a/filter", "wall", None)
        ratio_row("5 services, one service changed, wall (vs naive shell: build + push all 5)", "services/b/ecrbuild",
                  "services/b/naive", "wall", 0.50)
        ratio_row("5 services, one service changed, wall (vs path-filter shell: builds that one)",
                  "services/b/ecrbuild", "services/b/filter", "wall", 1.10)
        ratio_row("api/ as service api of ecrbuild.toml, warm re-run, wall (vs shell pipeline)",
                  "services/api/ecrbuild", "services/api/shell", "wall", 0.20)
        big = human_size(BIG[0])
        ratio_row(f"big context {big}, wall, default: only what COPY reads (vs docker CLI)", "big/selected",
                  "big/cli", "wall", 0.95)
        ratio_row(f"big context {big}, wall, --full-context (vs docker CLI)", "big/ecrbuild", "big/cli", "wall",
                  0.95)
        ratio_row(f"big context {big}, client CPU, --full-context (vs docker CLI)", "big/ecrbuild", "big/cli",
                  "cpu", 0.50)
        ratio_row(f"big context {big}, wall (ecrbuild vs tar-pipe floor)", "big/ecrbuild", "big/floor", "wall", None)
        ratio_row(f"big context {big}, wall (docker CLI vs tar-pipe floor)", "big/cli", "big/floor", "wall", None)
        ratio_row(f"big context {big}, daemon CPU (ecrbuild's build vs floor's)", "big/ecrbuild", "big/floor",
                  "daemon_cpu", None)
        ratio_row(f"big context {big}, daemon CPU (CLI's build vs floor's)", "big/cli", "big/floor",
                  "daemon_cpu", None)
        ratio_row(f"big context {big}, cold page cache, wall (vs docker CLI)", "bigcold/ecrbuild", "bigcold/cli",
                  "wall", None)
        ratio_row(f"big context {big}, cold page cache, wall (vs floor)", "bigcold/ecrbuild", "bigcold/floor",
                  "wall", None)

        ratio_row(f"export {human_size(EXPORT_LAYERS[0] * EXPORT_LAYERS[1])} image to S3, wall (vs docker pull + "
                  "save + aws s3 cp)", "export/ecrbuild", "export/shell", "wall", 0.50)
        rss_export = self.median("export/ecrbuild", "rss_kib")
        if rss_export is not None:
            rows.append((f"export {human_size(EXPORT_LAYERS[0] * EXPORT_LAYERS[1])} image to S3, peak RSS",
                         f"{rss_export / 1024:.1f} MiB", "", "", "<= 64 MiB",
                         "met" if rss_export <= 64 * 1024 else "MISSED"))
            temp = self.median("export/ecrbuild", "temp_bytes")
            rows.append(("export, temporary disk (vs docker save -o)", f"{temp / MIB:.0f} MiB",
                         f"{self.median('export/shell', 'temp_bytes') / MIB:.0f} MiB", "", "0",
                         "met" if temp == 0 else "MISSED"))

        rss = {}
        for tree in RSS_TREES:
            key = human_size(tree[0])
            a, b = self.median(f"rss/ecrbuild/{key}", "rss_kib"), self.median(f"rss/cli/{key}", "rss_kib")
            if a is None:
                continue
            rss[key] = a
            rows.append((f"peak RSS, {key} context (vs docker CLI)", f"{a / 1024:.1f} MiB",
                         "" if b is None else f"{b / 1024:.1f} MiB", "" if b is None else f"{a / b:.2f}x",
                         "<= 24 MiB", "met" if a <= 24 * 1024 else "MISSED"))
        if len(rss) >= 2:
            values = list(rss.values())
            base = values[0]
            spread = max(abs(v - base) / base for v in values)
            rows.append((f"peak RSS spread, {' / '.join(rss)} (vs smallest)", f"{spread * 100:.1f} %", "", "",
                         "<= 10 %", "met" if spread <= 0.10 else "MISSED"))
        size = machine["binary_bytes"]
        rows.append(("release binary size (stripped)", f"{size / MIB:.2f} MiB", "", "", "<= 10 MiB",
                     "met" if size <= 10 * MIB else "MISSED"))

        headers = ("figure (medians)", "ecrbuild", "baseline", "ratio", "target", "")
        widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
        out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in rows]
        return "\n".join(out)

    def details(self):
        lines = []
        for name in sorted(self.runs):
            runs = self.runs[name]
            walls = " ".join(f"{r['wall']:.2f}" for r in runs)
            lines.append(f"{name:24} n={len(runs)}  wall[s] {walls}  | median wall {self.median(name):.2f}s "
                         f"cpu {self.median(name, 'cpu'):.2f}s (user {self.median(name, 'user'):.2f} "
                         f"sys {self.median(name, 'sys'):.2f})  rss {self.median(name, 'rss_kib') / 1024:.1f} MiB  "
                         f"daemon cpu {self.median(name, 'daemon_cpu'):.2f}s")
        for name in sorted(k for k in self.runs if k.startswith(("tags/", "tagsfirst/"))):
            requests = statistics.median(r.get("registry_requests", 0) for r in self.runs[name])
            pushes = statistics.median(r["summary"]["timings"]["push_secs"] for r in self.runs[name])
            lines.append(f"{name:24} median {requests:.0f} registry requests per run, push phase {pushes:.2f}s")
        phases = {}
        for name in ("warm/ecrbuild", "cold/ecrbuild", "skip/ecrbuild", "big/ecrbuild"):
            for r in self.runs.get(name, []):
                timings = r.get("summary", {}).get("timings", {})
                for key, value in timings.items():
                    phases.setdefault(name, {}).setdefault(key, []).append(value)
        for name in ("warm/shell", "cold/shell", "skip/shell"):
            for r in self.runs.get(name, []):
                for key, value in r.get("phases", {}).items():
                    phases.setdefault(name, {}).setdefault(key, []).append(value)
        for name, keys in phases.items():
            parts = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in keys.items()
                              if isinstance(v[0], (int, float)))
            lines.append(f"{name:24} phases (median s): {parts}")
        for name in ("services/a/ecrbuild", "services/b/ecrbuild", "services/api/ecrbuild"):
            by_action = {}  # action -> phase -> values
            for r in self.runs.get(name, []):
                for service in r["summary"].get("services", []):
                    phases = by_action.setdefault(service.get("action"), {})
                    for key, value in (service.get("timings") or {}).items():
                        if isinstance(value, (int, float)):
                            phases.setdefault(key, []).append(value)
            for action, phases in sorted(by_action.items()):
                count = max(len(v) for v in phases.values()) if phases else 0
                parts = ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in phases.items())
                lines.append(f"{name:24} {action} services (n={count}), per service (median s): {parts}")
        for name in ("services/a/naive", "services/a/filter", "services/b/naive", "services/b/filter"):
            if name in self.runs:
                built = statistics.median(len(r["built"]) for r in self.runs[name])
                lines.append(f"{name:24} median {built:.0f} services built and pushed per run")
        if "big" in self.extra:
            e = self.extra["big"]
            lines.append(f"big context: tree {human_size(e['tree_bytes'])} / {e['tree_files']} files; sent "
                         f"{e['sent_entries']} entries, {e['sent_bytes'] / MIB:.0f} MiB of file data "
                         f"(floor tar {e['tar_bytes'] / MIB:.0f} MiB)")
            for name in ("big/ecrbuild", "big/cli", "big/floor", "bigcold/ecrbuild", "bigcold/cli", "bigcold/floor"):
                m = self.median(name)
                if m:
                    lines.append(f"  {name:20} {e['tar_bytes'] / MIB / m:.0f} MiB/s of context")
        return "\n".join(lines)

    def run(self):
        started = time.monotonic()
        machine_start = open("/proc/loadavg").read().split()[:3]
        try:
            if ONLY & {"warm", "skip", "labels", "tags", "cold", "platforms", "services"}:
                self.prepare_api()
                try:
                    if "warm" in ONLY:
                        self.scenario_warm()
                    if "skip" in ONLY:
                        self.scenario_skip()
                    if "labels" in ONLY:
                        self.scenario_labels()
                    if "tags" in ONLY:
                        self.scenario_tags()
                    if "cold" in ONLY:
                        self.scenario_cold()
                    if "platforms" in ONLY:
                        self.scenario_platforms()
                    if "services" in ONLY:
                        self.scenario_services_api()
                finally:
                    self.cleanup_api()
            if "services" in ONLY:
                self.scenario_services()
            if "big" in ONLY:
                self.scenario_big()
            if "rss" in ONLY:
                self.scenario_rss()
            if "bigcold" in ONLY:
                self.scenario_big(hot=False)
            if "export" in ONLY:
                self.scenario_export()
        finally:
            rmi(*docker_tags(f"{ANON}/bench/big"), "bench/big:cli", "bench/big:floor")
            self.cleanup_created()
        machine = self.machine()
        machine["loadavg_start"] = machine_start
        elapsed = time.monotonic() - started
        report = [
            f"ecrbuild benchmark, {machine['date']}; {'BENCH_QUICK, ' if QUICK else ''}N={N} "
            f"(cold {N_COLD}, rss {N_RSS}); {elapsed / 60:.1f} min",
            f"machine: {machine['nproc']} CPUs, {machine['memory']} RAM, kernel {machine['kernel']}, "
            f"docker engine {machine['docker_server']} / CLI {machine['docker_cli']}; "
            f"load average {' '.join(machine['loadavg_start'])} at start, {' '.join(machine['loadavg_end'])} at end",
            f"binary: {ECRBUILD} ({machine['ecrbuild']}, {machine['binary_bytes']} bytes)",
            "",
            self.table(machine),
            "",
            self.details(),
        ]
        text = "\n".join(report)
        print(text)
        results = os.path.join(CACHE, "results")
        os.makedirs(results, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        with open(os.path.join(results, f"{stamp}.txt"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(results, f"{stamp}.json"), "w") as f:
            json.dump({"machine": machine, "runs": self.runs, "extra": self.extra, "quick": QUICK, "n": N},
                      f, indent=1, default=str)
        log(f"results saved in {results}/{stamp}.{{txt,json}}; run log {self.logfile}")


def main():
    bench = Bench()
    try:
        bench.run()
    except Failed as failure:
        log(f"FAILED: {failure}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    # The work dir holds only the log and the api checkout; keep the log, drop the rest.
    shutil.rmtree(os.path.join(bench.work, "api-context"), ignore_errors=True)


if __name__ == "__main__":
    main()
