//! `ecrbuild export` against the rig: images pushed with ecrbuild to the real registries, archives
//! written to moto's S3 (real multipart uploads), to files and to stdout, then read back by the
//! Docker daemon (`docker load`) and by skopeo, an independent client. Failure tests assert the exit
//! code, the message, and that S3 holds neither an object nor a pending upload afterwards.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};
use support::s3::S3;
use support::*;

/// `ecrbuild export REF --to DEST` with moto's AWS variables.
fn export(reference: &str, to: &str, extra: &[&str]) -> Command {
    let mut cmd = ecrbuild();
    cmd.envs(Rig::get().aws_env())
        .args(["export", reference, "--to", to])
        .args(extra);
    cmd
}

/// A `FROM scratch` image with one file of `size` random bytes (a layer no other test has) and a
/// small one, pushed by ecrbuild to the anonymous registry. Returns `registry/repo:sha`.
fn push_random_image(test: &str, size: usize) -> (String, String) {
    let rig = Rig::get();
    let context = scratch_context(test, "export");
    let mut data = vec![0u8; size];
    let mut seed = Sha256::digest(unique_sha().as_bytes()).to_vec();
    for chunk in data.chunks_mut(32) {
        seed = Sha256::digest(&seed).to_vec();
        chunk.copy_from_slice(&seed[..chunk.len()]);
    }
    std::fs::write(context.join("file.txt"), &data).unwrap();
    let repo = unique_repo(test);
    let sha = unique_sha();
    run(&mut build_cmd(
        &context,
        rig.registry(),
        &repo,
        &sha,
        Auth::None,
    ))
    .assert_code(0);
    let _ = std::fs::remove_dir_all(&context);
    (format!("{}/{repo}:{sha}", rig.registry()), repo)
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ecrbuild-export-{}-{name}", unique_sha()))
}

/// Every file of a tar (optionally gzip-compressed), by name.
fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let name = entry.path().unwrap().to_string_lossy().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            files.insert(name, content);
        }
    }
    files
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `docker load` of an archive; the name it loaded.
fn docker_load(archive: &Path) -> String {
    let out = docker(&["load", "-i", path_str(archive)]);
    out.lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("docker load named no image: {out}"))
        .trim()
        .to_string()
}

fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_string()
}

