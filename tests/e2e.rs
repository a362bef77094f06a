//! End to end against the rig: a real dockerd, real registries, moto for ECR. Every test asserts the exit
//! code, the message, and what the registry holds afterwards.

mod support;

use std::time::Duration;

use support::*;

/// Build the tiny scratch fixture into `repo` on the anonymous registry.
fn push_scratch(repo: &str, sha: &str, stamp: &str, extra: &[&str]) -> Run {
    let rig = Rig::get();
    let mut cmd = build_cmd(&fixture("scratch"), rig.registry(), repo, sha, Auth::None);
    cmd.args(["--build-arg", &format!("STAMP={stamp}")])
        .args(extra);
    run(&mut cmd)
}

#[test]
fn api_is_built_pushed_with_sha_and_latest_and_serves_health() {
    let rig = Rig::get();
    let repo = unique_repo("api");
    let sha = unique_sha();
    let mut cmd = ecrbuild();
    cmd.args(["-f", "api/Dockerfile"])
        .args([
            "--sha",
            &sha,
            "--repository",
            &repo,
            "--registry",
            rig.registry(),
            "--auth",
            "none",
        ])
        .args([
            "--build-arg",
            &format!("GO_IMAGE={}", rig.go_image()),
            "--output",
            "json",
        ]);
    let result = run(&mut cmd);
    result.assert_code(0);

    let registry = RegistryHttp::anonymous(rig.registry());
    assert_eq!(registry.tags(&repo), {
        let mut t = vec![sha.clone(), "latest".to_string(), RECORD_TAG.to_string()];
        t.sort();
        t
    });
    let sha_digest = registry.digest(&repo, &sha).expect("sha tag present");
    assert_eq!(registry.digest(&repo, "latest"), Some(sha_digest.clone()));

    let summary: serde_json::Value =
        serde_json::from_str(result.stdout.trim()).expect("json on stdout");
    assert_eq!(summary["digest"], sha_digest.as_str());
    assert_eq!(summary["pushed"], true);
    assert_eq!(summary["sha"], sha.as_str());

    // Non-root, with a healthcheck, in the pushed config.
    let config = registry.config(&repo, &sha);
    let user = config["config"]["User"].as_str().unwrap_or_default();
    assert!(
        !user.is_empty() && !user.starts_with("0") && user != "root",
        "user {user:?}"
    );
    assert!(
        config["config"]["Healthcheck"]["Test"].is_array(),
        "{config}"
    );

    // Only the binary: no Go toolchain, no sources.
    let reference = format!("{}/{repo}:{sha}", rig.registry());
    let container = docker(&["create", &reference]).trim().to_string();
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {container} | tar -t"))
        .output()
        .unwrap();
    docker(&["rm", &container]);
    let files = String::from_utf8_lossy(&listing.stdout).to_string();
    assert!(
        files.lines().any(|l| l.trim_end_matches('/') == "api"),
        "{files}"
    );
    assert!(!files.contains(".go"), "Go sources in the image:\n{files}");
    assert!(!files.contains("usr/lib/go"), "Go toolchain in the image");
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &reference])
        .trim()
        .parse()
        .unwrap();
    assert!(size < 30 * 1024 * 1024, "image is {size} bytes");

    // It starts and answers /health within 10 s.
    let body = health_of(&reference, "linux/amd64", Duration::from_secs(10));
    assert_eq!(body, r#"{"status":"ok"}"#, "no healthy answer within 10 s");
}

#[test]
fn ecr_auth_pushes_to_the_password_protected_registry() {
    let rig = Rig::get();
    let repo = unique_repo("ecr");
    let sha = unique_sha();
    let mut cmd = build_cmd(
        &fixture("scratch"),
        rig.ecr_registry(),
        &repo,
        &sha,
        Auth::Ecr,
    );
    cmd.arg("--create-repository");
    let result = run(&mut cmd);
    result
        .assert_code(0)
        .assert_no_leak(rig.ecr_password())
        .assert_stderr_contains(&format!("created repository {repo}"));

    let registry = RegistryHttp::basic(rig.ecr_registry(), "AWS", rig.ecr_password());
    let digest = registry
        .digest(&repo, &sha)
        .expect("sha tag pushed with the ECR token");
    assert_eq!(registry.digest(&repo, "latest"), Some(digest));
    assert!(
        !test_home().join(".docker/config.json").exists(),
        "credentials written to disk"
    );
}

