//! `ecrbuild.toml`: the services of one repository, each a Dockerfile, a context and a repository.
//! Read strictly (an unknown key is an error), so that a typo fails before anything builds, and every
//! error names the file, the line and the key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::identity::{Platform, Registry, Repository};

/// The services file's name, looked for in the current directory, then in the git top level.
pub const FILE_NAME: &str = "ecrbuild.toml";

const TOP_KEYS: &[&str] = &["defaults", "services"];

/// The keys of a service, and of `[defaults]`; errors list them in this order.
const SERVICE_KEYS: &[&str] = &[
    "dockerfile",
    "context",
    "repository",
    "target",
    "build-args",
    "registry",
    "platforms",
];

/// The services file to use: `explicit` (`--config`, relative to `cwd`) if given, which must exist;
/// else `ecrbuild.toml` in `cwd`; else in the git top level containing `cwd` (the nearest ancestor
/// holding `.git`, a directory or a worktree's file); else none.
pub fn locate(explicit: Option<&Path>, cwd: &Path) -> Result<Option<PathBuf>> {
    if let Some(path) = explicit {
        let path = cwd.join(path);
        if path.is_file() {
            return Ok(Some(path));
        }
        let problem = if path.exists() {
            "is not a file"
        } else {
            "does not exist"
        };
        return Err(Error::usage(
            "--config",
            format!("{} {problem}", path.display()),
        ));
    }
    let here = cwd.join(FILE_NAME);
    if here.is_file() {
        return Ok(Some(here));
    }
    let cwd = std::path::absolute(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let top = cwd.ancestors().find(|dir| dir.join(".git").exists());
    Ok(top
        .map(|top| top.join(FILE_NAME))
        .filter(|path| path.is_file()))
}

/// A loaded services file: every service checked, its paths resolved against the file's directory.
#[derive(Debug, Clone)]
pub struct ServicesFile {
    /// The file, as given to [`load`].
    pub path: PathBuf,
    /// The file's directory, absolute: the base of every relative path in it.
    pub dir: PathBuf,
    /// By name, so that every listing and run goes in name order.
    pub services: BTreeMap<String, ServiceSpec>,
}

/// One service: what to build and where to publish it, with `[defaults]` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// `[a-z0-9][a-z0-9_.-]*`: it becomes a log prefix and a CI matrix value.
    pub name: String,
    /// Resolved against the file's directory.
    pub dockerfile: PathBuf,
    /// Resolved against the file's directory; the directory itself by default.
    pub context: PathBuf,
    /// A checked repository name; the service name by default.
    pub repository: String,
    pub target: Option<String>,
    /// `[defaults]`' build args, with the service's on top key by key.
    pub build_args: BTreeMap<String, String>,
    /// A checked registry host (lowercase, no scheme), when the file names one.
    pub registry: Option<String>,
    /// Checked `OS/ARCH[/VARIANT]` values, each once; empty: the daemon's own platform.
    pub platforms: Vec<String>,
}

/// Read and check a services file. Errors have exit code 2 and name the file, the line and the key.
pub fn load(path: &Path) -> Result<ServicesFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        detail: format!("cannot read it: {e}"),
    })?;
    from_text(path, &text)
}

fn from_text(path: &Path, text: &str) -> Result<ServicesFile> {
    let source = Source {
        file: path.display().to_string(),
        text,
    };
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let dir = std::path::absolute(parent)
        .map_err(|e| source.error(None, "", format!("cannot resolve its directory: {e}")))?;
    let services = parse(&source, &dir)?;
    Ok(ServicesFile {
        path: path.to_path_buf(),
        dir,
        services,
    })
}

impl ServicesFile {
    /// The services named (each once, in name order), or all of them when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&ServiceSpec>> {
        if names.is_empty() {
            return Ok(self.services.values().collect());
        }
        let mut chosen = BTreeMap::new();
        for name in names {
            let spec = self.services.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.services.keys().map(String::as_str).collect();
                Error::usage(
                    "--service",
                    format!(
                        "no service {name:?} in {}; its services are {}",
                        self.path.display(),
                        known.join(", ")
                    ),
                )
            })?;
            chosen.insert(name.as_str(), spec);
        }
        Ok(chosen.into_values().collect())
    }
}