/// The number in the summary line's "in N parts".
fn parts_in(stderr: &str) -> usize {
    stderr
        .split(" in ")
        .find_map(|s| {
            s.strip_suffix(" parts")
                .or_else(|| s.split_once(" parts").map(|p| p.0))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no part count in:\n{stderr}"))
}

#[test]
fn api_image_exported_to_s3_through_the_ecr_path_loads_runs_and_keeps_its_image_id() {
    let rig = Rig::get();
    let s3 = S3::rig();
    let repo = unique_repo("export-api");
    let sha = unique_sha();
    let mut build = ecrbuild();
    build
        .envs(rig.aws_env())
        .args(["-f", "api/Dockerfile", "--sha", &sha, "--repository", &repo])
        .args(["--registry", rig.ecr_registry(), "--auth", "ecr"])
        .args(["--create-repository", "--no-latest"])
        .args(["--build-arg", &format!("GO_IMAGE={}", rig.go_image())]);
    run(&mut build).assert_code(0);
    let registry = RegistryHttp::basic(rig.ecr_registry(), "AWS", rig.ecr_password());
    let digest = registry.present_digest(&repo, &sha);
    let config_digest = registry.config_digest(&repo, &sha);
    let reference = format!("{}/{repo}:{sha}", rig.ecr_registry());
    // The daemon still has the built image under this name: drop it, so only the archive can bring it.
    remove_images(&[&reference]);

    let bucket = s3.new_bucket("api");
    let key = "exports/api/image.tar";
    let result = run(&mut export(
        &reference,
        &format!("s3://{bucket}/{key}"),
        &["--part-size", "5"],
    ));
    result.assert_code(0).assert_no_leak(rig.ecr_password());

    let object = s3.get(&bucket, key).expect("the archive is in S3");
    let meta = |name: &str| object.headers.get(name).map(String::as_str);
    assert_eq!(meta("x-amz-meta-source-digest"), Some(digest.as_str()));
    assert_eq!(meta("x-amz-meta-image-id"), Some(config_digest.as_str()));
    assert_eq!(
        meta("x-amz-meta-source-reference"),
        Some(reference.as_str())
    );
    assert_eq!(meta("x-amz-server-side-encryption"), Some("AES256"));
    assert_eq!(meta("x-amz-checksum-algorithm"), Some("CRC32"));
    assert_eq!(
        parts_in(&result.stderr),
        object.body.len().div_ceil(5 << 20)
    );
    assert!(s3.pending_uploads(&bucket).is_empty());

    let archive = temp_path("api.tar");
    std::fs::write(&archive, &object.body).unwrap();
    let loaded = docker_load(&archive);
    let _ = std::fs::remove_file(&archive);
    assert_eq!(loaded, reference);
    assert_eq!(
        image_id(&reference),
        config_digest,
        "a different image was loaded"
    );
    assert_eq!(
        health_of(&reference, "linux/amd64", Duration::from_secs(10)),
        r#"{"status":"ok"}"#,
        "no healthy answer within 10 s"
    );
    remove_images(&[&reference]);
}

#[test]
fn oci_layout_holds_every_blob_under_its_digest_and_skopeo_reads_it() {
    let rig = Rig::get();
    let (reference, repo) = push_random_image("export-oci", 300_000);
    let tag = reference.rsplit(':').next().unwrap().to_string();
    let registry = RegistryHttp::anonymous(rig.registry());
    let digest = registry.present_digest(&repo, &tag);
    let archive = temp_path("layout.tar");
    run(&mut export(
        &reference,
        path_str(&archive),
        &["--auth", "none", "--format", "oci"],
    ))
    .assert_code(0);

    let files = untar(&std::fs::read(&archive).unwrap());
    assert_valid_oci_layout(&files, &digest, &tag);

    // skopeo: inspect, and a copy that checks every digest on the way.
    let source = format!("oci-archive:{}", path_str(&archive));
    let inspect = Command::new("skopeo")
        .args(["inspect", &source])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let copy = temp_path("skopeo-dir");
    let copied = Command::new("skopeo")
        .args(["copy", &source, &format!("dir:{}", path_str(&copy))])
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let _ = std::fs::remove_dir_all(&copy);
    let _ = std::fs::remove_file(&archive);
}

#[test]
fn a_large_image_goes_to_s3_in_checked_parts_and_arrives_whole() {
    let rig = Rig::get();
    let s3 = S3::rig();
    // 12 MiB of random data: three parts of 5 MiB, the last one smaller.
    let (reference, repo) = push_random_image("export-parts", 12 << 20);
    let tag = reference.rsplit(':').next().unwrap().to_string();
    let digest = RegistryHttp::anonymous(rig.registry()).present_digest(&repo, &tag);
    let bucket = s3.new_bucket("parts");
    let result = run(&mut export(
        &reference,
        &format!("s3://{bucket}/exports/image.oci.tar"),
        &[
            "--auth",
            "none",
            "--format",
            "oci",
            "--part-size",
            "5",
            "--parallel-uploads",
            "2",
        ],
    ));
    result.assert_code(0);
    assert_eq!(parts_in(&result.stderr), 3);
    let object = s3
        .get(&bucket, "exports/image.oci.tar")
        .expect("the archive is in S3");
    // A multipart object's checksum is the checksum of its parts' checksums, with their count.
    let checksum = object
        .headers
        .get("x-amz-checksum-crc32")
        .map(String::as_str);
    assert!(checksum.is_some_and(|c| c.ends_with("-3")), "{checksum:?}");
    assert_eq!(
        object
            .headers
            .get("x-amz-checksum-type")
            .map(String::as_str),
        Some("COMPOSITE")
    );
    assert_eq!(
        object
            .headers
            .get("x-amz-meta-archive-format")
            .map(String::as_str),
        Some("oci")
    );
    assert_valid_oci_layout(&untar(&object.body), &digest, &tag);
    assert!(s3.pending_uploads(&bucket).is_empty());
}

/// `oci-layout`, an `index.json` naming `digest` as `tag`, and every blob under its own digest, each
/// layer of the size its manifest gives.
fn assert_valid_oci_layout(files: &BTreeMap<String, Vec<u8>>, digest: &str, tag: &str) {
    let layout: serde_json::Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"][0]["digest"], digest);
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let blobs: Vec<(&String, &Vec<u8>)> = files
        .iter()
        .filter(|(name, _)| name.starts_with("blobs/sha256/"))
        .collect();
    // Manifest, config, two layers.
    assert_eq!(blobs.len(), 4, "{:?}", files.keys().collect::<Vec<_>>());
    for (name, content) in &blobs {
        assert_eq!(
            sha256(content),
            name.replace("blobs/sha256/", "sha256:"),
            "{name} is not its digest"
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&files[&digest.replace("sha256:", "blobs/sha256/")]).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let name = layer["digest"]
            .as_str()
            .unwrap()
            .replace("sha256:", "blobs/sha256/");
        assert_eq!(files[&name].len() as u64, layer["size"].as_u64().unwrap());
    }
}

#[test]
fn export_to_a_gzip_file_and_to_stdout_loads_with_docker() {
    let rig = Rig::get();
    let (reference, repo) = push_random_image("export-local", 200_000);
    let tag = reference.rsplit(':').next().unwrap().to_string();
    let config_digest = RegistryHttp::anonymous(rig.registry()).config_digest(&repo, &tag);
    remove_images(&[&reference]);

    let archive = temp_path("image.tar.gz");
    run(&mut export(
        &reference,
        path_str(&archive),
        &["--auth", "none"],
    ))
    .assert_code(0);
    let bytes = std::fs::read(&archive).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not gzip");
    let files = untar(&bytes);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], reference.as_str());
    assert_eq!(docker_load(&archive), reference);
    assert_eq!(image_id(&reference), config_digest);
    let _ = std::fs::remove_file(&archive);
    remove_images(&[&reference]);

    // ecrbuild export … --to - | docker load
    let mut exporter = export(&reference, "-", &["--auth", "none"]);
    let mut child = exporter
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new("docker")
        .arg("load")
        .stdin(child.stdout.take().unwrap())
        .output()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "export to stdout failed");
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert!(String::from_utf8_lossy(&load.stdout).contains(&format!("Loaded image: {reference}")));
    assert_eq!(image_id(&reference), config_digest);
    remove_images(&[&reference]);
}

