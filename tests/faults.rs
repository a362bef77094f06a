//! The fault suite: registry outages and errors (through a fault-injecting proxy in front of the real
//! registry), signals, concurrent runs, re-runs. Each test asserts the exit code, the message, and what
//! the registry holds afterwards.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::proxy::{first_n, is_manifest_put, manifest_puts, Fault, FaultProxy};
use support::*;

fn ecrbuild_at(context: &Path, registry: &str, repo: &str, sha: &str) -> Command {
    build_cmd(context, registry, repo, sha, Auth::None)
}

/// Seed `repo` with a `latest` through the real registry, returning its digest.
fn seed_latest(repo: &str) -> String {
    let rig = Rig::get();
    let context = scratch_context("seed", "seed");
    run(&mut ecrbuild_at(
        &context,
        rig.registry(),
        repo,
        &unique_sha(),
    ))
    .assert_code(0);
    RegistryHttp::anonymous(rig.registry())
        .digest(repo, "latest")
        .unwrap()
}

#[test]
fn transient_503s_on_manifest_upload_are_retried_until_the_push_succeeds() {
    let rig = Rig::get();
    let repo = unique_repo("retry503");
    let sha = unique_sha();
    let proxy = FaultProxy::start(
        rig.registry(),
        first_n(2, Fault::Status(503), |s| is_manifest_put(s, None)),
    );
    let context = scratch_context("retry503", "retry");
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "5"]));
    result.assert_code(0).assert_stderr_contains("retrying in");
    assert_eq!(
        proxy.faults(),
        2,
        "the proxy should have failed exactly two manifest uploads"
    );
    let registry = RegistryHttp::anonymous(rig.registry());
    let digest = registry.digest(&repo, &sha).expect("pushed after retries");
    assert_eq!(registry.digest(&repo, "latest"), Some(digest));
}

#[test]
fn connection_resets_are_retried_until_the_push_succeeds() {
    let rig = Rig::get();
    let repo = unique_repo("reset");
    let sha = unique_sha();
    let proxy = FaultProxy::start(
        rig.registry(),
        first_n(3, Fault::Reset, |s| is_manifest_put(s, None)),
    );
    let context = scratch_context("reset", "reset");
    run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "6"])).assert_code(0);
    assert_eq!(proxy.faults(), 3);
    assert!(RegistryHttp::anonymous(rig.registry())
        .digest(&repo, &sha)
        .is_some());
}

#[test]
fn persistent_5xx_fails_the_push_and_leaves_latest_alone() {
    let rig = Rig::get();
    let repo = unique_repo("persist5xx");
    let latest_before = seed_latest(&repo);
    let sha = unique_sha();
    let proxy = FaultProxy::start(rig.registry(), |s| {
        if is_manifest_put(s, None) {
            Fault::Status(503)
        } else {
            Fault::Pass
        }
    });
    let context = scratch_context("persist", "persist");
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "3"]));
    result
        .assert_code(7)
        .assert_stderr_contains(&format!(
            "push of {}/{repo}:ecrbuild-staging-{sha} failed",
            proxy.host()
        ))
        .assert_stderr_contains("gave up after 3 attempts");
    let registry = RegistryHttp::anonymous(rig.registry());
    assert_eq!(registry.digest(&repo, &sha), None);
    assert_eq!(registry.digest(&repo, "latest"), Some(latest_before));
}

