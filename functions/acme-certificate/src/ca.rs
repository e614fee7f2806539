//! The HTTPS connection to the ACME CA, and what it tells about rate limits.
//!
//! A CA that refuses a request for a rate limit answers `429` with a `rateLimited` problem and
//! may say when to come back in `Retry-After` (RFC 8555 §6.6; Let's Encrypt does, "Retrying
//! After Hitting Rate Limits" in letsencrypt.org/docs/rate-limits). instant-acme turns the answer into an
//! [`instant_acme::Problem`], which has no headers, so the client here is instant-acme's own
//! (hyper with rustls on aws-lc-rs, the AWS SDK's stack) wrapped to keep the `Retry-After` of
//! the last answer that was not a success. One [`CaClient`] per invocation: nothing is shared
//! between two issuances that run at once.

use bytes::Bytes;
use certship_shared::CertshipError;
use http::Request;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{Account, AccountBuilder, BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Makes the HTTP client an account talks through.
type Connect = dyn Fn() -> Result<Box<dyn HttpClient>, CertshipError> + Send + Sync;

/// The connection to the CA for one invocation, and the last `Retry-After` it was told.
pub struct CaClient {
    connect: Arc<Connect>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl CaClient {
    /// HTTPS to the CA, trusting the system's roots, or only the CA in `bundle` (the local
    /// cloud's Pebble).
    pub fn new(bundle: Option<&Path>) -> Self {
        let bundle = bundle.map(Path::to_path_buf);
        Self::with_http(move || https(bundle.as_deref()))
    }

    /// Through `connect`'s clients (tests: a CA that answers from a script).
    pub fn with_http(
        connect: impl Fn() -> Result<Box<dyn HttpClient>, CertshipError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            connect: Arc::new(connect),
            retry_after: Arc::new(Mutex::new(None)),
        }
    }

    /// An account builder whose requests go through this connection.
    pub fn builder(&self) -> Result<AccountBuilder, CertshipError> {
        Ok(Account::builder_with_http(Box::new(Recording {
            inner: (self.connect)()?,
            retry_after: Arc::clone(&self.retry_after),
        })))
    }

    /// When the CA's last answer that was not a success asked to come back, if it did.
    pub fn retry_after(&self) -> Option<SystemTime> {
        *self
            .retry_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// instant-acme's own client, built as `Account::builder` and `Account::builder_with_root` build
/// it (which keep it private).
fn https(bundle: Option<&Path>) -> Result<Box<dyn HttpClient>, CertshipError> {
    let fail = |e: String| CertshipError::Configuration(format!("the ACME HTTP client: {e}"));
    let connector = match bundle {
        None => HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| fail(e.to_string()))?,
        Some(path) => {
            let root = CertificateDer::from_pem_file(path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            roots.add(root).map_err(|e| fail(e.to_string()))?;
            HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    };
    let connector = connector.https_only().enable_http1().enable_http2().build();
    Ok(Box::new(
        HyperClient::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(connector),
    ))
}

/// Passes every request through and keeps the `Retry-After` of each answer that was not a
/// success (none when it has no such header), so after a refused request it holds that
/// request's. Successful answers leave it alone: instant-acme reads their `Retry-After` itself
/// while polling.
struct Recording {
    inner: Box<dyn HttpClient>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl HttpClient for Recording {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let answer = self.inner.request(req);
        let slot = Arc::clone(&self.retry_after);
        Box::pin(async move {
            let response = answer.await?;
            if !response.parts.status.is_success() {
                let at = response
                    .parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                *slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
            }
            Ok(response)
        })
    }
}

/// The longest `delay-seconds` taken as said: a year. More is read as a year, which is still
/// "not soon" everywhere it is used.
pub const MAX_RETRY_AFTER_SECS: u64 = 365 * 86_400;

/// A `Retry-After` value as a moment: `delay-seconds` from `now`, or an `HTTP-date`
/// (RFC 9110 §10.2.3). None for anything else.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits: the one way to fail is a number too large for u64.
        let secs = value.parse().unwrap_or(u64::MAX).min(MAX_RETRY_AFTER_SECS);
        return Some(now + Duration::from_secs(secs));
    }
    httpdate::parse_http_date(value).ok()
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod ca_tests;
