//! Differential conformance of the build context, with the docker CLI as the oracle.
//!
//! Every case is a tree plus a `.dockerignore`, built twice by the real daemon with
//! `FROM scratch` / `COPY . /c/`:
//! - (A) `DOCKER_BUILDKIT=0 docker build -f <tree>/Dockerfile <tree>`: the CLI applies `.dockerignore`
//!   and makes the tar;
//! - (B) the tar of `BuildContext::write_tar` piped into `DOCKER_BUILDKIT=0 docker build -f … -`: the
//!   daemon builds from exactly the bytes ecrbuild would stream.
//!
//! The layers of the two images (read with `docker save`) must be identical entry by entry: name,
//! type, mode, owner, size, contents, link target and mtime (directories the daemon creates itself
//! are compared as "created at build time"). `ecrbuild context --list` must print the paths of the
//! CLI's image plus the Dockerfile and `.dockerignore` (which the daemon removes when they are
//! excluded, for both builds alike).
//!
//! Environment:
//! - `ECRBUILD_DIFF_SEED` (decimal or `0x…`) and `ECRBUILD_DIFF_CASES` pick the generated cases;
//! - `ECRBUILD_DIFF_ONLY=N` runs only case N of that seed (to reproduce one report);
//! - `ECRBUILD_DIFF_JOBS` is how many cases run at once (default 2);
//! - `ECRBUILD_DIFF_KEEP=1` keeps the trees of failing cases and prints where they are.
//!
//! Needs the test rig's Docker daemon: `bash scripts/rig.sh up`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecrbuild::context::{BuildContext, ContextError};

const DEFAULT_SEED: u64 = 0xEC2B_0D1F_F5EE_D001;
const DEFAULT_CASES: usize = 240;
const DEFAULT_JOBS: usize = 2;
const DOCKERFILE_BODY: &[u8] = b"FROM scratch\nCOPY . /c/\n";
/// Mtime of everything the cases create unless they pick one (2017-07-14).
const DEFAULT_MTIME: i64 = 1_500_000_000;
const SETUP: &str = "start the test rig with `bash scripts/rig.sh up`";

// ---------------------------------------------------------------------------------------------
// Output and environment

/// Written straight to stderr, so it shows even when the test harness captures output.
fn say(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("0x").or_else(|| raw.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => raw.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={raw:?} is not a number (decimal or 0x-hex)")))
}

fn require_daemon() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    let check = CHECK.get_or_init(|| {
        match Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(err) => Err(format!("cannot run `docker`: {err}")),
        }
    });
    if let Err(detail) = check {
        panic!("the Docker daemon is not reachable ({detail}); {SETUP}");
    }
}

// ---------------------------------------------------------------------------------------------
// A small, stable PRNG (SplitMix64), so a seed means the same cases on every machine and version.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Inclusive range.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn case_seed(seed: u64, index: usize) -> u64 {
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    rng.next()
}

// ---------------------------------------------------------------------------------------------
// Cases: a tree description, materialized in a temporary directory

#[derive(Clone, Debug)]
enum Node {
    Dir {
        mode: u32,
        mtime: i64,
    },
    File {
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
    },
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Fifo,
    Socket,
}

#[derive(Clone, Debug)]
struct Case {
    label: String,
    /// How to run this case alone.
    rerun: String,
    /// Parents come before their children.
    entries: Vec<(Vec<u8>, Node)>,
    dockerignore: Option<Vec<u8>>,
    /// When set, the rules are written to this file and `.dockerignore` is a symlink to it.
    dockerignore_link: Option<Vec<u8>>,
    /// The Dockerfile as `-f` names it.
    dockerfile: Vec<u8>,
    /// Its path in the tar (differs when `dockerfile` is a symlink: the CLI resolves it).
    dockerfile_sent: Vec<u8>,
    features: BTreeSet<&'static str>,
}

impl Case {
    fn new(label: impl Into<String>, dockerfile: &[u8]) -> Case {
        let mut case = Case {
            label: label.into(),
            rerun: String::new(),
            entries: Vec::new(),
            dockerignore: None,
            dockerignore_link: None,
            dockerfile: dockerfile.to_vec(),
            dockerfile_sent: dockerfile.to_vec(),
            features: BTreeSet::new(),
        };
        let added = case.add(
            dockerfile,
            Node::File {
                mode: 0o644,
                mtime: DEFAULT_MTIME,
                data: DOCKERFILE_BODY.to_vec(),
            },
        );
        assert!(added);
        case
    }

    /// A hand-written case: `paths` ending in `/` are directories, the others files holding their own name.
    fn simple(label: &str, paths: &[&str], dockerignore: &str) -> Case {
        let mut case = Case::new(label, b"Dockerfile");
        for path in paths {
            let node = match path.strip_suffix('/') {
                Some(dir) => {
                    case.add(
                        dir.as_bytes(),
                        Node::Dir {
                            mode: 0o755,
                            mtime: DEFAULT_MTIME,
                        },
                    );
                    continue;
                }
                None => Node::File {
                    mode: 0o644,
                    mtime: DEFAULT_MTIME,
                    data: path.as_bytes().to_vec(),
                },
            };
            assert!(
                case.add(path.as_bytes(), node),
                "{label}: cannot add {path}"
            );
        }
        case.dockerignore = Some(dockerignore.as_bytes().to_vec());
        case.rerun = format!("cargo test --test context_differential -- --nocapture  # {label}");
        case
    }

    fn get(&self, path: &[u8]) -> Option<&Node> {
        self.entries.iter().find(|(p, _)| p == path).map(|(_, n)| n)
    }

    /// Add `path`, creating missing parents as plain directories. False when the path exists or
    /// lies below something that is not a directory.
    fn add(&mut self, path: &[u8], node: Node) -> bool {
        if path.is_empty() || self.get(path).is_some() {
            return false;
        }
        let parents: Vec<Vec<u8>> = path
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'/')
            .map(|(i, _)| path[..i].to_vec())
            .collect();
        for parent in &parents {
            match self.get(parent) {
                None | Some(Node::Dir { .. }) => {}
                Some(_) => return false,
            }
        }
        for parent in parents {
            if self.get(&parent).is_none() {
                self.entries.push((
                    parent,
                    Node::Dir {
                        mode: 0o755,
                        mtime: DEFAULT_MTIME,
                    },
                ));
            }
        }
        self.entries.push((path.to_vec(), node));
        true
    }

    fn files(&self) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every name is printable UTF-8, so `context --list` output can be compared line by line.
    fn names_are_listable(&self) -> bool {
        self.entries
            .iter()
            .all(|(p, _)| std::str::from_utf8(p).is_ok_and(|s| !s.contains(['\n', '\r'])))
    }

    fn materialize(&self, root: &Path) -> io::Result<()> {
        for (path, node) in &self.entries {
            let target = root.join(OsStr::from_bytes(path));
            match node {
                Node::Dir { .. } => fs::create_dir(&target)?,
                Node::File { data, .. } => fs::write(&target, data)?,
                Node::Symlink(to) => symlink(OsStr::from_bytes(to), &target)?,
                Node::HardLink(to) => fs::hard_link(root.join(OsStr::from_bytes(to)), &target)?,
                Node::Fifo => {
                    let status = Command::new("mkfifo").arg(&target).status()?;
                    if !status.success() {
                        return Err(io::Error::other(format!("mkfifo {}", target.display())));
                    }
                }
                Node::Socket => {
                    std::os::unix::net::UnixListener::bind(&target)?;
                }
            }
        }
        if let Some(text) = &self.dockerignore {
            let file = self
                .dockerignore_link
                .as_deref()
                .unwrap_or(b".dockerignore");
            let path = root.join(OsStr::from_bytes(file));
            fs::write(&path, text)?;
            set_mtime(&path, DEFAULT_MTIME)?;
            if self.dockerignore_link.is_some() {
                symlink(OsStr::from_bytes(file), root.join(".dockerignore"))?;
            }
        }
        // Children first, so setting a directory's mtime is the last thing that touches it.
        for (path, node) in self.entries.iter().rev() {
            let target = root.join(OsStr::from_bytes(path));
            match node {
                Node::Dir { mode, mtime } | Node::File { mode, mtime, .. } => {
                    fs::set_permissions(&target, fs::Permissions::from_mode(*mode))?;
                    set_mtime(&target, *mtime)?;
                }
                _ => {}
            }
        }
        // The root becomes /c/ (created at build time); keep it clearly apart from build time.
        set_mtime(root, DEFAULT_MTIME)
    }

    fn describe(&self) -> String {
        let mut out = format!("Dockerfile: -f {}", show(&self.dockerfile));
        if self.dockerfile_sent != self.dockerfile {
            out.push_str(&format!(" (a symlink to {})", show(&self.dockerfile_sent)));
        }
        out.push('\n');
        match &self.dockerignore {
            None => out.push_str(".dockerignore: (none)\n"),
            Some(text) => {
                match &self.dockerignore_link {
                    Some(file) => out.push_str(&format!(
                        ".dockerignore (a symlink to {}), bytes, one line each:\n",
                        show(file)
                    )),
                    None => out.push_str(".dockerignore (bytes, one line each):\n"),
                }
                for (n, line) in text.split(|&b| b == b'\n').enumerate() {
                    let shown = if line.len() > 200 {
                        format!("{}… ({} bytes)", quote(&line[..60]), line.len())
                    } else {
                        quote(line)
                    };
                    out.push_str(&format!("  {:>3} | {shown}\n", n + 1));
                }
            }
        }
        out.push_str("tree:\n");
        for (path, node) in &self.entries {
            let line = match node {
                Node::Dir { mode, mtime } => {
                    format!("dir  {mode:04o} {}/  mtime {mtime}", show(path))
                }
                Node::File { mode, mtime, data } => format!(
                    "file {mode:04o} {}  ({} bytes, mtime {mtime})",
                    show(path),
                    data.len()
                ),
                Node::Symlink(to) => format!("link      {} -> {}", show(path), show(to)),
                Node::HardLink(to) => format!("hard      {} => {}", show(path), show(to)),
                Node::Fifo => format!("fifo      {}", show(path)),
                Node::Socket => format!("sock      {}", show(path)),
            };
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let time = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    fs::File::open(path)?.set_modified(time)
}

fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

fn quote(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("b\"{}\"", bytes.escape_ascii()),
    }
}