#[test]
fn wrong_registry_password_fails_with_the_auth_code_and_pushes_nothing() {
    let rig = Rig::get();
    let repo = unique_repo("badauth");
    let sha = unique_sha();
    let mut cmd = build_cmd(
        &fixture("scratch"),
        rig.bad_registry(),
        &repo,
        &sha,
        Auth::Ecr,
    );
    cmd.arg("--create-repository");
    let result = run(&mut cmd);
    result
        .assert_code(6)
        .assert_stderr_contains("authentication failed for")
        .assert_stderr_contains(rig.bad_registry())
        .assert_no_leak(rig.ecr_password());

    let registry = RegistryHttp::basic(
        rig.bad_registry(),
        "AWS",
        rig.var("ECRBUILD_RIG_BAD_REGISTRY_PASSWORD"),
    );
    assert!(
        registry.tags(&repo).is_empty(),
        "tags were pushed despite the auth failure"
    );
}

#[test]
fn a_refused_token_is_refreshed_once_then_fails_fast() {
    let rig = Rig::get();
    let repo = unique_repo("refresh");
    let sha = unique_sha();
    // Without the preflight the refusal comes from the push itself.
    let mut cmd = build_cmd(
        &fixture("scratch"),
        rig.bad_registry(),
        &repo,
        &sha,
        Auth::Ecr,
    );
    cmd.args(["--create-repository", "--no-preflight"]);
    let started = std::time::Instant::now();
    run(&mut cmd)
        .assert_code(6)
        .assert_stderr_contains("fetching a new one")
        .assert_stderr_contains("the registry refused the credentials")
        .assert_no_leak(rig.ecr_password());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "an auth failure must not be retried for long"
    );
    let registry = RegistryHttp::basic(
        rig.bad_registry(),
        "AWS",
        rig.var("ECRBUILD_RIG_BAD_REGISTRY_PASSWORD"),
    );
    assert!(registry.tags(&repo).is_empty());
}

#[test]
fn ecr_api_unreachable_is_an_auth_failure_before_anything_is_pushed() {
    let rig = Rig::get();
    let repo = unique_repo("noecr");
    let sha = unique_sha();
    let mut cmd = build_cmd(
        &fixture("scratch"),
        rig.ecr_registry(),
        &repo,
        &sha,
        Auth::Ecr,
    );
    cmd.env("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9");
    let result = run(&mut cmd);
    result
        .assert_code(6)
        .assert_stderr_contains("ECR at http://127.0.0.1:9");
    let registry = RegistryHttp::basic(rig.ecr_registry(), "AWS", rig.ecr_password());
    assert!(registry.tags(&repo).is_empty());
}

#[test]
fn missing_ecr_repository_is_named_with_its_region_before_any_build() {
    let rig = Rig::get();
    let repo = unique_repo("norepo");
    let sha = unique_sha();
    let mut cmd = build_cmd(
        &fixture("scratch"),
        rig.ecr_registry(),
        &repo,
        &sha,
        Auth::Ecr,
    );
    let result = run(&mut cmd);
    result
        .assert_code(10)
        .assert_stderr_contains(&format!(
            "repository {repo} does not exist in ECR in {}",
            rig.var("AWS_REGION")
        ))
        .assert_stderr_contains("terraform");
    let registry = RegistryHttp::basic(rig.ecr_registry(), "AWS", rig.ecr_password());
    assert!(registry.tags(&repo).is_empty());
}