/// `ecrbuild services`: `NAME\tREPOSITORY\tDOCKERFILE\tCONTEXT`, one line per service, paths relative
/// to the file's directory when under it.
pub fn listing(file: &ServicesFile) -> String {
    let shown = |path: &Path| match path.strip_prefix(&file.dir) {
        Ok(relative) if relative.as_os_str().is_empty() => ".".to_string(),
        Ok(relative) => relative.display().to_string(),
        Err(_) => path.display().to_string(),
    };
    file.services
        .values()
        .map(|s| {
            format!(
                "{}\t{}\t{}\t{}\n",
                s.name,
                s.repository,
                shown(&s.dockerfile),
                shown(&s.context)
            )
        })
        .collect()
}

/// The file as written: every key optional here; [`resolve`] applies the rules.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with [defaults] and [services.NAME] tables"
)]
struct RawFile {
    #[serde(default)]
    defaults: RawService,
    #[serde(default)]
    services: BTreeMap<Spanned<String>, RawService>,
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a table of service keys"
)]
struct RawService {
    dockerfile: Option<Spanned<String>>,
    context: Option<Spanned<String>>,
    repository: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    build_args: Option<BTreeMap<Spanned<String>, String>>,
    registry: Option<Spanned<String>>,
    platforms: Option<Vec<Spanned<String>>>,
}

/// The file's name and text: turns a byte span into the line an error names.
struct Source<'a> {
    file: String,
    text: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Option<Range<usize>>, key: &str, detail: impl Into<String>) -> Error {
        let line = span.map(|span| {
            let before = &self.text.as_bytes()[..span.start.min(self.text.len())];
            before.iter().filter(|b| **b == b'\n').count() + 1
        });
        Error::Config {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            detail: detail.into(),
        }
    }
}

/// Syntax, then keys (on the document tree, for exact messages), then types (serde), then rules.
fn parse(source: &Source, dir: &Path) -> Result<BTreeMap<String, ServiceSpec>> {
    let doc = DeTable::parse(source.text).map_err(|e| source.error(e.span(), "", e.message()))?;
    check_keys(source, doc.get_ref())?;
    let raw = RawFile::deserialize(toml::de::Deserializer::from(doc.clone())).map_err(|e| {
        let key = e
            .span()
            .and_then(|span| key_path(doc.get_ref(), span.start));
        source.error(e.span(), &key.unwrap_or_default(), e.message())
    })?;
    resolve(source, raw, dir)
}

/// Unknown keys, and tables that are not tables, with the span of the key at fault.
fn check_keys(source: &Source, doc: &DeTable) -> Result<()> {
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "defaults" => check_service_keys(source, "defaults", value)?,
            "services" => {
                for (name, service) in table(source, "services", value)? {
                    let path = format!("services.{}", name.get_ref());
                    check_service_keys(source, &path, service)?;
                }
            }
            other => return Err(unknown_key(source, key.span(), other, TOP_KEYS)),
        }
    }
    Ok(())
}

fn check_service_keys(source: &Source, path: &str, value: &Spanned<DeValue>) -> Result<()> {
    for (key, _) in table(source, path, value)? {
        if !SERVICE_KEYS.contains(&key.get_ref().as_ref()) {
            let path = format!("{path}.{}", key.get_ref());
            return Err(unknown_key(source, key.span(), &path, SERVICE_KEYS));
        }
    }
    Ok(())
}

fn table<'a, 'i>(
    source: &Source,
    path: &str,
    value: &'a Spanned<DeValue<'i>>,
) -> Result<&'a DeTable<'i>> {
    value.get_ref().as_table().ok_or_else(|| {
        let found = value.get_ref().type_str();
        source.error(
            Some(value.span()),
            path,
            format!("expected a table, found {found}"),
        )
    })
}

fn unknown_key(source: &Source, span: Range<usize>, path: &str, expected: &[&str]) -> Error {
    let expected = expected.join(", ");
    source.error(
        Some(span),
        path,
        format!("unknown key; expected one of {expected}"),
    )
}

/// The dotted path of the deepest key whose key or value holds `offset`: the key a serde error is at.
fn key_path(table: &DeTable, offset: usize) -> Option<String> {
    for (key, value) in table {
        if let Some(inner) = value.get_ref().as_table() {
            if let Some(path) = key_path(inner, offset) {
                return Some(format!("{}.{path}", key.get_ref()));
            }
        }
        if key.span().contains(&offset) || value.span().contains(&offset) {
            return Some(key.get_ref().to_string());
        }
    }
    None
}

