//! Report phase: human progress on stderr, the machine-readable result on stdout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

use serde::Serialize;

/// Where progress lines go and how they look.
#[derive(Debug, Clone)]
pub struct Reporter {
    quiet: bool,
    /// Plain timestamped lines (CI logs) instead of terminal output.
    plain: bool,
    /// `[service]` on every line when several services run at once.
    service: Option<Arc<str>>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Self {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
        Reporter {
            quiet,
            plain: ci || !std::io::stderr().is_terminal(),
            service: None,
        }
    }

    /// The same reporter, with every line saying which service it is about.
    pub fn for_service(&self, service: &str) -> Self {
        Reporter {
            service: Some(Arc::from(format!("[{service}]"))),
            ..self.clone()
        }
    }

    fn prefix(&self) -> String {
        let service = self
            .service
            .as_deref()
            .map_or(String::new(), |s| format!(" {s}"));
        if self.plain {
            format!(
                "{} ecrbuild:{service}",
                utc_timestamp(SystemTime::now(), TimeLayout::Clock)
            )
        } else {
            format!("ecrbuild:{service}")
        }
    }

    /// One line about what ecrbuild is doing.
    pub fn step(&self, message: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {}",
                self.prefix(),
                message.as_ref()
            );
        }
    }

    /// A warning is shown even with `--quiet`.
    pub fn warn(&self, message: impl AsRef<str>) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "{} warning: {}",
            self.prefix(),
            message.as_ref()
        );
    }

    /// A line of daemon output (build steps), passed through as it arrives.
    pub fn daemon_output(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        for line in text.lines() {
            let line = if self.plain {
                strip_control(line)
            } else {
                line.to_string()
            };
            if !line.trim().is_empty() {
                match &self.service {
                    Some(service) => {
                        let _ = writeln!(err, "  {service} {line}");
                    }
                    None => {
                        let _ = writeln!(err, "  {line}");
                    }
                }
            }
        }
    }
}

impl Reporter {
    /// Whether progress bars may be drawn (a terminal, not CI, not quiet).
    pub fn interactive(&self) -> bool {
        !self.plain && !self.quiet
    }

    /// Show the context upload: a bar with bytes/s on a terminal; one summary line in CI logs.
    /// The returned guard stops the display when dropped.
    pub fn upload_progress(&self, total: u64, sent: Arc<AtomicU64>) -> UploadProgress {
        let bar = self.interactive().then(|| {
            let bar = ProgressBar::new(total.max(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "  context {bytes}/{total_bytes} {bar:30} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let ticker = bar.clone().map(|bar| {
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                loop {
                    bar.set_position(sent.load(Ordering::Relaxed));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        UploadProgress {
            bar,
            ticker,
            sent,
            started: std::time::Instant::now(),
            finished: false,
            reporter: self.clone(),
        }
    }
}

/// See [`Reporter::upload_progress`].
pub struct UploadProgress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    sent: Arc<AtomicU64>,
    started: std::time::Instant,
    finished: bool,
    reporter: Reporter,
}

impl UploadProgress {
    /// The upload is over (the daemon started building): report the figure once.
    pub fn finish(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.finished {
            self.finished = true;
            let bytes = self.sent.load(Ordering::Relaxed);
            let secs = self.started.elapsed().as_secs_f64();
            self.reporter.step(format!(
                "sent the context: {:.1} MiB in {secs:.2} s ({:.1} MiB/s)",
                bytes as f64 / 1_048_576.0,
                bytes as f64 / 1_048_576.0 / secs.max(1e-3)
            ));
        }
    }
}

impl Drop for UploadProgress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Terminal control sequences make CI logs unreadable; keep printable text only.
fn strip_control(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI CSI sequence: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// Finding counts by severity name (`CRITICAL`, `HIGH`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanSummary {
    pub status: String,
    pub counts: BTreeMap<String, i32>,
}

impl ScanSummary {
    /// `CRITICAL 1, HIGH 2` (highest first), or `no findings`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<(i32, String)> = self
            .counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (severity_rank(s), format!("{s} {n}")))
            .collect();
        if parts.is_empty() {
            return "no findings".to_string();
        }
        parts.sort_by_key(|part| std::cmp::Reverse(part.0));
        parts
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// ECR's severities from lowest to highest; unknown names rank below all.
pub const SEVERITIES: [&str; 5] = ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"];

/// The rank of a severity name in [`SEVERITIES`], -1 when unknown.
pub fn severity_rank(name: &str) -> i32 {
    SEVERITIES
        .iter()
        .position(|s| *s == name)
        .map_or(-1, |i| i as i32)
}

/// Seconds spent in each phase.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub context_secs: f64,
    pub build_secs: f64,
    pub auth_secs: f64,
    pub push_secs: f64,
    pub verify_secs: f64,
    pub total_secs: f64,
}

pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The result of a run, printed with `--output json` as one object. The field set is a stable schema.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub sha: String,
    pub image_id: String,
    pub registry: String,
    pub repository: String,
    /// Every reference tagged locally, in push order.
    pub references: Vec<String>,
    /// The references that are now in the registry.
    pub pushed_references: Vec<String>,
    pub digest: Option<String>,
    /// Whether this run pushed (false with --no-push, or when the SHA was already published).
    pub pushed: bool,
    /// The SHA tag was already in the registry: nothing was built or pushed.
    pub skipped: bool,
    /// What happened to `latest`: moved, kept (and why), corrected, not requested.
    pub latest: Option<String>,
    /// Findings by severity, with --wait-scan.
    pub scan: Option<ScanSummary>,
    pub timings: Timings,
}

/// One JSON object on one line (an error object in the unlikely case it cannot be encoded).
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

impl Summary {
    pub fn to_json(&self) -> String {
        json(self)
    }

    /// Text form: one reference per line, with its digest when pushed (easy to pipe).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for reference in &self.references {
            match (&self.digest, self.pushed_references.contains(reference)) {
                (Some(digest), true) => out.push_str(&format!("{reference}@{digest}\n")),
                _ => out.push_str(&format!("{reference}\n")),
            }
        }
        out
    }
}

