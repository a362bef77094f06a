//! The tar the context module produces, read back with `tar::Archive`: entry types, modes, owners,
//! times, link targets, names, sizes, order, and what happens when files change under it.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use docker_context::{BuildContext, ContextError};
use futures_util::StreamExt;
use tar::EntryType;

mod support;

use support::{read_tar, tar_of, TarEntry, Tree, DOCKERFILE};

fn find<'a>(entries: &'a [TarEntry], name: &[u8]) -> &'a TarEntry {
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no entry {:?}", String::from_utf8_lossy(name)))
}

fn names(entries: &[TarEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn stream_bytes(context: BuildContext, gzip: bool) -> Result<Vec<u8>, std::io::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut stream = Box::pin(context.into_tar_stream(gzip));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    })
}

#[test]
fn regular_files_keep_modes_and_mtimes_and_lose_owners() {
    let tree = Tree::new();
    let script = tree.file("run.sh", "#!/bin/sh\n");
    set_mode(&script, 0o755);
    let secret = tree.file("secret", "s");
    set_mode(&secret, 0o600);
    let setuid = tree.file("setuid", "");
    set_mode(&setuid, 0o4755);
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(when)
        .unwrap();

    let entries = tar_of(&tree.scan());
    let run = find(&entries, b"run.sh");
    assert_eq!(run.kind, EntryType::Regular);
    assert_eq!(run.mode, 0o755, "exec bits kept, no file-type bits");
    assert_eq!(run.mtime, 1_500_000_000);
    assert_eq!(run.data, b"#!/bin/sh\n");
    assert_eq!(find(&entries, b"secret").mode, 0o600);
    assert_eq!(find(&entries, b"setuid").mode, 0o4755);
    for entry in &entries {
        assert_eq!((entry.uid, entry.gid), (0, 0), "{:?}", entry.name);
        assert!(entry.uname.is_empty() && entry.gname.is_empty());
    }
}

#[test]
fn directories_including_empty_ones_get_a_trailing_slash() {
    let tree = Tree::new();
    tree.file("dir/file", "x");
    let empty = tree.dir("dir/empty");
    set_mode(&empty, 0o700);

    let entries = tar_of(&tree.scan());
    let dir = find(&entries, b"dir/");
    assert_eq!(dir.kind, EntryType::Directory);
    assert_eq!(dir.size, 0);
    let empty = find(&entries, b"dir/empty/");
    assert_eq!(empty.kind, EntryType::Directory);
    assert_eq!(empty.mode, 0o700);
}

#[test]
fn symlinks_are_stored_as_links_never_followed() {
    let tree = Tree::new();
    tree.file("target.txt", "target");
    tree.dir("realdir");
    tree.file("realdir/inside", "i");
    symlink("target.txt", tree.path("relative")).unwrap();
    symlink("/etc/passwd", tree.path("absolute")).unwrap();
    symlink("does/not/exist", tree.path("dangling")).unwrap();
    symlink("realdir", tree.path("dirlink")).unwrap();
    symlink("../../outside/./x/", tree.path("escaping")).unwrap();

    let entries = tar_of(&tree.scan());
    for (name, target) in [
        ("relative", "target.txt"),
        ("absolute", "/etc/passwd"),
        ("dangling", "does/not/exist"),
        ("dirlink", "realdir"),
        ("escaping", "../../outside/./x/"),
    ] {
        let entry = find(&entries, name.as_bytes());
        assert_eq!(entry.kind, EntryType::Symlink, "{name}");
        assert_eq!(
            entry.link.as_deref(),
            Some(target.as_bytes()),
            "{name}: target kept byte for byte"
        );
        assert_eq!(entry.size, 0);
        assert_eq!(entry.mode, 0o777);
    }
    assert!(
        !names(&entries).contains(&"dirlink/inside".to_string()),
        "not followed"
    );
}