/// Check every table, apply `[defaults]`, and refuse two services that publish to one repository.
fn resolve(source: &Source, raw: RawFile, dir: &Path) -> Result<BTreeMap<String, ServiceSpec>> {
    if raw.services.is_empty() {
        return Err(source.error(
            None,
            "services",
            "no services; add a [services.NAME] table with `dockerfile = \"PATH\"` for each image",
        ));
    }
    let defaults = Values::check(source, "defaults", raw.defaults)?;
    let mut services = BTreeMap::new();
    let mut owners: BTreeMap<(Option<String>, String), String> = BTreeMap::new();
    for (name, service) in raw.services {
        let at = name.span();
        let name = name.into_inner();
        let path = format!("services.{name}");
        check_name(source, &at, &path, &name)?;
        let repository_at = service
            .repository
            .as_ref()
            .map_or(at.clone(), Spanned::span);
        let values = Values::check(source, &path, service)?.over(&defaults);
        let spec = values.into_spec(source, &at, &path, name.clone(), dir)?;
        let place = (spec.registry.clone(), spec.repository.clone());
        if let Some(other) = owners.insert(place, name.clone()) {
            let registry = spec.registry.as_deref().unwrap_or("the run's registry");
            return Err(source.error(
                Some(repository_at),
                &format!("{path}.repository"),
                format!(
                    "services {other} and {name} both publish to repository {} in {registry}; give each its own repository",
                    spec.repository
                ),
            ));
        }
        services.insert(name, spec);
    }
    Ok(services)
}

fn check_name(source: &Source, at: &Range<usize>, path: &str, name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(source.error(
        Some(at.clone()),
        path,
        format!("{name:?} is not a service name: use lowercase letters, digits and _ . -, starting with a letter or digit (it becomes a log prefix and a CI matrix value)"),
    ))
}

/// The checked values of one table, `[defaults]` or a service, before they are merged.
#[derive(Default)]
struct Values {
    dockerfile: Option<String>,
    context: Option<String>,
    repository: Option<String>,
    target: Option<String>,
    build_args: BTreeMap<String, String>,
    registry: Option<String>,
    platforms: Option<Vec<String>>,
}

impl Values {
    fn check(source: &Source, path: &str, raw: RawService) -> Result<Values> {
        let key = |name: &str| format!("{path}.{name}");
        let checked = |value: Option<Spanned<String>>, name: &str, parse: Parse| {
            value
                .map(|value| {
                    let span = value.span();
                    parse(value.get_ref())
                        .map_err(|problem| source.error(Some(span), &key(name), problem))
                })
                .transpose()
        };
        Ok(Values {
            dockerfile: checked(raw.dockerfile, "dockerfile", non_empty)?,
            context: checked(raw.context, "context", non_empty)?,
            repository: checked(raw.repository, "repository", repository_name)?,
            target: checked(raw.target, "target", non_empty)?,
            build_args: check_build_args(source, &key("build-args"), raw.build_args)?,
            registry: checked(raw.registry, "registry", registry_host)?,
            platforms: check_platforms(source, &key("platforms"), raw.platforms)?,
        })
    }

    /// These values, with `defaults` filling what is not set; build args merge key by key.
    fn over(self, defaults: &Values) -> Values {
        let mut build_args = defaults.build_args.clone();
        build_args.extend(self.build_args);
        Values {
            dockerfile: self.dockerfile.or_else(|| defaults.dockerfile.clone()),
            context: self.context.or_else(|| defaults.context.clone()),
            repository: self.repository.or_else(|| defaults.repository.clone()),
            target: self.target.or_else(|| defaults.target.clone()),
            build_args,
            registry: self.registry.or_else(|| defaults.registry.clone()),
            platforms: self.platforms.or_else(|| defaults.platforms.clone()),
        }
    }

