//! acme-certificate: issues a certificate from an ACME CA (Let's Encrypt or any RFC 8555 CA),
//! proving each name with a DNS-01 record in Route53, and stores it as a new version of the
//! certificate's secret in the bundle format ACM exports use. One step per invocation: the
//! waits between them (Route53's propagation, the CA's validation) are the state machine's
//! Retry, never a long poll here.

use certship_shared::acme::{
    ChallengeRecord, ImportResult, IssueRequest, OrderResult, RateLimitedOrder, Step, StepResult,
    challenge_record_name,
};
use certship_shared::{CertshipError, ExportResult};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus,
    RetryPolicy,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ca::CaClient;

mod account;
pub mod ca;
mod certificate;
mod dns;
mod import;
pub mod pkcs8;
pub mod rate_limit;
pub mod registry;
mod settings;

pub use certificate::{CERTIFICATE_ID_TAG, Issued};
pub use settings::Settings;

/// How long `Finalize` waits for the CA to sign, in process: CAs sign within seconds of a
/// finalize; a CA slower than this fails the step, and the state machine retries the issuance.
const CERTIFICATE_WAIT: Duration = Duration::from_secs(30);

/// What the handler needs, built once per cold start.
pub struct AppState {
    pub route53: aws_sdk_route53::Client,
    pub acm: aws_sdk_acm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub settings: Settings,
}

impl AppState {
    /// Clients from `config`, with `settings`.
    pub fn new(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        Self {
            route53: aws_sdk_route53::Client::new(config),
            acm: aws_sdk_acm::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            events: aws_sdk_eventbridge::Client::new(config),
            settings,
        }
    }
}

/// What a step returns: `$.Order`, `$.Issued` (references only, like `$.Export`), or a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Output {
    Order(OrderResult),
    RateLimited(RateLimitedOrder),
    Issued(ExportResult),
    Imported(ImportResult),
    Step(StepResult),
}

fn status(status: &str) -> Output {
    Output::Step(StepResult {
        status: status.to_string(),
    })
}

/// Runs one step of the issuance.
pub async fn handler(state: &AppState, step: Step) -> Result<Output, CertshipError> {
    match step {
        Step::Order {
            request,
            started_at,
        } => order(state, &request, started_at.as_deref()).await,
        Step::DnsChange { change_id } => {
            if dns::in_sync(&state.route53, &change_id).await? {
                Ok(status("INSYNC"))
            } else {
                Err(CertshipError::DnsChangePending(format!(
                    "Route53 change {change_id} is not INSYNC yet"
                )))
            }
        }
        // A rate limit past Place order is not waited out (Let's Encrypt limits orders, not
        // these), but its failure names the CA's time like any other.
        Step::Answer { request, order } => {
            let ca = CaClient::new(state.settings.ca_bundle.as_deref());
            let answered = async {
                let mut acme = resume(state, &ca, &request, &order).await?;
                answer(&mut acme).await
            }
            .await
            .map_err(|e| rate_limit::with_retry_at(e, ca.retry_after()))?;
            tracing::info!(certificate = %order.certificate_id, answered, "challenges answered");
            Ok(status("ANSWERED"))
        }
        Step::CheckOrder { request, order } => {
            let ca = CaClient::new(state.settings.ca_bundle.as_deref());
            async {
                let mut acme = resume(state, &ca, &request, &order).await?;
                check(&mut acme, &order).await
            }
            .await
            .map_err(|e| rate_limit::with_retry_at(e, ca.retry_after()))
            .map(|()| status("READY"))
        }
        Step::Finalize { request, order } => {
            let ca = CaClient::new(state.settings.ca_bundle.as_deref());
            async {
                let mut acme = resume(state, &ca, &request, &order).await?;
                finalize(state, &request, &order, &mut acme).await
            }
            .await
            .map_err(|e| rate_limit::with_retry_at(e, ca.retry_after()))
            .map(Output::Issued)
        }
        Step::Cleanup { order } => {
            let removed =
                dns::remove(&state.route53, &order.hosted_zone_id, &order.records).await?;
            tracing::info!(certificate = %order.certificate_id, removed, "challenge records removed");
            Ok(status("CLEANED"))
        }
        Step::Import { order, issued } => import::import(state, &order, &issued)
            .await
            .map(Output::Imported),
        Step::Record {
            request,
            issued,
            imported,
            execution,
        } => registry::record(state, &request, &issued, &imported, &execution)
            .await
            .map(|()| status("RECORDED")),
        Step::Failed {
            request,
            error,
            execution,
        } => registry::failed(state, &request, &error, &execution)
            .await
            .map(|recorded| match recorded {
                registry::FailureRecord::RenewalFailed => status("RENEWAL_FAILED"),
                registry::FailureRecord::NotRegistered => status("NOT_REGISTERED"),
                registry::FailureRecord::Refused => status("REFUSED"),
            }),
    }
}