#[test]
fn second_path_to_an_inode_is_a_hard_link_to_the_first() {
    let tree = Tree::new();
    let original = tree.file("b/original", "shared contents");
    fs::hard_link(&original, tree.path("a_link")).unwrap();
    fs::hard_link(&original, tree.path("c_link")).unwrap();

    let context = tree.scan();
    let entries = tar_of(&context);
    let written = context.write_tar(Vec::new()).unwrap().len() as u64;
    assert!(
        context.tar_bytes() > written,
        "links carry no data, so the estimate is high"
    );
    // Lexical order decides which path carries the data, as in moby's archiver.
    let first = find(&entries, b"a_link");
    assert_eq!(first.kind, EntryType::Regular);
    assert_eq!(first.data, b"shared contents");
    for name in [&b"b/original"[..], b"c_link"] {
        let link = find(&entries, name);
        assert_eq!(link.kind, EntryType::Link);
        assert_eq!(link.link.as_deref(), Some(&b"a_link"[..]));
        assert_eq!(link.size, 0);
    }
}

#[test]
fn awkward_names_survive() {
    let tree = Tree::new();
    let awkward = [
        "with space",
        "ünïcødé ✓",
        "brackets[1]",
        "hash#tag",
        "*star?",
        "back\\slash",
        "-dash",
        "new\nline",
    ];
    for name in awkward {
        tree.file(name, name);
    }
    let raw = OsStr::from_bytes(b"latin1-\xe9\xff");
    fs::write(tree.root().join(raw), "raw").unwrap();

    let entries = tar_of(&tree.scan());
    for name in awkward {
        assert_eq!(find(&entries, name.as_bytes()).data, name.as_bytes());
    }
    assert_eq!(find(&entries, b"latin1-\xe9\xff").data, b"raw");
}

#[test]
fn long_names_and_link_targets_use_gnu_long_name_entries() {
    let tree = Tree::new();
    let d100 = "d".repeat(99);
    let long_file = format!("{d100}/{}", "f".repeat(120));
    let very_long = format!(
        "{}/{}/{}",
        "x".repeat(200),
        "y".repeat(200),
        "z".repeat(200)
    );
    tree.file(&long_file, "long");
    tree.file(&very_long, "very long");
    let long_target = "t".repeat(150);
    symlink(&long_target, tree.path("longlink")).unwrap();

    let context = tree.scan();
    let bytes = context.write_tar(Vec::new()).unwrap();
    assert_eq!(context.tar_bytes(), bytes.len() as u64);
    let entries = read_tar(&bytes);
    assert!(long_file.len() > 100 && very_long.len() > 255);
    assert_eq!(find(&entries, long_file.as_bytes()).data, b"long");
    assert_eq!(find(&entries, very_long.as_bytes()).data, b"very long");
    assert_eq!(
        find(&entries, format!("{d100}/").as_bytes()).kind,
        EntryType::Directory
    );
    assert_eq!(
        find(&entries, b"longlink").link.as_deref(),
        Some(long_target.as_bytes())
    );
    // The raw stream carries GNU `L`/`K` records, not PAX or sparse ones.
    let types: Vec<u8> = bytes
        .chunks(512)
        .filter(|b| b[257..263] == *b"ustar ")
        .map(|b| b[156])
        .collect();
    assert!(types.contains(&b'L') && types.contains(&b'K'));
    assert!(!types.contains(&b'S') && !types.contains(&b'x'));
}

#[test]
fn zero_byte_files_and_fifos() {
    let tree = Tree::new();
    tree.file("empty", "");
    let status = std::process::Command::new("mkfifo")
        .arg(tree.path("pipe"))
        .status()
        .unwrap();
    assert!(status.success());

    let entries = tar_of(&tree.scan());
    let empty = find(&entries, b"empty");
    assert_eq!((empty.kind, empty.size), (EntryType::Regular, 0));
    assert_eq!(find(&entries, b"pipe").kind, EntryType::Fifo);
}

#[test]
fn entries_come_in_walk_order_without_a_root_entry() {
    let tree = Tree::new();
    for name in ["b", "a.b", "a/x", "a/y/z", "B", "_", "é", "a-"] {
        tree.file(name, "");
    }
    let context = tree.scan();
    let entries = tar_of(&context);
    assert_eq!(
        names(&entries),
        [
            "B",
            "Dockerfile",
            "_",
            "a/",
            "a/x",
            "a/y/",
            "a/y/z",
            "a-",
            "a.b",
            "b",
            "é"
        ],
        "byte order of names, each directory followed by its contents"
    );
    let paths: Vec<String> = context
        .paths()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "B",
            "Dockerfile",
            "_",
            "a",
            "a/x",
            "a/y",
            "a/y/z",
            "a-",
            "a.b",
            "b",
            "é"
        ]
    );
    assert_eq!(context.entry_count(), 11);
}

