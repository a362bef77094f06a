//! Multi-platform images against the rig: BuildKit on the real daemons, Debian's registry, QEMU where
//! the rig registered it. What the registry holds is read through its HTTP API, layer bytes included.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::proxy::{first_n, is_manifest_put, manifest_puts, Fault, FaultProxy};
use support::*;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REVISION: &str = "org.opencontainers.image.revision";
const BOTH: &str = "linux/amd64,linux/arm64";

/// `api/` built from the repository root with the rig's Go image, as a default-branch build (the
/// checkout the tests run in may be on any branch).
fn api_cmd(registry: &str, repo: &str, sha: &str) -> Command {
    let mut cmd = ecrbuild();
    cmd.args(["-f", "api/Dockerfile"])
        .args(["--sha", sha, "--repository", repo, "--registry", registry])
        .args(["--branch", "main"])
        .args(["--auth", "none", "--build-arg"])
        .arg(format!("GO_IMAGE={}", Rig::get().go_image()));
    cmd
}

/// `ecrbuild index` for `platforms` on the default branch, with no Docker daemon reachable.
fn index_cmd(registry: &str, repo: &str, sha: &str, platforms: &str) -> Command {
    let mut cmd = ecrbuild();
    cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args([
            "index",
            "--sha",
            sha,
            "--platform",
            platforms,
            "--branch",
            "main",
        ])
        .args([
            "--repository",
            repo,
            "--registry",
            registry,
            "--auth",
            "none",
        ]);
    cmd
}

/// A `FROM scratch` context whose image records the platform it was built for.
fn scratch_platform_context(name: &str) -> PathBuf {
    let dir = scratch_context(name, &format!("{name} {}", unique_sha()));
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nARG TARGETPLATFORM\nCOPY file.txt /file.txt\nLABEL built.for=$TARGETPLATFORM\n",
    )
    .unwrap();
    dir
}