    /// The service, once its Dockerfile is known; `at` is the span of its name.
    fn into_spec(
        self,
        source: &Source,
        at: &Range<usize>,
        path: &str,
        name: String,
        dir: &Path,
    ) -> Result<ServiceSpec> {
        let Some(dockerfile) = self.dockerfile else {
            return Err(source.error(
                Some(at.clone()),
                &format!("{path}.dockerfile"),
                "missing; set `dockerfile = \"PATH\"` (relative to the file's directory) in the service or in [defaults]",
            ));
        };
        let repository = match self.repository {
            Some(repository) => repository,
            None => repository_name(&name).map_err(|problem| {
                source.error(
                    Some(at.clone()),
                    &format!("{path}.repository"),
                    format!("not set, and the service name is no repository name: {problem}"),
                )
            })?,
        };
        Ok(ServiceSpec {
            dockerfile: resolve_path(dir, &dockerfile),
            context: self
                .context
                .map_or_else(|| dir.to_path_buf(), |context| resolve_path(dir, &context)),
            name,
            repository,
            target: self.target,
            build_args: self.build_args,
            registry: self.registry,
            platforms: self.platforms.unwrap_or_default(),
        })
    }
}

/// A value check: the value to keep, or the problem (the caller adds file, line and key).
type Parse = fn(&str) -> std::result::Result<String, String>;

fn non_empty(value: &str) -> std::result::Result<String, String> {
    if value.trim().is_empty() {
        Err("is empty; remove the key or give a value".to_string())
    } else {
        Ok(value.to_string())
    }
}

fn repository_name(value: &str) -> std::result::Result<String, String> {
    Repository::parse("", value)
        .map(|r| r.as_str().to_string())
        .map_err(problem)
}

fn registry_host(value: &str) -> std::result::Result<String, String> {
    Registry::parse("", value)
        .map(|r| r.host().to_string())
        .map_err(problem)
}

/// What an identity parser found wrong, without the input name it leads with (the key says it here).
fn problem(error: Error) -> String {
    match error {
        Error::Usage(invalid) => invalid.problem,
        other => other.to_string(),
    }
}

fn check_build_args(
    source: &Source,
    path: &str,
    raw: Option<BTreeMap<Spanned<String>, String>>,
) -> Result<BTreeMap<String, String>> {
    let mut args = BTreeMap::new();
    for (key, value) in raw.unwrap_or_default() {
        if key.get_ref().trim().is_empty() || key.get_ref().contains('=') {
            return Err(source.error(
                Some(key.span()),
                &format!("{path}.{}", key.get_ref()),
                format!(
                    "{:?} is not a build-arg name: it must be non-empty and without =",
                    key.get_ref()
                ),
            ));
        }
        args.insert(key.into_inner(), value);
    }
    Ok(args)
}

fn check_platforms(
    source: &Source,
    path: &str,
    raw: Option<Vec<Spanned<String>>>,
) -> Result<Option<Vec<String>>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let mut platforms: Vec<String> = Vec::new();
    for value in raw {
        let platform = Platform::parse("", value.get_ref())
            .map_err(|e| source.error(Some(value.span()), path, problem(e)))?
            .to_string();
        if platforms.contains(&platform) {
            return Err(source.error(
                Some(value.span()),
                path,
                format!("{platform} is listed twice"),
            ));
        }
        platforms.push(platform);
    }
    Ok(Some(platforms))
}

