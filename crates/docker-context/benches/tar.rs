//! Tar writing: `BuildContext::write_tar` into a sink (the writer alone), and
//! `BuildContext::into_tar_stream` drained through the bounded channel (what the daemon upload
//! sees), plain and gzip.
//!
//!     cargo bench -p docker-context --bench tar

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use docker_context::BuildContext;
use futures_util::StreamExt;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dockerfile: PathBuf,
    bytes: u64,
}

/// `files` files of `size` bytes each, spread over 50 directories; contents are pseudo-random so
/// gzip has real work to do.
fn tree(files: usize, size: usize) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let dockerfile = root.join("Dockerfile");
    std::fs::write(&dockerfile, "FROM scratch\n").unwrap();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut data = vec![0u8; size];
    for index in 0..files {
        for chunk in data.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = chunk.len();
            chunk.copy_from_slice(&state.to_le_bytes()[..n]);
        }
        let sub = root.join(format!("d{:02}", index % 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{index:06}.bin")), &data).unwrap();
    }
    Tree {
        _dir: dir,
        root,
        dockerfile,
        bytes: (files * size) as u64,
    }
}

fn scan(tree: &Tree) -> BuildContext {
    BuildContext::scan(&tree.root, &tree.dockerfile).unwrap()
}

fn cases() -> Vec<(&'static str, Tree)> {
    vec![
        // Per-entry overhead: stat, open, fstat, header, a short read.
        ("5000x4KiB", tree(5000, 4 << 10)),
        // Copy throughput: few large files.
        ("16x4MiB", tree(16, 4 << 20)),
    ]
}

fn write_tar(c: &mut Criterion) {
    let mut group = c.benchmark_group("tar/write_tar_to_sink");
    group.sample_size(20);
    for (name, tree) in cases() {
        let context = scan(&tree);
        group.throughput(Throughput::Bytes(tree.bytes));
        group.bench_function(name, |b| {
            b.iter(|| context.write_tar(std::io::sink()).unwrap())
        });
    }
    group.finish();
}

fn drain(runtime: &tokio::runtime::Runtime, context: BuildContext, gzip: bool) -> u64 {
    runtime.block_on(async move {
        let mut stream = std::pin::pin!(context.into_tar_stream(gzip));
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            total += chunk.unwrap().len() as u64;
        }
        total
    })
}

fn stream(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tar/into_tar_stream");
    group.sample_size(10);
    for (name, tree) in cases() {
        group.throughput(Throughput::Bytes(tree.bytes));
        for gzip in [false, true] {
            let id = format!("{name}/{}", if gzip { "gzip" } else { "plain" });
            group.bench_function(id, |b| {
                b.iter_batched(
                    || scan(&tree),
                    |context| drain(&runtime, context, gzip),
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, write_tar, stream);
criterion_main!(benches);