/// The platforms an index lists, as `os/arch[/variant]`, and the digest of each.
fn index_platforms(index: &serde_json::Value) -> Vec<(String, String)> {
    let mut listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .expect("an index lists manifests")
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(variant) = p["variant"].as_str() {
                name = format!("{name}/{variant}");
            }
            (name, m["digest"].as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    listed
}

fn platform_names(index: &serde_json::Value) -> Vec<String> {
    index_platforms(index).into_iter().map(|(p, _)| p).collect()
}

/// The ELF machine of `path` inside the image `digest`, read from its layers through the registry API.
fn elf_machine(registry: &RegistryHttp, repo: &str, digest: &str, path: &str) -> u16 {
    let manifest = registry.manifest_json(repo, digest);
    for layer in manifest["layers"].as_array().unwrap().iter().rev() {
        let blob = registry.blob(repo, layer["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                == path
            {
                let mut head = [0u8; 20];
                entry.read_exact(&mut head).unwrap();
                assert_eq!(&head[..4], b"\x7fELF", "{path} is not an ELF file");
                return u16::from_le_bytes([head[18], head[19]]);
            }
        }
    }
    panic!("{path} is in no layer of {repo}@{digest}");
}

fn qemu_registered() -> bool {
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        .is_ok_and(|t| t.lines().next() == Some("enabled"))
}

/// `api/` for amd64 and arm64 on this amd64 host: one OCI index of exactly the two, each image's config
/// declaring its architecture, the arm64 binary an aarch64 ELF; both images run and answer `/health`
/// (arm64 under QEMU, when the rig could register it).
#[test]
fn api_for_two_platforms_is_one_index_of_images_that_run() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-api");
    let sha = unique_sha();
    let result =
        run(api_cmd(rig.registry(), &repo, &sha).args(["--platform", BOTH, "--output", "json"]));
    result
        .assert_code(0)
        .assert_stderr_contains("an index of linux/amd64, linux/arm64");

    let index = registry.manifest_json(&repo, &sha);
    assert_eq!(index["mediaType"], OCI_INDEX, "{index}");
    assert_eq!(platform_names(&index), ["linux/amd64", "linux/arm64"]);
    assert_eq!(index["annotations"][REVISION], sha.as_str());
    registry.assert_same_digest(&repo, "latest", &sha);
    let summary: serde_json::Value = serde_json::from_str(result.stdout.trim()).unwrap();
    assert_eq!(
        summary["digest"],
        registry.present_digest(&repo, &sha).as_str()
    );

    for (platform, digest) in index_platforms(&index) {
        let arch = platform.rsplit('/').next().unwrap();
        let config = registry.config(&repo, &digest);
        assert_eq!(config["architecture"], arch, "{platform}: {config}");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Labels"][REVISION], sha.as_str());
        // Each image is also under its platform tag.
        assert_eq!(
            registry.present_digest(&repo, &format!("{sha}-linux-{arch}")),
            digest
        );
        let expected_machine = if arch == "arm64" { 183 } else { 62 };
        assert_eq!(
            elf_machine(&registry, &repo, &digest, "api"),
            expected_machine,
            "{platform}"
        );
    }

    let reference = format!("{}/{repo}:{sha}", rig.registry());
    assert_eq!(
        health_of(&reference, "linux/amd64", Duration::from_secs(10)),
        r#"{"status":"ok"}"#
    );
    if qemu_registered() {
        assert_eq!(
            health_of(&reference, "linux/arm64", Duration::from_secs(30)),
            r#"{"status":"ok"}"#,
            "the arm64 image under QEMU"
        );
    } else {
        eprintln!("qemu-aarch64 is not registered here (scripts/rig.sh up says why): the arm64 image was checked, not run");
    }
}

/// Two hosts, each publishing its own platform with `--defer-index`, then `ecrbuild index` with no
/// daemon at all: the SHA tag becomes the index of both images, and `latest` moves to it.
#[test]
fn native_hosts_publish_their_platform_and_index_joins_them() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-native");
    let sha = unique_sha();
    let context = scratch_platform_context("native");
    let amd = run(
        build_cmd(&context, rig.registry(), &repo, &sha, Auth::None).args([
            "--platform",
            "linux/amd64",
            "--defer-index",
        ]),
    );
    amd.assert_code(0);
    // One platform's image only (and the staging tag the daemon pushed it under): no SHA tag, no latest.
    let amd_tag = format!("{sha}-linux-amd64");
    let mut expected = vec![amd_tag.clone(), staging_tag(&amd_tag)];
    expected.sort();
    assert_eq!(registry.tags(&repo), expected);
    registry.assert_staged(&repo, &amd_tag);
    run(build_cmd(&context, rig.registry(), &repo, &sha, Auth::None)
        .env("DOCKER_HOST", rig.var("ECRBUILD_RIG_DOCKER_HOST_2"))
        .args(["--platform", "linux/arm64", "--defer-index"]))
    .assert_code(0);
    let arm_tag = format!("{sha}-linux-arm64");
    assert_eq!(registry.config(&repo, &arm_tag)["architecture"], "arm64");

    run(&mut index_cmd(rig.registry(), &repo, &sha, BOTH))
        .assert_code(0)
        .assert_stderr_contains("verified");
    let index = registry.manifest_json(&repo, &sha);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index_platforms(&index);
    assert_eq!(
        listed,
        [
            (
                "linux/amd64".to_string(),
                registry.present_digest(&repo, &format!("{sha}-linux-amd64"))
            ),
            (
                "linux/arm64".to_string(),
                registry.present_digest(&repo, &arm_tag)
            ),
        ]
    );
    assert_eq!(index["annotations"][REVISION], sha.as_str());
    registry.assert_same_digest(&repo, "latest", &sha);

    // A re-run (a retried CI job) publishes nothing new: the SHA tag is not written again.
    let before = registry.present_digest(&repo, &sha);
    run(&mut index_cmd(rig.registry(), &repo, &sha, BOTH))
        .assert_code(0)
        .assert_stderr_contains("already published");
    assert_eq!(registry.present_digest(&repo, &sha), before);
}

/// `ecrbuild index` with a platform that no host published: exit 7 naming it; no SHA tag, no latest.
#[test]
fn index_with_a_platform_missing_names_it_and_publishes_nothing() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-missing");
    let sha = unique_sha();
    let context = scratch_platform_context("missing");
    run(
        build_cmd(&context, rig.registry(), &repo, &sha, Auth::None).args([
            "--platform",
            "linux/amd64",
            "--defer-index",
        ]),
    )
    .assert_code(0);
    run(&mut index_cmd(rig.registry(), &repo, &sha, BOTH))
        .assert_code(7)
        .assert_stderr_contains("linux/arm64")
        .assert_stderr_contains(&format!("{sha}-linux-arm64"))
        .assert_stderr_contains("nothing was published");
    let amd_tag = format!("{sha}-linux-amd64");
    let mut expected = vec![amd_tag.clone(), staging_tag(&amd_tag)];
    expected.sort();
    assert_eq!(registry.tags(&repo), expected);
    assert_eq!(registry.digest(&repo, &sha), None);
}