// ---------------------------------------------------------------------------------------------
// The generator

const FILE_NAMES: &[&str] = &[
    "a",
    "b",
    "ab",
    "abc",
    "x.go",
    "main.go",
    "y.md",
    "README.md",
    "README-secret.md",
    "README-x.md",
    "notes.txt",
    "temp",
    "temp1",
    "tempa",
    "app.log",
    ".hidden",
    ".env",
    "Dockerfile",
    ".dockerignore",
    "file with space",
    " lead",
    "trail ",
    "é.txt",
    "日本語.md",
    "[b]",
    "a[1]",
    "#h",
    "a#b",
    "!bang",
    "st*r",
    "q?m",
    "back\\s",
    "-",
    "a.b.c",
    "UPPER",
    "Ω",
    "a+b",
    "(p)",
    "x|y",
    "{c}",
    "^h",
    "$v",
];
const DIR_NAMES: &[&str] = &[
    "src",
    "a",
    "b",
    "build",
    "node_modules",
    "temp",
    "tempdir",
    "sub dir",
    "ünï",
    "[d]",
    ".git",
    "x",
    "deep",
    "docs",
    "vendor",
    "c",
    "#d",
    "Dockerfile",
    "keep",
];
const NESTED_DOCKERFILES: &[&str] = &[
    "docker/Dockerfile",
    "build/app.Dockerfile",
    "a/b/Dockerfile",
    "Dockerfile.dev",
    "[x].Dockerfile",
    "sub dir/Dockerfile",
];
const FILE_MODES: &[u32] = &[
    0o644, 0o644, 0o644, 0o755, 0o755, 0o600, 0o700, 0o444, 0o640, 0o777, 0o4755, 0o2755, 0o1644,
    0o000,
];
const DIR_MODES: &[u32] = &[
    0o755, 0o755, 0o755, 0o700, 0o775, 0o750, 0o1777, 0o555, 0o2775,
];
const SPECIAL_MTIMES: &[i64] = &[0, 1, 8_589_934_599, -86_400, 4_102_444_800];
const SPECIAL_PATTERNS: &[&str] = &[
    "*",
    "**",
    "**/*",
    ".*",
    "*/",
    "*.go",
    "**/*.go",
    "**/*.md",
    "*.md",
    "!README*.md",
    "*/temp*",
    "*/*/temp*",
    "temp?",
    "**/temp*",
    "src/**",
    "src/**/*.go",
    "**/node_modules",
    "a/**/b",
    "[a-c]*",
    "[^a]*",
    "[!.]*",
    "?",
    "??",
    ".",
    "./",
    "/",
    "**/",
    "#h",
    "\\#h",
    "\\!bang",
    "st\\*r",
    "q\\?m",
    "back\\\\s",
    "[[]b]",
    "a\\[1]",
    "\\[d\\]",
    "*\\ *",
    "file with space",
    "é*",
    "日本*",
    "k?",
    "[]a]",
    "x/../a",
    "a/./b",
    "a//b",
    "../a",
    "/../a",
    "**/b/**",
    "*/*",
    "*/*/*",
    "**/.*",
    "keep",
];
const MALFORMED_PATTERNS: &[&str] = &[
    "[",
    "a[b",
    "[a-",
    "\\",
    "a\\",
    "!",
    "! ",
    "[^",
    "[]",
    "[z-a]",
    "[a-z",
    "**[",
    "(a",
    "a)",
    "[[:foo:]]",
    "x{2",
    "a|",
    "[\\",
];
const FRAGMENTS: &[&str] = &[
    "*", "?", "[a-c]", "[^x]", "[!.]", "**", "a", "b", "temp", ".go", ".md", "/", "src", "\\*",
    "é", "#", " ", "d", "[b]", ".",
];