/// Checks the request and the zone, places the order (registering the account again if the CA
/// no longer knows it) and writes every DNS-01 value in one change batch. A rate limit that
/// ends soon is no failure: the step returns the wait (see [`rate_limit`]).
async fn order(
    state: &AppState,
    request: &IssueRequest,
    started_at: Option<&str>,
) -> Result<Output, CertshipError> {
    request.validate()?;
    dns::check_zone(&state.route53, request).await?;
    let previous = registry::previous(state, request).await?;
    let ca = CaClient::new(state.settings.ca_bundle.as_deref());
    let placed = match place(state, request, &ca).await {
        Err(CertshipError::RateLimited(detail)) => {
            let started_at = started_at.and_then(certship_shared::time::parse_rfc3339);
            return match rate_limit::plan(&detail, ca.retry_after(), started_at, SystemTime::now())
            {
                rate_limit::Plan::Wait(wait) => {
                    tracing::warn!(certificate = %request.certificate_id(), seconds = wait.retry_after_seconds, retry_at = %wait.retry_at, "the CA refused the order for a rate limit: waiting");
                    Ok(Output::RateLimited(RateLimitedOrder { rate_limited: wait }))
                }
                rate_limit::Plan::Fail(message) => Err(CertshipError::RateLimited(message)),
            };
        }
        placed => placed?,
    };
    let (order, records) = placed;
    let change_id = dns::add(&state.route53, request.zone_id(), &records).await?;
    let result = OrderResult {
        certificate_id: request.certificate_id(),
        hosted_zone_id: request.zone_id().to_string(),
        order_url: order.url().to_string(),
        change_id,
        records,
        import_to_acm: request.import_to_acm || previous.acm_certificate_arn.is_some(),
        acm_certificate_arn: previous.acm_certificate_arn,
    };
    tracing::info!(
        certificate = %result.certificate_id,
        order = %result.order_url,
        records = result.records.len(),
        "order placed and DNS-01 records written"
    );
    Ok(Output::Order(result))
}

/// The account and the order, and the order's DNS-01 values: everything that asks the CA, so
/// a rate limit met anywhere here is one refusal.
async fn place(
    state: &AppState,
    request: &IssueRequest,
    ca: &CaClient,
) -> Result<(Order, Vec<ChallengeRecord>), CertshipError> {
    let identifiers: Vec<Identifier> = request
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let new_order = NewOrder::new(&identifiers);
    let acme = account::load_or_create(&state.secrets, ca, request).await?;
    let mut order = match acme.new_order(&new_order).await {
        Ok(order) => order,
        Err(err) if account::is_account_unknown(&err) => {
            tracing::warn!(directory = %request.directory_url(), "the CA no longer knows the stored account: registering a new one");
            account::create(&state.secrets, ca, request)
                .await?
                .new_order(&new_order)
                .await
                .map_err(|e| account::acme_error("placing the order", e))?
        }
        Err(err) => return Err(account::acme_error("placing the order", err)),
    };
    let records = challenge_records(&mut order).await?;
    Ok((order, records))
}

/// The DNS-01 values of the order's pending authorizations, grouped by record name: a name and
/// its wildcard share `_acme-challenge.<name>`, so one record set carries both values.
async fn challenge_records(order: &mut Order) -> Result<Vec<ChallengeRecord>, CertshipError> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|e| account::acme_error("reading an authorization", e))?;
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(CertshipError::AcmeFailed(format!(
                    "the authorization for {} is {other:?}",
                    authorization.identifier()
                )));
            }
        }
        let name = authorization.identifier().to_string();
        let challenge = authorization
            .challenge(ChallengeType::Dns01)
            .ok_or_else(|| {
                CertshipError::AcmeFailed(format!("the CA offers no dns-01 challenge for {name}"))
            })?;
        by_name
            .entry(challenge_record_name(&name))
            .or_default()
            .push(challenge.key_authorization().dns_value());
    }
    Ok(by_name
        .into_iter()
        .map(|(name, values)| ChallengeRecord { name, values })
        .collect())
}