#[test]
fn file_larger_than_8_gib_is_one_regular_entry() {
    let tree = Tree::new();
    let big = fs::File::create(tree.path("big.img")).unwrap();
    let size: u64 = 9 << 30;
    big.set_len(size).unwrap();
    drop(big);

    let context = tree.scan();
    assert_eq!(context.content_bytes(), size + DOCKERFILE.len() as u64);
    let started = Instant::now();
    let out = context.write_tar(HeaderCapture::default()).unwrap();
    eprintln!(
        "9 GiB sparse file written as tar in {:?}",
        started.elapsed()
    );

    // Dockerfile entry, then the big file: its header follows the Dockerfile's two blocks.
    let header = tar::Header::from_byte_slice(&out.first_blocks[1024..1536]);
    assert_eq!(header.path_bytes().as_ref(), b"big.img");
    assert_eq!(
        header.entry_type(),
        EntryType::Regular,
        "never a sparse (S) entry"
    );
    assert_eq!(header.size().unwrap(), size);
    assert_eq!(header.as_bytes()[124] & 0x80, 0x80, "size in GNU base-256");
    assert_eq!(
        out.total,
        1024 + 512 + size + 1024,
        "header, data, end-of-archive"
    );
}

/// Keeps the first few blocks and counts the rest, so a 9 GiB tar needs no memory.
#[derive(Default)]
struct HeaderCapture {
    first_blocks: Vec<u8>,
    total: u64,
}

impl Write for HeaderCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let keep = 4096usize
            .saturating_sub(self.first_blocks.len())
            .min(buf.len());
        self.first_blocks.extend_from_slice(&buf[..keep]);
        self.total += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn changed_error(result: std::io::Result<impl std::fmt::Debug>) -> (PathBuf, String) {
    let err = result.expect_err("the tar must fail");
    match ContextError::from_stream_error(&err) {
        Some(ContextError::Changed { path, detail }) => (path.clone(), detail.clone()),
        other => panic!("expected Changed, got {other:?} ({err})"),
    }
}

#[test]
fn file_truncated_after_the_scan_is_an_error() {
    let tree = Tree::new();
    let file = tree.file("data.bin", &"x".repeat(10_000));
    let context = tree.scan();
    fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(10)
        .unwrap();
    let (path, detail) = changed_error(context.write_tar(Vec::new()));
    assert_eq!(path, Path::new("data.bin"));
    assert!(
        detail.contains("10000") && detail.contains("10"),
        "{detail}"
    );
}

#[test]
fn file_grown_removed_or_replaced_after_the_scan_is_an_error() {
    let tree = Tree::new();
    let grows = tree.file("grows", "a");
    let goes = tree.file("goes", "b");
    let becomes_dir = tree.file("zz", "c");
    let context = tree.scan();
    fs::write(&grows, "much longer now").unwrap();
    assert!(changed_error(context.write_tar(Vec::new()))
        .1
        .contains("size"));

    fs::write(&grows, "a").unwrap();
    fs::remove_file(&goes).unwrap();
    let (path, detail) = changed_error(context.write_tar(Vec::new()));
    assert_eq!(
        (path.as_path(), detail.as_str()),
        (Path::new("goes"), "it was removed after the scan")
    );

    fs::write(&goes, "b").unwrap();
    fs::remove_file(&becomes_dir).unwrap();
    fs::create_dir(&becomes_dir).unwrap();
    let (_, detail) = changed_error(context.write_tar(Vec::new()));
    assert!(
        detail.contains("a regular file when scanned and is now a directory"),
        "{detail}"
    );
}