#[test]
fn a_corrupt_blob_fails_naming_its_digest_and_leaves_nothing_in_s3() {
    let rig = Rig::get();
    let s3 = S3::rig();
    // 12 MiB of random data: two 5 MiB parts are uploaded before the blob's end shows the damage.
    let (reference, repo) = push_random_image("export-corrupt", 12 << 20);
    let tag = reference.rsplit(':').next().unwrap().to_string();
    let registry = RegistryHttp::anonymous(rig.registry());
    let manifest: serde_json::Value =
        serde_json::from_str(&registry.manifest_text(&repo, &tag)).unwrap();
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = layer.trim_start_matches("sha256:");
    let data = Path::new(rig.var("ECRBUILD_RIG_DIR"))
        .join("registry/anon/data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let original = std::fs::read(&data).unwrap();
    let mut damaged = original.clone();
    let middle = damaged.len() - 100;
    damaged[middle] ^= 0xff;
    std::fs::write(&data, &damaged).unwrap();

    let bucket = s3.new_bucket("corrupt");
    let result = run(&mut export(
        &reference,
        &format!("s3://{bucket}/exports/corrupt.tar"),
        &["--auth", "none", "--part-size", "5"],
    ));
    // The same failure into local destinations: an existing file keeps what it held (the archive is
    // written beside it and renamed only when whole), and a device stays a device.
    let existing = temp_path("kept.tar");
    std::fs::write(&existing, b"the previous export").unwrap();
    let to_file = run(&mut export(
        &reference,
        existing.to_str().unwrap(),
        &["--auth", "none"],
    ));
    let to_device = run(&mut export(&reference, "/dev/null", &["--auth", "none"]));
    std::fs::write(&data, &original).unwrap();
    to_file.assert_code(13);
    assert_eq!(std::fs::read(&existing).unwrap(), b"the previous export");
    let leftovers: Vec<_> = std::fs::read_dir(existing.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("kept.tar."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "a partial file was left: {leftovers:?}"
    );
    to_device.assert_code(13);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    result
        .assert_code(13)
        .assert_stderr_contains(&format!("blob {layer} of {reference} is corrupt"))
        .assert_stderr_contains("nothing was exported");
    assert!(
        s3.keys(&bucket).is_empty(),
        "an object was left: {:?}",
        s3.keys(&bucket)
    );
    assert!(
        s3.pending_uploads(&bucket).is_empty(),
        "a multipart upload was left pending"
    );
}

#[test]
fn unreachable_s3_missing_bucket_and_missing_image_exit_with_their_codes() {
    let rig = Rig::get();
    let s3 = S3::rig();
    let (reference, repo) = push_random_image("export-fail", 10_000);
    let bucket = s3.new_bucket("fail");

    // S3 unreachable: retried, then exit 14 naming the endpoint.
    let mut unreachable = export(
        &reference,
        &format!("s3://{bucket}/a.tar"),
        &["--auth", "none", "--retries", "2", "--retry-max-time", "10"],
    );
    unreachable.env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9");
    run(&mut unreachable)
        .assert_code(14)
        .assert_stderr_contains("cannot reach S3 at http://127.0.0.1:9")
        .assert_stderr_contains("gave up after 2 attempts");

    // A bucket that does not exist: exit 12, named.
    let missing = format!("{bucket}-missing");
    run(&mut export(
        &reference,
        &format!("s3://{missing}/a.tar"),
        &["--auth", "none"],
    ))
    .assert_code(12)
    .assert_stderr_contains(&format!("S3 bucket {missing} does not exist"));

    // A tag the repository does not have: exit 11 before S3 is touched.
    let absent = format!("{}/{repo}:absent", rig.registry());
    run(&mut export(
        &absent,
        &format!("s3://{bucket}/b.tar"),
        &["--auth", "none"],
    ))
    .assert_code(11)
    .assert_stderr_contains(&format!(
        "{absent} is not in the registry: the repository has no tag absent"
    ));

    // Credentials the registry refuses: exit 6, naming the image.
    let refused = format!("{}/{repo}:x", rig.bad_registry());
    run(&mut export(
        &refused,
        &format!("s3://{bucket}/c.tar"),
        &["--auth", "ecr"],
    ))
    .assert_code(6)
    .assert_stderr_contains(&format!("authentication failed for {refused}"))
    .assert_no_leak(rig.ecr_password());

    assert!(s3.keys(&bucket).is_empty(), "{:?}", s3.keys(&bucket));
    assert!(s3.pending_uploads(&bucket).is_empty());
}
