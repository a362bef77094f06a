//! CI conventions against the rig: PR builds, branch rules for `latest`, tag strategies, output files,
//! OCI labels, cache-from, and ECR scan results (moto).

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

fn build(dir: &Path, repo: &str, sha: &str) -> Command {
    build_cmd(dir, Rig::get().registry(), repo, sha, Auth::None)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn github_pull_request_is_built_and_tagged_but_not_pushed() {
    let rig = Rig::get();
    let repo = unique_repo("pr");
    let sha = unique_sha();
    let dir = scratch_context("pr", "pr");
    let result = run(build(&dir, &repo, &sha)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", "pull_request")
        .env("GITHUB_REF", "refs/pull/5/merge")
        .env("GITHUB_HEAD_REF", "feature"));
    result
        .assert_code(0)
        .assert_stderr_contains("not pushed (pass --push-pr to push)");
    assert!(docker_ok(&[
        "image",
        "inspect",
        &format!("{}/{repo}:pr-5", rig.registry())
    ]));
    assert!(!docker_ok(&[
        "image",
        "inspect",
        &format!("{}/{repo}:latest", rig.registry())
    ]));
    assert!(RegistryHttp::anonymous(rig.registry())
        .tags(&repo)
        .is_empty());
}

#[test]
fn push_pr_pushes_the_sha_and_pr_tags_but_never_latest() {
    let rig = Rig::get();
    let repo = unique_repo("pushpr");
    let sha = unique_sha();
    let dir = scratch_context("pushpr", "pushpr");
    let result = run(build(&dir, &repo, &sha)
        .arg("--push-pr")
        .env("GITLAB_CI", "true")
        .env("CI_MERGE_REQUEST_IID", "12")
        .env("CI_DEFAULT_BRANCH", "main"));
    result.assert_code(0);
    assert_eq!(
        RegistryHttp::anonymous(rig.registry()).tags(&repo),
        sorted(vec![sha.clone(), "pr-12".into(), staging_tag(&sha)])
    );
}

#[test]
fn a_branch_other_than_the_default_does_not_move_latest() {
    let rig = Rig::get();
    let repo = unique_repo("branch");
    let sha = unique_sha();
    let dir = scratch_context("branch", "branch");
    let result = run(build(&dir, &repo, &sha)
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_BRANCH", "feature")
        .env("CI_DEFAULT_BRANCH", "master"));
    result
        .assert_code(0)
        .assert_stderr_contains("is not the default branch (master)");
    assert_eq!(
        RegistryHttp::anonymous(rig.registry()).tags(&repo),
        sorted(vec![sha.clone(), staging_tag(&sha)])
    );

    // The default branch moves it.
    let sha2 = unique_sha();
    run(build(&dir, &repo, &sha2)
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_BRANCH", "master")
        .env("CI_DEFAULT_BRANCH", "master"))
    .assert_code(0);
    let registry = RegistryHttp::anonymous(rig.registry());
    registry.assert_same_digest(&repo, "latest", &sha2);
}

#[test]
fn tag_strategies_short_sha_timestamp_and_image_tag() {
    let rig = Rig::get();
    let repo = unique_repo("strategies");
    let sha = unique_sha();
    let dir = scratch_context("strategies", "strategies");
    let result = run(build(&dir, &repo, &sha)
        .args(["--short-sha", "--timestamp-tag", "--output", "json"])
        .env("IMAGE_TAG", "3.0.0"));
    result.assert_code(0);
    let tags = RegistryHttp::anonymous(rig.registry()).tags(&repo);
    assert!(tags.contains(&sha[..7].to_string()), "{tags:?}");
    assert!(tags.contains(&"3.0.0".to_string()), "{tags:?}");
    assert!(tags.contains(&"latest".to_string()), "{tags:?}");
    let timestamp = tags
        .iter()
        .find(|t| t.len() == 15 && t.as_bytes()[8] == b'-')
        .unwrap_or_else(|| panic!("no YYYYMMDD-HHMMSS tag in {tags:?}"));
    assert!(timestamp.starts_with("20"), "{timestamp}");
    assert!(tags.contains(&RECORD_TAG.to_string()), "{tags:?}");
    assert!(tags.contains(&staging_tag(&sha)), "{tags:?}");
    assert_eq!(
        tags.len(),
        7,
        "five tags, the staging tag and the candidate record: {tags:?}"
    );

    // The version label comes from IMAGE_TAG; the revision label from the SHA.
    let labels = &RegistryHttp::anonymous(rig.registry()).config(&repo, &sha)["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], "3.0.0");
    assert_eq!(labels["org.opencontainers.image.revision"], sha.as_str());
    assert!(labels["org.opencontainers.image.created"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    // Invalid tags are refused before anything happens.
    let bad = run(build(&dir, &repo, &unique_sha()).env("IMAGE_TAG", "not/valid"));
    bad.assert_code(2)
        .assert_stderr_contains("IMAGE_TAG: \"not/valid\" is not a valid tag");
}

#[test]
fn output_files_imagedefinitions_digest_and_github_output() {
    let rig = Rig::get();
    let repo = unique_repo("outputs");
    let sha = unique_sha();
    let dir = scratch_context("outputs", "outputs");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let github_output = out.join("github_output");
    std::fs::write(&github_output, "earlier=kept\n").unwrap();
    let result = run(build(&dir, &repo, &sha)
        .args([
            "--imagedefinitions",
            path_str(&out.join("imagedefinitions.json")),
            "--container-name",
            "api",
        ])
        .args(["--digest-file", path_str(&out.join("digest"))])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "owner/app")
        .env("GITHUB_OUTPUT", path_str(&github_output)));
    result.assert_code(0);
    let digest = RegistryHttp::anonymous(rig.registry())
        .digest(&repo, &sha)
        .unwrap();

    let definitions: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("imagedefinitions.json")).unwrap())
            .unwrap();
    assert_eq!(
        definitions,
        serde_json::json!([{ "name": "api", "imageUri": format!("{}/{repo}:{sha}", rig.registry()) }])
    );
    assert_eq!(
        std::fs::read_to_string(out.join("digest")).unwrap().trim(),
        digest
    );
    let gh = std::fs::read_to_string(&github_output).unwrap();
    assert!(gh.starts_with("earlier=kept\n"), "{gh}");
    assert!(gh.contains(&format!("digest={digest}\n")), "{gh}");
    assert!(
        gh.contains(&format!("image={}/{repo}@{digest}\n", rig.registry())),
        "{gh}"
    );
    assert!(
        gh.contains(&format!(
            "tags={}/{repo}:{sha},{}/{repo}:latest\n",
            rig.registry(),
            rig.registry()
        )),
        "{gh}"
    );

    let labels = &RegistryHttp::anonymous(rig.registry()).config(&repo, &sha)["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/owner/app"
    );

    // --imagedefinitions without --container-name is a usage error.
    let bad = run(build(&dir, &repo, &sha).args(["--imagedefinitions", "x.json"]));
    bad.assert_code(2);
}

#[test]
fn cache_from_latest_reuses_layers_after_the_local_images_are_gone() {
    let rig = Rig::get();
    let repo = unique_repo("cachefrom");
    let dir = scratch_context("cachefrom", &format!("cache {}", unique_sha()));
    let first = unique_sha();
    run(&mut build(&dir, &repo, &first)).assert_code(0);
    // Forget everything local about this image, as a fresh CI machine would.
    let id = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{}/{repo}:{first}", rig.registry()),
    ]);
    remove_images(&[id.trim()]);

    let second = unique_sha();
    let result = run(build(&dir, &repo, &second).args(["--cache-from", "latest"]));
    result
        .assert_code(0)
        .assert_stderr_contains(&format!(
            "cache source {}/{repo}:latest pulled",
            rig.registry()
        ))
        .assert_stderr_contains("Using cache");
    // Same layers; only the config differs (each build records its own revision and time).
    let registry = RegistryHttp::anonymous(rig.registry());
    let layers = |tag: &str| -> Vec<String> {
        let manifest: serde_json::Value =
            serde_json::from_str(&registry.manifest_text(&repo, tag)).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(layers(&second), layers(&first));
    assert_eq!(layers(&first).len(), 2);

    // A missing cache source only warns.
    let third =
        run(build(&dir, &unique_repo("nocache"), &unique_sha()).args(["--cache-from", "latest"]));
    third.assert_code(0).assert_stderr_contains("not used");
}

