//! A repository of five services for the tests of `ecrbuild.toml`: ui, catalog, cart, orders and checkout,
//! each published to its own repository (`svc-<unique>/<name>`) on the rig's anonymous registry, built
//! FROM one of two tiny bases made with `docker import` (no network, no shell: every Dockerfile only
//! copies). catalog and cart copy the shared `lib/`; orders has its own context (`services/orders`) whose
//! `.dockerignore` leaves out `*.md`; the top-level README.md is read by nothing. Commits are a minute
//! apart, so `latest` follows them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::*;

/// The services, in name order (the order of the JSON output).
pub const SERVICES: [&str; 5] = ["cart", "catalog", "checkout", "orders", "ui"];

/// The services built FROM the base `base`.
pub const FROM_BASE: [&str; 3] = ["cart", "catalog", "ui"];

/// The services built FROM the base `runtime`.
pub const FROM_RUNTIME: [&str; 2] = ["checkout", "orders"];

/// A `DOCKER_HOST` where nothing answers.
pub const DEAD_DOCKER_HOST: &str = "unix:///nonexistent/docker.sock";

/// The label that carries a service image's input digest.
pub const INPUTS_LABEL: &str = "io.ecrbuild.inputs";

/// The label that carries the commit an image was published for.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// The fixture repository: a temporary checkout, its commits, and its registry namespace.
pub struct ServiceRepo {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    /// `svc-<unique>`: every repository of this fixture (bases included) lives under it.
    pub prefix: String,
    pub registry: String,
    /// The commits, oldest first.
    pub shas: Vec<String>,
    /// The commit checked out (on `main`): the one runs are for.
    current: String,
}

impl ServiceRepo {
    /// The files of the five services committed once (the first commit). No base is pushed: see
    /// [`ServiceRepo::with_bases`].
    pub fn new(test: &str) -> ServiceRepo {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ecrbuild-services-{test}-"))
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let prefix = format!("svc-{test}-{}", &unique_sha()[..16]);
        let mut repo = ServiceRepo {
            _dir: dir,
            root,
            prefix,
            registry: Rig::get().registry().to_string(),
            shas: Vec::new(),
            current: String::new(),
        };
        repo.write_tree();
        git_in(&repo.root, &["init", "-q", "-b", "main"]);
        git_in(
            &repo.root,
            &["config", "user.email", "test@ecrbuild.invalid"],
        );
        git_in(&repo.root, &["config", "user.name", "ecrbuild test"]);
        repo.commit("five services");
        repo
    }

    /// [`ServiceRepo::new`], with both bases pushed to the registry.
    pub fn with_bases(test: &str) -> ServiceRepo {
        let repo = ServiceRepo::new(test);
        repo.push_base("base", "1", "base one");
        repo.push_base("runtime", "1", "runtime one");
        repo
    }

    fn write_tree(&self) {
        let registry = &self.registry;
        let prefix = &self.prefix;
        let base = format!("{registry}/{prefix}/base:1");
        let runtime = format!("{registry}/{prefix}/runtime:1");
        self.write("ecrbuild.toml", &self.config_text());
        self.write(".dockerignore", ".git\n");
        self.write("README.md", "# Five services\n");
        self.write("lib/shared.txt", "shared library v1\n");
        self.write(
            "services/ui/Dockerfile",
            &format!("FROM {base}\nARG FLAVOUR\nLABEL flavour=$FLAVOUR\nCOPY services/ui/src/ /srv/app/\n"),
        );
        self.write("services/ui/src/index.html", "<h1>ui v1</h1>\n");
        for name in ["catalog", "cart"] {
            self.write(
                &format!("services/{name}/Dockerfile"),
                &format!("FROM {base}\nCOPY lib/ /srv/lib/\nCOPY services/{name}/src/ /srv/app/\n"),
            );
            self.write(
                &format!("services/{name}/src/{name}.txt"),
                &format!("{name} v1\n"),
            );
        }
        self.write(
            "services/checkout/Dockerfile",
            &format!("FROM {runtime}\nCOPY services/checkout/src/ /srv/app/\n"),
        );
        self.write("services/checkout/src/checkout.txt", "checkout v1\n");
        // orders: its own context, everything in it copied but what its .dockerignore leaves out.
        self.write(
            "services/orders/Dockerfile",
            &format!("FROM {runtime}\nCOPY . /srv/app/\n"),
        );
        self.write("services/orders/.dockerignore", "*.md\n");
        self.write("services/orders/README.md", "# orders\n");
        self.write("services/orders/src/orders.txt", "orders v1\n");
    }

    /// The `ecrbuild.toml` of the fixture.
    pub fn config_text(&self) -> String {
        let mut text = format!("[defaults]\nregistry = \"{}\"\n", self.registry);
        for name in ["ui", "catalog", "cart", "orders", "checkout"] {
            text.push_str(&format!(
                "\n[services.{name}]\ndockerfile = \"services/{name}/Dockerfile\"\nrepository = \"{}\"\n",
                self.repository(name)
            ));
            match name {
                "ui" => text.push_str("build-args = { FLAVOUR = \"vanilla\" }\n"),
                "orders" => text.push_str("context = \"services/orders\"\n"),
                _ => {}
            }
        }
        text
    }