fn gen_case(seed: u64, index: usize) -> Case {
    let mut rng = Rng(case_seed(seed, index));
    let dockerfile = if rng.percent(80) {
        "Dockerfile"
    } else {
        rng.pick(NESTED_DOCKERFILES)
    };
    let label = format!("seed {seed:#x} case {index}");
    let mut case = if rng.percent(5) {
        // -f names a symlink; the CLI sends (and names) the file it points to.
        let mut case = Case::new(label, b"build/real.Dockerfile");
        case.add(
            b"Dockerfile",
            Node::Symlink(b"build/real.Dockerfile".to_vec()),
        );
        case.dockerfile = b"Dockerfile".to_vec();
        case.features.insert("tree: Dockerfile is a symlink");
        case
    } else {
        Case::new(label, dockerfile.as_bytes())
    };
    case.rerun = format!(
        "ECRBUILD_DIFF_SEED={seed:#x} ECRBUILD_DIFF_ONLY={index} cargo test --test context_differential generated -- --nocapture"
    );
    if dockerfile != "Dockerfile" {
        case.features.insert("tree: Dockerfile elsewhere (-f)");
    }
    gen_dir(&mut rng, &mut case, b"", 0);
    gen_extras(&mut rng, &mut case);
    if rng.percent(3) {
        case.features.insert("no .dockerignore");
        if rng.percent(50) {
            let file = Node::File {
                mode: 0o644,
                mtime: DEFAULT_MTIME,
                data: b"*\n".to_vec(),
            };
            case.add(b".dockerignore/rules", file);
            case.features.insert("tree: .dockerignore is a directory");
        }
    } else {
        let text = gen_dockerignore(&mut rng, &mut case);
        case.dockerignore = Some(text);
        if rng.percent(4) {
            case.dockerignore_link = Some(b"ignore-rules.txt".to_vec());
            case.features.insert("tree: .dockerignore is a symlink");
        }
    }
    tree_features(&mut case);
    case
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn gen_mtime(rng: &mut Rng, case: &mut Case) -> i64 {
    if rng.percent(4) {
        case.features
            .insert("tree: odd mtimes (epoch, negative, > 2^33)");
        *rng.pick(SPECIAL_MTIMES)
    } else {
        946_684_800 + rng.below(750_000_000) as i64
    }
}

fn gen_data(rng: &mut Rng) -> Vec<u8> {
    match rng.below(100) {
        0..=19 => Vec::new(),
        20..=34 => b"plain text\n".to_vec(),
        35..=96 => {
            let len = rng.range(1, 40);
            rng.bytes(len)
        }
        _ => rng.bytes(70_000),
    }
}

fn gen_dir(rng: &mut Rng, case: &mut Case, dir: &[u8], depth: usize) {
    let count = if depth == 0 {
        rng.range(3, 8)
    } else {
        rng.range(0, 4)
    };
    for _ in 0..count {
        let roll = rng.below(100);
        if roll < 30 && depth < 5 {
            let name = if rng.percent(90) {
                rng.pick(DIR_NAMES)
            } else {
                rng.pick(FILE_NAMES)
            };
            if depth == 0 && *name == ".dockerignore" {
                continue; // see gen_case
            }
            let path = join(dir, name.as_bytes());
            let node = Node::Dir {
                mode: *rng.pick(DIR_MODES),
                mtime: gen_mtime(rng, case),
            };
            if case.add(&path, node) {
                gen_dir(rng, case, &path, depth + 1);
            }
        } else if roll < 80 {
            let name = if rng.percent(90) {
                rng.pick(FILE_NAMES)
            } else {
                rng.pick(DIR_NAMES)
            };
            if depth == 0 && *name == ".dockerignore" {
                continue;
            }
            let node = Node::File {
                mode: *rng.pick(FILE_MODES),
                mtime: gen_mtime(rng, case),
                data: gen_data(rng),
            };
            case.add(&join(dir, name.as_bytes()), node);
        } else if roll < 90 {
            let name = rng.pick(&["link", "ln", "a", "temp", "x.go", "README.md", "l k"]);
            let target = gen_link_target(rng, case, depth);
            case.add(&join(dir, name.as_bytes()), Node::Symlink(target));
        } else if roll < 96 {
            let files = case.files();
            if !files.is_empty() {
                let to = rng.pick(&files).clone();
                let name = rng.pick(&["hard", "h", "a", "temp1", "y.md"]);
                if case.add(&join(dir, name.as_bytes()), Node::HardLink(to)) {
                    case.features.insert("tree: hard links");
                }
            }
        } else if roll < 98 {
            if case.add(&join(dir, b"fifo"), Node::Fifo) {
                case.features.insert("tree: named pipe");
            }
        } else if case.add(&join(dir, b"sock"), Node::Socket) {
            case.features.insert("tree: socket (never sent)");
        }
    }
}

fn gen_link_target(rng: &mut Rng, case: &mut Case, depth: usize) -> Vec<u8> {
    match rng.below(7) {
        0 | 1 => {
            let existing = rng.pick(&case.entries).0.clone();
            case.features.insert("tree: relative symlink");
            ["../".repeat(depth).as_bytes(), &existing].concat()
        }
        2 => {
            case.features.insert("tree: dangling symlink");
            rng.pick(&["missing", "../nowhere/x", "a/b/c/d"])
                .as_bytes()
                .to_vec()
        }
        3 => {
            case.features.insert("tree: absolute symlink");
            b"/etc/passwd".to_vec()
        }
        4 => {
            case.features.insert("tree: dangling symlink");
            case.features.insert("tree: absolute symlink");
            b"/nonexistent/abs".to_vec()
        }
        5 => rng.pick(&[".", "..", "./a", "../.."]).as_bytes().to_vec(),
        _ => rng.pick(FILE_NAMES).as_bytes().to_vec(),
    }
}

fn gen_extras(rng: &mut Rng, case: &mut Case) {
    let file = |mode| Node::File {
        mode,
        mtime: DEFAULT_MTIME,
        data: b"x".to_vec(),
    };
    let dir = || Node::Dir {
        mode: 0o755,
        mtime: DEFAULT_MTIME,
    };
    if rng.percent(6) {
        let path = format!("long-{}/{}", "d".repeat(50), "f".repeat(60));
        if case.add(path.as_bytes(), file(0o644)) {
            case.features.insert("tree: path > 100 bytes");
        }
    }
    if rng.percent(4) {
        let path = format!(
            "{}/{}/{}.go",
            "d".repeat(120),
            "e".repeat(120),
            "f".repeat(40)
        );
        if case.add(path.as_bytes(), file(0o755)) {
            case.features.insert("tree: path > 255 bytes");
        }
    }
    if rng.percent(4) {
        let at = if rng.percent(50) { &b""[..] } else { b"src" };
        if case.add(&join(at, b"k\xff"), file(0o644)) {
            case.features.insert("tree: non-UTF-8 name");
        }
    }
    if rng.percent(2) && case.add(b"dir\xfe/inner", file(0o600)) {
        case.features.insert("tree: non-UTF-8 name");
    }
    if rng.percent(12) {
        case.add(b"empty", dir());
        if rng.percent(50) {
            case.add(b"empty/inner", dir());
        }
    }
    if rng.percent(12) {
        let path = rng.pick(&[
            "deep/a/b/c/d/f.go",
            "deep/a/b/c/d/e/README.md",
            "x/y/z/w/temp",
        ]);
        case.add(path.as_bytes(), file(0o644));
    }
}

fn tree_features(case: &mut Case) {
    let mut found = BTreeSet::new();
    for (path, node) in &case.entries {
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        if name.contains(&b' ') {
            found.insert("tree: names with spaces");
        }
        if std::str::from_utf8(name).is_ok_and(|s| !s.is_ascii()) {
            found.insert("tree: unicode names");
        }
        if name.contains(&b'[') || name.contains(&b']') {
            found.insert("tree: names with brackets");
        }
        if name.contains(&b'#') {
            found.insert("tree: names with #");
        }
        if name.starts_with(b".") {
            found.insert("tree: dotfiles");
        }
        if path.iter().filter(|&&b| b == b'/').count() >= 4 {
            found.insert("tree: depth >= 5");
        }
        match node {
            Node::File { mode, .. } if mode & 0o111 != 0 => {
                found.insert("tree: executable files");
            }
            Node::Dir { .. } => {
                let prefix = [path.as_slice(), b"/"].concat();
                if !case.entries.iter().any(|(p, _)| p.starts_with(&prefix)) {
                    found.insert("tree: empty directories");
                }
            }
            _ => {}
        }
    }
    case.features.extend(found);
}

fn gen_dockerignore(rng: &mut Rng, case: &mut Case) -> Vec<u8> {
    let paths: Vec<Vec<u8>> = case.entries.iter().map(|(p, _)| p.clone()).collect();
    let mut features = BTreeSet::new();
    let mut lines: Vec<Vec<u8>> = (0..rng.range(1, 6))
        .map(|_| gen_line(rng, &paths, &mut features))
        .collect();

    // Re-include something inside an excluded directory (or, the other way round, see the later
    // exclusion win).
    let nested: Vec<&Vec<u8>> = paths.iter().filter(|p| p.contains(&b'/')).collect();
    if !nested.is_empty() && rng.percent(40) {
        let inner = (*rng.pick(&nested)).clone();
        let slashes: Vec<usize> = (0..inner.len()).filter(|&i| inner[i] == b'/').collect();
        let dir = inner[..*rng.pick(&slashes)].to_vec();
        let exclusion = if rng.percent(60) {
            dir
        } else {
            pattern_for(rng, &dir, &mut features)
        };
        let exception = if rng.percent(60) {
            inner
        } else {
            pattern_for(rng, &inner, &mut features)
        };
        let first = rng.below(lines.len() + 1);
        lines.insert(first, exclusion);
        let second = rng.range(first + 1, lines.len());
        lines.insert(second, [b"!", exception.as_slice()].concat());
        if rng.percent(20) {
            // The exclusion again, after the exception: it wins.
            lines.push(lines[first].clone());
            features.insert("rule: exception overridden by a later exclusion");
        }
        features.insert("rule: re-include inside an excluded directory");
    }
    if rng.percent(12) {
        let parent = case
            .dockerfile_sent
            .rsplit_once_slash()
            .map(|(dir, _)| dir.to_vec())
            .unwrap_or_else(|| b"*".to_vec());
        let options = [
            case.dockerfile.clone(),
            case.dockerfile_sent.clone(),
            b"*".to_vec(),
            b"**/*Dockerfile*".to_vec(),
            b"Dockerfile*".to_vec(),
            parent,
        ];
        let line = rng.pick(&options).clone();
        insert_random(rng, &mut lines, line);
        features.insert("rule: Dockerfile excluded");
    }
    if rng.percent(12) {
        let line = rng.pick(&[".dockerignore", ".*", "*", "**/.dockerignore", ".docker*"]);
        insert_random(rng, &mut lines, line.as_bytes().to_vec());
        features.insert("rule: .dockerignore excluded");
    }
    if rng.percent(15) {
        let line = rng.pick(&["# a comment", "#h", "#!README.md", "#*"]);
        insert_random(rng, &mut lines, line.as_bytes().to_vec());
        features.insert("syntax: column-0 comment");
    }
    if rng.percent(10) {
        let line = rng.pick(&[" #h", "\t#h", "  #d", " # a"]);
        insert_random(rng, &mut lines, line.as_bytes().to_vec());
        features.insert("syntax: ' #' is not a comment");
    }
    if rng.percent(12) {
        let line = rng.pick(&["", "   ", "\t", " \t "]);
        insert_random(rng, &mut lines, line.as_bytes().to_vec());
        features.insert("syntax: blank lines");
    }
    if rng.percent(3) {
        let line = rng.pick(MALFORMED_PATTERNS);
        insert_random(rng, &mut lines, line.as_bytes().to_vec());
        features.insert("syntax: malformed pattern");
    }
    if rng.percent(2) {
        // Around bufio.Scanner's 64 KiB token limit.
        let len = *rng.pick(&[65_534, 65_535, 65_536, 70_000]);
        insert_random(rng, &mut lines, vec![b'z'; len]);
        features.insert("syntax: line near the 64 KiB limit");
    }
    if lines.len() > 1 && rng.percent(3) {
        let at = rng.range(1, lines.len() - 1);
        lines[at].splice(0..0, *b"\xEF\xBB\xBF");
        features.insert("syntax: BOM on a later line (not stripped)");
    }
    if rng.percent(2) {
        lines = vec![rng.pick(&["", "# only a comment"]).as_bytes().to_vec()];
        features.insert("syntax: empty .dockerignore");
    }
    for line in &lines {
        if line.first() == Some(&b'#') {
            features.insert("syntax: column-0 comment");
        }
    }
    let separator: &[u8] = if rng.percent(6) {
        features.insert("syntax: CRLF line ends");
        b"\r\n"
    } else {
        b"\n"
    };
    let mut text = lines.join(separator);
    if rng.percent(70) {
        text.extend_from_slice(separator);
    }
    if rng.percent(8) {
        text.splice(0..0, *b"\xEF\xBB\xBF");
        features.insert("syntax: UTF-8 BOM");
    }
    case.features.extend(features);
    text
}

trait SplitSlash {
    fn rsplit_once_slash(&self) -> Option<(&[u8], &[u8])>;
}

impl SplitSlash for Vec<u8> {
    fn rsplit_once_slash(&self) -> Option<(&[u8], &[u8])> {
        let at = self.iter().rposition(|&b| b == b'/')?;
        Some((&self[..at], &self[at + 1..]))
    }
}

fn insert_random(rng: &mut Rng, lines: &mut Vec<Vec<u8>>, line: Vec<u8>) {
    let at = rng.below(lines.len() + 1);
    lines.insert(at, line);
}

fn gen_line(rng: &mut Rng, paths: &[Vec<u8>], features: &mut BTreeSet<&'static str>) -> Vec<u8> {
    let mut body = match rng.below(10) {
        0..=5 => {
            let path = rng.pick(paths).clone();
            pattern_for(rng, &path, features)
        }
        6..=7 => {
            let count = rng.range(1, 4);
            (0..count)
                .map(|_| rng.pick(FRAGMENTS).as_bytes())
                .collect::<Vec<_>>()
                .concat()
        }
        _ => rng.pick(SPECIAL_PATTERNS).as_bytes().to_vec(),
    };
    if rng.percent(25) {
        body = cleaning_noise(rng, body, features);
    }
    let mut line = Vec::new();
    if rng.percent(10) {
        line.extend_from_slice(whitespace(rng, features));
        features.insert("syntax: surrounding whitespace trimmed");
    }
    if rng.percent(30) {
        line.push(b'!');
        features.insert("rule: ! exception");
        if rng.percent(15) {
            line.push(b' ');
            features.insert("syntax: '! x' (space after !)");
        }
    }
    line.extend_from_slice(&body);
    if rng.percent(10) {
        line.extend_from_slice(whitespace(rng, features));
        features.insert("syntax: surrounding whitespace trimmed");
    }
    line
}

/// Mostly ASCII blanks; sometimes what Go's `strings.TrimSpace` also trims (VT, FF, NEL, NBSP,
/// Unicode spaces) or does not (a zero-width space).
fn whitespace(rng: &mut Rng, features: &mut BTreeSet<&'static str>) -> &'static [u8] {
    if rng.percent(20) {
        features.insert("syntax: VT/FF/Unicode whitespace");
        rng.pick(&[
            "\x0b", "\x0c", "\u{85}", "\u{a0}", "\u{2003}", "\u{3000}", "\u{200b}",
        ])
        .as_bytes()
    } else {
        rng.pick(&[" ", "\t", "  ", " \t "]).as_bytes()
    }
}

/// A pattern aimed at `path`: some components replaced by wildcards, classes or escapes, maybe
/// cut to a parent directory, maybe with `**`.
fn pattern_for(rng: &mut Rng, path: &[u8], features: &mut BTreeSet<&'static str>) -> Vec<u8> {
    let mut comps: Vec<Vec<u8>> = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
    if comps.len() > 1 && rng.percent(30) {
        let keep = rng.range(1, comps.len() - 1);
        comps.truncate(keep);
        features.insert("rule: pattern names a parent directory");
    }
    let mut out: Vec<Vec<u8>> = comps
        .into_iter()
        .map(|c| mutate_component(rng, c, features))
        .collect();
    match rng.below(12) {
        0 => {
            let drop = rng.below(out.len());
            out.drain(..drop);
            out.insert(0, b"**".to_vec());
            features.insert("glob: ** at start");
        }
        1 if out.len() >= 2 => {
            let at = rng.range(1, out.len() - 1);
            if rng.percent(50) {
                out[at] = b"**".to_vec();
            } else {
                out.insert(at, b"**".to_vec());
            }
            features.insert("glob: ** in the middle");
        }
        2 => {
            if rng.percent(50) && out.len() > 1 {
                out.pop();
            }
            out.push(b"**".to_vec());
            features.insert("glob: ** at end");
        }
        _ => {}
    }
    out.join(&b'/')
}

fn escape_literal(c: char) -> String {
    if matches!(c, '*' | '?' | '[' | '\\') {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

fn mutate_component(
    rng: &mut Rng,
    comp: Vec<u8>,
    features: &mut BTreeSet<&'static str>,
) -> Vec<u8> {
    let Ok(text) = String::from_utf8(comp.clone()) else {
        return if rng.percent(50) { b"*".to_vec() } else { comp };
    };
    let chars: Vec<char> = text.chars().collect();
    let literal = |chars: &[char]| chars.iter().map(|&c| escape_literal(c)).collect::<String>();
    let at = rng
        .below(chars.len().max(1))
        .min(chars.len().saturating_sub(1));
    let out = match rng.below(100) {
        0..=11 => {
            features.insert("glob: *");
            "*".to_string()
        }
        12..=21 => {
            features.insert("glob: *");
            let cut = rng.range(0, chars.len());
            format!("{}*", literal(&chars[..cut]))
        }
        22..=29 => {
            features.insert("glob: *");
            let cut = rng.range(0, chars.len());
            format!("*{}", literal(&chars[cut..]))
        }
        30..=39 if !chars.is_empty() => {
            features.insert("glob: ?");
            format!("{}?{}", literal(&chars[..at]), literal(&chars[at + 1..]))
        }
        40..=53 if !chars.is_empty() => {
            let c = chars[at];
            let class = if matches!(c, ']' | '\\' | '-' | '^' | '[' | '!') {
                features.insert("glob: ?");
                "?".to_string()
            } else {
                match rng.below(6) {
                    0 => {
                        features.insert("glob: [abc]");
                        format!("[{c}xz]")
                    }
                    1 => {
                        features.insert("glob: [a-z]");
                        if c.is_ascii_lowercase() {
                            "[a-z]".to_string()
                        } else if c.is_ascii_digit() {
                            "[0-9]".to_string()
                        } else {
                            format!("[{c}-{c}]")
                        }
                    }
                    2 => {
                        features.insert("glob: [^a]");
                        format!("[^{}]", if c == 'q' { 'r' } else { 'q' })
                    }
                    3 => {
                        features.insert("glob: [^a]");
                        format!("[^{c}]")
                    }
                    4 => {
                        features.insert("glob: [!a]");
                        format!("[!{}]", if c == 'q' { 'r' } else { 'q' })
                    }
                    _ => {
                        features.insert("glob: [!a]");
                        format!("[!{c}]")
                    }
                }
            };
            format!(
                "{}{class}{}",
                literal(&chars[..at]),
                literal(&chars[at + 1..])
            )
        }
        54..=61 if !chars.is_empty() => {
            // Escaping punctuation is what users do; `\` before a letter or a non-ASCII character
            // reaches docker's regexp engine as an invalid escape, an error case worth a few tries.
            let punctuation: Vec<usize> = (0..chars.len())
                .filter(|&i| chars[i].is_ascii() && !chars[i].is_ascii_alphanumeric())
                .collect();
            let at = match punctuation.is_empty() {
                false => *rng.pick(&punctuation),
                true if rng.percent(15) => at,
                true => return literal(&chars).into_bytes(),
            };
            features.insert("glob: \\ escape");
            format!(
                "{}\\{}{}",
                literal(&chars[..at]),
                chars[at],
                literal(&chars[at + 1..])
            )
        }
        _ => literal(&chars),
    };
    out.into_bytes()
}

fn cleaning_noise(rng: &mut Rng, body: Vec<u8>, features: &mut BTreeSet<&'static str>) -> Vec<u8> {
    match rng.below(8) {
        0 => {
            features.insert("clean: /x");
            [b"/", body.as_slice()].concat()
        }
        1 => {
            features.insert("clean: ./x");
            [b"./", body.as_slice()].concat()
        }
        2 => {
            features.insert("clean: x/");
            [body.as_slice(), b"/"].concat()
        }
        3 => {
            features.insert("clean: x//y");
            match body.iter().position(|&b| b == b'/') {
                Some(at) => [&body[..at], b"//", &body[at + 1..]].concat(),
                None => [b"a//", body.as_slice()].concat(),
            }
        }
        4 => {
            features.insert("clean: x/../y");
            let name = rng.pick(&["x", "src", "zz", "a"]);
            [name.as_bytes(), b"/../", body.as_slice()].concat()
        }
        5 => {
            features.insert("clean: x/./y");
            match body.iter().position(|&b| b == b'/') {
                Some(at) => [&body[..at], b"/./", &body[at + 1..]].concat(),
                None => [b"./././", body.as_slice()].concat(),
            }
        }
        6 => {
            features.insert("clean: ../x");
            [b"../", body.as_slice()].concat()
        }
        _ => {
            features.insert("clean: /x");
            [b"//", body.as_slice()].concat()
        }
    }
}

/// What the generator must reach with the default case count (so a change cannot quietly drop a rule).
const REQUIRED_FEATURES: &[&str] = &[
    "syntax: UTF-8 BOM",
    "syntax: column-0 comment",
    "syntax: ' #' is not a comment",
    "syntax: surrounding whitespace trimmed",
    "syntax: blank lines",
    "syntax: CRLF line ends",
    "syntax: '! x' (space after !)",
    "syntax: malformed pattern",
    "rule: ! exception",
    "rule: re-include inside an excluded directory",
    "rule: exception overridden by a later exclusion",
    "rule: pattern names a parent directory",
    "rule: Dockerfile excluded",
    "rule: .dockerignore excluded",
    "clean: /x",
    "clean: ./x",
    "clean: x/",
    "clean: x//y",
    "clean: x/../y",
    "clean: x/./y",
    "clean: ../x",
    "glob: *",
    "glob: ?",
    "glob: [abc]",
    "glob: [a-z]",
    "glob: [^a]",
    "glob: [!a]",
    "glob: ** at start",
    "glob: ** in the middle",
    "glob: ** at end",
    "glob: \\ escape",
    "tree: names with spaces",
    "tree: unicode names",
    "tree: names with brackets",
    "tree: names with #",
    "tree: dotfiles",
    "tree: empty directories",
    "tree: relative symlink",
    "tree: absolute symlink",
    "tree: dangling symlink",
    "tree: hard links",
    "tree: executable files",
    "tree: named pipe",
    "tree: socket (never sent)",
    "tree: depth >= 5",
    "tree: path > 100 bytes",
    "tree: path > 255 bytes",
    "tree: non-UTF-8 name",
    "tree: odd mtimes (epoch, negative, > 2^33)",
    "tree: Dockerfile elsewhere (-f)",
    "no .dockerignore",
    "syntax: VT/FF/Unicode whitespace",
    "syntax: BOM on a later line (not stripped)",
    "syntax: empty .dockerignore",
    "tree: Dockerfile is a symlink",
    "tree: .dockerignore is a symlink",
];

// ---------------------------------------------------------------------------------------------
// The oracle: two builds, two layers

/// One entry of an image layer, as the daemon stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: Mtime,
    link: Option<Vec<u8>>,
    digest: u64,
    /// PAX records other than path, linkpath, size and times.
    pax: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mtime {
    Exact(i64),
    /// A directory the daemon made itself (a parent of a re-included file, /c/ itself): its mtime
    /// is the build time, which differs between the two builds.
    SetAtBuildTime,
}

impl std::fmt::Display for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            b'0' | b'\0' => "file",
            b'1' => "hardlink",
            b'2' => "symlink",
            b'5' => "dir",
            b'6' => "fifo",
            _ => "other",
        };
        write!(
            f,
            "{kind}({}) {:04o} {}:{} size {}",
            self.kind as char, self.mode, self.uid, self.gid, self.size
        )?;
        match self.mtime {
            Mtime::Exact(t) => write!(f, " mtime {t}")?,
            Mtime::SetAtBuildTime => write!(f, " mtime <build time>")?,
        }
        if let Some(link) = &self.link {
            write!(f, " -> {}", show(link))?;
        }
        if self.kind == b'0' {
            write!(f, " content #{:016x}", self.digest)?;
        }
        for (key, value) in &self.pax {
            write!(f, " pax {key}={}", quote(value))?;
        }
        Ok(())
    }
}

type Layer = BTreeMap<Vec<u8>, Meta>;

#[derive(Debug)]
enum Side {
    Image(Layer),
    /// `docker build` failed (for B: the daemon rejected ecrbuild's tar).
    BuildFailed(String),
    /// ecrbuild refused the context before sending anything.
    Refused(ContextError),
    /// The test could not read the image it built (no verdict on either side).
    Harness(String),
}

fn clean_stderr(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| {
            let line = line.trim();
            !(line.is_empty()
                || line.starts_with("DEPRECATED: The legacy builder")
                || line.starts_with("BuildKit is currently disabled")
                || line.starts_with("environment-variable.")
                || line.starts_with("Install the buildx")
                || line.starts_with("https://docs.docker.com/go/buildx"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `DOCKER_BUILDKIT=0 docker build -q --no-cache <args>`, with `stdin` as the context when given.
fn docker_build(args: &[&OsStr], stdin: Option<Vec<u8>>) -> Result<String, String> {
    let mut child = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--no-cache", "--rm"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run docker build: {err}"))?;
    let writer = stdin.map(|bytes| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })
    });
    let out = child
        .wait_with_output()
        .map_err(|err| format!("docker build: {err}"))?;
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.lines().rev().find(|l| l.starts_with("sha256:"));
    match (out.status.success(), id) {
        (true, Some(id)) => Ok(id.trim().to_string()),
        _ => Err(format!(
            "docker build failed ({}): {}",
            out.status,
            clean_stderr(&out.stderr)
        )),
    }
}

