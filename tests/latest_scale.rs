//! `latest` at scale: settling it costs the same in a repository with many tags, the tag listing ends on
//! a registry that ignores pagination, and runs on two hosts from shallow clones leave `latest` on the
//! newest commit. Against the rig's real daemons (two of them) and Debian's registry.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::proxy::{Fault, FaultProxy};
use support::*;

fn ecrbuild_at(context: &Path, registry: &str, repo: &str, sha: &str) -> Command {
    build_cmd(context, registry, repo, sha, Auth::None)
}

/// Run `cmd`, killing it (and failing) if it has not finished within `limit`: a listing that never ends
/// must fail the test, not hang it.
fn run_within(cmd: &mut Command, limit: Duration) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Debian's registry returns every tag on every request, whatever `n` and `last` say. A repository with
/// more tags than a page used to be listed forever; now the listing ends and `latest` still moves.
#[test]
fn a_tag_list_longer_than_a_page_ends_and_latest_still_moves() {
    let rig = Rig::get();
    let registry = RegistryHttp::anonymous(rig.registry());
    let repo = unique_repo("manytags");
    let (checkout, shas) = origin_with_history(2);
    run(&mut ecrbuild_at(&checkout, rig.registry(), &repo, &shas[0])).assert_code(0);
    // 1,003 more tags, written straight through the registry API.
    for i in 0..1003 {
        registry.copy_tag(&repo, &shas[0], &format!("build-{i:04}"));
    }
    assert!(registry.tags(&repo).len() > 1005);

    // Moving `latest` lists the tags to settle it.
    let result = run_within(
        &mut ecrbuild_at(&checkout, rig.registry(), &repo, &shas[1]),
        Duration::from_secs(120),
    );
    result
        .assert_code(0)
        .assert_stderr_contains("moving latest");
    registry.assert_same_digest(&repo, "latest", &shas[1]);
}

/// Twelve SHA tags of commits git does not know, each labelled as a `latest` candidate: the first run
/// that moves `latest` reads their labels once and records what it learned; the next run reads none of
/// them (and git rules out the first run's commit without a read).
#[test]
fn the_candidate_record_spares_later_runs_the_label_reads() {
    let rig = Rig::get();
    let repo = unique_repo("record");
    let outside = scratch_context("record", &format!("record {}", unique_sha()));
    let others: Vec<String> = (0..12).map(|_| unique_sha()).collect();
    for (i, sha) in others.iter().enumerate() {
        run(ecrbuild_at(&outside, rig.registry(), &repo, sha).args([
            "--latest",
            "never",
            "--label",
            &format!("io.ecrbuild.commit-time={}", 100 + i),
            "--label",
            "io.ecrbuild.latest-candidate=true",
        ]))
        .assert_code(0);
    }
    let (checkout, shas) = origin_with_history(2);
    let proxy = FaultProxy::start(rig.registry(), |_| Fault::Pass);
    let sha_manifest_reads = |proxy: &FaultProxy, except: &str| {
        let prefix = format!("GET /v2/{repo}/manifests/");
        let log = proxy.log.lock().unwrap();
        log.iter()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter(|tag| tag.len() == 40 && *tag != except)
            .count()
    };

    run(&mut ecrbuild_at(&checkout, &proxy.host(), &repo, &shas[0])).assert_code(0);
    assert_eq!(
        sha_manifest_reads(&proxy, &shas[0]),
        others.len(),
        "the first run reads each unknown SHA tag once: {:#?}",
        proxy.log.lock().unwrap()
    );

    proxy.log.lock().unwrap().clear();
    run(&mut ecrbuild_at(&checkout, &proxy.host(), &repo, &shas[1]))
        .assert_code(0)
        .assert_stderr_contains("moving latest");
    assert_eq!(
        sha_manifest_reads(&proxy, &shas[1]),
        0,
        "a later run read labels the record holds: {:#?}",
        proxy.log.lock().unwrap()
    );
    RegistryHttp::anonymous(rig.registry()).assert_same_digest(&repo, "latest", &shas[1]);
}

/// A linear history in a bare repository, commits a minute apart, each with its own file content.
fn origin_with_history(n: usize) -> (PathBuf, Vec<String>) {
    let dir = scratch_context("origin", "0");
    let shas = commit_history(&dir, n);
    (dir, shas)
}

/// A depth-1 clone of `sha`, as CodeBuild and actions/checkout make: git knows no other commit.
fn shallow_clone(origin: &Path, sha: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecrbuild-shallow-{}", unique_sha()));
    std::fs::create_dir_all(&dir).unwrap();
    git_in(&dir, &["init", "-q"]);
    let url = format!("file://{}", origin.display());
    git_in(&dir, &["fetch", "-q", "--depth", "1", &url, sha]);
    git_in(&dir, &["checkout", "-q", "FETCH_HEAD"]);
    assert_eq!(git_in(&dir, &["rev-list", "--count", "HEAD"]), "1");
    dir
}

/// Eight commits, each built from its own shallow clone, half on each of two daemons (two hosts), all
/// at once in a shuffled order, three rounds: `latest` ends on the newest commit every time.
#[test]
fn runs_on_two_hosts_from_shallow_clones_leave_latest_on_the_newest_commit() {
    let rig = Rig::get();
    let second_host = rig.var("ECRBUILD_RIG_DOCKER_HOST_2").to_string();
    let registry = RegistryHttp::anonymous(rig.registry());
    let (origin, shas) = origin_with_history(8);
    let clones: Vec<PathBuf> = shas.iter().map(|sha| shallow_clone(&origin, sha)).collect();
    for round in 0..3 {
        let repo = unique_repo(&format!("twohosts{round}"));
        let seed = clock_seed();
        let order = shuffled(shas.len(), seed);
        let children: Vec<_> = order
            .iter()
            .enumerate()
            .map(|(slot, &i)| {
                let mut cmd = ecrbuild_at(&clones[i], rig.registry(), &repo, &shas[i]);
                if slot % 2 == 1 {
                    cmd.env("DOCKER_HOST", &second_host);
                }
                cmd.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let logs = wait_for_all(children, &order);
        let context = format!("round {round} (seed {seed}, order {order:?})\n{logs}");
        assert_latest_on(&registry, &repo, shas.last().unwrap(), &context);
    }
}
