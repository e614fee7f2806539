//! A front for the local ACME CA that refuses orders for a rate limit, as Let's Encrypt does.
//! Pebble has no rate limits; this HTTPS proxy passes every request to it and answers the
//! `newOrder` requests it was told to refuse itself, the way a CA does under RFC 8555 §6.6:
//! `429 Too Many Requests`, a `urn:ietf:params:acme:error:rateLimited` problem document, and a
//! `Retry-After` header when asked for one, as Let's Encrypt answers ("Retrying After Hitting
//! Rate Limits", letsencrypt.org/docs/rate-limits).
//!
//! The proxy keeps the client's `Host`, and Pebble builds every URL it hands out, and checks
//! every JWS `url`, from the `Host` of the request: a client that starts at
//! [`AcmeFront::directory_url`] stays on the front for the whole issuance.

use crate::pebble::HOST;
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Pebble's `newOrder` path (its directory's `newOrder`).
const NEW_ORDER_PATH: &str = "/order-plz";

type Upstream = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The refusals to come, in order: each `newOrder` takes the first; `Some` is its
/// `Retry-After` value.
#[derive(Debug, Default)]
struct Refusals {
    queued: VecDeque<Option<String>>,
    refused: usize,
}

/// A running front, stopped when dropped.
#[derive(Debug)]
pub struct AcmeFront {
    port: u16,
    refusals: Arc<Mutex<Refusals>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AcmeFront {
    /// Starts the front on a free port before Pebble at `upstream_port`, serving HTTPS with the
    /// certificate and key Pebble serves (PEM files), and reaching Pebble with `tls`.
    pub(crate) fn start(
        upstream_port: u16,
        certificate: &Path,
        private_key: &Path,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self> {
        let chain = CertificateDer::pem_file_iter(certificate)
            .with_context(|| format!("reading {}", certificate.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading {}", certificate.display()))?;
        let key = PrivateKeyDer::from_pem_file(private_key)
            .with_context(|| format!("reading {}", private_key.display()))?;
        let mut server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the front's TLS configuration")?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .context("binding the ACME front")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        let upstream: Upstream = Client::builder(TokioExecutor::new()).build(connector);
        let refusals = Arc::new(Mutex::new(Refusals::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = Arc::clone(&refusals);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the ACME front's runtime")?;
        let thread = std::thread::Builder::new()
            .name("acme-front".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = serve(listener, acceptor, upstream, upstream_port, shared) => {}
                    }
                });
            })
            .context("starting the ACME front")?;
        Ok(Self {
            port,
            refusals,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The ACME directory through the front, `https://localhost:PORT/dir`: trusted with the same
    /// CA as Pebble's own ([`crate::AcmeCa::tls_ca_pem_path`]).
    pub fn directory_url(&self) -> String {
        format!("https://{HOST}:{}/dir", self.port)
    }

    /// Refuses the next `newOrder` that has no refusal queued yet, with `Retry-After: <value>`
    /// when given (seconds or an HTTP-date), or none.
    pub fn refuse_next_order(&self, retry_after: Option<&str>) {
        self.lock()
            .queued
            .push_back(retry_after.map(str::to_string));
    }

    /// How many orders the front has refused so far.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Refusals> {
        self.refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for AcmeFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    upstream: Upstream,
    upstream_port: u16,
    refusals: Arc<Mutex<Refusals>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, say: give the tests' connections time to close.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, upstream, refusals) =
            (acceptor.clone(), upstream.clone(), Arc::clone(&refusals));
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                handle(req, upstream.clone(), upstream_port, Arc::clone(&refusals))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    upstream: Upstream,
    upstream_port: u16,
    refusals: Arc<Mutex<Refusals>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if req.method() == hyper::Method::POST && req.uri().path() == NEW_ORDER_PATH {
        let refusal = {
            let mut refusals = refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let refusal = refusals.queued.pop_front();
            if refusal.is_some() {
                refusals.refused += 1;
            }
            refusal
        };
        if let Some(retry_after) = refusal {
            return Ok(rate_limited(retry_after.as_deref()));
        }
    }
    Ok(forward(req, upstream, upstream_port)
        .await
        .unwrap_or_else(|e| {
            let mut rsp = Response::new(Full::new(Bytes::from(format!("the ACME front: {e:#}"))));
            *rsp.status_mut() = StatusCode::BAD_GATEWAY;
            rsp
        }))
}

/// The answer of a CA refusing for a rate limit (RFC 8555 §6.6 and §6.7).
fn rate_limited(retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let problem = serde_json::json!({
        "type": "urn:ietf:params:acme:error:rateLimited",
        "detail": "too many new orders recently (the local cloud's ACME front)",
        "status": 429
    });
    let mut rsp = Response::builder()
        .status(StatusCode::TOO_MANY_REQUESTS)
        .header("Content-Type", "application/problem+json");
    if let Some(value) = retry_after {
        rsp = rsp.header("Retry-After", value);
    }
    rsp.body(Full::new(Bytes::from(problem.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The request to Pebble with its `Host` kept, and Pebble's answer.
async fn forward(
    req: Request<Incoming>,
    upstream: Upstream,
    upstream_port: u16,
) -> Result<Response<Full<Bytes>>> {
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    parts.uri = format!("https://{HOST}:{upstream_port}{path}").parse()?;
    let rsp = upstream
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .context("reaching Pebble")?;
    let (mut parts, body) = rsp.into_parts();
    let body = body.collect().await?.to_bytes();
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    parts.headers.remove(hyper::header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(body)))
}
