//! Wait for the ECR image scan of the pushed digest and summarise its findings by severity.
//! Scan results are informational unless `--fail-on` names a severity.

use std::time::{Duration, Instant};

use aws_sdk_ecr::error::SdkError;
use aws_sdk_ecr::operation::describe_image_scan_findings::DescribeImageScanFindingsError;
use aws_sdk_ecr::types::{ImageIdentifier, ScanStatus};

use crate::cli::Severity;
use crate::error::{Error, Result};
use crate::report::{Reporter, ScanSummary};

/// How to wait for the ECR scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanPlan {
    pub timeout_secs: u64,
    pub fail_on: Option<Severity>,
}

/// Findings at or above `threshold`, as `CRITICAL 1, HIGH 2`; `None` when there are none.
pub fn at_or_above(summary: &ScanSummary, threshold: Severity) -> Option<String> {
    let hits: Vec<String> = summary
        .counts
        .iter()
        .filter(|(s, n)| **n > 0 && rank(s).is_some_and(|r| r >= threshold))
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    (!hits.is_empty()).then(|| hits.join(", "))
}

fn rank(severity: &str) -> Option<Severity> {
    match severity {
        "INFORMATIONAL" => Some(Severity::Informational),
        "LOW" => Some(Severity::Low),
        "MEDIUM" => Some(Severity::Medium),
        "HIGH" => Some(Severity::High),
        "CRITICAL" => Some(Severity::Critical),
        _ => None,
    }
}

/// Poll DescribeImageScanFindings for the image under its SHA tag until the scan completes or
/// `plan.timeout_secs` pass. The SHA tag names exactly one image (it is immutable in the repository the
/// Terraform creates, and ecrbuild never re-pushes a published SHA without --force).
pub async fn wait_for_scan(
    config: &aws_config::SdkConfig,
    repository: &str,
    reference: &str,
    sha_tag: &str,
    plan: &ScanPlan,
    reporter: &Reporter,
) -> Result<Option<ScanSummary>> {
    let client = aws_sdk_ecr::Client::new(config);
    let started = Instant::now();
    let deadline = Duration::from_secs(plan.timeout_secs);
    let mut last_status = String::new();
    loop {
        let response = client
            .describe_image_scan_findings()
            .repository_name(repository)
            .image_id(ImageIdentifier::builder().image_tag(sha_tag).build())
            .send()
            .await;
        let status = match poll_result(response) {
            Poll::Complete(summary) => return judge(summary, plan, reference, reporter),
            Poll::Unavailable(why) => {
                reporter.warn(format!("scan of {reference}: {why}"));
                return scan_unavailable(plan, reference, &why);
            }
            Poll::Pending(status) => status,
        };
        if status != last_status {
            reporter.step(format!("waiting for the scan of {reference}: {status}"));
            last_status = status;
        }
        if started.elapsed() >= deadline {
            reporter.warn(format!(
                "the scan of {reference} did not finish within {} s",
                plan.timeout_secs
            ));
            return scan_unavailable(plan, reference, "timed out");
        }
        tokio::time::sleep(Duration::from_secs(5).min(deadline.saturating_sub(started.elapsed())))
            .await;
    }
}

/// One look at the scan.
enum Poll {
    Complete(ScanSummary),
    /// Still running, or not started yet: the status to show.
    Pending(String),
    /// It will not complete (failed, unsupported image) or cannot be read.
    Unavailable(String),
}

fn poll_result<R: std::fmt::Debug>(
    response: std::result::Result<
        aws_sdk_ecr::operation::describe_image_scan_findings::DescribeImageScanFindingsOutput,
        SdkError<DescribeImageScanFindingsError, R>,
    >,
) -> Poll {
    let out = match response {
        Ok(out) => out,
        // The scan starts shortly after the push; until then ECR says there is no scan.
        Err(SdkError::ServiceError(e))
            if matches!(
                e.err(),
                DescribeImageScanFindingsError::ScanNotFoundException(_)
                    | DescribeImageScanFindingsError::ImageNotFoundException(_)
            ) =>
        {
            return Poll::Pending("NOT STARTED".to_string())
        }
        Err(e) => {
            let detail = aws_sdk_ecr::error::DisplayErrorContext(&e).to_string();
            return Poll::Unavailable(format!("cannot be read: {detail}"));
        }
    };
    match out.image_scan_status().and_then(|s| s.status().cloned()) {
        Some(ScanStatus::Complete) => Poll::Complete(ScanSummary {
            status: "COMPLETE".to_string(),
            counts: out
                .image_scan_findings()
                .and_then(|f| f.finding_severity_counts())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.as_str().to_string(), *v))
                        .collect()
                })
                .unwrap_or_default(),
        }),
        Some(ScanStatus::Failed) | Some(ScanStatus::UnsupportedImage) => {
            let description = out
                .image_scan_status()
                .and_then(|s| s.description())
                .unwrap_or("no description");
            Poll::Unavailable(format!("did not complete: {description}"))
        }
        other => Poll::Pending(other.map_or("PENDING".to_string(), |s| s.as_str().to_string())),
    }
}

/// Report a completed scan, and fail on findings at or above `--fail-on`.
fn judge(
    summary: ScanSummary,
    plan: &ScanPlan,
    reference: &str,
    reporter: &Reporter,
) -> Result<Option<ScanSummary>> {
    reporter.step(format!("scan of {reference}: {}", summary.describe()));
    if let Some(threshold) = plan.fail_on {
        if let Some(hits) = at_or_above(&summary, threshold) {
            return Err(Error::ScanFindings {
                reference: reference.to_string(),
                summary: hits,
                threshold: format!("{threshold:?}").to_uppercase(),
            });
        }
    }
    Ok(Some(summary))
}

/// Without a result, `--fail-on` cannot be honoured: fail rather than pass an unchecked image.
fn scan_unavailable(plan: &ScanPlan, reference: &str, why: &str) -> Result<Option<ScanSummary>> {
    match plan.fail_on {
        Some(threshold) => Err(Error::ScanFindings {
            reference: reference.to_string(),
            summary: format!("no scan result ({why}), so nothing"),
            threshold: format!("{threshold:?}").to_uppercase(),
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(pairs: &[(&str, i32)]) -> ScanSummary {
        ScanSummary {
            status: "COMPLETE".into(),
            counts: pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn threshold_counts_only_severities_at_or_above() {
        let s = summary(&[("HIGH", 2), ("LOW", 5), ("CRITICAL", 0)]);
        assert_eq!(at_or_above(&s, Severity::High).as_deref(), Some("HIGH 2"));
        assert_eq!(at_or_above(&s, Severity::Critical), None);
        assert_eq!(
            at_or_above(&s, Severity::Low).as_deref(),
            Some("HIGH 2, LOW 5")
        );
        assert_eq!(s.describe(), "HIGH 2, LOW 5");
        assert_eq!(summary(&[]).describe(), "no findings");
    }
}