#[test]
fn failed_build_pushes_nothing_and_leaves_latest_alone() {
    let rig = Rig::get();
    let repo = unique_repo("broken");
    let registry = RegistryHttp::anonymous(rig.registry());

    // A good image first, so `latest` exists.
    let good_sha = unique_sha();
    push_scratch(&repo, &good_sha, "good", &[]).assert_code(0);
    let latest_before = registry
        .digest(&repo, "latest")
        .expect("latest after the good push");

    let bad_sha = unique_sha();
    let mut cmd = build_cmd(
        &fixture("broken-go"),
        rig.registry(),
        &repo,
        &bad_sha,
        Auth::None,
    );
    cmd.args(["--build-arg", &format!("GO_IMAGE={}", rig.go_image())]);
    let result = run(&mut cmd);
    result
        .assert_code(5)
        .assert_stderr_contains("build failed")
        .assert_stderr_contains("nothing was pushed")
        .assert_stderr_contains("undefined: undefinedFunction");

    assert_eq!(
        registry.digest(&repo, &bad_sha),
        None,
        "the failed build's SHA was pushed"
    );
    assert_eq!(
        registry.digest(&repo, "latest"),
        Some(latest_before),
        "latest moved"
    );
    // The good push's SHA tag, `latest`, and the candidate record it wrote: nothing more.
    assert_eq!(registry.tags(&repo).len(), 3, "{:?}", registry.tags(&repo));
    // Nothing tagged locally either.
    assert!(!docker_ok(&[
        "image",
        "inspect",
        &format!("{}/{repo}:{bad_sha}", rig.registry())
    ]));
}