/// `value` against `dir`, without `.` parts, so that `./api` and `api` name and print alike. An absolute
/// `value` stays as it is.
fn resolve_path(dir: &Path, value: &str) -> PathBuf {
    let mut path = dir.to_path_buf();
    for part in Path::new(value).components() {
        if part != Component::CurDir {
            path.push(part);
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExitCode;

    const EXAMPLE: &str = r#"[defaults]
registry = "localhost:5000"

[services.catalog]
dockerfile = "src/catalog/Dockerfile"
context = "."
repository = "retail-store-catalog"
target = "runtime"
build-args = { GO_IMAGE = "golang:1.22" }
platforms = ["linux/amd64"]

[services.cart]
dockerfile = "./src/cart/Dockerfile"
context = "src/cart"
"#;

    /// Parse `text` as `ecrbuild.toml` in the current directory; nothing is read from disk.
    fn parse_str(text: &str) -> Result<ServicesFile> {
        from_text(Path::new(FILE_NAME), text)
    }

    fn error_of(text: &str) -> String {
        let err = parse_str(text).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage, "{err}");
        err.to_string()
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn full_example_parses_and_resolves_paths_against_the_files_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("repo").join(FILE_NAME);
        write(&path, EXAMPLE);
        let file = load(&path).unwrap();
        let dir = tmp.path().join("repo");
        assert_eq!(file.path, path);
        assert_eq!(file.dir, dir);
        let names: Vec<&str> = file.services.keys().map(String::as_str).collect();
        assert_eq!(names, ["cart", "catalog"]);
        assert_eq!(
            file.services["catalog"],
            ServiceSpec {
                name: "catalog".into(),
                dockerfile: dir.join("src/catalog/Dockerfile"),
                context: dir.clone(),
                repository: "retail-store-catalog".into(),
                target: Some("runtime".into()),
                build_args: BTreeMap::from([("GO_IMAGE".into(), "golang:1.22".into())]),
                registry: Some("localhost:5000".into()),
                platforms: vec!["linux/amd64".into()],
            }
        );
        let cart = &file.services["cart"];
        assert_eq!(cart.dockerfile, dir.join("src/cart/Dockerfile"));
        assert_eq!(cart.context, dir.join("src/cart"));
        assert_eq!(cart.repository, "cart");
        assert_eq!(cart.target, None);
        assert!(cart.platforms.is_empty());
        assert_eq!(
            listing(&file),
            "cart\tcart\tsrc/cart/Dockerfile\tsrc/cart\n\
             catalog\tretail-store-catalog\tsrc/catalog/Dockerfile\t.\n"
        );
    }

    #[test]
    fn listing_shows_paths_outside_the_directory_as_they_are() {
        let file = parse_str("[services.api]\ndockerfile = \"/elsewhere/Dockerfile\"\n").unwrap();
        assert_eq!(listing(&file), "api\tapi\t/elsewhere/Dockerfile\t.\n");
    }

    #[test]
    fn defaults_are_inherited_and_a_services_value_wins() {
        let file = parse_str(
            r#"[defaults]
dockerfile = "Dockerfile"
registry = "https://Registry.example.com/"
target = "runtime"
platforms = ["linux/amd64", "linux/arm64"]

[services.api]

[services.worker]
dockerfile = "worker/Dockerfile"
registry = "127.0.0.1:5000"
platforms = []
"#,
        )
        .unwrap();
        let api = &file.services["api"];
        assert_eq!(api.dockerfile, file.dir.join("Dockerfile"));
        assert_eq!(api.registry.as_deref(), Some("registry.example.com"));
        assert_eq!(api.target.as_deref(), Some("runtime"));
        assert_eq!(api.platforms, ["linux/amd64", "linux/arm64"]);
        let worker = &file.services["worker"];
        assert_eq!(worker.dockerfile, file.dir.join("worker/Dockerfile"));
        assert_eq!(worker.registry.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(worker.target.as_deref(), Some("runtime"));
        assert!(worker.platforms.is_empty());
    }

    #[test]
    fn build_args_merge_key_by_key() {
        let file = parse_str(
            r#"[defaults]
dockerfile = "Dockerfile"
build-args = { GO_IMAGE = "golang:1.22", CGO_ENABLED = "0" }

[services.api]
build-args = { GO_IMAGE = "local/golang:bookworm", PORT = "8080" }

[services.web]
"#,
        )
        .unwrap();
        let args = |name: &str| {
            file.services[name]
                .build_args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            args("api"),
            [
                "CGO_ENABLED=0",
                "GO_IMAGE=local/golang:bookworm",
                "PORT=8080"
            ]
        );
        assert_eq!(args("web"), ["CGO_ENABLED=0", "GO_IMAGE=golang:1.22"]);
    }

    #[test]
    fn unknown_keys_name_the_line_and_the_key() {
        let service = "[services.cart]\ndockerfile = \"Dockerfile\"\n";
        assert_eq!(
            error_of(&format!("{service}\n\n\n\ndockerfil = \"x\"\n")),
            "ecrbuild.toml:7: services.cart.dockerfil: unknown key; expected one of dockerfile, context, repository, target, build-args, registry, platforms"
        );
        assert_eq!(
            error_of(&format!("[default]\nregistry = \"r\"\n{service}")),
            "ecrbuild.toml:1: default: unknown key; expected one of defaults, services"
        );
        assert_eq!(
            error_of(&format!("{service}[defaults]\nbuild_args = {{}}\n")),
            "ecrbuild.toml:4: defaults.build_args: unknown key; expected one of dockerfile, context, repository, target, build-args, registry, platforms"
        );
        assert_eq!(
            error_of(&format!("{service}\n[services]\napi.dockerfile = \"D\"\napi.tag = \"x\"\n")),
            "ecrbuild.toml:6: services.api.tag: unknown key; expected one of dockerfile, context, repository, target, build-args, registry, platforms"
        );
    }

    #[test]
    fn tables_that_are_not_tables_name_the_line_and_the_key() {
        assert_eq!(
            error_of("services = 3\n"),
            "ecrbuild.toml:1: services: expected a table, found integer"
        );
        assert_eq!(
            error_of("[services]\napi = \"Dockerfile\"\n"),
            "ecrbuild.toml:2: services.api: expected a table, found string"
        );
    }

    #[test]
    fn wrong_types_name_the_line_and_the_key() {
        let err = error_of("[services.api]\n\ndockerfile = 5\n");
        assert!(
            err.starts_with("ecrbuild.toml:3: services.api.dockerfile: invalid type: integer `5`, expected a string"),
            "{err}"
        );
        let err =
            error_of("[services.api]\ndockerfile = \"D\"\nbuild-args = { A = \"1\", B = 2 }\n");
        assert!(
            err.starts_with("ecrbuild.toml:3: services.api.build-args.B: invalid type: integer"),
            "{err}"
        );
        let err = error_of(
            "[defaults]\nplatforms = \"linux/amd64\"\n[services.api]\ndockerfile = \"D\"\n",
        );
        assert!(
            err.starts_with("ecrbuild.toml:2: defaults.platforms: invalid type: string"),
            "{err}"
        );
        let err = error_of(
            "[services.api]\ndockerfile = \"D\"\nplatforms = [\n  \"linux/amd64\",\n  7,\n]\n",
        );
        assert!(
            err.starts_with("ecrbuild.toml:5: services.api.platforms: invalid type: integer"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = error_of("[services.api]\ndockerfile = \"D\"\ncontext = \n");
        assert!(err.starts_with("ecrbuild.toml:3: "), "{err}");
    }

    #[test]
    fn bad_values_name_the_line_and_the_key() {
        let base = "[services.api]\ndockerfile = \"D\"\n";
        let err = error_of(&format!("{base}repository = \"Team/API\"\n"));
        assert!(
            err.starts_with(
                "ecrbuild.toml:3: services.api.repository: \"Team/API\" is not a repository name"
            ),
            "{err}"
        );
        let err = error_of(&format!("[defaults]\nregistry = \"exa mple.com\"\n{base}"));
        assert!(
            err.starts_with(
                "ecrbuild.toml:2: defaults.registry: \"exa mple.com\" is not a registry host"
            ),
            "{err}"
        );
        let err = error_of(&format!(
            "{base}platforms = [\"linux/amd64\", \"Linux/arm64\"]\n"
        ));
        assert!(
            err.starts_with(
                "ecrbuild.toml:3: services.api.platforms: \"Linux/arm64\" is not a platform"
            ),
            "{err}"
        );
        let err = error_of(&format!(
            "{base}platforms = [\"linux/amd64\", \"linux/amd64\"]\n"
        ));
        assert!(err.ends_with("linux/amd64 is listed twice"), "{err}");
        let err = error_of(&format!("{base}build-args = {{ \"A=B\" = \"x\" }}\n"));
        assert!(
            err.starts_with(
                "ecrbuild.toml:3: services.api.build-args.A=B: \"A=B\" is not a build-arg name"
            ),
            "{err}"
        );
        let err = error_of(&format!("{base}target = \"\"\n"));
        assert!(
            err.starts_with("ecrbuild.toml:3: services.api.target: is empty"),
            "{err}"
        );
    }

    #[test]
    fn service_names_are_checked() {
        let err = error_of("[services.Cart]\ndockerfile = \"D\"\n");
        assert!(
            err.starts_with("ecrbuild.toml:1: services.Cart: \"Cart\" is not a service name"),
            "{err}"
        );
        // A valid service name that is no repository name needs its repository set.
        let err = error_of("\n[services.cart-]\ndockerfile = \"D\"\n");
        assert!(
            err.starts_with("ecrbuild.toml:2: services.cart-.repository: not set, and the service name is no repository name"),
            "{err}"
        );
        assert!(parse_str("[services.cart-]\ndockerfile = \"D\"\nrepository = \"cart\"\n").is_ok());
    }

    #[test]
    fn a_dockerfile_is_required_in_the_service_or_the_defaults() {
        let err =
            error_of("[services.api]\ncontext = \"api\"\n\n[services.web]\ndockerfile = \"D\"\n");
        assert!(
            err.starts_with("ecrbuild.toml:1: services.api.dockerfile: missing; set `dockerfile"),
            "{err}"
        );
        let file = parse_str("[defaults]\ndockerfile = \"D\"\n[services.api]\ncontext = \"api\"\n")
            .unwrap();
        assert_eq!(file.services["api"].dockerfile, file.dir.join("D"));
    }

    #[test]
    fn a_file_without_services_says_to_add_one() {
        for text in [
            "",
            "# nothing yet\n",
            "[defaults]\ndockerfile = \"D\"\n",
            "[services]\n",
        ] {
            let err = error_of(text);
            assert!(
                err.starts_with(
                    "ecrbuild.toml: services: no services; add a [services.NAME] table"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn two_services_may_not_share_a_repository_in_one_registry() {
        let err = error_of(
            "[services.api]\ndockerfile = \"D\"\nrepository = \"shop\"\n\n[services.web]\ndockerfile = \"D\"\nrepository = \"shop\"\n",
        );
        assert_eq!(
            err,
            "ecrbuild.toml:7: services.web.repository: services api and web both publish to repository shop in the run's registry; give each its own repository"
        );
        // The default repository is the service name, so an explicit one can collide with it.
        let err = error_of("[services.api]\ndockerfile = \"D\"\n[services.web]\ndockerfile = \"D\"\nrepository = \"api\"\n");
        assert!(err.contains("services api and web"), "{err}");
        // One repository name in two registries is two repositories.
        assert!(parse_str(
            "[services.api]\ndockerfile = \"D\"\nregistry = \"127.0.0.1:5000\"\n[services.web]\ndockerfile = \"D\"\nrepository = \"api\"\n"
        )
        .is_ok());
    }

    #[test]
    fn select_picks_named_services_in_name_order() {
        let file = parse_str(EXAMPLE).unwrap();
        let names = |selected: Vec<&ServiceSpec>| -> Vec<String> {
            selected.into_iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(file.select(&[]).unwrap()), ["cart", "catalog"]);
        let picked = file
            .select(&["catalog".into(), "cart".into(), "catalog".into()])
            .unwrap();
        assert_eq!(names(picked), ["cart", "catalog"]);
        let err = file.select(&["orders".into()]).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert_eq!(
            err.to_string(),
            "--service: no service \"orders\" in ecrbuild.toml; its services are cart, catalog"
        );
    }

    #[test]
    fn locate_takes_an_explicit_file_which_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("ci/services.toml"), EXAMPLE);
        let found = locate(Some(Path::new("ci/services.toml")), tmp.path()).unwrap();
        assert_eq!(found, Some(tmp.path().join("ci/services.toml")));
        let err = locate(Some(Path::new("missing.toml")), tmp.path()).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert_eq!(
            err.to_string(),
            format!(
                "--config: {} does not exist",
                tmp.path().join("missing.toml").display()
            )
        );
        let err = locate(Some(Path::new("ci")), tmp.path()).unwrap_err();
        assert!(err.to_string().ends_with("ci is not a file"), "{err}");
    }

    #[test]
    fn locate_looks_in_the_current_directory_then_the_git_top_level() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("repo");
        let deep = top.join("src/catalog");
        std::fs::create_dir_all(top.join(".git")).unwrap();
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(locate(None, &deep).unwrap(), None);

        write(&top.join(FILE_NAME), EXAMPLE);
        assert_eq!(locate(None, &deep).unwrap(), Some(top.join(FILE_NAME)));
        // Only the current directory and the top level count, not the directories between.
        write(&top.join("src").join(FILE_NAME), EXAMPLE);
        assert_eq!(locate(None, &deep).unwrap(), Some(top.join(FILE_NAME)));

        write(&deep.join(FILE_NAME), EXAMPLE);
        assert_eq!(locate(None, &deep).unwrap(), Some(deep.join(FILE_NAME)));
    }

    #[test]
    fn locate_stops_at_the_git_top_level() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join(FILE_NAME), EXAMPLE);
        // A worktree's .git is a file; it marks the top level all the same.
        let top = tmp.path().join("worktree");
        write(&top.join(".git"), "gitdir: /elsewhere\n");
        std::fs::create_dir_all(top.join("api")).unwrap();
        assert_eq!(locate(None, &top.join("api")).unwrap(), None);
        // Outside any repository only the current directory counts.
        let plain = tmp.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        assert_eq!(locate(None, &plain).unwrap(), None);
    }
}
