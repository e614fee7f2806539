//! The ACME account: its credentials live in one Secrets Manager secret per directory, made on
//! first use and made again when the CA no longer knows the account.

use crate::ca::CaClient;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use certship_shared::CertshipError;
use certship_shared::acme::{IssueRequest, account_secret_name};
use instant_acme::{Account, AccountCredentials, NewAccount};

/// RFC 8555 §6.7 problem types, as the CA sends them.
const PROBLEM: &str = "urn:ietf:params:acme:error:";

/// The account for `request`'s directory, restored from its secret or created and stored.
pub async fn load_or_create(
    secrets: &aws_sdk_secretsmanager::Client,
    ca: &CaClient,
    request: &IssueRequest,
) -> Result<Account, CertshipError> {
    match stored(secrets, request.directory_url()).await? {
        Some(credentials) => ca
            .builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| acme_error("restoring the ACME account", e)),
        None => create(secrets, ca, request).await,
    }
}

/// The stored account for `directory_url`; an error when there is none, since the steps after
/// `Order` need the account that placed the order.
pub async fn load(
    secrets: &aws_sdk_secretsmanager::Client,
    ca: &CaClient,
    directory_url: &str,
) -> Result<Account, CertshipError> {
    let credentials = stored(secrets, directory_url).await?.ok_or_else(|| {
        CertshipError::AcmeFailed(format!(
            "no ACME account is stored for {directory_url} ({})",
            account_secret_name(directory_url)
        ))
    })?;
    ca.builder()?
        .from_credentials(credentials)
        .await
        .map_err(|e| acme_error("restoring the ACME account", e))
}

/// Registers a new account (agreeing to the CA's terms, with the request's contacts) and
/// stores its credentials, replacing any stored ones: used on first use and when the CA says
/// `accountDoesNotExist`.
pub async fn create(
    secrets: &aws_sdk_secretsmanager::Client,
    ca: &CaClient,
    request: &IssueRequest,
) -> Result<Account, CertshipError> {
    let contact: Vec<&str> = request.contact.iter().map(String::as_str).collect();
    let (account, credentials) = ca
        .builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            request.directory_url().to_string(),
            None,
        )
        .await
        .map_err(|e| acme_error("creating the ACME account", e))?;
    store(secrets, request.directory_url(), &credentials).await?;
    tracing::info!(directory = %request.directory_url(), account = %account.id(), "registered a new ACME account");
    Ok(account)
}

async fn stored(
    secrets: &aws_sdk_secretsmanager::Client,
    directory_url: &str,
) -> Result<Option<AccountCredentials>, CertshipError> {
    let name = account_secret_name(directory_url);
    let got = secrets.get_secret_value().secret_id(&name).send().await;
    let secret = match got {
        Ok(out) => out.secret_string,
        Err(err) => match err.as_service_error() {
            Some(GetSecretValueError::ResourceNotFoundException(_)) => return Ok(None),
            _ => return Err(CertshipError::from_sdk("GetSecretValue", err)),
        },
    };
    let Some(secret) = secret else {
        return Ok(None);
    };
    // The error names no content: the secret string holds the account's private key.
    serde_json::from_str(&secret).map(Some).map_err(|e| {
        CertshipError::Configuration(format!(
            "{name} does not hold ACME account credentials (JSON error at line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

async fn store(
    secrets: &aws_sdk_secretsmanager::Client,
    directory_url: &str,
    credentials: &AccountCredentials,
) -> Result<(), CertshipError> {
    let name = account_secret_name(directory_url);
    let secret = serde_json::to_string(credentials).map_err(|_| {
        CertshipError::Service("could not encode the ACME account credentials".into())
    })?;
    let created = secrets
        .create_secret()
        .name(&name)
        .description(format!("certship ACME account at {directory_url}"))
        .secret_string(secret.clone())
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception()) =>
        {
            secrets
                .put_secret_value()
                .secret_id(&name)
                .secret_string(secret)
                .send()
                .await
                .map_err(|e| CertshipError::from_sdk("PutSecretValue", e))?;
            Ok(())
        }
        Err(err) => Err(CertshipError::from_sdk("CreateSecret", err)),
    }
}

/// The RFC 8555 problem type without its URN prefix (`accountDoesNotExist`, ...).
pub fn problem_type(err: &instant_acme::Error) -> Option<&str> {
    match err {
        instant_acme::Error::Api(problem) => problem
            .r#type
            .as_deref()
            .map(|t| t.strip_prefix(PROBLEM).unwrap_or(t)),
        _ => None,
    }
}

/// Maps what the CA or the connection to it said into the state machine's error names: what an
/// operator can act on gets its own name, what passes gets a retryable one.
pub fn acme_error(doing: &str, err: instant_acme::Error) -> CertshipError {
    let message = format!("{doing}: {err}");
    match problem_type(&err) {
        Some("rejectedIdentifier" | "caa" | "unsupportedIdentifier") => {
            CertshipError::RejectedIdentifier(message)
        }
        Some("unauthorized" | "dns" | "incorrectResponse" | "connection") => {
            CertshipError::ChallengeFailed(message)
        }
        Some("rateLimited") => CertshipError::RateLimited(message),
        Some("badNonce" | "serverInternal") => CertshipError::AcmeUnavailable(message),
        Some(_) => CertshipError::AcmeFailed(message),
        None => match err {
            instant_acme::Error::Http(_)
            | instant_acme::Error::Hyper(_)
            | instant_acme::Error::Other(_)
            | instant_acme::Error::Timeout(_) => CertshipError::AcmeUnavailable(message),
            _ => CertshipError::AcmeFailed(message),
        },
    }
}

/// Whether the CA no longer knows the account (a CA reset, a deactivated account).
pub fn is_account_unknown(err: &instant_acme::Error) -> bool {
    problem_type(err) == Some("accountDoesNotExist")
}