/// Where to write the result besides stdout.
#[derive(Debug, Clone, Default)]
pub struct OutputFiles {
    /// CodePipeline's imagedefinitions.json: (path, container name).
    pub imagedefinitions: Option<(PathBuf, String)>,
    pub digest_file: Option<PathBuf>,
    /// `$GITHUB_OUTPUT` in GitHub Actions.
    pub github_output: Option<PathBuf>,
}

/// Write the result files asked for: imagedefinitions.json, the digest file, `$GITHUB_OUTPUT`.
/// Only called when the image is in the registry (pushed now or already published).
pub fn write_outputs(outputs: &OutputFiles, summary: &Summary) -> std::io::Result<Vec<String>> {
    let mut written = Vec::new();
    let Some(digest) = &summary.digest else {
        return Ok(written);
    };
    let image = format!("{}/{}", summary.registry, summary.repository);
    let sha_reference = format!("{image}:{}", summary.sha);
    if let Some((path, container)) = &outputs.imagedefinitions {
        let body = serde_json::json!([{ "name": container, "imageUri": sha_reference }]);
        write_atomically(path, format!("{body}\n").as_bytes())?;
        written.push(path.display().to_string());
    }
    if let Some(path) = &outputs.digest_file {
        write_atomically(path, format!("{digest}\n").as_bytes())?;
        written.push(path.display().to_string());
    }
    if let Some(path) = &outputs.github_output {
        let lines = format!(
            "digest={digest}\nimage={image}@{digest}\ntags={}\n",
            summary.pushed_references.join(",")
        );
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(lines.as_bytes()))
            .map_err(|e| name_path(path, e))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// A reader never sees a half-written file: write beside it, then rename over it.
fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temp, contents)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| name_path(path, e))
}

fn name_path(path: &std::path::Path, error: std::io::Error) -> std::io::Error {
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// How [`utc_timestamp`] lays out a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLayout {
    /// `14:37:02`, for log lines.
    Clock,
    /// `2026-01-11T14:37:02Z`, for the `created` label.
    Rfc3339,
    /// `20260111-143702`, a tag-safe timestamp.
    Compact,
}

