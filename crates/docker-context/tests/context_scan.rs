//! Scanning: which paths a context sends (`.dockerignore` applied to a real tree, the Dockerfile
//! and `.dockerignore` always sent, a Dockerfile from outside the context), and the errors raised
//! before anything is sent.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use docker_context::{BuildContext, ContextError, EntryKind};

mod support;

use support::{sent, tar_of, Tree};

fn tar_files(context: &BuildContext) -> Vec<(String, Vec<u8>)> {
    tar_of(context)
        .into_iter()
        .map(|entry| {
            (
                String::from_utf8_lossy(&entry.name).into_owned(),
                entry.data,
            )
        })
        .collect()
}

// --- .dockerignore on real trees --------------------------------------------------------------

#[test]
fn docs_example_temp_patterns() {
    let tree = Tree::with(
        &[
            "somedir/temporary.txt",
            "somedir/temp/x",
            "somedir/subdir/temporary.txt",
            "tempa",
            "tempb",
            "temp",
            "keep.txt",
        ],
        "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
    );
    assert_eq!(
        tree.sent(),
        [
            ".dockerignore",
            "Dockerfile",
            "keep.txt",
            "somedir",
            "somedir/subdir",
            "temp"
        ]
    );
}

#[test]
fn docs_example_markdown_exceptions() {
    let files = [
        "CHANGELOG.md",
        "README.md",
        "README-public.md",
        "README-secret.md",
        "docs/guide.md",
    ];
    let tree = Tree::with(&files, "*.md\n!README*.md\nREADME-secret.md\n");
    assert_eq!(
        tree.sent(),
        [
            ".dockerignore",
            "Dockerfile",
            "README-public.md",
            "README.md",
            "docs",
            "docs/guide.md"
        ]
    );
    let tree = Tree::with(&files, "*.md\nREADME-secret.md\n!README*.md\n");
    assert_eq!(
        tree.sent(),
        [
            ".dockerignore",
            "Dockerfile",
            "README-public.md",
            "README-secret.md",
            "README.md",
            "docs",
            "docs/guide.md"
        ]
    );
}

#[test]
fn double_star_excludes_at_any_depth() {
    let tree = Tree::with(
        &["main.go", "cmd/app/main.go", "cmd/app/README"],
        "**/*.go\n",
    );
    assert_eq!(
        tree.sent(),
        [
            ".dockerignore",
            "Dockerfile",
            "cmd",
            "cmd/app",
            "cmd/app/README"
        ]
    );
}

#[test]
fn excluded_directory_is_not_sent_nor_walked() {
    let tree = Tree::with(
        &["target/debug/x", "target/release/y", "src/main.rs"],
        "target\n",
    );
    assert_eq!(
        tree.sent(),
        [".dockerignore", "Dockerfile", "src", "src/main.rs"]
    );
}

#[test]
fn exception_inside_an_excluded_directory_sends_only_that_path() {
    let tree = Tree::with(
        &["logs/keep.txt", "logs/a.log", "logs/sub/b.log"],
        "logs\n!logs/keep.txt\n",
    );
    // The directory entry itself stays out; the daemon creates it implicitly.
    assert_eq!(
        tree.sent(),
        [".dockerignore", "Dockerfile", "logs/keep.txt"]
    );
}

#[test]
fn wildcard_exception_does_not_reopen_an_excluded_directory() {
    // moby only re-walks an excluded directory for an exception that starts with its literal path.
    let tree = Tree::with(&["vendor/keep", "keep"], "vendor\n!**/keep\n");
    assert_eq!(tree.sent(), [".dockerignore", "Dockerfile", "keep"]);
}

#[test]
fn later_pattern_is_ignored_inside_a_reopened_directory() {
    // Docker's walk quirk, reproduced on purpose: `d/x` is sent although the last line excludes `d`.
    let tree = Tree::with(&["d/x", "d/y"], "d\n!d/x\nd\n");
    assert_eq!(tree.sent(), [".dockerignore", "Dockerfile", "d/x"]);
}

#[test]
fn exception_for_a_whole_subdirectory() {
    let tree = Tree::with(&["a/b/c/file", "a/b/other", "a/top"], "a\n!a/b/c\n");
    assert_eq!(
        tree.sent(),
        [".dockerignore", "Dockerfile", "a/b/c", "a/b/c/file"]
    );
}

#[test]
fn empty_directories_and_symlinks_are_matched_by_name() {
    let tree = Tree::with(&["empty/", "keep/"], "empty\nlink\n");
    symlink("keep", tree.path("link")).unwrap();
    symlink("keep", tree.path("link2")).unwrap();
    assert_eq!(
        tree.sent(),
        [".dockerignore", "Dockerfile", "keep", "link2"]
    );
}