/// A `RUN` in a stage of the foreign platform, and no emulator registered: exit 2 before anything is
/// built, naming the stage, the platform and the fix; nothing is pushed or tagged.
#[test]
fn a_foreign_run_without_an_emulator_fails_before_building() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-noqemu");
    let sha = unique_sha();
    let context = scratch_context("noqemu", "x");
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM {} AS tools\nRUN true\nFROM scratch\nCOPY --from=tools /etc/hostname /x\n",
            rig.go_image()
        ),
    )
    .unwrap();
    let no_binfmt = std::env::temp_dir().join(format!("ecrbuild-nobinfmt-{}", unique_sha()));
    std::fs::create_dir_all(&no_binfmt).unwrap();
    for platforms in [BOTH, "linux/arm64"] {
        let result = run(build_cmd(&context, rig.registry(), &repo, &sha, Auth::None)
            .env("ECRBUILD_BINFMT_MISC_DIR", &no_binfmt)
            .args(["--platform", platforms]));
        result
            .assert_code(2)
            .assert_stderr_contains("stage tools")
            .assert_stderr_contains("linux/arm64")
            .assert_stderr_contains("qemu-aarch64")
            .assert_stderr_contains("update-binfmts");
        assert!(!result.stderr.contains("building"), "{}", result.stderr);
    }
    assert!(registry.tags(&repo).is_empty());
    let local = format!("{}/{repo}:{sha}-linux-amd64", rig.registry());
    assert!(
        !docker_ok(&["image", "inspect", &local]),
        "{local} was built"
    );
}

/// One platform's build fails: no platform image, no index, no latest.
#[test]
fn a_failed_platform_publishes_no_index() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-fail");
    let sha = unique_sha();
    let context = scratch_context("platfail", "x");
    std::fs::write(
        context.join("Dockerfile"),
        format!(
            "FROM --platform=$BUILDPLATFORM {} AS build\nARG TARGETARCH\nRUN test \"$TARGETARCH\" != arm64\nFROM scratch\nCOPY --from=build /etc/hostname /x\n",
            rig.go_image()
        ),
    )
    .unwrap();
    run(build_cmd(&context, rig.registry(), &repo, &sha, Auth::None).args(["--platform", BOTH]))
        .assert_code(5)
        .assert_stderr_contains("nothing was pushed");
    assert!(
        registry.tags(&repo).is_empty(),
        "{:?}",
        registry.tags(&repo)
    );
}

/// `latest` moves only forward for indexes: commits 1, 2, then 0 published as indexes leave it on 2.
#[test]
fn latest_only_moves_forward_for_indexes() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-forward");
    let (checkout, shas) = history(3);
    let publish = |i: usize| {
        run(
            build_cmd(&checkout, rig.registry(), &repo, &shas[i], Auth::None)
                .args(["--platform", BOTH]),
        )
    };
    publish(1).assert_code(0);
    registry.assert_same_digest(&repo, "latest", &shas[1]);
    publish(2)
        .assert_code(0)
        .assert_stderr_contains("moving latest");
    registry.assert_same_digest(&repo, "latest", &shas[2]);
    publish(0)
        .assert_code(0)
        .assert_stderr_contains("latest stays on");
    registry.assert_same_digest(&repo, "latest", &shas[2]);
    let latest = registry.manifest_json(&repo, "latest");
    assert_eq!(latest["mediaType"], OCI_INDEX);
    assert_eq!(latest["annotations"][REVISION], shas[2].as_str());
    assert_eq!(
        platform_names(&registry.manifest_json(&repo, &shas[0])).len(),
        2
    );
}

