//! `.dockerignore` matching: parsing, `IgnoreRules::is_excluded` on generated paths, and the scan
//! (walk + match + open) of a generated tree through `BuildContext::scan`.
//!
//!     cargo bench -p docker-context --bench ignore

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use docker_context::{BuildContext, IgnoreRules};

/// A realistic monorepo `.dockerignore`: literals, prefixes, suffixes, wildcards, classes and an
/// exception.
const MIXED: &str = "\
# comment
.git
.env
**/node_modules
**/*.log
**/*.tmp
build
target/
dist/**
**/__pycache__
*.md
!README.md
docs/*/drafts
src/**/*_test.go
src/*/testdata/[a-c]*
coverage?/
!build/release-notes.txt
";

/// The allowlist style this repository uses: exclude everything, re-include one directory.
const ALLOWLIST: &str =
    "*\n!api/\napi/Dockerfile\napi/**/*.md\napi/**/*_test.go\napi/**/testdata\n";

/// Deterministic relative paths of depth 1 to 6 over names that hit and miss the rules.
fn paths(count: usize) -> Vec<Vec<u8>> {
    const DIRS: [&str; 12] = [
        "src",
        "api",
        "pkg",
        "node_modules",
        "build",
        "docs",
        "internal",
        "vendor",
        "target",
        "testdata",
        "lib",
        "cmd",
    ];
    const FILES: [&str; 10] = [
        "main.go",
        "main_test.go",
        "index.js",
        "app.log",
        "x.tmp",
        "README.md",
        "data.bin",
        "style.css",
        "a1.json",
        "notes.txt",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let depth = 1 + (next() % 6) as usize;
            let mut path = Vec::new();
            for _ in 1..depth {
                path.extend_from_slice(DIRS[(next() % DIRS.len() as u64) as usize].as_bytes());
                path.push(b'/');
            }
            path.extend_from_slice(FILES[(next() % FILES.len() as u64) as usize].as_bytes());
            path
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("ignore/parse");
    group.bench_function("mixed", |b| {
        b.iter(|| IgnoreRules::parse(black_box(MIXED.as_bytes())).unwrap())
    });
    group.finish();
}

fn is_excluded(c: &mut Criterion) {
    let paths = paths(4096);
    let mut group = c.benchmark_group("ignore/is_excluded");
    group.throughput(Throughput::Elements(paths.len() as u64));
    for (name, text) in [("mixed", MIXED), ("allowlist", ALLOWLIST)] {
        let rules = IgnoreRules::parse(text.as_bytes()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                paths
                    .iter()
                    .filter(|p| rules.is_excluded(black_box(p)))
                    .count()
            })
        });
    }
    group.finish();
}

/// A tree of empty files (so the walk, the matching and the per-file open dominate), half of them
/// excluded by the mixed rules.
fn make_tree(root: &Path, files: usize) {
    std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(root.join(".dockerignore"), MIXED).unwrap();
    for index in 0..files {
        let dir = match index % 4 {
            0 => format!("src/pkg{:02}/mod{}", index % 37, index % 5),
            1 => format!("src/pkg{:02}/node_modules/dep{}", index % 37, index % 7),
            2 => format!("build/obj{}", index % 11),
            _ => format!("docs/part{}/drafts", index % 3),
        };
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ext = ["go", "log", "js", "md"][index % 4 / 2 + index % 2];
        std::fs::write(dir.join(format!("f{index:05}.{ext}")), b"").unwrap();
    }
}

fn scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = 10_000;
    make_tree(dir.path(), files);
    let dockerfile = dir.path().join("Dockerfile");
    let sent = BuildContext::scan(dir.path(), &dockerfile)
        .unwrap()
        .entry_count();
    eprintln!("scan tree: {files} files, {sent} entries sent");
    let mut group = c.benchmark_group("context/scan");
    group.sample_size(20);
    group.throughput(Throughput::Elements(files as u64));
    group.bench_function("10k_files_mixed_rules", |b| {
        b.iter_batched(
            || (),
            |()| BuildContext::scan(dir.path(), &dockerfile).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, parse, is_excluded, scan);
criterion_main!(benches);
