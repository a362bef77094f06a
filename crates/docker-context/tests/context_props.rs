//! Property tests: the `.dockerignore` parser and matcher never panic, and the tar of any small
//! tree holds every scanned path exactly once, in scan order, with the right type and contents.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use docker_context::{BuildContext, EntryKind, IgnoreRules};
use proptest::prelude::*;

mod support;

use support::{read_tar, TarEntry};

/// Shrunk failures are printed, not written next to the sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that mean something to patterns, plus ordinary, multi-byte and invalid UTF-8 ones.
fn pattern_byte() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            &b"*"[..], b"**", b"?", b"[", b"]", b"^", b"!", b"-", b"\\", b"/", b".", b"..", b"|", b"{", b"}",
            b"{2}", b"$", b"(", b")", b"+", b" ", b"#", b"a", b"b", b"z", b"0", b"[:alpha:]", b"\\Q", b"\\E",
            b"\\d", b"\\b", b"\\x4", b"\xc3\xa9", b"\xef\xbb\xbf", b"\xff", b"\xe2\x82", b"\n", b"\r", b"\t",
        ]).prop_map(<[u8]>::to_vec),
        1 => any::<u8>().prop_map(|b| vec![b]),
    ]
}

fn pattern() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(pattern_byte(), 0..12).prop_map(|parts| parts.concat())
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    let component = prop::collection::vec(pattern_byte(), 1..5).prop_map(|parts| parts.concat());
    prop::collection::vec(component, 1..5).prop_map(|parts| parts.join(&b'/'))
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn matcher_never_panics(patterns in prop::collection::vec(pattern(), 0..6), paths in prop::collection::vec(path(), 1..6)) {
        if let Ok(rules) = IgnoreRules::from_patterns(&patterns) {
            for path in &paths {
                let excluded = rules.is_excluded(path);
                let line = rules.deciding_line(path);
                prop_assert!(!excluded || line.is_some());
            }
        }
    }

    #[test]
    fn parsing_any_dockerignore_never_panics(text in prop::collection::vec(pattern_byte(), 0..40)) {
        let text = text.concat();
        if let Err(err) = IgnoreRules::parse(&text) {
            let lines = text.split(|&b| b == b'\n').count();
            prop_assert!(err.line >= 1 && err.line <= lines, "line {} of {}", err.line, lines);
        }
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(text in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = IgnoreRules::parse(&text);
    }
}

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        &b"a"[..],
        b"b",
        b"c.go",
        b"README.md",
        b"x y",
        b"\xc3\xa9t\xc3\xa9",
        b"[x]",
        b"#h",
        b"k\xff",
        b".hidden",
        b"sub",
        b"build",
        b"keep",
        b"A",
        b"_",
    ])
    .prop_map(<[u8]>::to_vec)
}

fn tree() -> impl Strategy<Value = BTreeMap<Vec<u8>, Node>> {
    let node = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Node::File),
        2 => Just(Node::Dir),
        1 => prop::sample::select(vec![&b"a"[..], b"../b", b"/etc/hosts", b"missing"]).prop_map(|t| Node::Symlink(t.to_vec())),
    ];
    let rel = prop::collection::vec(name(), 1..4).prop_map(|parts| parts.join(&b'/'));
    prop::collection::btree_map(rel, node, 0..25)
}

fn dockerignore() -> impl Strategy<Value = String> {
    let line = prop::sample::select(vec![
        "*.go",
        "**/*.md",
        "!README.md",
        "sub",
        "!sub/keep",
        "build/**",
        "*/a",
        "[ab]",
        "?",
        "!a",
        "keep",
        "**/keep",
        "# comment",
        "",
        "x y",
        "/b",
        "./sub/",
        "!*/keep",
        "*",
        "[!a]",
    ]);
    prop::collection::vec(line, 0..5).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn tar_holds_every_scanned_path_once_in_order(nodes in tree(), ignore in dockerignore()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(root.join(".dockerignore"), &ignore).unwrap();
        for (rel, node) in &nodes {
            let path = root.join(OsStr::from_bytes(rel));
            // Skip paths below something that is already a file or symlink in this tree.
            let blocked = path
                .ancestors()
                .skip(1)
                .take_while(|ancestor| *ancestor != root)
                .any(|ancestor| ancestor.symlink_metadata().is_ok_and(|m| !m.is_dir()));
            if blocked {
                continue;
            }
            if path.symlink_metadata().is_ok() {
                continue;
            }
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            match node {
                Node::File(data) => fs::write(&path, data).unwrap(),
                Node::Dir => fs::create_dir(&path).unwrap(),
                Node::Symlink(target) => symlink(OsStr::from_bytes(target), &path).unwrap(),
            }
        }

        let context = BuildContext::scan(root, &root.join("Dockerfile")).unwrap();
        let scanned: Vec<(PathBuf, EntryKind)> =
            context.entries().map(|(path, kind)| (path.to_path_buf(), kind)).collect();
        prop_assert!(scanned.iter().any(|(p, _)| p == &PathBuf::from("Dockerfile")));
        prop_assert!(scanned.iter().any(|(p, _)| p == &PathBuf::from(".dockerignore")));

        let bytes = context.write_tar(Vec::new()).unwrap();
        prop_assert_eq!(context.tar_bytes(), bytes.len() as u64, "size announced before streaming");
        let in_tar = read_tar(&bytes);
        prop_assert_eq!(in_tar.len(), scanned.len());
        for (TarEntry { name, kind, data, .. }, (path, scanned_kind)) in in_tar.iter().zip(&scanned) {
            let expected_name = match scanned_kind {
                EntryKind::Directory => [path.as_os_str().as_bytes(), b"/"].concat(),
                _ => path.as_os_str().as_bytes().to_vec(),
            };
            prop_assert_eq!(name, &expected_name);
            let on_disk = root.join(path);
            match scanned_kind {
                EntryKind::Directory => prop_assert!(kind.is_dir()),
                EntryKind::Symlink => prop_assert!(kind.is_symlink()),
                EntryKind::File => {
                    prop_assert!(kind.is_file() || kind.is_hard_link());
                    if kind.is_file() {
                        prop_assert_eq!(data, &fs::read(&on_disk).unwrap());
                    }
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        // Walk order is path order, and no path is sent twice.
        let mut sorted = scanned.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        sorted.sort();
        sorted.dedup();
        let order: Vec<PathBuf> = scanned.into_iter().map(|(p, _)| p).collect();
        prop_assert_eq!(sorted, order);
    }
}
