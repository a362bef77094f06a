//! Test support: the rig's addresses, running the real binary, and reading the real registry's HTTP API.
#![allow(dead_code)]

pub mod proxy;
pub mod s3;
pub mod services;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The tag of the candidate record a run that moves `latest` keeps in the repository (see
/// `src/push/record.rs`): not an image, and never a SHA tag.
pub const RECORD_TAG: &str = "ecrbuild-candidates";

/// The tag the daemon pushes an image under before ecrbuild writes the labelled image under `tag` (the
/// SHA tag or a platform tag), so that `tag` is written once (see `Tag::staging`).
pub fn staging_tag(tag: &str) -> String {
    format!("ecrbuild-staging-{tag}")
}

pub const SETUP_HINT: &str = "the test rig is not up: run `bash scripts/rig.sh up` (or the README's test command, `bash scripts/test.sh`)";

/// Addresses and secrets of the running rig, read from `scripts/rig.sh env`.
pub struct Rig {
    pub vars: HashMap<String, String>,
}

impl Rig {
    pub fn get() -> &'static Rig {
        static RIG: OnceLock<Rig> = OnceLock::new();
        RIG.get_or_init(|| {
            let root = repo_root();
            let status = Command::new("bash")
                .arg(root.join("scripts/rig.sh"))
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("bash runs scripts/rig.sh");
            assert!(status.success(), "{SETUP_HINT}");
            let out = Command::new("bash")
                .arg(root.join("scripts/rig.sh"))
                .arg("env")
                .output()
                .expect("scripts/rig.sh env");
            assert!(out.status.success(), "{SETUP_HINT}");
            let mut vars = HashMap::new();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let line = line.trim().trim_start_matches("export ");
                if let Some((k, v)) = line.split_once('=') {
                    vars.insert(
                        k.to_string(),
                        v.trim_matches(|c| c == '"' || c == '\'').to_string(),
                    );
                }
            }
            Rig { vars }
        })
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from `scripts/rig.sh env`"))
    }

    /// The anonymous registry.
    pub fn registry(&self) -> &str {
        self.var("ECRBUILD_RIG_REGISTRY")
    }

    /// The htpasswd registry whose password is the ECR token's.
    pub fn ecr_registry(&self) -> &str {
        self.var("ECRBUILD_RIG_ECR_REGISTRY")
    }

    /// The htpasswd registry with a different password.
    pub fn bad_registry(&self) -> &str {
        self.var("ECRBUILD_RIG_BAD_REGISTRY")
    }

    pub fn ecr_password(&self) -> &str {
        self.var("ECRBUILD_RIG_ECR_PASSWORD")
    }

    pub fn go_image(&self) -> &str {
        self.var("ECRBUILD_RIG_GO_IMAGE")
    }

    /// AWS variables that point the SDK at moto.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL_ECR",
            "AWS_ENDPOINT_URL_STS",
            "AWS_ENDPOINT_URL_S3",
        ]
        .iter()
        .map(|k| (k.to_string(), self.var(k).to_string()))
        .collect()
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A repository name no other test uses.
pub fn unique_repo(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("e2e/{test}-{}-{nanos}", std::process::id())
}

/// A random-looking 40-hex SHA, unique per call.
pub fn unique_sha() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seed = format!("{nanos:x}{:x}{n:x}", std::process::id());
    let mut sha = String::new();
    let mut state: u64 = 0xcbf29ce484222325;
    while sha.len() < 40 {
        for b in seed.bytes() {
            state = (state ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        sha.push_str(&format!("{state:016x}"));
    }
    sha.truncate(40);
    sha
}

/// The result of running the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        }
    }

    pub fn assert_code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.code, expected,
            "exit code {} (expected {expected})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn assert_stderr_contains(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    /// Neither stream may contain `secret`.
    pub fn assert_no_leak(&self, secret: &str) -> &Run {
        assert!(!secret.is_empty());
        assert!(!self.stdout.contains(secret), "secret leaked to stdout");
        assert!(!self.stderr.contains(secret), "secret leaked to stderr");
        self
    }
}

/// A command for the real `ecrbuild` binary with a clean, explicit environment.
pub fn ecrbuild() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecrbuild"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", test_home())
        .env("CI", "true")
        .current_dir(repo_root());
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        cmd.env("DOCKER_HOST", host);
    }
    cmd
}