/// A UTC time in one of the layouts ecrbuild prints, to the second.
pub fn utc_timestamp(time: SystemTime, layout: TimeLayout) -> String {
    use time::macros::format_description;
    let time = time::OffsetDateTime::from(time);
    let formatted = match layout {
        TimeLayout::Clock => time.format(format_description!("[hour]:[minute]:[second]")),
        TimeLayout::Rfc3339 => time.format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        )),
        TimeLayout::Compact => time.format(format_description!(
            "[year][month][day]-[hour][minute][second]"
        )),
    };
    // Formatting a UTC time with these fixed layouts cannot fail; an empty string is never printed.
    formatted.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn timestamps_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_768_142_222); // 2026-01-11T14:37:02Z
        assert_eq!(
            utc_timestamp(t, TimeLayout::Rfc3339),
            "2026-01-11T14:37:02Z"
        );
        assert_eq!(utc_timestamp(t, TimeLayout::Compact), "20260111-143702");
        assert_eq!(utc_timestamp(t, TimeLayout::Clock), "14:37:02");
        assert_eq!(
            utc_timestamp(
                UNIX_EPOCH + Duration::from_millis(951_782_400_999),
                TimeLayout::Rfc3339
            ),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn control_sequences_are_stripped_for_ci() {
        assert_eq!(strip_control("\u{1b}[1A\u{1b}[2Kstep 1/3\r"), "step 1/3");
    }

    #[test]
    fn text_summary_lists_pushed_references_with_digest() {
        let s = Summary {
            sha: "a".repeat(40),
            image_id: "sha256:1".into(),
            registry: "r".into(),
            repository: "api".into(),
            references: vec!["r/api:a".into(), "r/api:latest".into()],
            pushed_references: vec!["r/api:a".into()],
            digest: Some("sha256:d".into()),
            pushed: true,
            skipped: false,
            latest: None,
            scan: None,
            timings: Timings::default(),
        };
        assert_eq!(s.to_text(), "r/api:a@sha256:d\nr/api:latest\n");
        assert!(s.to_json().contains("\"pushed\":true"));
    }
}

/// What a run did with one service of ecrbuild.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAction {
    /// The daemon built it (and it was pushed, unless the run pushes nothing).
    Built,
    /// An image with the same inputs was republished for this commit; no build.
    Reused,
    /// This commit was already published.
    Skipped,
    Failed,
}

/// One service's result: the single-image result plus what happened and why.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    pub service: String,
    pub action: ServiceAction,
    /// The input digest, when every input could be identified.
    pub inputs: Option<String>,
    /// The commit whose image was reused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
    #[serde(flatten)]
    pub image: Summary,
}

/// The result of a run over several services (`--output json`: `{"sha": …, "services": […]}`).
#[derive(Debug, Clone, Serialize)]
pub struct ServicesSummary {
    pub sha: String,
    pub services: Vec<ServiceSummary>,
}

impl ServicesSummary {
    pub fn to_json(&self) -> String {
        json(self)
    }

    /// One table: service, action, digest, seconds.
    pub fn to_text(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .services
            .iter()
            .map(|s| {
                [
                    s.service.clone(),
                    format!("{:?}", s.action).to_lowercase(),
                    s.image.digest.clone().unwrap_or_else(|| "-".to_string()),
                    format!("{:.2}", s.image.timings.total_secs),
                ]
            })
            .collect();
        table(["SERVICE", "ACTION", "DIGEST", "SECONDS"], &rows)
    }
}

/// What `ecrbuild plan` expects a run to do with a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlannedAction {
    Build,
    Reuse,
    Skip,
}

/// One service as `ecrbuild plan` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedService {
    pub service: String,
    pub repository: String,
    pub action: PlannedAction,
    pub reason: String,
    pub inputs: Option<String>,
    /// The commit whose image a run would reuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_from: Option<String>,
}

/// `ecrbuild plan`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesPlan {
    pub sha: String,
    pub services: Vec<PlannedService>,
}

impl ServicesPlan {
    pub fn to_json(&self) -> String {
        json(self)
    }

    pub fn to_text(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .services
            .iter()
            .map(|s| {
                [
                    s.service.clone(),
                    format!("{:?}", s.action).to_lowercase(),
                    s.repository.clone(),
                    s.reason.clone(),
                ]
            })
            .collect();
        table(["SERVICE", "ACTION", "REPOSITORY", "REASON"], &rows)
    }

    /// The lines for `$GITHUB_OUTPUT`: a job matrix of the services to build, and how many there are.
    pub fn github_matrix(&self) -> String {
        let include: Vec<serde_json::Value> = self
            .services
            .iter()
            .filter(|s| s.action == PlannedAction::Build)
            .map(|s| serde_json::json!({"service": s.service, "repository": s.repository}))
            .collect();
        let builds = include.len();
        let matrix = serde_json::json!({ "include": include });
        format!("matrix={matrix}\nbuilds={builds}\n")
    }
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
