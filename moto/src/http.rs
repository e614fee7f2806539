//! A minimal JSON-over-HTTP client for moto's and the local cloud's own endpoints (moto-api,
//! certship's extension, the emulated API), which speak plain HTTP on loopback.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// POSTs `body` as JSON to `url` and returns the status and the text of the answer.
pub async fn post(url: &str, body: &Value) -> Result<(hyper::StatusCode, String)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// POSTs `body` as JSON to `url` and returns the JSON answer; any status but 200 is an error
/// carrying the answer.
pub async fn post_json(url: &str, body: &Value) -> Result<Value> {
    let (status, text) = post(url, body).await?;
    if !status.is_success() {
        bail!("POST {url}: {status}: {text}");
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).or_else(|_| Ok(Value::String(text)))
}