/// A HOME of our own, so tests can prove nothing is written to `~/.docker`.
pub fn test_home() -> PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ecrbuild-test-home-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
    .clone()
}

/// How the binary gets registry credentials in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous (`--auth none`).
    None,
    /// An ECR token from moto (`--auth ecr`), with the AWS variables that point at it.
    Ecr,
}

/// The binary set up to build `context` (its `Dockerfile`) and push it as `registry/repo:sha`.
pub fn build_cmd(context: &Path, registry: &str, repo: &str, sha: &str, auth: Auth) -> Command {
    let mut cmd = ecrbuild();
    if auth == Auth::Ecr {
        cmd.envs(Rig::get().aws_env());
    }
    let auth = if auth == Auth::Ecr { "ecr" } else { "none" };
    cmd.args([
        "--sha",
        sha,
        "--repository",
        repo,
        "--registry",
        registry,
        "--auth",
        auth,
    ])
    .args([
        "--context",
        path_str(context),
        "-f",
        path_str(&context.join("Dockerfile")),
    ]);
    cmd
}

/// A fresh context: `FROM scratch` copying `file.txt` (with `content`) and `more.txt`: two layers,
/// built offline in about a second.
pub fn scratch_context(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecrbuild-{name}-{}", unique_sha()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY file.txt /file.txt\nCOPY more.txt /more.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join("file.txt"), content).unwrap();
    std::fs::write(dir.join("more.txt"), format!("more {content}")).unwrap();
    dir
}

pub fn run(cmd: &mut Command) -> Run {
    let _building = DAEMON_IMAGES.read().unwrap_or_else(|e| e.into_inner());
    Run::from(cmd.output().expect("ecrbuild runs"))
}

/// Held for reading by every run, for writing while images are deleted. The classic builder's cache probe
/// for a `FROM scratch` step reads every image in the store, and fails the build ("unable to find image")
/// when one is deleted under it; tests that delete images must not race builds in the same binary.
static DAEMON_IMAGES: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a test builds with the docker CLI, like [`run`] holds it for ecrbuild.
pub fn daemon_images_read() -> std::sync::RwLockReadGuard<'static, ()> {
    DAEMON_IMAGES.read().unwrap_or_else(|e| e.into_inner())
}

/// `docker rmi -f` of `images`, with no build of this test binary running.
pub fn remove_images(images: &[&str]) {
    let _exclusive = DAEMON_IMAGES.write().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["rmi", "-f"];
    args.extend_from_slice(images);
    docker(&args);
}

/// The registry's HTTP API, over plain HTTP on loopback.
pub struct RegistryHttp {
    pub host: String,
    pub basic: Option<(String, String)>,
}

const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";

impl RegistryHttp {
    pub fn anonymous(host: &str) -> Self {
        RegistryHttp {
            host: host.to_string(),
            basic: None,
        }
    }