    /// The repository of a service (or of a base).
    pub fn repository(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    pub fn http(&self) -> RegistryHttp {
        RegistryHttp::anonymous(&self.registry)
    }

    /// Write a file of the checkout (parents created).
    pub fn write(&self, path: &str, content: &str) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Commit everything, a minute after the previous commit; the new SHA.
    pub fn commit(&mut self, message: &str) -> String {
        git_in(&self.root, &["add", "-A"]);
        let sha = commit_at_minute(&self.root, self.shas.len(), message);
        self.shas.push(sha.clone());
        self.current = sha.clone();
        sha
    }

    /// Move `main` back to an older commit `sha` (the newer ones stay in the object store), as a
    /// checkout of an older commit of the default branch.
    pub fn checkout(&mut self, sha: &str) {
        git_in(&self.root, &["checkout", "-q", "-B", "main", sha]);
        self.current = sha.to_string();
    }

    /// The commit checked out: the one runs are for.
    pub fn head(&self) -> &str {
        &self.current
    }

    /// The newest commit (by commit time), where `latest` belongs.
    pub fn newest(&self) -> &str {
        self.shas.last().unwrap()
    }

    /// The commit before the newest.
    pub fn previous(&self) -> &str {
        &self.shas[self.shas.len() - 2]
    }

    /// `docker import` of a one-file image (`/etc/base-version` holding `content`) as
    /// `<registry>/<prefix>/<name>:<tag>`, pushed with the docker CLI. The daemon keeps it too.
    pub fn push_base(&self, name: &str, tag: &str, content: &str) {
        let reference = format!("{}/{}:{tag}", self.registry, self.repository(name));
        import_image(&reference, content);
        docker(&["push", "-q", &reference]);
    }

    /// `ecrbuild ARGS` in the checkout, anonymous, for the commit checked out.
    pub fn ecrbuild(&self, args: &[&str]) -> Command {
        let mut cmd = ecrbuild();
        cmd.current_dir(&self.root)
            .args(args)
            .args(["--auth", "none", "--sha", self.head()]);
        cmd
    }

    /// `ecrbuild plan --output json ARGS` against a dead daemon (a plan needs none when the registry holds
    /// every base): the run and its parsed output.
    pub fn plan(&self, args: &[&str]) -> (Run, Value) {
        self.plan_with(args, false)
    }

    /// `ecrbuild plan --output json ARGS`; with `daemon` false, against a dead daemon.
    pub fn plan_with(&self, args: &[&str], daemon: bool) -> (Run, Value) {
        let mut cmd = self.ecrbuild(&["plan", "--output", "json"]);
        cmd.args(args);
        if !daemon {
            cmd.env("DOCKER_HOST", DEAD_DOCKER_HOST);
        }
        let result = run(&mut cmd);
        result.assert_code(0);
        let json = parse_json(&result);
        assert_eq!(json["sha"], self.head(), "plan of another commit: {json:#}");
        (result, json)
    }

    /// `ecrbuild --output json ARGS`, exiting with `code`; with `daemon` false, against a dead daemon. The
    /// run and its parsed output.
    pub fn build(&self, args: &[&str], daemon: bool, code: i32) -> (Run, Value) {
        let mut cmd = self.ecrbuild(&["--output", "json"]);
        cmd.args(args);
        if !daemon {
            cmd.env("DOCKER_HOST", DEAD_DOCKER_HOST);
        }
        let result = run(&mut cmd);
        result.assert_code(code);
        let json = parse_json(&result);
        assert_eq!(json["sha"], self.head(), "run of another commit: {json:#}");
        (result, json)
    }
}

/// `docker import` of a one-file image (`/etc/base-version` holding `content`) as `reference`, on the
/// daemon only.
pub fn import_image(reference: &str, content: &str) {
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_767_225_600);
    header.set_cksum();
    archive
        .append_data(&mut header, "etc/base-version", content.as_bytes())
        .unwrap();
    let bytes = archive.into_inner().unwrap();
    let mut child = Command::new("docker")
        .args(["import", "-", reference])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker CLI runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "docker import {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// stdout as JSON, or a failure that shows both streams.
#[track_caller]
pub fn parse_json(result: &Run) -> Value {
    serde_json::from_str(result.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
            result.stdout, result.stderr
        )
    })
}

/// The entry of `service` in a `{"sha", "services": [...]}` output.
#[track_caller]
pub fn entry<'a>(json: &'a Value, service: &str) -> &'a Value {
    json["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services array: {json:#}"))
        .iter()
        .find(|s| s["service"] == service)
        .unwrap_or_else(|| panic!("{service} missing from {json:#}"))
}

/// `(service, action)` of every entry, in output order.
pub fn actions(json: &Value) -> Vec<(String, String)> {
    json["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services array: {json:#}"))
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or("<none>").to_string(),
                s["action"].as_str().unwrap_or("<none>").to_string(),
            )
        })
        .collect()
}

/// Every service with `default`, but those named in `except` (in name order, as the output lists them).
pub fn expected(default: &str, except: &[(&str, &str)]) -> Vec<(String, String)> {
    SERVICES
        .iter()
        .map(|&name| {
            let action = except
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(default, |(_, a)| *a);
            (name.to_string(), action.to_string())
        })
        .collect()
}

/// The uncompressed layer digests (`rootfs.diff_ids`) of an image.
pub fn diff_ids(registry: &RegistryHttp, repo: &str, reference: &str) -> Vec<String> {
    registry.config(repo, reference)["rootfs"]["diff_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{repo}:{reference} has no rootfs.diff_ids"))
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// The layer digests of an image's manifest, in order.
pub fn layers(registry: &RegistryHttp, repo: &str, reference: &str) -> Vec<String> {
    registry.manifest_json(repo, reference)["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{repo}:{reference} is not an image manifest"))
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The lines of a `$GITHUB_OUTPUT` file as `key=value` pairs.
pub fn github_outputs(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
