//! The connection to the CA against a scripted one: instant-acme's real account and order code
//! talking to answers written here, so the `Retry-After` of a refusal reaches the plan.

use super::CaClient;
use crate::account;
use crate::rate_limit::{self, Plan};
use bytes::Bytes;
use certship_shared::CertshipError;
use http::{Method, Request, Response};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient, Identifier, NewAccount, NewOrder};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const DIRECTORY: &str = "https://ca.test/dir";

/// A `newOrder` answer: its status and `Retry-After`.
type OrderAnswer = (u16, Option<&'static str>);

/// What the scripted CA answers `newOrder` with, one per order, in turn.
#[derive(Clone)]
struct Script {
    orders: Arc<Mutex<Vec<OrderAnswer>>>,
}

impl Script {
    fn new(orders: &[OrderAnswer]) -> Self {
        Self {
            orders: Arc::new(Mutex::new(orders.iter().rev().cloned().collect())),
        }
    }

    fn answer(&self, req: &Request<BodyWrapper<Bytes>>) -> Response<BodyWrapper<Bytes>> {
        let json = |status: u16, body: serde_json::Value| {
            {
                Response::builder()
                    .status(status)
                    .header("Replay-Nonce", "nonce-1")
                    .header("Content-Type", "application/json")
            }
            .body(BodyWrapper::from(body.to_string().into_bytes()))
            .unwrap()
        };
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/dir") => json(
                200,
                serde_json::json!({
                    "newNonce": "https://ca.test/nonce",
                    "newAccount": "https://ca.test/account",
                    "newOrder": "https://ca.test/order"
                }),
            ),
            (&Method::HEAD, "/nonce") => json(200, serde_json::json!({})),
            (&Method::POST, "/account") => {
                let mut rsp = json(201, serde_json::json!({"status": "valid"}));
                rsp.headers_mut()
                    .insert("Location", "https://ca.test/account/1".parse().unwrap());
                rsp
            }
            (&Method::POST, "/order") => {
                let (status, retry_after) = self.orders.lock().unwrap().pop().expect("scripted");
                let mut rsp = if status == 429 {
                    json(
                        429,
                        serde_json::json!({
                            "type": "urn:ietf:params:acme:error:rateLimited",
                            "detail": "too many new orders recently",
                            "status": 429
                        }),
                    )
                } else {
                    json(
                        503,
                        serde_json::json!({
                            "type": "urn:ietf:params:acme:error:serverInternal",
                            "detail": "down for maintenance",
                            "status": 503
                        }),
                    )
                };
                if let Some(value) = retry_after {
                    rsp.headers_mut()
                        .insert("Retry-After", value.parse().unwrap());
                }
                rsp
            }
            other => panic!("the scripted CA was not asked for {other:?}"),
        }
    }
}

impl HttpClient for Script {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let rsp = BytesResponse::from(self.answer(&req));
        Box::pin(async move { Ok(rsp) })
    }
}

async fn order_refused(ca: &CaClient) -> CertshipError {
    let (acme, _) = ca
        .builder()
        .unwrap()
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            DIRECTORY.into(),
            None,
        )
        .await
        .unwrap();
    let names = [Identifier::Dns("www.example.com".into())];
    let Err(err) = acme.new_order(&NewOrder::new(&names)).await else {
        panic!("the scripted CA placed the order")
    };
    account::acme_error("placing the order", err)
}

#[tokio::test]
async fn a_rate_limit_with_retry_after_becomes_a_wait_of_that_long() {
    let script = Script::new(&[(429, Some("90"))]);
    let ca = CaClient::with_http(move || Ok(Box::new(script.clone())));
    let before = SystemTime::now();
    let CertshipError::RateLimited(detail) = order_refused(&ca).await else {
        panic!("not RateLimited")
    };
    assert!(detail.contains("too many new orders recently"), "{detail}");
    let retry_at = ca.retry_after().expect("the CA's Retry-After was kept");
    let asked = retry_at.duration_since(before).unwrap();
    assert!(
        (Duration::from_secs(90)..Duration::from_secs(95)).contains(&asked),
        "{asked:?}"
    );
    let now = SystemTime::now();
    let Plan::Wait(wait) = rate_limit::plan(&detail, Some(retry_at), Some(before), now) else {
        panic!("not waited")
    };
    assert!((89..=91).contains(&wait.retry_after_seconds), "{wait:?}");
    assert_eq!(wait.detail, detail);
}

#[tokio::test]
async fn each_refusal_keeps_its_own_retry_after_or_none() {
    let script = Script::new(&[
        (429, Some("Sun, 29 Nov 2026 04:00:00 GMT")),
        (503, None),
        (429, None),
    ]);
    let ca = CaClient::with_http(move || Ok(Box::new(script.clone())));
    assert!(matches!(
        order_refused(&ca).await,
        CertshipError::RateLimited(_)
    ));
    let at = certship_shared::time::parse_rfc3339("2026-11-29T04:00:00Z");
    assert_eq!(ca.retry_after(), at);
    // A later refusal without the header leaves no stale time behind.
    assert!(matches!(
        order_refused(&ca).await,
        CertshipError::AcmeUnavailable(_)
    ));
    assert_eq!(ca.retry_after(), None);
    let CertshipError::RateLimited(detail) = order_refused(&ca).await else {
        panic!("not RateLimited")
    };
    assert_eq!(ca.retry_after(), None);
    let message = match rate_limit::plan(&detail, None, None, SystemTime::now()) {
        Plan::Fail(message) => message,
        Plan::Wait(_) => panic!("waited without the execution's start"),
    };
    assert!(
        message.ends_with("the CA named no time to retry"),
        "{message}"
    );
}