    pub fn basic(host: &str, user: &str, password: &str) -> Self {
        RegistryHttp {
            host: host.to_string(),
            basic: Some((user.to_string(), password.to_string())),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    fn authorization(&self) -> Option<String> {
        use base64::Engine;
        self.basic.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
    }

    /// `GET /v2/<repo>/tags/list`; an unknown repository has no tags.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let url = format!("http://{}/v2/{repo}/tags/list", self.host);
        let mut req = Self::agent().get(&url);
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "GET {url}: {status} {body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut tags: Vec<String> = value["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Assert that two tags resolve to the same manifest. Fails when either tag is missing, so two
    /// absent tags never pass as "the same".
    #[track_caller]
    pub fn assert_same_digest(&self, repo: &str, tag: &str, other: &str) {
        let one = self.present_digest(repo, tag);
        let two = self.present_digest(repo, other);
        assert_eq!(
            one, two,
            "{repo}:{tag} and {repo}:{other} are different images"
        );
    }

    /// Assert that the staging tag of `tag` holds the unlabelled image the daemon pushed: another
    /// manifest than `tag`'s, with the same layers and without the revision label `tag`'s image has.
    #[track_caller]
    pub fn assert_staged(&self, repo: &str, tag: &str) {
        let staging = staging_tag(tag);
        let (staged, published) = (
            self.present_digest(repo, &staging),
            self.present_digest(repo, tag),
        );
        assert_ne!(staged, published, "{repo}:{staging} is the published image");
        let layers = |t: &str| self.manifest_json(repo, t)["layers"].clone();
        assert_eq!(layers(&staging), layers(tag), "{repo}:{staging}");
        let revision = |t: &str| {
            self.config(repo, t)["config"]["Labels"]["org.opencontainers.image.revision"].clone()
        };
        assert!(
            revision(tag).is_string(),
            "{repo}:{tag} has no revision label"
        );
        assert!(revision(&staging).is_null(), "{repo}:{staging} is labelled");
    }

    /// The digest behind a tag that must be present.
    #[track_caller]
    pub fn present_digest(&self, repo: &str, tag: &str) -> String {
        self.digest(repo, tag)
            .unwrap_or_else(|| panic!("{repo}:{tag} is not in the registry"))
    }

    /// `HEAD /v2/<repo>/manifests/<tag>`: the digest, or None when absent.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        let url = format!("http://{}/v2/{repo}/manifests/{tag}", self.host);
        let mut req = Self::agent().head(&url).header("Accept", MANIFEST_ACCEPT);
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().unwrap_or_else(|e| panic!("HEAD {url}: {e}"));
        match resp.status().as_u16() {
            200 => Some(
                resp.headers()
                    .get("Docker-Content-Digest")
                    .expect("registry sends Docker-Content-Digest")
                    .to_str()
                    .unwrap()
                    .to_string(),
            ),
            404 => None,
            other => panic!("HEAD {url}: unexpected status {other}"),
        }
    }

    /// The image config of a tag (labels, user, ...), read through manifest → config blob.
    pub fn config(&self, repo: &str, tag: &str) -> serde_json::Value {
        let manifest = self.get_json(
            &format!("/v2/{repo}/manifests/{tag}"),
            Some(MANIFEST_ACCEPT),
        );
        let digest = manifest["config"]["digest"]
            .as_str()
            .expect("manifest has a config")
            .to_string();
        self.get_json(&format!("/v2/{repo}/blobs/{digest}"), None)
    }

    /// The config digest of a tag's image: the image ID the daemon gives it.
    pub fn config_digest(&self, repo: &str, tag: &str) -> String {
        self.manifest_json(repo, tag)["config"]["digest"]
            .as_str()
            .expect("manifest has a config")
            .to_string()
    }

    /// The manifest behind a tag or digest, parsed (an image manifest or an index).
    pub fn manifest_json(&self, repo: &str, reference: &str) -> serde_json::Value {
        serde_json::from_str(&self.manifest_text(repo, reference)).unwrap()
    }

    /// A blob's bytes (`GET /v2/<repo>/blobs/<digest>`), e.g. a gzipped layer.
    pub fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        use std::io::Read;
        let url = format!("http://{}/v2/{repo}/blobs/{digest}", self.host);
        let mut req = Self::agent().get(&url);
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {url}");
        let mut bytes = Vec::new();
        resp.body_mut()
            .with_config()
            .limit(512 * 1024 * 1024)
            .reader()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    }

    /// The manifest of a tag, byte for byte as the registry stores it.
    pub fn manifest_text(&self, repo: &str, tag: &str) -> String {
        self.get_text(
            &format!("/v2/{repo}/manifests/{tag}"),
            Some(MANIFEST_ACCEPT),
        )
    }

