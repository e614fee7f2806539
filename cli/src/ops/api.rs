//! The deployment API: `POST /export-cert`, authorized by IAM, so every request is signed with
//! Signature Version 4 (service `execute-api`) from the normal credential chain.

use anyhow::{Context, Result};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::SystemTime;

/// A request to sign: what goes on the wire, less the signature headers.
#[derive(Debug, Clone)]
pub struct Unsigned<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Headers to sign besides `host` (taken from the URL) and `x-amz-date` (added).
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

/// The headers SigV4 adds (`x-amz-date`, `authorization`, and `x-amz-security-token` for
/// temporary credentials) and the signature, for `request` by `identity` at `time`.
pub fn sign_request(
    request: &Unsigned<'_>,
    identity: &Identity,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<(Vec<(String, String)>, String)> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .context("signing parameters")?
        .into();
    let host = host_of(request.url)?;
    let headers = std::iter::once(("host", host.as_str())).chain(
        request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let signable = SignableRequest::new(
        request.method,
        request.url,
        headers,
        SignableBody::Bytes(request.body),
    )
    .context("the request cannot be signed")?;
    let (instructions, signature) = sign(signable, &params)
        .context("signing the request")?
        .into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok((
        headers
            .into_iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect(),
        signature,
    ))
}

fn host_of(url: &str) -> Result<String> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let host = uri.host().with_context(|| format!("{url} names no host"))?;
    Ok(match uri.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The region in an API Gateway URL (`https://ID.execute-api.REGION.amazonaws.com/...`).
pub fn api_region(url: &str) -> Option<String> {
    let host = host_of(url).ok()?;
    let mut labels = host.split('.');
    let (_, service, region) = (labels.next()?, labels.next()?, labels.next()?);
    (service == "execute-api" && !region.is_empty()).then(|| region.to_string())
}

/// What the API answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// POSTs `body` as JSON to `url`, signed for `execute-api` in `region` with the credentials of
/// `config`'s chain. HTTPS and HTTP (a local endpoint) alike.
pub async fn post_signed(
    config: &aws_config::SdkConfig,
    url: &str,
    body: &serde_json::Value,
) -> Result<Answer> {
    // An execute-api URL names its region; sign for that one, whatever the profile says.
    let region = api_region(url).unwrap_or_else(|| super::region(config).to_string());
    let credentials = config
        .credentials_provider()
        .context("no AWS credentials provider")?
        .provide_credentials()
        .await
        .context("no AWS credentials: configure a profile, environment variables or a role")?;
    let identity = Identity::from(credentials);
    let body = serde_json::to_vec(body)?;
    let unsigned = Unsigned {
        method: "POST",
        url,
        headers: vec![("content-type".into(), "application/json".into())],
        body: &body,
    };
    let (signature_headers, _) = sign_request(
        &unsigned,
        &identity,
        &region,
        "execute-api",
        SystemTime::now(),
    )?;
    let mut request = hyper::Request::post(url);
    for (name, value) in unsigned.headers.iter().chain(&signature_headers) {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(body)))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .context("loading the system's root certificates")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .with_context(|| format!("{url} did not answer within 30 s"))?
            .with_context(|| format!("calling {url}"))?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
    });
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use sha2::Digest;

    /// AWS's own SigV4 test suite (aws-signing-test-suite/v4, as shipped with aws-sigv4):
    /// credentials, time, region and service of every case.
    fn identity() -> Identity {
        Identity::from(Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test-suite",
        ))
    }

    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160) // 2015-08-30T12:36:00Z
    }

    #[test]
    fn post_vanilla_signs_as_the_aws_test_suite_says() {
        let request = Unsigned {
            method: "POST",
            url: "https://example.amazonaws.com/",
            headers: vec![],
            body: b"",
        };
        let (headers, signature) =
            sign_request(&request, &identity(), "us-east-1", "service", suite_time()).unwrap();
        assert_eq!(
            signature,
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        let authorization = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert_eq!(
            authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert!(headers.contains(&("x-amz-date".into(), "20150830T123600Z".into())));
    }

    #[test]
    fn a_body_is_signed_by_its_hash_as_the_aws_test_suite_says() {
        // post-x-www-form-urlencoded (sign_body: true): the body's SHA-256 ends the canonical
        // request and is sent, signed, as x-amz-content-sha256.
        let body = b"Param1=value1";
        let request = Unsigned {
            method: "POST",
            url: "https://example.amazonaws.com/",
            headers: vec![
                ("content-length".into(), "13".into()),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
                (
                    "x-amz-content-sha256".into(),
                    hex::encode(sha2::Sha256::digest(body)),
                ),
            ],
            body,
        };
        let (_, signature) =
            sign_request(&request, &identity(), "us-east-1", "service", suite_time()).unwrap();
        assert_eq!(
            signature,
            "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        );
        let other = Unsigned {
            body: b"Param1=value2",
            ..request
        };
        let (_, changed) =
            sign_request(&other, &identity(), "us-east-1", "service", suite_time()).unwrap();
        assert_ne!(
            changed, signature,
            "the body's hash is part of the signature"
        );
    }

    #[test]
    fn an_api_url_names_the_region_to_sign_for() {
        assert_eq!(
            api_region("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/export-cert")
                .as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            api_region("https://abc.execute-api.cn-north-1.amazonaws.com.cn/prod/x").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(api_region("http://127.0.0.1:4566/prod/export-cert"), None);
    }

    #[test]
    fn temporary_credentials_add_their_session_token() {
        let identity = Identity::from(Credentials::new(
            "AKID",
            "secret",
            Some("token".into()),
            None,
            "t",
        ));
        let request = Unsigned {
            method: "POST",
            url: "http://localhost:4566/prod/export-cert",
            headers: vec![],
            body: b"{}",
        };
        let (headers, _) = sign_request(
            &request,
            &identity,
            "eu-west-1",
            "execute-api",
            suite_time(),
        )
        .unwrap();
        assert!(headers.contains(&("x-amz-security-token".into(), "token".into())));
        let authorization = &headers
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap()
            .1;
        assert!(
            authorization.contains("/eu-west-1/execute-api/aws4_request"),
            "{authorization}"
        );
        assert!(!authorization.contains("secret"));
    }
}