/// Put the pushed image into moto's ECR, with scan results of our choosing, so that
/// DescribeImageScanFindings answers for the digest ecrbuild pushed.
fn register_scan_in_moto(repo: &str, tag: &str, counts: serde_json::Value) {
    let rig = Rig::get();
    let registry = RegistryHttp::basic(rig.ecr_registry(), "AWS", rig.ecr_password());
    let manifest = registry.manifest_text(repo, tag);
    let region = rig.var("AWS_REGION").to_string();
    let moto = rig.var("ECRBUILD_RIG_MOTO").to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .region(aws_config::Region::new(region.clone()))
            .endpoint_url(&moto)
            .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let ecr = aws_sdk_ecr::Client::new(&config);
        ecr.put_image()
            .repository_name(repo)
            .image_manifest(&manifest)
            .image_tag(tag)
            .send()
            .await
            .expect("moto PutImage");
        ecr.start_image_scan()
            .repository_name(repo)
            .image_id(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag(tag)
                    .build(),
            )
            .send()
            .await
            .expect("moto StartImageScan");
    });
    let findings = serde_json::json!({
        "region": region,
        "results": [{
            "imageScanFindings": { "findings": [], "findingSeverityCounts": counts },
            "registryId": "123456789012",
            "repositoryName": repo,
            "imageId": { "imageTag": tag },
            "imageScanStatus": { "status": "COMPLETE", "description": "done" }
        }]
    });
    let mut resp = ureq::post(&format!("{moto}/moto-api/static/ecr/scan-finding-results"))
        .header("Content-Type", "application/json")
        .send(findings.to_string())
        .expect("moto API");
    let status = resp.status().as_u16();
    assert!(
        (200..300).contains(&status),
        "{status} {}",
        resp.body_mut().read_to_string().unwrap_or_default()
    );
}