#[test]
fn patterns_never_follow_symlinked_directories() {
    let tree = Tree::with(&["real/secret"], "real\n");
    symlink("real", tree.path("alias")).unwrap();
    let context = tree.scan_with("Dockerfile").unwrap();
    assert_eq!(sent(&context), [".dockerignore", "Dockerfile", "alias"]);
    assert_eq!(
        context.entries().nth(2).map(|(_, kind)| kind),
        Some(EntryKind::Symlink)
    );
}

#[test]
fn sockets_are_skipped() {
    let tree = Tree::with(&["a"], "");
    let _socket = std::os::unix::net::UnixListener::bind(tree.path("sock")).unwrap();
    assert_eq!(tree.sent(), [".dockerignore", "Dockerfile", "a"]);
}

// --- Dockerfile and .dockerignore are always sent --------------------------------------------

#[test]
fn excluded_dockerfile_and_dockerignore_are_still_sent() {
    let tree = Tree::with(&["a"], "*\n");
    assert_eq!(tree.sent(), [".dockerignore", "Dockerfile"]);
    let tree = Tree::with(&["a"], "Dockerfile\n.dockerignore\n");
    assert_eq!(tree.sent(), [".dockerignore", "Dockerfile", "a"]);
}

#[test]
fn dockerfile_in_an_excluded_directory_is_sent_alone() {
    let tree = Tree::with(&["api/main.go", "api/Dockerfile"], "api\n");
    let context = tree.scan_with("api/Dockerfile").unwrap();
    assert_eq!(context.dockerfile_in_tar(), "api/Dockerfile");
    assert_eq!(
        sent(&context),
        [".dockerignore", "Dockerfile", "api/Dockerfile"]
    );
}

#[test]
fn dockerfile_missed_by_the_clis_one_parent_check_is_sent_anyway() {
    // The CLI would leave a/b/api/Dockerfile out and the daemon would fail; we send it.
    let tree = Tree::with(&["a/b/api/Dockerfile", "a/b/api/other"], "**/api\n");
    let context = tree.scan_with("a/b/api/Dockerfile").unwrap();
    assert_eq!(
        sent(&context),
        [
            ".dockerignore",
            "Dockerfile",
            "a",
            "a/b",
            "a/b/api/Dockerfile"
        ]
    );
}

#[test]
fn symlinked_dockerfile_is_named_by_its_target() {
    let tree = Tree::with(&["docker/prod.Dockerfile"], "");
    symlink("docker/prod.Dockerfile", tree.path("Dockerfile.link")).unwrap();
    let context = tree.scan_with("Dockerfile.link").unwrap();
    assert_eq!(context.dockerfile_in_tar(), "docker/prod.Dockerfile");
}

#[test]
fn dockerfile_outside_the_context_is_sent_under_a_generated_name() {
    let outer = tempfile::tempdir().unwrap();
    let dockerfile = outer.path().join("build.Dockerfile");
    fs::write(&dockerfile, "FROM scratch\n").unwrap();
    let tree = Tree::with(&["app/a"], "");
    fs::write(tree.path(".dockerignore"), "*.tmp\n").unwrap();

    let context = BuildContext::scan(tree.root(), &dockerfile).unwrap();
    let name = context.dockerfile_in_tar().to_string();
    let hex = name.strip_prefix(".dockerfile.").expect(&name);
    assert!(
        hex.len() == 20 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );

    let files = tar_files(&context);
    let (last_name, last_data) = files.last().unwrap();
    assert_eq!(
        (last_name.as_str(), last_data.as_slice()),
        (name.as_str(), &b"FROM scratch\n"[..])
    );
    // .dockerignore keeps its place and gains the generated name, so the daemon hides the file.
    let dockerignore = files.iter().find(|(n, _)| n == ".dockerignore").unwrap();
    assert_eq!(dockerignore.1, format!("*.tmp\n\n{name}\n").into_bytes());
    assert_eq!(
        files.iter().filter(|(n, _)| n == ".dockerignore").count(),
        1
    );
    assert_eq!(sent(&context).last(), Some(&name));
}

