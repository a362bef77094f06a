//! A fault-injecting HTTP proxy in front of the real registry: it forwards every request unchanged,
//! except those the test's rule turns into an error status or a dropped connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What to do with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Answer with this status and an empty body, without forwarding.
    Status(u16),
    /// Drop the connection without answering.
    Reset,
    /// Forward the request, then answer this status and an empty body instead of the registry's answer:
    /// a write that landed although its answer was lost.
    AfterForward(u16),
}

/// A request as the rule sees it, with the count of earlier requests that matched the same rule key.
pub struct Seen<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

type Rule = dyn Fn(&Seen) -> Fault + Send + Sync;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

type ProxyBody = http_body_util::combinators::BoxBody<bytes::Bytes, BoxError>;
type Upstream = Client<hyper_util::client::legacy::connect::HttpConnector, Incoming>;

async fn handle(
    mut req: Request<Incoming>,
    rule: Arc<Rule>,
    client: Upstream,
    upstream: String,
    faults: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
) -> Result<Response<ProxyBody>, BoxError> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let fault = rule(&Seen {
        method: &method,
        path: &path,
    });
    // Who asked: the daemon (`docker/<version> ...`) or ecrbuild's registry client.
    let agent = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("-")
        .to_string();
    requests
        .lock()
        .unwrap()
        .push(format!("{method} {path} -> {fault:?} by {agent}"));
    let empty = |code: u16| {
        let body = http_body_util::Full::new(bytes::Bytes::new())
            .map_err(|never: std::convert::Infallible| -> BoxError { match never {} })
            .boxed();
        Response::builder().status(code).body(body).unwrap()
    };
    match fault {
        Fault::Pass | Fault::AfterForward(_) => {}
        Fault::Status(code) => {
            faults.fetch_add(1, Ordering::SeqCst);
            return Ok(empty(code));
        }
        Fault::Reset => {
            faults.fetch_add(1, Ordering::SeqCst);
            return Err("injected connection reset".into());
        }
    }
    let uri: hyper::Uri = format!("http://{upstream}{path}")
        .parse()
        .map_err(|e| -> BoxError { Box::new(e) })?;
    *req.uri_mut() = uri;
    let response = client
        .request(req)
        .await
        .map_err(|e| -> BoxError { Box::new(e) })?;
    if let Fault::AfterForward(code) = fault {
        // The registry has handled the request: read its answer to the end, then lose it.
        let _ = response.into_body().collect().await;
        faults.fetch_add(1, Ordering::SeqCst);
        return Ok(empty(code));
    }
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        body.map_err(|e: hyper::Error| -> BoxError { Box::new(e) })
            .boxed(),
    ))
}

/// The manifest uploads the proxy saw, in order: `(tag, agent)`, where the agent is the first word of
/// the request's User-Agent (`docker/<version>` for the daemon).
pub fn manifest_puts(proxy: &FaultProxy, repo: &str) -> Vec<(String, String)> {
    let prefix = format!("PUT /v2/{repo}/manifests/");
    proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let tag = rest.split([' ', '?']).next()?.to_string();
            let agent = rest.rsplit(" by ").next()?.to_string();
            Some((tag, agent))
        })
        .collect()
}

/// A running proxy; dropped, it stops.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub faults_injected: Arc<AtomicUsize>,
    pub log: Arc<Mutex<Vec<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Start a proxy on a free loopback port forwarding to `upstream` (host:port).
    pub fn start(
        upstream: &str,
        rule: impl Fn(&Seen) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let faults_injected = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.to_string();
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let (faults, requests) = (faults_injected.clone(), log.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (rule, client, upstream, faults, requests) = (
                    rule.clone(),
                    client.clone(),
                    upstream.clone(),
                    faults.clone(),
                    requests.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        handle(
                            req,
                            rule.clone(),
                            client.clone(),
                            upstream.clone(),
                            faults.clone(),
                            requests.clone(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            addr,
            faults_injected,
            log,
            runtime: Some(runtime),
        }
    }

    /// `127.0.0.1:<port>`, usable as a registry host (the daemon treats loopback as insecure).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn faults(&self) -> usize {
        self.faults_injected.load(Ordering::SeqCst)
    }

    /// Stop listening and drop every connection, as if the registry died.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A rule that applies `fault` to the first `times` requests matching `matches`, then passes everything.
pub fn first_n(
    times: usize,
    fault: Fault,
    matches: impl Fn(&Seen) -> bool + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Fault + Send + Sync + 'static {
    let count = AtomicUsize::new(0);
    move |seen| {
        if matches(seen) && count.fetch_add(1, Ordering::SeqCst) < times {
            fault
        } else {
            Fault::Pass
        }
    }
}

/// A manifest upload (`PUT /v2/<repo>/manifests/<tag>`), optionally for one tag only.
pub fn is_manifest_put(seen: &Seen, tag: Option<&str>) -> bool {
    seen.method == "PUT"
        && seen.path.contains("/manifests/")
        && tag.is_none_or(|t| seen.path.ends_with(&format!("/manifests/{t}")))
}