/// Builds and `docker save` hold this shared; `docker rmi` holds it exclusively. Two cases can
/// produce the same layer (everything excluded, built in the same second), and removing one image
/// while the other one is being saved makes the save fail. Removals are batched so that the
/// exclusive lock is rare.
static IMAGES: RwLock<()> = RwLock::new(());
static TO_REMOVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn remove_images(ids: &[String]) {
    let batch = {
        let mut pending = TO_REMOVE.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend(ids.iter().cloned());
        if pending.len() < 60 {
            return;
        }
        std::mem::take(&mut *pending)
    };
    remove_now(batch);
}

fn flush_removals() {
    let batch = std::mem::take(&mut *TO_REMOVE.lock().unwrap_or_else(|e| e.into_inner()));
    remove_now(batch);
}

fn remove_now(mut ids: Vec<String>) {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let _exclusive = IMAGES.write().unwrap_or_else(|e| e.into_inner());
    let _ = Command::new("docker")
        .arg("rmi")
        .args(&ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn digest(data: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

/// The entries of the image's single layer, read from `docker save`.
fn read_layer(id: &str, root: &Path, started: i64) -> Result<Layer, String> {
    let mut child = Command::new("docker")
        .args(["save", id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run docker save: {err}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let parsed = parse_save(&mut stdout, root, started);
    // The tar ends before the stream does (record padding): read it all, or docker dies of SIGPIPE.
    let _ = io::copy(&mut stdout, &mut io::sink());
    let out = child
        .wait_with_output()
        .map_err(|err| format!("docker save: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker save {id} failed ({}): {} {}",
            out.status,
            clean_stderr(&out.stderr),
            parsed.err().map(|e| e.to_string()).unwrap_or_default()
        ));
    }
    let (layers, layer) = parsed.map_err(|err| format!("reading docker save {id}: {err}"))?;
    if layers != 1 {
        return Err(format!(
            "image {id} has {layers} layers; expected the one COPY layer"
        ));
    }
    Ok(layer)
}

fn parse_save(input: impl Read, root: &Path, started: i64) -> io::Result<(usize, Layer)> {
    let mut outer = tar::Archive::new(input);
    let mut layers = 0;
    let mut layer = Layer::new();
    for entry in outer.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        if !path.ends_with(b"layer.tar") {
            continue;
        }
        layers += 1;
        let mut inner = tar::Archive::new(&mut entry);
        for item in inner.entries()? {
            let mut item = item?;
            let name = item.path_bytes().into_owned();
            let link = item.link_name_bytes().map(|l| l.into_owned());
            let header = item.header().clone();
            let mut mtime = header.mtime()? as i64;
            let mut pax = Vec::new();
            if let Some(records) = item.pax_extensions()? {
                for record in records {
                    let record = record?;
                    let key = String::from_utf8_lossy(record.key_bytes()).into_owned();
                    match key.as_str() {
                        "mtime" => {
                            let value = String::from_utf8_lossy(record.value_bytes()).into_owned();
                            let whole = value.split('.').next().unwrap_or("0");
                            mtime = whole.parse().unwrap_or(mtime);
                        }
                        "path" | "linkpath" | "size" | "atime" | "ctime" => {}
                        _ => pax.push((key, record.value_bytes().to_vec())),
                    }
                }
            }
            let mut data = Vec::new();
            item.read_to_end(&mut data)?;
            let kind = header.entry_type().as_byte();
            let mtime = if kind == b'5' {
                classify_dir_mtime(&name, mtime, root, started)
            } else {
                Mtime::Exact(mtime)
            };
            let meta = Meta {
                kind,
                mode: header.mode()? & 0o7777,
                uid: header.uid()?,
                gid: header.gid()?,
                size: data.len() as u64,
                mtime,
                link,
                digest: digest(&data),
                pax,
            };
            let mut key = name;
            if key.ends_with(b"/") && key.len() > 1 {
                key.pop();
            }
            layer.insert(key, meta);
        }
    }
    Ok((layers, layer))
}

fn classify_dir_mtime(name: &[u8], mtime: i64, root: &Path, started: i64) -> Mtime {
    let rel = name
        .strip_prefix(b"c")
        .map(|rest| rest.strip_prefix(b"/").unwrap_or(rest))
        .unwrap_or(name);
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    let on_disk = fs::symlink_metadata(root.join(OsStr::from_bytes(rel)))
        .map(|m| m.mtime())
        .ok();
    if on_disk != Some(mtime) && (mtime - started).abs() < 3600 {
        Mtime::SetAtBuildTime
    } else {
        Mtime::Exact(mtime)
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn build_side(
    build: impl FnOnce() -> Result<String, String>,
    root: &Path,
    started: i64,
    ids: &mut Vec<String>,
) -> Side {
    let _shared = IMAGES.read().unwrap_or_else(|e| e.into_inner());
    match build() {
        Ok(id) => {
            ids.push(id.clone());
            match read_layer(&id, root, started) {
                Ok(layer) => Side::Image(layer),
                Err(err) => Side::Harness(err),
            }
        }
        Err(err) => Side::BuildFailed(err),
    }
}

/// (A) the docker CLI on the directory.
fn cli_side(case: &Case, root: &Path, started: i64, ids: &mut Vec<String>) -> Side {
    let dockerfile = root.join(OsStr::from_bytes(&case.dockerfile));
    let build = || {
        docker_build(
            &[OsStr::new("-f"), dockerfile.as_os_str(), root.as_os_str()],
            None,
        )
    };
    build_side(build, root, started, ids)
}

/// (B) ecrbuild's tar on stdin.
fn ecrbuild_side(case: &Case, root: &Path, started: i64, ids: &mut Vec<String>) -> Side {
    let dockerfile = root.join(OsStr::from_bytes(&case.dockerfile));
    let context = match BuildContext::scan(root, &dockerfile) {
        Ok(context) => context,
        Err(err) => return Side::Refused(err),
    };
    let tar = match context.write_tar(Vec::new()) {
        Ok(tar) => tar,
        Err(err) => return Side::BuildFailed(format!("write_tar failed: {err}")),
    };
    let build = || {
        docker_build(
            &[
                OsStr::new("-f"),
                OsStr::new(context.dockerfile_in_tar()),
                OsStr::new("-"),
            ],
            Some(tar),
        )
    };
    build_side(build, root, started, ids)
}

fn diff_layers(cli: &Layer, ours: &Layer) -> String {
    let names: BTreeSet<&Vec<u8>> = cli.keys().chain(ours.keys()).collect();
    let mut out = String::new();
    for name in names {
        match (cli.get(name), ours.get(name)) {
            (Some(a), None) => out.push_str(&format!(
                "  - only in the CLI's image:     {}  [{a}]\n",
                show(name)
            )),
            (None, Some(b)) => out.push_str(&format!(
                "  + only in ecrbuild's image:    {}  [{b}]\n",
                show(name)
            )),
            (Some(a), Some(b)) if a != b => out.push_str(&format!(
                "  ~ {}\n      CLI:      {a}\n      ecrbuild: {b}\n",
                show(name)
            )),
            _ => {}
        }
    }
    out
}

/// `ecrbuild context --list`, with every listed path's parents added.
fn listed_paths(case: &Case, root: &Path) -> Result<BTreeSet<String>, String> {
    let dockerfile = root.join(OsStr::from_bytes(&case.dockerfile));
    let out = Command::new(env!("CARGO_BIN_EXE_ecrbuild"))
        .args(["context", "--list", "--context"])
        .arg(root)
        .arg("-f")
        .arg(&dockerfile)
        .output()
        .map_err(|err| format!("cannot run ecrbuild: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "ecrbuild context --list failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout =
        String::from_utf8(out.stdout).map_err(|_| "--list printed non-UTF-8".to_string())?;
    Ok(with_parents(stdout.lines().map(str::to_string)))
}

fn with_parents(paths: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for path in paths {
        let mut cut = path.as_str();
        all.insert(path.clone());
        while let Some((parent, _)) = cut.rsplit_once('/') {
            all.insert(parent.to_string());
            cut = parent;
        }
    }
    all
}

/// The paths of the CLI's image, plus the Dockerfile and `.dockerignore` (always sent; the daemon
/// removes them from the COPY when they are excluded).
fn expected_list(case: &Case, cli: &Layer, root: &Path) -> BTreeSet<String> {
    let mut paths: Vec<String> = cli
        .keys()
        .filter_map(|name| name.strip_prefix(b"c/"))
        .map(|rel| String::from_utf8_lossy(rel).into_owned())
        .collect();
    paths.push(String::from_utf8_lossy(&case.dockerfile_sent).into_owned());
    if root.join(".dockerignore").symlink_metadata().is_ok() {
        paths.push(".dockerignore".to_string());
    }
    with_parents(paths)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Identical layers (and `--list` agrees).
    Identical,
    /// Both refused the context (the CLI's build failed, ecrbuild refused or failed too).
    BothRefused,
    /// The CLI cannot build ("Cannot locate specified Dockerfile"): the exception it adds for an
    /// excluded Dockerfile does not re-include it (the path is read as a pattern, so
    /// `[x].Dockerfile` means `x.Dockerfile`; or the one-parent check misses `**/dir`). ecrbuild
    /// always sends the Dockerfile, so it builds.
    DockerfileAlwaysSent,
    /// ecrbuild rejects a malformed pattern up front that docker only reports when it happens to
    /// evaluate it; checked: the CLI rejects that pattern too once it has to evaluate it.
    MalformedPatternUpFront,
    Divergence,
}

struct Outcome {
    verdict: Verdict,
    report: String,
    cli_layer: Option<Layer>,
    list_checked: bool,
}

fn run_case(case: &Case) -> Outcome {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case_inner(case)));
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Outcome {
            verdict: Verdict::Divergence,
            report: format!("{}\n  the case panicked: {message}\n", header(case)),
            cli_layer: None,
            list_checked: false,
        }
    })
}

fn header(case: &Case) -> String {
    format!(
        "=== {}\n    rerun: {}\n{}",
        case.label,
        case.rerun,
        case.describe()
    )
}

/// `ecrbuild context --list` against the paths in the CLI's image.
fn compare_listing(case: &Case, cli_layer: &Layer, root: &Path) -> (Verdict, String) {
    match listed_paths(case, root) {
        Err(err) => (Verdict::Divergence, err),
        Ok(listed) => {
            let mut expected = expected_list(case, cli_layer, root);
            let mut listed = listed;
            // The daemon removes an excluded .dockerignore after following the
            // symlink, so its target may be sent and yet missing from the image.
            if let Some(target) = &case.dockerignore_link {
                let target = String::from_utf8_lossy(target).into_owned();
                expected.remove(&target);
                listed.remove(&target);
            }
            if listed == expected {
                (Verdict::Identical, String::new())
            } else {
                let missing: Vec<_> = expected.difference(&listed).collect();
                let extra: Vec<_> = listed.difference(&expected).collect();
                (
                    Verdict::Divergence,
                    format!(
                        "`ecrbuild context --list` disagrees with the CLI's image:\n  not listed: {missing:?}\n  listed but not sent by the CLI: {extra:?}\n"
                    ),
                )
            }
        }
    }
}

fn run_case_inner(case: &Case) -> Outcome {
    let dir = tempfile::Builder::new()
        .prefix("ecrbuild-diff-")
        .tempdir()
        .expect("temporary directory");
    let root = dir.path().to_path_buf();
    case.materialize(&root)
        .unwrap_or_else(|err| panic!("cannot create the tree of {}: {err}", case.label));
    let started = unix_now();
    let mut ids = Vec::new();
    let cli = cli_side(case, &root, started, &mut ids);
    let ours = ecrbuild_side(case, &root, started, &mut ids);
    remove_images(&ids);

    let mut list_checked = false;
    let (verdict, detail) = match (&cli, &ours) {
        (Side::Image(a), Side::Image(b)) => {
            let diff = diff_layers(a, b);
            if !diff.is_empty() {
                (
                    Verdict::Divergence,
                    format!("the two images differ:\n{diff}"),
                )
            } else if case.names_are_listable() {
                list_checked = true;
                compare_listing(case, a, &root)
            } else {
                (Verdict::Identical, String::new())
            }
        }
        (Side::BuildFailed(a), Side::BuildFailed(_) | Side::Refused(_)) => (
            Verdict::BothRefused,
            format!("CLI: {a}\n  ecrbuild: {}", side_error(&ours)),
        ),
        (Side::BuildFailed(a), Side::Image(_))
            if a.contains("Cannot locate specified Dockerfile") =>
        {
            (Verdict::DockerfileAlwaysSent, format!("CLI: {a}"))
        }
        (Side::Image(_), Side::Refused(ContextError::BadPattern { line, source })) => {
            let raw = dockerignore_line(case, *line);
            match cli_rejects_pattern(&raw) {
                Ok(true) => (
                    Verdict::MalformedPatternUpFront,
                    format!("line {line} {}: {source}", quote(&raw)),
                ),
                Ok(false) => (
                    Verdict::Divergence,
                    format!(
                        "ecrbuild rejects .dockerignore line {line} ({source}), but the CLI builds, and accepts that pattern even as the first exclusion\n"
                    ),
                ),
                Err(err) => (Verdict::Divergence, format!("probing line {line}: {err}\n")),
            }
        }
        _ => (
            Verdict::Divergence,
            format!(
                "outcomes differ:\n  CLI:      {}\n  ecrbuild: {}\n",
                side_summary(&cli),
                side_summary(&ours)
            ),
        ),
    };
    let report = if verdict == Verdict::Divergence {
        let mut report = format!("{}result:\n  {detail}", header(case));
        if std::env::var_os("ECRBUILD_DIFF_KEEP").is_some() {
            let kept = dir.keep();
            report.push_str(&format!("  tree kept at {}\n", kept.display()));
        }
        report
    } else {
        detail
    };
    Outcome {
        verdict,
        report,
        cli_layer: match cli {
            Side::Image(layer) => Some(layer),
            _ => None,
        },
        list_checked,
    }
}

fn side_error(side: &Side) -> String {
    match side {
        Side::Image(_) => "built".to_string(),
        Side::BuildFailed(err) => err.clone(),
        Side::Refused(err) => format!("refused: {err}"),
        Side::Harness(err) => format!("test harness error: {err}"),
    }
}

fn side_summary(side: &Side) -> String {
    match side {
        Side::Image(layer) => format!("built an image with {} entries", layer.len()),
        other => side_error(other),
    }
}

/// Line `line` (1-based) of the case's `.dockerignore`, without BOM and line end.
fn dockerignore_line(case: &Case, line: usize) -> Vec<u8> {
    let text = case.dockerignore.as_deref().unwrap_or_default();
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let raw = text
        .split(|&b| b == b'\n')
        .nth(line.saturating_sub(1))
        .unwrap_or_default();
    raw.strip_suffix(b"\r").unwrap_or(raw).to_vec()
}

/// Does the CLI reject `line` when it is the first (hence always evaluated) exclusion?
fn cli_rejects_pattern(line: &[u8]) -> Result<bool, String> {
    // Like ignorefile.ReadAll: trim, drop one `!`, trim again (ASCII only for non-UTF-8 lines).
    let pattern: Vec<u8> = match std::str::from_utf8(line) {
        Ok(text) => {
            let text = text.trim();
            text.strip_prefix('!')
                .unwrap_or(text)
                .trim()
                .as_bytes()
                .to_vec()
        }
        Err(_) => {
            let text = line.trim_ascii();
            text.strip_prefix(b"!")
                .unwrap_or(text)
                .trim_ascii()
                .to_vec()
        }
    };
    if pattern.is_empty() {
        return Ok(true);
    }
    let mut probe = Case::simple("pattern probe", &["f", "d/g"], "");
    // The leading space keeps a pattern that starts with `#` from becoming a comment.
    probe.dockerignore = Some([&b" "[..], &pattern, b"\n"].concat());
    let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
    probe
        .materialize(dir.path())
        .map_err(|err| err.to_string())?;
    let mut ids = Vec::new();
    let side = cli_side(&probe, dir.path(), unix_now(), &mut ids);
    remove_images(&ids);
    match side {
        Side::BuildFailed(err) if err.contains("docker build failed") => Ok(true),
        Side::BuildFailed(err) => Err(err),
        _ => Ok(false),
    }
}

/// Run the cases on `jobs` threads; results in case order.
fn run_all(
    indices: &[usize],
    jobs: usize,
    make: impl Fn(usize) -> Case + Sync,
) -> Vec<(Case, Outcome)> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&index) = indices.get(k) else { break };
                let case = make(index);
                let outcome = run_case(&case);
                if outcome.verdict == Verdict::Divergence {
                    say(&outcome.report);
                }
                results.lock().unwrap().push((index, case, outcome));
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                if finished % 40 == 0 {
                    say(&format!("  … {finished}/{} cases", indices.len()));
                }
            });
        }
    });
    flush_removals();
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(index, _, _)| *index);
    results
        .into_iter()
        .map(|(_, case, outcome)| (case, outcome))
        .collect()
}

