//! Sending only what COPY/ADD read. The oracle is the daemon's own cache: the docker CLI builds each
//! case from the whole context first, then ecrbuild builds it from its selection. The classic builder's
//! cache key for a COPY is the content hash (tar headers included) of exactly the files it copies, and a
//! cache miss makes a new image, so the same image id proves the daemon read the same inputs. Cases that
//! must fall back to the whole context are checked the same way.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::*;

/// A context with files that cases copy and many that none copies.
fn tree(name: &str) -> PathBuf {
    let marker = unique_sha();
    let dir = std::env::temp_dir().join(format!("ecrbuild-select-{name}-{marker}"));
    let write = |path: &str, content: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    };
    write("a.txt", &format!("a {marker}"));
    write("with space.txt", "spaced");
    write("dir/x.txt", "x");
    write("dir/sub/y.txt", "y");
    std::fs::create_dir_all(dir.join("dir/sub/empty")).unwrap();
    write("src/one.go", "package one");
    write("src/two.go", "package two");
    write("src/readme.md", "not go");
    write("lib/util.txt", "util");
    write("exec.sh", "#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("exec.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for i in 0..200 {
        write(&format!("noise/n{i:03}.bin"), &"n".repeat(i * 10));
    }
    write("skip.log", "ignored");
    write(".dockerignore", "*.log\n");
    // A tar that ADD unpacks.
    let status = Command::new("tar")
        .args(["-C", path_str(&dir), "-cf"])
        .arg(dir.join("archive.tar"))
        .args(["lib"])
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn with_dockerfile(dir: &Path, dockerfile: &str) {
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
}

/// The CLI's build of the whole context: its image id.
fn cli_build(dir: &Path) -> String {
    let _building = support::daemon_images_read();
    docker(&[
        "build",
        "-q",
        "-f",
        path_str(&dir.join("Dockerfile")),
        path_str(dir),
    ])
    .trim()
    .to_string()
}

/// ecrbuild's build (not pushed): its run, with the image id in the JSON summary.
fn ecrbuild_build(dir: &Path, extra: &[&str]) -> (Run, String) {
    let rig = Rig::get();
    let result = run(build_cmd(
        dir,
        rig.registry(),
        &unique_repo("select"),
        &unique_sha(),
        Auth::None,
    )
    .args(["--no-push", "--output", "json"])
    .args(extra));
    result.assert_code(0);
    let summary: serde_json::Value = serde_json::from_str(result.stdout.trim()).unwrap();
    let id = summary["image_id"].as_str().unwrap().to_string();
    (result, id)
}

/// Build with the CLI, then with ecrbuild; the ids must match. Returns ecrbuild's stderr.
fn same_image_as_the_cli(dir: &Path) -> String {
    let cli = cli_build(dir);
    let (result, id) = ecrbuild_build(dir, &[]);
    assert_eq!(
        id, cli,
        "ecrbuild's build differs from the CLI's\n--- stderr\n{}",
        result.stderr
    );
    result.stderr
}

fn assert_selected(stderr: &str, roots: &str) {
    let line = stderr
        .lines()
        .find(|l| l.contains("ecrbuild: sending "))
        .unwrap_or_else(|| panic!("no sending line\n{stderr}"));
    assert!(
        line.contains(&format!("what COPY/ADD read ({roots})")),
        "{line}"
    );
    // "sending N of M entries": far fewer than the whole context.
    let counts: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .take(2)
        .collect();
    assert!(counts[0] < counts[1] / 4, "{line}");
}

fn assert_whole(stderr: &str, reason: &str) {
    assert!(
        stderr.contains("sending the whole context: ") && stderr.contains(reason),
        "expected the whole context ({reason})\n{stderr}"
    );
}

#[test]
fn files_directories_and_names_with_spaces_are_read_as_from_the_whole_context() {
    let dir = tree("files");
    with_dockerfile(
        &dir,
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY dir/ /d/\nCOPY [\"with space.txt\", \"/s/\"]\n",
    );
    let stderr = same_image_as_the_cli(&dir);
    assert_selected(&stderr, "a.txt, dir, with space.txt");
}

#[test]
fn wildcards_archives_modes_and_continuations_are_read_as_from_the_whole_context() {
    let dir = tree("wild");
    with_dockerfile(
        &dir,
        "FROM scratch\nCOPY src/*.go /w/\nADD archive.tar /t/\nCOPY exec.sh \\\n  lib /m/\n",
    );
    let stderr = same_image_as_the_cli(&dir);
    assert_selected(&stderr, "archive.tar, exec.sh, lib, src");
}

#[test]
fn stages_read_only_their_own_sources() {
    let dir = tree("stages");
    with_dockerfile(
        &dir,
        "FROM scratch AS one\nCOPY a.txt /a\nFROM scratch\nCOPY --from=one /a /b\nCOPY dir/sub /sub\n",
    );
    let stderr = same_image_as_the_cli(&dir);
    assert_selected(&stderr, "a.txt, dir/sub");
}

/// A Dockerfile, the reason ecrbuild must give for sending everything, and what to add to the tree.
type WholeContextCase = (&'static str, &'static str, fn(&Path));

#[test]
fn what_cannot_be_pinned_down_sends_the_whole_context() {
    let cases: [WholeContextCase; 5] = [
        (
            "FROM scratch\nCOPY . /all/\n",
            "reads the whole context",
            |_| {},
        ),
        (
            "FROM scratch\nARG F=a.txt\nCOPY $F /f\n",
            "uses a variable",
            |_| {},
        ),
        (
            "FROM scratch\nCOPY linkdir/x.txt /l\n",
            "goes through the symlink linkdir",
            |dir| std::os::unix::fs::symlink("dir", dir.join("linkdir")).unwrap(),
        ),
        (
            "FROM scratch\nCOPY lib /l/\n",
            "lib/util.txt is hard-linked",
            |dir| std::fs::hard_link(dir.join("lib/util.txt"), dir.join("hard.txt")).unwrap(),
        ),
        (
            "FROM scratch\nCOPY src/*.go /w/\n",
            "a wildcard COPY/ADD source may match",
            |dir| std::os::unix::fs::symlink("../a.txt", dir.join("src/link.go")).unwrap(),
        ),
    ];
    for (dockerfile, reason, prepare) in cases {
        let dir = tree("whole");
        prepare(&dir);
        with_dockerfile(&dir, dockerfile);
        let stderr = same_image_as_the_cli(&dir);
        assert_whole(&stderr, reason);
    }
}

#[test]
fn a_base_image_with_onbuild_triggers_gets_the_whole_context() {
    let dir = tree("onbuild");
    let base = format!("ecrbuild-test/onbuild:{}", &unique_sha()[..12]);
    with_dockerfile(&dir, "FROM scratch\nONBUILD COPY a.txt /from-onbuild\n");
    {
        let _building = support::daemon_images_read();
        docker(&["build", "-q", "-t", &base, path_str(&dir)]);
    }
    with_dockerfile(&dir, &format!("FROM {base}\nCOPY dir /d\n"));
    let stderr = same_image_as_the_cli(&dir);
    assert_whole(&stderr, &format!("base image {base} has ONBUILD triggers"));

    // --full-context: the whole context on request.
    with_dockerfile(&dir, "FROM scratch\nCOPY a.txt /a\n");
    let (result, _) = ecrbuild_build(&dir, &["--full-context"]);
    assert!(
        !result.stderr.contains("ecrbuild: sending "),
        "{}",
        result.stderr
    );
}

/// The oracle can fail: a selection that leaves out part of what COPY reads gives another image.
#[test]
fn a_selection_missing_a_source_file_builds_another_image() {
    let dir = tree("control");
    with_dockerfile(&dir, "FROM scratch\nCOPY dir /d/\n");
    let cli = cli_build(&dir);
    let mut context = ecrbuild::context::BuildContext::scan(&dir, &dir.join("Dockerfile")).unwrap();
    context
        .select(&[ecrbuild::context::SourceRoot {
            path: "dir/sub".to_string(),
            wildcard: false,
        }])
        .unwrap();
    let tar = context.write_tar(Vec::new()).unwrap();
    let _building = support::daemon_images_read();
    let mut child = Command::new("docker")
        .args(["build", "-q", "-f", "Dockerfile", "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_ne!(id, cli, "a partial selection built the same image");
}