/// The account that placed the order, and the order, from their stored credentials and URL.
async fn resume(
    state: &AppState,
    ca: &CaClient,
    request: &IssueRequest,
    order: &OrderResult,
) -> Result<Order, CertshipError> {
    let acme: Account = account::load(&state.secrets, ca, request.directory_url()).await?;
    acme.order(order.order_url.clone())
        .await
        .map_err(|e| account::acme_error("reading the order", e))
}

/// Tells the CA each pending challenge is ready. Only pending ones, so a retried step does not
/// answer twice.
async fn answer(order: &mut Order) -> Result<usize, CertshipError> {
    let mut answered = 0;
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization =
            authorization.map_err(|e| account::acme_error("reading an authorization", e))?;
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let Some(mut challenge) = authorization.challenge(ChallengeType::Dns01) else {
            continue;
        };
        if challenge.status != instant_acme::ChallengeStatus::Pending {
            continue;
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| account::acme_error("answering a challenge", e))?;
        answered += 1;
    }
    Ok(answered)
}

/// `Ok` once the CA has validated every name; the retryable `OrderPending` before; and for an
/// invalid order, the failed names with the CA's reason and the record it looked at.
async fn check(order: &mut Order, placed: &OrderResult) -> Result<(), CertshipError> {
    let status = order
        .refresh()
        .await
        .map_err(|e| account::acme_error("reading the order", e))?
        .status;
    match status {
        OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => Ok(()),
        OrderStatus::Pending => Err(CertshipError::OrderPending(format!(
            "the CA has not validated every name of {} yet",
            placed.certificate_id
        ))),
        OrderStatus::Invalid => Err(failed_challenges(order).await),
    }
}

async fn failed_challenges(order: &mut Order) -> CertshipError {
    let mut failures = Vec::new();
    let mut kind: Option<String> = None;
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        if let Ok(state) = authorization.refresh().await
            && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            kind = kind.or_else(|| problem.r#type.clone());
            failures.push(format!(
                "{name} (record {}): {}",
                challenge_record_name(&name),
                problem
            ));
        }
    }
    let message = if failures.is_empty() {
        "the CA marked the order invalid without saying which name failed".to_string()
    } else {
        format!("the CA could not validate {}", failures.join("; "))
    };
    match kind.as_deref().map(|k| k.rsplit(':').next().unwrap_or(k)) {
        Some("rejectedIdentifier" | "caa") => CertshipError::RejectedIdentifier(message),
        Some(_) | None => CertshipError::ChallengeFailed(message),
    }
}

/// Generates the key, finalizes with its CSR, fetches the chain and stores the bundle.
async fn finalize(
    state: &AppState,
    request: &IssueRequest,
    placed: &OrderResult,
    order: &mut Order,
) -> Result<ExportResult, CertshipError> {
    let status = order
        .refresh()
        .await
        .map_err(|e| account::acme_error("reading the order", e))?
        .status;
    if status != OrderStatus::Ready {
        // A key made here pairs only with a CSR sent here: an order finalized by an earlier
        // attempt has a certificate for a key that no longer exists.
        return Err(CertshipError::AcmeFailed(format!(
            "order {} is {status:?}, not ready to finalize: issue again for a new order",
            placed.order_url
        )));
    }
    let (key, csr) = certificate::key_and_csr(request.key_type, &request.domains)?;
    order
        .finalize_csr(&csr)
        .await
        .map_err(|e| account::acme_error("finalizing the order", e))?;
    let chain = order
        .poll_certificate(&RetryPolicy::new().timeout(CERTIFICATE_WAIT))
        .await
        .map_err(|e| account::acme_error("fetching the certificate", e))?;
    let issued = Issued::from_chain(&chain)?;
    certificate::store(
        &state.secrets,
        request,
        &placed.certificate_id,
        &key,
        &issued,
    )
    .await
}