fn tally(results: &[(Case, Outcome)]) -> BTreeMap<Verdict, usize> {
    let mut counts = BTreeMap::new();
    for (_, outcome) in results {
        *counts.entry(outcome.verdict).or_insert(0) += 1;
    }
    counts
}

fn fail_on_divergences(results: &[(Case, Outcome)], what: &str) {
    let failures: Vec<&str> = results
        .iter()
        .filter(|(_, o)| o.verdict == Verdict::Divergence)
        .map(|(_, o)| o.report.as_str())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} {what} diverge from the docker CLI:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn generated_contexts_match_the_docker_cli() {
    require_daemon();
    let seed = env_number("ECRBUILD_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let count = env_number("ECRBUILD_DIFF_CASES").map_or(DEFAULT_CASES, |n| n as usize);
    let jobs = env_number("ECRBUILD_DIFF_JOBS").map_or(DEFAULT_JOBS, |n| n as usize);
    let only = env_number("ECRBUILD_DIFF_ONLY").map(|n| n as usize);
    let indices: Vec<usize> = match only {
        Some(index) => vec![index],
        None => (0..count).collect(),
    };
    say(&format!(
        "context differential: seed {seed:#x}, {} case(s){}, {jobs} at a time (set ECRBUILD_DIFF_SEED / ECRBUILD_DIFF_CASES to change)",
        indices.len(),
        only.map_or(String::new(), |i| format!(" (only case {i})")),
    ));
    let started = Instant::now();
    let results = run_all(&indices, jobs, |index| gen_case(seed, index));

    let counts = tally(&results);
    let listed = results.iter().filter(|(_, o)| o.list_checked).count();
    let mut features: BTreeMap<&str, usize> = BTreeMap::new();
    for (case, _) in &results {
        for feature in &case.features {
            *features.entry(feature).or_insert(0) += 1;
        }
    }
    say(&format!(
        "context differential: seed {seed:#x}: {} cases in {:.1} s: {counts:?}; `context --list` checked in {listed}",
        results.len(),
        started.elapsed().as_secs_f64()
    ));
    for (case, outcome) in &results {
        if matches!(
            outcome.verdict,
            Verdict::BothRefused | Verdict::DockerfileAlwaysSent | Verdict::MalformedPatternUpFront
        ) {
            say(&format!(
                "  {:?} in {}: {}",
                outcome.verdict, case.label, outcome.report
            ));
        }
    }
    say(&format!("  coverage (cases per rule): {features:?}"));
    let missing: Vec<&&str> = REQUIRED_FEATURES
        .iter()
        .filter(|f| !features.contains_key(**f))
        .collect();
    if only.is_none() && !missing.is_empty() {
        say(&format!("  not exercised by this seed: {missing:?}"));
    }
    fail_on_divergences(&results, &format!("generated cases (seed {seed:#x})"));
    // Other seeds may miss a rare rule by chance; the default one must reach them all.
    if seed == DEFAULT_SEED && only.is_none() && count >= DEFAULT_CASES {
        assert!(
            missing.is_empty(),
            "the default seed with {count} cases never exercises {missing:?}; the generator lost coverage"
        );
    }
}

/// Expectation on the CLI's image, from Docker's documentation, checked before the comparison so
/// the oracle itself is checked against the documented behaviour.
struct Documented {
    case: Case,
    sent: &'static [&'static str],
    not_sent: &'static [&'static str],
}