#[test]
fn registry_down_before_push_fails_fast_with_the_push_code() {
    let rig = Rig::get();
    // A port nothing listens on: the registry is down from the start.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    drop(listener);
    let repo = unique_repo("down");
    // A build of two minutes: the preflight runs beside it, and its failure must cancel it.
    let marker = format!("ecrbuild-down-{}", unique_sha());
    let dir = std::env::temp_dir().join(&marker);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("ARG GO_IMAGE\nFROM ${{GO_IMAGE}}\nRUN sleep 120 || echo {marker}\n"),
    )
    .unwrap();
    let started = Instant::now();
    let result = run(ecrbuild_at(&dir, &dead, &repo, &unique_sha()).args([
        "--retries",
        "2",
        "--build-arg",
        &format!("GO_IMAGE={}", rig.go_image()),
    ]));
    result
        .assert_code(7)
        .assert_stderr_contains("registry check before the build failed")
        .assert_stderr_contains(&dead);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the preflight failure did not stop the build"
    );
    assert!(!result.stderr.contains("Successfully built"));
    // The cancelled build leaves no container behind (forcerm).
    let leftovers = || {
        docker(&["ps", "-a", "--no-trunc", "--format", "{{.Command}}"])
            .lines()
            .filter(|l| l.contains(&marker))
            .count()
    };
    let stopped = Instant::now();
    while leftovers() > 0 {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "the cancelled build left its container"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn registry_killed_during_push_fails_and_moves_nothing() {
    let rig = Rig::get();
    let repo = unique_repo("killed");
    let latest_before = seed_latest(&repo);
    let sha = unique_sha();
    // The registry "dies" at the first blob upload: every request from then on is dropped.
    let died = std::sync::atomic::AtomicBool::new(false);
    let proxy = FaultProxy::start(rig.registry(), move |s| {
        if s.path.contains("/blobs/uploads") {
            died.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if died.load(std::sync::atomic::Ordering::SeqCst) {
            Fault::Reset
        } else {
            Fault::Pass
        }
    });
    let context = scratch_context("killed", &format!("killed {sha}"));
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "2"]));
    result.assert_code(7);
    let registry = RegistryHttp::anonymous(rig.registry());
    assert_eq!(registry.digest(&repo, &sha), None);
    assert_eq!(registry.digest(&repo, "latest"), Some(latest_before));
}

/// Reading the pushed tag back can fail for a moment while other pushes write into the repository
/// (Debian's registry answers 500 while it relinks a shared blob): the verification retries it.
#[test]
fn a_transient_error_reading_the_push_back_is_retried() {
    let rig = Rig::get();
    let repo = unique_repo("verifyretry");
    let sha = unique_sha();
    // The SHA tag is read twice: absent, by the preflight; then back, by the verification.
    let reads = std::sync::atomic::AtomicUsize::new(0);
    let sha_manifest = format!("/manifests/{sha}");
    let proxy = FaultProxy::start(rig.registry(), move |s| {
        if s.method == "GET"
            && s.path.ends_with(&sha_manifest)
            && reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
        {
            Fault::Status(500)
        } else {
            Fault::Pass
        }
    });
    let context = scratch_context("verifyretry", &format!("verify {sha}"));
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "3"]));
    result
        .assert_code(0)
        .assert_stderr_contains(&format!(
            "verify {}/{repo}:{sha}: attempt 1 of 3 failed",
            proxy.host()
        ))
        .assert_stderr_contains("verified: 2 tag(s)");
    assert_eq!(proxy.faults(), 1);
    assert!(RegistryHttp::anonymous(rig.registry())
        .digest(&repo, &sha)
        .is_some());
}

#[test]
fn sha_pushed_but_latest_failing_keeps_the_sha_and_the_old_latest() {
    let rig = Rig::get();
    let repo = unique_repo("latestfail");
    let latest_before = seed_latest(&repo);
    let sha = unique_sha();
    let proxy = FaultProxy::start(rig.registry(), |s| {
        if is_manifest_put(s, Some("latest")) {
            Fault::Status(500)
        } else {
            Fault::Pass
        }
    });
    let context = scratch_context("latestfail", "latest fails");
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args([
        "--retries",
        "2",
        "--latest",
        "force",
    ]));
    result
        .assert_code(7)
        .assert_stderr_contains(&format!("push of {}/{repo}:latest failed", proxy.host()));
    let registry = RegistryHttp::anonymous(rig.registry());
    assert!(
        registry.digest(&repo, &sha).is_some(),
        "the SHA tag should be in the registry"
    );
    assert_eq!(registry.digest(&repo, "latest"), Some(latest_before));
}

