//! moto's S3, read over its REST API (path-style; moto routes on the credential scope and checks no
//! signature), so a test sees what was written without any ecrbuild code.

use std::collections::HashMap;
use std::time::Duration;

use super::Rig;

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

pub struct S3 {
    endpoint: String,
}

/// An object as S3 serves it.
pub struct Object {
    pub body: Vec<u8>,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
}

impl S3 {
    pub fn rig() -> S3 {
        S3 {
            endpoint: Rig::get().var("AWS_ENDPOINT_URL_S3").to_string(),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    }

    /// A new bucket with a name no other test uses.
    pub fn new_bucket(&self, test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let bucket = format!("ecrbuild-{test}-{}-{nanos}", std::process::id());
        let bucket: String = bucket.chars().take(63).collect();
        let url = format!("{}/{bucket}", self.endpoint);
        let status = Self::agent()
            .put(&url)
            .header("Authorization", AUTHORIZATION)
            .send_empty()
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"))
            .status()
            .as_u16();
        assert_eq!(status, 200, "PUT {url}");
        bucket
    }

    /// The object, or `None` when the bucket has no such key.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Object> {
        let url = format!("{}/{bucket}/{key}", self.endpoint);
        let mut resp = Self::agent()
            .get(&url)
            .header("Authorization", AUTHORIZATION)
            .header("x-amz-checksum-mode", "ENABLED")
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        match resp.status().as_u16() {
            404 => None,
            200 => {
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            v.to_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(4 << 30)
                    .read_to_vec()
                    .unwrap();
                Some(Object { body, headers })
            }
            other => panic!("GET {url}: {other}"),
        }
    }

    /// The keys in the bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        tags(&self.get_xml(&format!("/{bucket}?list-type=2")), "Key")
    }

    /// The multipart uploads not completed nor aborted (ListMultipartUploads), by key.
    pub fn pending_uploads(&self, bucket: &str) -> Vec<String> {
        tags(&self.get_xml(&format!("/{bucket}?uploads")), "Key")
    }

    fn get_xml(&self, path: &str) -> String {
        let url = format!("{}{path}", self.endpoint);
        let mut resp = Self::agent()
            .get(&url)
            .header("Authorization", AUTHORIZATION)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "GET {url}: {body}");
        body
    }
}

/// The texts of every `<name>` element.
fn tags(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(text, _)| text.to_string()))
        .collect()
}