fn documented(
    label: &str,
    paths: &[&str],
    dockerignore: &str,
    sent: &'static [&'static str],
    not_sent: &'static [&'static str],
) -> Documented {
    Documented {
        case: Case::simple(label, paths, dockerignore),
        sent,
        not_sent,
    }
}

fn documented_cases() -> Vec<Documented> {
    let temp_tree = &[
        "temp",
        "tempa",
        "temp1",
        "temp12",
        "other.txt",
        "somedir/temporary.txt",
        "somedir/temp/x",
        "somedir/subdir/temp",
        "somedir/subdir/temporary.txt",
        "somedir/a/b/temp",
        "somedir/keep",
    ][..];
    let md_tree = &[
        "README.md",
        "README-secret.md",
        "README-x.md",
        "CHANGES.md",
        "docs/guide.md",
        "main.go",
    ][..];
    vec![
        documented(
            "docs: # comment, */temp*, */*/temp*, temp?",
            temp_tree,
            "# comment\n*/temp*\n*/*/temp*\ntemp?\n",
            &[
                "temp",
                "temp12",
                "other.txt",
                "somedir/a/b/temp",
                "somedir/keep",
            ],
            &[
                "tempa",
                "temp1",
                "somedir/temporary.txt",
                "somedir/temp",
                "somedir/subdir/temp",
                "somedir/subdir/temporary.txt",
            ],
        ),
        documented(
            "docs: **/*.go",
            &[
                "x.go",
                "src/y.go",
                "src/deep/z.go",
                "src/keep.txt",
                "go.mod",
            ],
            "**/*.go\n",
            &["src/keep.txt", "go.mod", "src/deep"],
            &["x.go", "src/y.go", "src/deep/z.go"],
        ),
        documented(
            "docs: *.md, !README*.md",
            md_tree,
            "*.md\n!README*.md\n",
            &[
                "README.md",
                "README-secret.md",
                "README-x.md",
                "docs/guide.md",
                "main.go",
            ],
            &["CHANGES.md"],
        ),
        documented(
            "docs: *.md, !README*.md, README-secret.md",
            md_tree,
            "*.md\n!README*.md\nREADME-secret.md\n",
            &["README.md", "README-x.md", "docs/guide.md"],
            &["CHANGES.md", "README-secret.md"],
        ),
        documented(
            "docs: *.md, README-secret.md, !README*.md",
            md_tree,
            "*.md\nREADME-secret.md\n!README*.md\n",
            &["README.md", "README-secret.md", "README-x.md"],
            &["CHANGES.md"],
        ),
        documented(
            "docs: !README.md before *.md (last match wins)",
            md_tree,
            "!README.md\n*.md\n",
            &["docs/guide.md", "main.go"],
            &["README.md", "CHANGES.md"],
        ),
        documented(
            "docs: *.md then !README.md",
            md_tree,
            "*.md\n!README.md\n",
            &["README.md"],
            &["CHANGES.md", "README-secret.md"],
        ),
        documented(
            "docs: Dockerfile and .dockerignore excluded (sent, but not copied)",
            &["app.txt"],
            "Dockerfile\n.dockerignore\n",
            &["app.txt"],
            &["Dockerfile", ".dockerignore"],
        ),
        documented(
            "docs: /foo/bar and foo/bar are the same (filepath.Clean)",
            &["foo/bar", "foo/baz", "foo/keep", "x/y", "top"],
            "/foo/bar\n./foo//baz\nx/\n",
            &["foo/keep", "top"],
            &["foo/bar", "foo/baz", "x", "x/y"],
        ),
        documented(
            "re-include a file inside an excluded directory",
            &[
                "node_modules/a/index.js",
                "node_modules/keep/k.js",
                "node_modules/keep/other.js",
                "src/app.js",
            ],
            "node_modules\n!node_modules/keep/k.js\n",
            &["node_modules/keep/k.js", "src/app.js"],
            &["node_modules/a", "node_modules/keep/other.js"],
        ),
        documented(
            "column-0 # is a comment, ' #' is a pattern",
            &["#h", "#d/x", "plain"],
            "#h\n #d\n",
            &["#h", "plain"],
            &["#d", "#d/x"],
        ),
        documented(
            "BOM, blank lines, surrounding whitespace, escapes",
            &["st*r", "star", "a b", "[x]", "keep"],
            "\u{feff}  st\\*r  \n\n\t\n a b\n\\[x]\n",
            &["star", "keep"],
            &["st*r", "a b", "[x]"],
        ),
    ]
}