/// A new commit with unchanged sources: the daemon uploads nothing, and the registry sees each object
/// read or written once, apart from the two tags read again by the verification (the SHA tag was also
/// read, absent, by the preflight; `latest` before it moved). Only the labelled config and two manifests
/// are written.
#[test]
fn warm_rerun_touches_each_registry_object_once() {
    let rig = Rig::get();
    let repo = unique_repo("warmreq");
    let context = scratch_context("warmreq", &format!("warm {}", unique_sha()));
    // Both runs through the proxy: the daemon remembers a push per registry host.
    let proxy = FaultProxy::start(rig.registry(), |_| Fault::Pass);
    let (first, second) = (unique_sha(), unique_sha());
    // Random SHAs git cannot order: --latest force lets the second take `latest`.
    run(ecrbuild_at(&context, &proxy.host(), &repo, &first).args(["--latest", "force"]))
        .assert_code(0);
    proxy.log.lock().unwrap().clear();
    run(ecrbuild_at(&context, &proxy.host(), &repo, &second).args(["--latest", "force"]))
        .assert_code(0)
        .assert_stderr_contains("nothing to upload");

    let requests: Vec<String> = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|line| {
            // "METHOD /path?query -> Pass": the method and the path, without upload session state.
            let request = line.split(" -> ").next().unwrap();
            request.split('?').next().unwrap().to_string()
        })
        // The registry client's auth discovery, which it repeats for a registry without auth.
        .filter(|r| r != "GET /v2/")
        .collect();
    let count = |wanted: &str| requests.iter().filter(|r| r.as_str() == wanted).count();
    let read_twice = [
        format!("GET /v2/{repo}/manifests/{second}"),
        format!("GET /v2/{repo}/manifests/latest"),
    ];
    for request in &read_twice {
        assert_eq!(count(request), 2, "{request} in {requests:#?}");
    }
    let mut seen = std::collections::HashSet::new();
    let repeated: Vec<&String> = requests
        .iter()
        .filter(|r| !read_twice.contains(r) && !r.starts_with("PUT /v2/") && !seen.insert(*r))
        .collect();
    assert!(
        repeated.is_empty(),
        "asked twice: {repeated:?} in {requests:#?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("HEAD ") || r.starts_with("PATCH ")),
        "{requests:#?}"
    );
    let uploads = requests
        .iter()
        .filter(|r| r.starts_with("POST ") && r.contains("/blobs/uploads"))
        .count();
    assert_eq!(uploads, 1, "only the labelled config is new: {requests:#?}");
    let manifest_puts: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/manifests/"))
        .collect();
    assert_eq!(
        manifest_puts,
        vec![
            &format!("PUT /v2/{repo}/manifests/{second}"),
            &format!("PUT /v2/{repo}/manifests/latest")
        ]
    );
    let registry = RegistryHttp::anonymous(rig.registry());
    let digest = registry.digest(&repo, &second).expect("second SHA tag");
    assert_eq!(registry.digest(&repo, "latest"), Some(digest));
}

/// ECR refuses a second write of an immutable tag, and the SHA tag is immutable there: a build writes
/// it exactly once, with the labelled manifest. The daemon pushes the unlabelled image under the
/// mutable staging tag, which stays in the registry (a lifecycle rule expires it) but not on the
/// daemon.
#[test]
fn a_build_writes_the_sha_tag_once_and_the_daemon_only_the_staging_tag() {
    let rig = Rig::get();
    let repo = unique_repo("writeonce");
    let sha = unique_sha();
    let staging = staging_tag(&sha);
    let proxy = FaultProxy::start(rig.registry(), |_| Fault::Pass);
    let context = scratch_context("writeonce", &format!("once {sha}"));
    run(&mut ecrbuild_at(&context, &proxy.host(), &repo, &sha)).assert_code(0);

    let puts = manifest_puts(&proxy, &repo);
    let tags: Vec<&str> = puts.iter().map(|(tag, _)| tag.as_str()).collect();
    assert_eq!(
        tags,
        [staging.as_str(), sha.as_str(), "latest", RECORD_TAG],
        "{puts:#?}"
    );
    let by_daemon: Vec<&str> = puts
        .iter()
        .filter(|(_, agent)| agent.starts_with("docker/"))
        .map(|(tag, _)| tag.as_str())
        .collect();
    assert_eq!(by_daemon, [staging.as_str()], "{puts:#?}");

    // The staging tag is the daemon's unlabelled image; the SHA tag is that image with its labels.
    let registry = RegistryHttp::anonymous(rig.registry());
    registry.assert_staged(&repo, &sha);
    registry.assert_same_digest(&repo, "latest", &sha);

    // On the daemon: the planned tags, not the staging tag.
    let local = |tag: &str| format!("{}/{repo}:{tag}", proxy.host());
    assert!(docker_ok(&["image", "inspect", &local(&sha)]));
    assert!(docker_ok(&["image", "inspect", &local("latest")]));
    assert!(
        !docker_ok(&["image", "inspect", &local(&staging)]),
        "the staging tag was left on the daemon"
    );
}