#[test]
fn wait_scan_summarises_findings_and_fail_on_sets_its_exit_code() {
    let rig = Rig::get();
    let repo = unique_repo("scan");
    let sha = unique_sha();
    let dir = scratch_context("scan", "scan");
    let ecr = |extra: &[&str]| {
        let mut cmd = build_cmd(&dir, rig.ecr_registry(), &repo, &sha, Auth::Ecr);
        cmd.arg("--create-repository").args(extra);
        run(&mut cmd)
    };
    ecr(&[]).assert_code(0);
    register_scan_in_moto(&repo, &sha, serde_json::json!({ "HIGH": 2, "LOW": 3 }));

    // The SHA is already published: the re-run skips the build and still reports the scan.
    let informational = ecr(&["--wait-scan", "--scan-timeout", "30", "--output", "json"]);
    informational
        .assert_code(0)
        .assert_stderr_contains("HIGH 2, LOW 3");
    let summary: serde_json::Value = serde_json::from_str(informational.stdout.trim()).unwrap();
    assert_eq!(summary["scan"]["counts"]["HIGH"], 2);

    ecr(&["--fail-on", "CRITICAL", "--scan-timeout", "30"]).assert_code(0);
    ecr(&["--fail-on", "HIGH", "--scan-timeout", "30"])
        .assert_code(9)
        .assert_stderr_contains("found HIGH 2 at or above HIGH");
}