#[test]
fn stream_matches_the_synchronous_tar_and_counts_bytes() {
    let tree = Tree::new();
    for i in 0..40 {
        tree.file(format!("f{i:02}"), &"0123456789".repeat(10_000 + i));
    }
    let expected = tree.scan().write_tar(Vec::new()).unwrap();

    let context = tree.scan();
    let counter = context.bytes_produced();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let chunks: Vec<bytes::Bytes> = runtime.block_on(async move {
        let stream = context.into_tar_stream(false);
        stream.map(|chunk| chunk.unwrap()).collect().await
    });
    let streamed: Vec<u8> = chunks.iter().flatten().copied().collect();
    assert!(streamed == expected, "streamed tar differs from write_tar");
    assert!(chunks.len() > 1);
    for chunk in &chunks[..chunks.len() - 1] {
        assert!(
            chunk.len() >= 256 * 1024 && chunk.len() < 512 * 1024,
            "chunk of {} bytes",
            chunk.len()
        );
    }
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::Relaxed),
        streamed.len() as u64
    );
}

#[test]
fn stream_works_without_a_tokio_runtime_at_creation() {
    let tree = Tree::new();
    tree.file("a", "a");
    let bytes = stream_bytes(tree.scan(), false).unwrap();
    assert_eq!(names(&read_tar(&bytes)), ["Dockerfile", "a"]);
}

#[test]
fn gzip_stream_decompresses_to_the_same_tar() {
    let tree = Tree::new();
    tree.file("a/b", &"compressible ".repeat(50_000));
    let expected = tree.scan().write_tar(Vec::new()).unwrap();
    let compressed = stream_bytes(tree.scan(), true).unwrap();
    assert!(compressed.len() < expected.len() / 10);
    let mut decompressed = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut decompressed)
        .unwrap();
    assert!(decompressed == expected);
}

#[test]
fn stream_error_ends_with_err_and_no_end_of_archive() {
    let tree = Tree::new();
    tree.file("a_first", &"1".repeat(600_000));
    let shrinks = tree.file("b_shrinks", &"2".repeat(10_000));
    let context = tree.scan();
    fs::write(&shrinks, "short").unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (data, error) = runtime.block_on(async move {
        let mut stream = Box::pin(context.into_tar_stream(false));
        let mut data = Vec::new();
        let mut error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    assert!(error.is_none(), "no data after the error");
                    data.extend_from_slice(&chunk);
                }
                Err(err) => error = Some(err),
            }
        }
        (data, error)
    });
    let error = error.expect("the stream must end with an error");
    assert!(
        matches!(
            ContextError::from_stream_error(&error),
            Some(ContextError::Changed { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("b_shrinks"), "{error}");
    assert!(
        !data.ends_with(&[0u8; 1024]),
        "a truncated tar must not look finished"
    );
}

#[test]
fn dropping_the_stream_stops_the_writer() {
    let tree = Tree::new();
    let big = fs::File::create(tree.path("big")).unwrap();
    big.set_len(1 << 30).unwrap();
    let context = tree.scan();
    let counter = context.bytes_produced();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut stream = Box::pin(context.into_tar_stream(false));
        stream.next().await.unwrap().unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let after_drop = counter.load(std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        counter.load(std::sync::atomic::Ordering::Relaxed),
        after_drop,
        "writer kept going"
    );
    assert!(
        after_drop < 8 << 20,
        "only a bounded amount was produced: {after_drop}"
    );
}

/// Stream the context and return what was sent, with the digest the stream reports for it.
fn stream_with_digest(context: BuildContext, gzip: bool) -> (Vec<u8>, [u8; 32]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (stream, digest) = context.into_tar_stream_with_digest(gzip);
        let mut stream = Box::pin(stream);
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        (
            out,
            digest.await.expect("a whole archive reports its digest"),
        )
    })
}

#[test]
fn the_streamed_digest_is_the_content_digest_of_what_was_sent() {
    let tree = Tree::new();
    tree.file("a.txt", "one");
    tree.file("dir/b.txt", "two");
    let before = tree.scan().content_digest().unwrap();
    for gzip in [false, true] {
        let (bytes, streamed) = stream_with_digest(tree.scan(), gzip);
        assert!(!bytes.is_empty());
        assert_eq!(streamed, before, "gzip {gzip}");
    }
    // Touched, not changed: the same digest. Changed between the digest and the upload: another one.
    let when = SystemTime::now() + Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(tree.path("a.txt"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(stream_with_digest(tree.scan(), false).1, before);
    let scanned = tree.scan();
    tree.file("a.txt", "uno");
    assert_ne!(stream_with_digest(scanned, false).1, before);
}