#[test]
fn documented_cases_match_the_docker_cli() {
    require_daemon();
    let cases = documented_cases();
    let indices: Vec<usize> = (0..cases.len()).collect();
    let results = run_all(&indices, DEFAULT_JOBS, |i| cases[i].case.clone());
    let mut wrong = Vec::new();
    for ((case, outcome), doc) in results.iter().zip(&cases) {
        let Some(layer) = &outcome.cli_layer else {
            wrong.push(format!(
                "{}: the CLI did not build: {}",
                case.label, outcome.report
            ));
            continue;
        };
        for path in doc.sent {
            if !layer.contains_key(format!("c/{path}").as_bytes()) {
                wrong.push(format!("{}: the CLI's image lacks {path}", case.label));
            }
        }
        for path in doc.not_sent {
            if layer.contains_key(format!("c/{path}").as_bytes()) {
                wrong.push(format!("{}: the CLI's image has {path}", case.label));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the oracle disagrees with Docker's documentation (is the rig's docker CLI the expected one?):\n{}",
        wrong.join("\n")
    );
    let listed = results.iter().filter(|(_, o)| o.list_checked).count();
    fail_on_divergences(&results, "documented cases");
    assert_eq!(
        listed,
        cases.len(),
        "`context --list` was compared for every documented case"
    );
    say(&format!(
        "context differential: {} documented cases identical, `context --list` matched in all",
        cases.len()
    ));
}

#[test]
fn context_list_prints_what_the_cli_sends() {
    require_daemon();
    // Excluded directories with re-included files, a nested Dockerfile that is excluded, and
    // excluded Dockerfile and .dockerignore: `--list` shows them as sent, the CLI's image lacks them.
    let mut nested = Case::new(
        "context --list: nested, excluded Dockerfile",
        b"docker/app.Dockerfile",
    );
    for path in [
        "docker/other",
        "src/a.go",
        "src/b.txt",
        "build/out/bin",
        "build/out/keep.txt",
    ] {
        nested.add(
            path.as_bytes(),
            Node::File {
                mode: 0o644,
                mtime: DEFAULT_MTIME,
                data: path.as_bytes().to_vec(),
            },
        );
    }
    nested.dockerignore =
        Some(b"docker\nbuild\n!build/out/keep.txt\n*.txt\n!src/b.txt\n.dockerignore\n".to_vec());
    nested.rerun = "cargo test --test context_differential context_list -- --nocapture".to_string();
    let cases = [
        nested,
        Case::simple(
            "context --list: everything excluded but one file",
            &["a/b/c", "a/b/d", "e", ".hidden/x"],
            "*\n!a/b/d\n",
        ),
    ];
    let indices: Vec<usize> = (0..cases.len()).collect();
    let results = run_all(&indices, DEFAULT_JOBS, |i| cases[i].clone());
    fail_on_divergences(&results, "--list cases");
    for (case, outcome) in &results {
        assert!(
            outcome.list_checked,
            "{}: --list was not compared",
            case.label
        );
        let layer = outcome.cli_layer.as_ref().unwrap();
        assert!(
            !layer.contains_key(&[&b"c/"[..], &case.dockerfile].concat())
                && !layer.contains_key(&b"c/.dockerignore"[..]),
            "{}: the daemon should have removed the excluded Dockerfile and .dockerignore",
            case.label
        );
    }
}

/// The comparison is not vacuous: a tar that drops a file, changes a mode and a link target, and
/// adds a file is caught, entry by entry.
#[test]
fn the_comparison_notices_a_tampered_tar() {
    require_daemon();
    let mut case = Case::simple("tampered tar", &["a", "b", "d/e"], "");
    case.add(b"l", Node::Symlink(b"a".to_vec()));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    case.materialize(root).unwrap();
    let started = unix_now();
    let mut ids = Vec::new();
    let Side::Image(cli) = cli_side(&case, root, started, &mut ids) else {
        panic!("the CLI did not build the tampered-tar case");
    };

    let context = BuildContext::scan(root, &root.join("Dockerfile")).unwrap();
    let original = context.write_tar(Vec::new()).unwrap();
    let mut tampered = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(original.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let name = entry.path_bytes().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        match name.as_slice() {
            b"b" => continue,
            b"a" => header.set_mode(0o600),
            b"l" => header.set_link_name("d/e").unwrap(),
            _ => {}
        }
        header.set_cksum();
        tampered.append(&header, data.as_slice()).unwrap();
    }
    let mut extra = tar::Header::new_gnu();
    extra.set_path("x").unwrap();
    extra.set_size(1);
    extra.set_mode(0o644);
    extra.set_mtime(DEFAULT_MTIME as u64);
    extra.set_cksum();
    tampered.append(&extra, &b"x"[..]).unwrap();
    let tar = tampered.into_inner().unwrap();
    let build = || {
        docker_build(
            &[OsStr::new("-f"), OsStr::new("Dockerfile"), OsStr::new("-")],
            Some(tar),
        )
    };
    let ours = build_side(build, root, started, &mut ids);
    remove_images(&ids);
    flush_removals();
    let Side::Image(ours) = ours else {
        panic!("the tampered tar did not build: {}", side_error(&ours));
    };
    let diff = diff_layers(&cli, &ours);
    for expected in [
        "- only in the CLI's image:     c/b",
        "+ only in ecrbuild's image:    c/x",
        "~ c/a",
        "~ c/l",
    ] {
        assert!(
            diff.contains(expected),
            "the diff lacks {expected:?}:\n{diff}"
        );
    }
    assert_eq!(
        diff.lines()
            .filter(|l| l.starts_with("  ~") || l.starts_with("  -") || l.starts_with("  +"))
            .count(),
        4,
        "{diff}"
    );
}