#[test]
fn missing_dockerfile_is_a_context_error_naming_the_path() {
    let rig = Rig::get();
    let repo = unique_repo("nodockerfile");
    let sha = unique_sha();
    let mut cmd = ecrbuild();
    cmd.args([
        "--sha",
        &sha,
        "--repository",
        &repo,
        "--registry",
        rig.registry(),
        "--auth",
        "none",
    ])
    .args([
        "--context",
        path_str(&fixture("scratch")),
        "-f",
        "tests/fixtures/scratch/Nope.Dockerfile",
    ]);
    run(&mut cmd)
        .assert_code(3)
        .assert_stderr_contains("Nope.Dockerfile")
        .assert_stderr_contains("-f/--file");
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

#[test]
fn invalid_sha_is_a_usage_error() {
    let rig = Rig::get();
    let repo = unique_repo("badsha");
    let result = push_scratch(&repo, "abc123", "x", &[]);
    result
        .assert_code(2)
        .assert_stderr_contains("--sha: \"abc123\" is not a commit SHA");
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

#[test]
fn unreachable_daemon_is_reported_with_its_own_code() {
    let rig = Rig::get();
    let repo = unique_repo("nodaemon");
    let sha = unique_sha();
    let mut cmd = build_cmd(&fixture("scratch"), rig.registry(), &repo, &sha, Auth::None);
    cmd.env("DOCKER_HOST", "unix:///tmp/ecrbuild-no-such-daemon.sock");
    run(&mut cmd)
        .assert_code(4)
        .assert_stderr_contains(
            "cannot reach the Docker daemon at unix:///tmp/ecrbuild-no-such-daemon.sock",
        )
        .assert_stderr_contains("DOCKER_HOST");
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

#[test]
fn no_push_tags_locally_and_leaves_the_registry_untouched() {
    let rig = Rig::get();
    let repo = unique_repo("nopush");
    let sha = unique_sha();
    let result = push_scratch(
        &repo,
        &sha,
        "nopush",
        &["--no-push", "-t", "extra", "--output", "json"],
    );
    result.assert_code(0);
    let summary: serde_json::Value = serde_json::from_str(result.stdout.trim()).unwrap();
    assert_eq!(summary["pushed"], false);
    assert_eq!(summary["references"].as_array().unwrap().len(), 3);
    for tag in [sha.as_str(), "latest", "extra"] {
        let reference = format!("{}/{repo}:{tag}", rig.registry());
        let id = docker(&["image", "inspect", "--format", "{{.Id}}", &reference]);
        assert_eq!(
            id.trim(),
            summary["image_id"].as_str().unwrap(),
            "{reference}"
        );
    }
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

#[test]
fn extra_tags_follow_the_sha_tag_to_the_same_digest() {
    let rig = Rig::get();
    let repo = unique_repo("extra");
    let sha = unique_sha();
    let result = push_scratch(&repo, &sha, "extra", &["-t", "v1.2.3", "--no-latest"]);
    result.assert_code(0);
    let registry = RegistryHttp::anonymous(rig.registry());
    let mut expected = vec![sha.clone(), "v1.2.3".to_string()];
    expected.sort();
    assert_eq!(registry.tags(&repo), expected);
    let digest = registry.digest(&repo, &sha).unwrap();
    assert_eq!(registry.digest(&repo, "v1.2.3"), Some(digest.clone()));
    // Text output: one pushed reference per line, with the digest.
    assert!(
        result
            .stdout
            .contains(&format!("{}/{repo}:{sha}@{digest}", rig.registry())),
        "{}",
        result.stdout
    );
}

/// The provenance labels are written in the registry, so an unchanged build is fully cached, the local
/// image is the same for every commit, and the second push uploads no layer: only a config and manifests.
#[test]
fn unchanged_sources_reuse_the_image_and_upload_nothing() {
    let rig = Rig::get();
    let repo = unique_repo("unchanged");
    let dir = scratch_context("unchanged", &format!("unchanged {}", unique_sha()));
    let (first, second) = (unique_sha(), unique_sha());
    let summary = |result: &Run| -> serde_json::Value {
        serde_json::from_str(result.stdout.trim()).expect("json on stdout")
    };
    // Random SHAs git cannot order: --latest force lets the second take `latest`.
    let flags = ["--output", "json", "--latest", "force"];
    let one = run(build_cmd(&dir, rig.registry(), &repo, &first, Auth::None).args(flags));
    one.assert_code(0);
    let two = run(build_cmd(&dir, rig.registry(), &repo, &second, Auth::None).args(flags));
    two.assert_code(0)
        .assert_stderr_contains("nothing to upload")
        .assert_stderr_contains("Using cache");
    let (one, two) = (summary(&one), summary(&two));
    assert_eq!(
        one["image_id"], two["image_id"],
        "the same sources gave another image"
    );

    let registry = RegistryHttp::anonymous(rig.registry());
    let layers = |tag: &str| {
        let manifest: serde_json::Value =
            serde_json::from_str(&registry.manifest_text(&repo, tag)).unwrap();
        manifest["layers"].clone()
    };
    assert_eq!(layers(&first), layers(&second));
    // Each commit's published image names its own commit; `latest` is the second.
    for sha in [&first, &second] {
        let labels = &registry.config(&repo, sha)["config"]["Labels"];
        assert_eq!(labels["org.opencontainers.image.revision"], sha.as_str());
        assert!(labels["org.opencontainers.image.created"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
    let second_digest = registry.digest(&repo, &second).expect("second SHA tag");
    assert_ne!(registry.digest(&repo, &first), Some(second_digest.clone()));
    assert_eq!(two["digest"], second_digest.as_str());
    assert_eq!(registry.digest(&repo, "latest"), Some(second_digest));
    // The local image is the daemon's build, without the per-commit labels.
    let local = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        one["image_id"].as_str().unwrap(),
    ]);
    assert!(
        !local.contains("org.opencontainers.image.revision"),
        "{local}"
    );
}

/// A SHA tag without its revision label (a run stopped between the layer upload and the labelled config,
/// or another tool) is not taken as published: the next run builds and finishes it.
#[test]
fn a_sha_tag_without_its_labels_is_finished_not_skipped() {
    let rig = Rig::get();
    let repo = unique_repo("unlabelled");
    let sha = unique_sha();
    let dir = scratch_context("unlabelled", &format!("unlabelled {sha}"));
    let reference = format!("{}/{repo}:{sha}", rig.registry());
    docker(&["build", "-q", "-t", &reference, path_str(&dir)]);
    docker(&["push", &reference]);
    let registry = RegistryHttp::anonymous(rig.registry());
    let unlabelled = registry.digest(&repo, &sha).expect("pushed by the CLI");

    run(&mut build_cmd(
        &dir,
        rig.registry(),
        &repo,
        &sha,
        Auth::None,
    ))
    .assert_code(0)
    .assert_stderr_contains("does not carry its revision label");
    let finished = registry.digest(&repo, &sha).expect("SHA tag");
    assert_ne!(finished, unlabelled);
    assert_eq!(
        registry.config(&repo, &sha)["config"]["Labels"]["org.opencontainers.image.revision"],
        sha.as_str()
    );
    assert_eq!(registry.digest(&repo, "latest"), Some(finished));
    // Now it is published: the next run skips.
    run(&mut build_cmd(
        &dir,
        rig.registry(),
        &repo,
        &sha,
        Auth::None,
    ))
    .assert_code(0)
    .assert_stderr_contains("is already published");
}