#[test]
fn outside_dockerfile_without_dockerignore_creates_one() {
    let outer = tempfile::tempdir().unwrap();
    let dockerfile = outer.path().join("Dockerfile");
    fs::write(&dockerfile, "FROM scratch\n").unwrap();
    let context_dir = tempfile::tempdir().unwrap();
    fs::write(context_dir.path().join("a"), "a").unwrap();

    let context = BuildContext::scan(context_dir.path(), &dockerfile).unwrap();
    let name = context.dockerfile_in_tar().to_string();
    let files = tar_files(&context);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", name.as_str(), ".dockerignore"]);
    assert_eq!(files[2].1, format!(".dockerignore\n{name}\n").into_bytes());
    assert_eq!(context.entry_count(), 3);
    let expected_bytes = 1 + "FROM scratch\n".len() + ".dockerignore\n".len() + name.len() + 1;
    assert_eq!(context.content_bytes(), expected_bytes as u64);
    let written = context.write_tar(Vec::new()).unwrap().len() as u64;
    assert_eq!(context.tar_bytes(), written);
}

#[test]
fn relative_dockerfile_path_is_resolved_against_the_working_directory() {
    let tree = Tree::with(&["sub/Dockerfile"], "");
    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(tree.path("sub/Dockerfile").strip_prefix("/").unwrap());
    let context = BuildContext::scan(tree.root(), &relative).unwrap();
    assert_eq!(context.dockerfile_in_tar(), "sub/Dockerfile");
}

// --- errors before anything is sent ---------------------------------------------------------

#[test]
fn missing_context_directory() {
    let missing = Path::new("/nonexistent/ecrbuild-context");
    let err = BuildContext::scan(missing, Path::new("/nonexistent/Dockerfile")).unwrap_err();
    assert!(
        matches!(&err, ContextError::NotADirectory { path } if path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("--context"));

    let tree = Tree::new();
    let err = BuildContext::scan(&tree.path("Dockerfile"), &tree.path("Dockerfile")).unwrap_err();
    assert!(
        matches!(err, ContextError::NotADirectory { .. }),
        "a file is not a context"
    );
}

#[test]
fn missing_dockerfile() {
    let tree = Tree::new();
    let err = tree.scan_with("api/Dockerfile").unwrap_err();
    assert!(
        matches!(&err, ContextError::DockerfileMissing { path } if path.ends_with("api/Dockerfile")),
        "{err}"
    );
    assert!(err.to_string().contains("-f/--file"));
    fs::create_dir(tree.path("dir")).unwrap();
    assert!(matches!(
        tree.scan_with("dir"),
        Err(ContextError::DockerfileMissing { .. })
    ));
}

#[test]
fn bad_pattern_names_the_line() {
    let tree = Tree::with(&["a"], "# header\n\n*.log\nfoo[\n");
    let err = tree.scan_with("Dockerfile").unwrap_err();
    assert!(
        matches!(&err, ContextError::BadPattern { line: 4, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(".dockerignore line 4: bad pattern \"foo[\""),
        "{message}"
    );
    assert!(message.contains("\\["), "says how to fix it: {message}");
}

fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// Root can read anything, so as root the permission checks run again as `nobody`.
fn rerun_unprivileged(test: &str) -> bool {
    if !running_as_root() || std::env::var_os("ECRBUILD_TEST_UNPRIVILEGED").is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(exe)
        .args(["--exact", test, "--test-threads=1"])
        .env("ECRBUILD_TEST_UNPRIVILEGED", "1")
        .env("TMPDIR", "/tmp")
        .status();
    match status {
        Ok(status) => assert!(status.success(), "{test} failed as nobody"),
        Err(err) => {
            eprintln!("skipping {test}: running as root and setpriv is unavailable ({err})")
        }
    }
    true
}

#[test]
fn unreadable_file_or_directory_is_an_error_unless_excluded() {
    if rerun_unprivileged("unreadable_file_or_directory_is_an_error_unless_excluded") {
        return;
    }
    let tree = Tree::with(&["ok", "locked/inside"], "");
    let secret = tree.file("secret.key", "k");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let err = tree.scan_with("Dockerfile").unwrap_err();
    assert!(
        matches!(&err, ContextError::Unreadable { path, .. } if path == &secret),
        "{err}"
    );
    assert!(err.to_string().contains("exclude it in .dockerignore"));

    fs::write(tree.path(".dockerignore"), "secret.key\n").unwrap();
    assert!(
        tree.scan_with("Dockerfile").is_ok(),
        "excluded files are never opened"
    );

    let locked = tree.path("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    let err = tree.scan_with("Dockerfile").unwrap_err();
    assert!(
        matches!(&err, ContextError::Unreadable { path, .. } if path == &locked),
        "{err}"
    );
    fs::write(tree.path(".dockerignore"), "secret.key\nlocked\n").unwrap();
    assert!(tree.scan_with("Dockerfile").is_ok());
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
}