/// The labelled write of the SHA tag lands but its answer is lost (a 500 after the registry took it):
/// the retry reads the tag first, finds this run's labelled image, and does not write it again (ECR
/// would refuse a second write of the immutable tag).
#[test]
fn a_sha_tag_write_whose_answer_was_lost_is_not_written_again() {
    let rig = Rig::get();
    let repo = unique_repo("lostanswer");
    let sha = unique_sha();
    let target = sha.clone();
    let proxy = FaultProxy::start(
        rig.registry(),
        first_n(1, Fault::AfterForward(500), move |s| {
            is_manifest_put(s, Some(&target))
        }),
    );
    let context = scratch_context("lostanswer", &format!("lost {sha}"));
    run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--retries", "3"]))
        .assert_code(0)
        .assert_stderr_contains("retrying in");
    assert_eq!(proxy.faults(), 1);
    let puts = manifest_puts(&proxy, &repo);
    let writes = puts.iter().filter(|(tag, _)| *tag == sha).count();
    assert_eq!(writes, 1, "{puts:#?}");
    let registry = RegistryHttp::anonymous(rig.registry());
    registry.assert_staged(&repo, &sha);
    registry.assert_same_digest(&repo, "latest", &sha);
}

#[test]
fn rerun_of_a_published_sha_is_skipped_without_a_new_push() {
    let rig = Rig::get();
    let repo = unique_repo("rerun");
    let sha = unique_sha();
    let context = scratch_context("rerun", "rerun");
    run(&mut ecrbuild_at(&context, rig.registry(), &repo, &sha)).assert_code(0);
    let registry = RegistryHttp::anonymous(rig.registry());
    let digest = registry.digest(&repo, &sha).unwrap();

    // Changed sources under the same SHA: a rebuild would produce another digest; a skip keeps it.
    std::fs::write(context.join("file.txt"), "changed").unwrap();
    let proxy = FaultProxy::start(rig.registry(), |_| Fault::Pass);
    let result = run(ecrbuild_at(&context, &proxy.host(), &repo, &sha).args(["--output", "json"]));
    result
        .assert_code(0)
        .assert_stderr_contains("already published");
    let summary: serde_json::Value = serde_json::from_str(result.stdout.trim()).unwrap();
    assert_eq!(summary["skipped"], true);
    assert_eq!(summary["pushed"], false);
    assert_eq!(summary["digest"], digest.as_str());
    // The build starts beside the preflight and is dropped when the SHA turns out published; how far
    // the daemon got first depends on timing, but no build result is ever used or pushed.
    assert_eq!(summary["image_id"], "", "a rebuilt image was used");
    let uploads: Vec<String> = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("PUT") || l.starts_with("POST") || l.starts_with("PATCH"))
        .cloned()
        .collect();
    assert!(
        uploads.is_empty(),
        "a skipped run wrote to the registry: {uploads:?}"
    );
    assert_eq!(registry.digest(&repo, &sha), Some(digest.clone()));
    assert_eq!(registry.digest(&repo, "latest"), Some(digest));

    // --force rebuilds and pushes the changed sources.
    let forced = run(ecrbuild_at(&context, rig.registry(), &repo, &sha).arg("--force"));
    forced.assert_code(0);
    let before_force = summary["digest"].as_str().expect("the first run's digest");
    assert_ne!(registry.present_digest(&repo, &sha), before_force);
}