    /// `PUT /v2/<repo>/manifests/<tag>` of the exact bytes of `from`'s manifest: another tag for the
    /// same image, written without any ecrbuild code.
    pub fn copy_tag(&self, repo: &str, from: &str, to: &str) {
        let manifest = self.manifest_text(repo, from);
        let media_type = serde_json::from_str::<serde_json::Value>(&manifest).unwrap()["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
            .to_string();
        let url = format!("http://{}/v2/{repo}/manifests/{to}", self.host);
        let mut req = Self::agent().put(&url).header("Content-Type", &media_type);
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let status = req
            .send(manifest.as_bytes())
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
            .status()
            .as_u16();
        assert_eq!(status, 201, "PUT {url}");
    }

    fn get_json(&self, path: &str, accept: Option<&str>) -> serde_json::Value {
        serde_json::from_str(&self.get_text(path, accept)).unwrap()
    }

    fn get_text(&self, path: &str, accept: Option<&str>) -> String {
        let url = format!("http://{}{path}", self.host);
        let mut req = Self::agent().get(&url);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(a) = self.authorization() {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }
}

/// Run the docker CLI (classic builder), returning stdout; panics with stderr on failure.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Whether the docker CLI command succeeds.
pub fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `git -C dir ARGS`, which must succeed; its trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commit what is staged in `dir` (an empty commit too), authored and committed at minute `minute`
/// of 2026-01-01, so commit times order the commits; the new SHA.
pub fn commit_at_minute(dir: &Path, minute: usize, message: &str) -> String {
    let date = format!("2026-01-01T00:{minute:02}:00Z");
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["commit", "-q", "--allow-empty", "-m", message])
        .args(["--date", &date])
        .env("GIT_COMMITTER_DATE", &date)
        .output()
        .unwrap();
    assert!(out.status.success(), "git commit: {out:?}");
    git_in(dir, &["rev-parse", "HEAD"])
}

/// Make `dir` a repository (branch `main`, `.git` left out of the context) with `n` linear commits a
/// minute apart, each writing its own `file.txt`; the SHAs, oldest first.
pub fn commit_history(dir: &Path, n: usize) -> Vec<String> {
    let git = |args: &[&str]| git_in(dir, args);
    std::fs::write(dir.join(".dockerignore"), ".git\n").unwrap();
    git(&["init", "-q", "-b", "main"]);
    git(&["config", "user.email", "test@ecrbuild.invalid"]);
    git(&["config", "user.name", "ecrbuild test"]);
    git(&["config", "uploadpack.allowAnySHA1InWant", "true"]);
    let mut shas = Vec::new();
    for i in 0..n {
        std::fs::write(dir.join("file.txt"), format!("commit {i}")).unwrap();
        git(&["add", "."]);
        shas.push(commit_at_minute(dir, i, &format!("commit {i}")));
    }
    shas
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A deterministic shuffle of `0..n` from a seed (print the seed, so a failing order can be replayed).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// A seed from the clock, for [`shuffled`].
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Wait for runs started at once (`commits[k]` is what child `k` built); each must exit 0. Returns their
/// stderr, labelled by commit, for failure messages.
pub fn wait_for_all(children: Vec<std::process::Child>, commits: &[usize]) -> String {
    let mut logs = String::new();
    for (child, i) in children.into_iter().zip(commits) {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "commit {i}: {stderr}");
        logs.push_str(&format!("--- run of commit {i}\n{stderr}"));
    }
    logs
}

/// Assert that `latest` holds `newest`: by its revision label and by its digest.
#[track_caller]
pub fn assert_latest_on(registry: &RegistryHttp, repo: &str, newest: &str, context: &str) {
    let latest = &registry.config(repo, "latest")["config"]["Labels"];
    assert_eq!(
        latest["org.opencontainers.image.revision"], newest,
        "{context}: latest is not the newest commit"
    );
    registry.assert_same_digest(repo, "latest", newest);
}

/// Run `reference` (the api image) for `platform` and return what `GET /health` answers within `limit`,
/// trimmed; empty when nothing answers.
pub fn health_of(reference: &str, platform: &str, limit: Duration) -> String {
    let name = format!("ecrbuild-health-{}-{}", std::process::id(), unique_sha());
    let _images = daemon_images_read();
    docker(&[
        "run",
        "-d",
        "--rm",
        "--platform",
        platform,
        "--name",
        &name,
        "-p",
        "127.0.0.1::8080",
        reference,
    ]);
    let port = docker(&["port", &name, "8080/tcp"]);
    let port = port.trim().rsplit(':').next().unwrap().to_string();
    let started = Instant::now();
    let mut body = String::new();
    while started.elapsed() < limit {
        if let Ok(mut resp) = ureq::get(&format!("http://127.0.0.1:{port}/health")).call() {
            if resp.status() == 200 {
                body = resp.body_mut().read_to_string().unwrap();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = docker_ok(&["rm", "-f", &name]);
    body.trim().to_string()
}