/// ECR refuses a second write of an immutable tag: a two-platform build writes each platform tag once
/// (its labelled image, by ecrbuild) and the SHA tag once (the index). The daemon pushes only the
/// staging tags; the index lists the labelled images, never the staged ones.
#[test]
fn a_two_platform_build_writes_each_immutable_tag_once() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-once");
    let sha = unique_sha();
    let proxy = FaultProxy::start(rig.registry(), |_| Fault::Pass);
    let context = scratch_platform_context("once");
    run(build_cmd(&context, &proxy.host(), &repo, &sha, Auth::None).args(["--platform", BOTH]))
        .assert_code(0);

    let puts = manifest_puts(&proxy, &repo);
    let writes = |tag: &str| puts.iter().filter(|(t, _)| t == tag).count();
    assert_eq!(writes(&sha), 1, "the index: {puts:#?}");
    let mut by_daemon: Vec<&str> = puts
        .iter()
        .filter(|(_, agent)| agent.starts_with("docker/"))
        .map(|(tag, _)| tag.as_str())
        .collect();
    by_daemon.sort_unstable();
    let mut staging_tags = Vec::new();
    let index = registry.manifest_json(&repo, &sha);
    let listed: Vec<String> = index_platforms(&index)
        .into_iter()
        .map(|(_, digest)| digest)
        .collect();
    for arch in ["amd64", "arm64"] {
        let platform_tag = format!("{sha}-linux-{arch}");
        let staging = staging_tag(&platform_tag);
        assert_eq!(writes(&platform_tag), 1, "{platform_tag}: {puts:#?}");
        assert_eq!(writes(&staging), 1, "{staging}: {puts:#?}");
        registry.assert_staged(&repo, &platform_tag);
        assert!(listed.contains(&registry.present_digest(&repo, &platform_tag)));
        assert!(!listed.contains(&registry.present_digest(&repo, &staging)));
        staging_tags.push(staging);
    }
    assert_eq!(by_daemon, staging_tags, "{puts:#?}");
}

/// A 503 on the index's PUT is retried like any registry write, and the index lands.
#[test]
fn a_503_on_the_index_put_is_retried() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-503");
    let sha = unique_sha();
    let target = sha.clone();
    let proxy = FaultProxy::start(
        rig.registry(),
        first_n(1, Fault::Status(503), move |s| {
            is_manifest_put(s, Some(&target))
        }),
    );
    let context = scratch_platform_context("index503");
    run(
        build_cmd(&context, &proxy.host(), &repo, &sha, Auth::None).args([
            "--platform",
            BOTH,
            "--retries",
            "5",
        ]),
    )
    .assert_code(0)
    .assert_stderr_contains("retrying in");
    assert_eq!(proxy.faults(), 1, "{:#?}", proxy.log.lock().unwrap());
    let index = registry.manifest_json(&repo, &sha);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(platform_names(&index), ["linux/amd64", "linux/arm64"]);
    let puts: BTreeSet<String> = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("PUT ") && l.contains(&format!("/manifests/{sha} ")))
        .cloned()
        .collect();
    assert_eq!(
        puts.len(),
        2,
        "one refused and one accepted index PUT: {puts:?}"
    );
}

/// The index's write lands but its answer is lost: the retry finds this run's index under the SHA tag
/// and does not write it again (the tag is immutable in ECR).
#[test]
fn an_index_write_whose_answer_was_lost_is_not_written_again() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("plat-lost");
    let sha = unique_sha();
    let target = sha.clone();
    let proxy = FaultProxy::start(
        rig.registry(),
        first_n(1, Fault::AfterForward(500), move |s| {
            is_manifest_put(s, Some(&target))
        }),
    );
    let context = scratch_platform_context("indexlost");
    run(
        build_cmd(&context, &proxy.host(), &repo, &sha, Auth::None).args([
            "--platform",
            BOTH,
            "--retries",
            "3",
        ]),
    )
    .assert_code(0)
    .assert_stderr_contains("retrying in");
    assert_eq!(proxy.faults(), 1);
    let puts = manifest_puts(&proxy, &repo);
    assert_eq!(
        puts.iter().filter(|(tag, _)| *tag == sha).count(),
        1,
        "{puts:#?}"
    );
    let index = registry.manifest_json(&repo, &sha);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(platform_names(&index), ["linux/amd64", "linux/arm64"]);
}

/// A linear history of `n` commits a minute apart in a context whose image records its platform.
fn history(n: usize) -> (PathBuf, Vec<String>) {
    let dir = scratch_platform_context("history");
    let shas = commit_history(&dir, n);
    (dir, shas)
}