#[test]
fn sigterm_during_the_build_cancels_it_pushes_nothing_and_leaves_no_container() {
    let rig = Rig::get();
    let repo = unique_repo("sigterm");
    let sha = unique_sha();
    let marker = format!("ecrbuild-sigterm-{}", unique_sha());
    let dir = std::env::temp_dir().join(&marker);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("ARG GO_IMAGE\nFROM ${{GO_IMAGE}}\nRUN sleep 120 || echo {marker}\n"),
    )
    .unwrap();
    let child = ecrbuild_at(&dir, rig.registry(), &repo, &sha)
        .args(["--build-arg", &format!("GO_IMAGE={}", rig.go_image())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let build_containers = || -> Vec<String> {
        docker(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"])
            .lines()
            .filter(|l| l.contains(&marker))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    let started = Instant::now();
    while build_containers().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started its RUN step"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("stopped by SIGTERM"));

    let stopped = Instant::now();
    while !build_containers().is_empty() {
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "build container left behind: {:?}",
            build_containers()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

/// A git repository with `n` linear commits, each changing the context; returns (dir, shas oldest first).
fn linear_history(n: usize) -> (PathBuf, Vec<String>) {
    let dir = scratch_context("history", "0");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::write(dir.join(".dockerignore"), ".git\n").unwrap();
    git(&["init", "-q"]);
    git(&["config", "user.email", "test@ecrbuild.invalid"]);
    git(&["config", "user.name", "ecrbuild test"]);
    let mut shas = Vec::new();
    for i in 0..n {
        std::fs::write(dir.join("file.txt"), format!("commit {i}")).unwrap();
        git(&["add", "."]);
        // Every commit in the same second: ordering must come from ancestry, not from timestamps.
        git(&[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            &format!("commit {i}"),
            "--date",
            "2026-01-01T00:00:00Z",
        ]);
        shas.push(git(&["rev-parse", "HEAD"]));
    }
    (dir, shas)
}

#[test]
fn concurrent_runs_for_a_linear_history_leave_latest_on_the_newest_commit() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    for round in 0..3 {
        let repo = unique_repo(&format!("concurrent{round}"));
        let (dir, shas) = linear_history(8);
        let seed = clock_seed();
        let order = shuffled(shas.len(), seed);
        eprintln!("round {round}: seed {seed}, start order {order:?}");
        let children: Vec<_> = order
            .iter()
            .map(|&i| {
                ecrbuild_at(&dir, rig.registry(), &repo, &shas[i])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let logs = wait_for_all(children, &order);
        for sha in &shas {
            let labels = &registry.config(&repo, sha)["config"]["Labels"];
            assert_eq!(
                labels["org.opencontainers.image.revision"],
                sha.as_str(),
                "label of {sha}"
            );
        }
        let context = format!("round {round} (seed {seed}, order {order:?})\n{logs}");
        assert_latest_on(&registry, &repo, shas.last().unwrap(), &context);
    }
}

/// After moving `latest`, a run looks at the SHA tags git does not know (a commit pushed after its
/// checkout, a shallow clone) through their labels: a newer one gets `latest` back.
#[test]
fn a_newer_commit_unknown_to_git_takes_latest_back_after_the_move() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("unknownnewer");
    let (dir, shas) = linear_history(1);
    let outside = scratch_context("unknownnewer", &format!("outside {}", unique_sha()));
    // `latest` on an old commit git does not know (committed at the epoch's first second) ...
    let old = unique_sha();
    run(ecrbuild_at(&outside, rig.registry(), &repo, &old).args([
        "--latest",
        "force",
        "--label",
        "io.ecrbuild.commit-time=1",
    ]))
    .assert_code(0);
    // ... and, under its SHA only, a commit from the year 2100 git does not know either: a concurrent
    // default-branch run that has pushed its SHA tag and not yet moved `latest` (its candidate label
    // says it is to move it).
    let newer = unique_sha();
    run(ecrbuild_at(&outside, rig.registry(), &repo, &newer).args([
        "--latest",
        "never",
        "--label",
        "io.ecrbuild.commit-time=4102444800",
        "--label",
        "io.ecrbuild.latest-candidate=true",
    ]))
    .assert_code(0);
    registry.assert_same_digest(&repo, "latest", &old);
    // Ours is newer than `latest` (moves it), older than `newer` (which then takes it back).
    run(&mut ecrbuild_at(&dir, rig.registry(), &repo, &shas[0]))
        .assert_code(0)
        .assert_stderr_contains("it was committed later")
        .assert_stderr_contains(&format!("put it on {} again", &newer[..12]));
    registry.assert_same_digest(&repo, "latest", &newer);
}

/// A branch build of a newer commit is pushed under its SHA only, and a later run for the default branch
/// never hands it `latest`: not when git knows it descends from that run's commit, and not when git does
/// not know it (a shallow clone) and only its commit time is later.
#[test]
fn a_branch_build_of_a_newer_commit_never_takes_latest() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("branchnewer");
    let (dir, shas) = linear_history(2);
    let outside = scratch_context("branchnewer", &format!("outside {}", unique_sha()));
    run(ecrbuild_at(&dir, rig.registry(), &repo, &shas[1]).args(["--branch", "feature"]))
        .assert_code(0)
        .assert_stderr_contains("latest stays where it is");
    let unknown = unique_sha();
    run(
        ecrbuild_at(&outside, rig.registry(), &repo, &unknown).args([
            "--branch",
            "feature",
            "--label",
            "io.ecrbuild.commit-time=4102444800",
        ]),
    )
    .assert_code(0);
    assert_eq!(registry.digest(&repo, "latest"), None);

    let result =
        run(ecrbuild_at(&dir, rig.registry(), &repo, &shas[0]).args(["--branch", "master"]));
    result.assert_code(0);
    assert!(
        !result.stderr.contains("again"),
        "latest was handed to a branch build: {}",
        result.stderr
    );
    registry.assert_same_digest(&repo, "latest", &shas[0]);
    let candidate = |sha: &str| {
        registry.config(&repo, sha)["config"]["Labels"]["io.ecrbuild.latest-candidate"].clone()
    };
    assert_eq!(candidate(&shas[0]), "true");
    assert_eq!(candidate(&shas[1]), serde_json::Value::Null);
    assert_eq!(candidate(&unknown), serde_json::Value::Null);
}

#[test]
fn an_older_commit_does_not_move_latest_back() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("older");
    let (dir, shas) = linear_history(2);
    run(&mut ecrbuild_at(&dir, rig.registry(), &repo, &shas[1])).assert_code(0);
    let result = run(&mut ecrbuild_at(&dir, rig.registry(), &repo, &shas[0]));
    result
        .assert_code(0)
        .assert_stderr_contains("latest stays on");
    assert!(
        registry.digest(&repo, &shas[0]).is_some(),
        "the older SHA is still pushed"
    );
    registry.assert_same_digest(&repo, "latest", &shas[1]);
    // --latest=force overrides.
    run(ecrbuild_at(&dir, rig.registry(), &repo, &shas[0]).args(["--latest", "force", "--force"]))
        .assert_code(0);
    registry.assert_same_digest(&repo, "latest", &shas[0]);
}

#[test]
fn secrets_never_reach_output_or_disk() {
    let rig = Rig::get();
    let real_config = std::env::var("HOME")
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
        .ok();
    let before = real_config.as_ref().and_then(|p| std::fs::read(p).ok());
    let repo = unique_repo("secrets");
    let context = scratch_context("secrets", "secrets");
    for registry in [rig.ecr_registry(), rig.bad_registry()] {
        let mut cmd = build_cmd(&context, registry, &repo, &unique_sha(), Auth::Ecr);
        cmd.env("RUST_LOG", "trace").arg("--create-repository");
        let result = run(&mut cmd);
        result.assert_no_leak(rig.ecr_password());
        let token = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", rig.ecr_password()))
        };
        result.assert_no_leak(&token);
    }
    assert!(
        !test_home().join(".docker").exists(),
        "~/.docker was created"
    );
    let after = real_config.as_ref().and_then(|p| std::fs::read(p).ok());
    assert_eq!(before, after, "~/.docker/config.json changed");
}
