//! The error every handler returns, with the stable `errorType` names the state machine matches.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use lambda_runtime::Diagnostic;

/// A failed step of the workflow. The variant decides the Lambda `errorType` (see [`Self::name`]),
/// which the ASL's `Retry` and `Catch` match; the message is what an operator reads in the console.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertshipError {
    /// The request (or the function's configuration of what a request may ask for) is wrong.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    CertificateNotFound(String),
    #[error("{0}")]
    CertificateNotExportable(String),
    /// Retryable: the certificate is not `ISSUED` yet.
    #[error("{0}")]
    CertificateNotReady(String),
    #[error("{0}")]
    CertNameConflict(String),
    #[error("{0}")]
    NoTargets(String),
    /// Retryable: an AWS API throttled us after the SDK's own retries.
    #[error("{0}")]
    Throttled(String),
    #[error("{0}")]
    InstallFailed(String),
    #[error("{0}")]
    InstallTimedOut(String),
    /// The function is deployed with a bad environment (missing table name, bad document, ...).
    #[error("{0}")]
    Configuration(String),
    /// Any other AWS failure, with the service's own error code and message.
    #[error("{0}")]
    Service(String),
    /// ACME: the hosted zone does not contain a name's DNS-01 record (refused before any order).
    #[error("{0}")]
    DomainNotInZone(String),
    /// ACME: the CA will not issue for a name (`rejectedIdentifier`, `caa`, ...).
    #[error("{0}")]
    RejectedIdentifier(String),
    /// ACME: the CA could not validate a name's DNS-01 record (`unauthorized`, `dns`, ...).
    #[error("{0}")]
    ChallengeFailed(String),
    /// ACME, retryable later: the CA's rate limit (`rateLimited`), with its `Retry-After`.
    #[error("{0}")]
    RateLimited(String),
    /// ACME, retryable: the CA could not be reached or failed (`badNonce`, `serverInternal`).
    #[error("{0}")]
    AcmeUnavailable(String),
    /// ACME: any other problem the CA reported, with its type and detail.
    #[error("{0}")]
    AcmeFailed(String),
    /// ACME: ACM refused to import the certificate (a re-import that changes the key type, a
    /// quota); its code and message.
    #[error("{0}")]
    AcmImportFailed(String),
    /// A wait, retried by the state machine: Route53 has not applied the change yet.
    #[error("{0}")]
    DnsChangePending(String),
    /// A wait, retried by the state machine: the CA has not validated every name yet.
    #[error("{0}")]
    OrderPending(String),
}

impl CertshipError {
    /// The stable `errorType` this error reaches Step Functions as.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "InvalidRequest",
            Self::CertificateNotFound(_) => "CertificateNotFound",
            Self::CertificateNotExportable(_) => "CertificateNotExportable",
            Self::CertificateNotReady(_) => "CertificateNotReady",
            Self::CertNameConflict(_) => "CertNameConflict",
            Self::NoTargets(_) => "NoTargets",
            Self::Throttled(_) => "Throttled",
            Self::InstallFailed(_) => "InstallFailed",
            Self::InstallTimedOut(_) => "InstallTimedOut",
            Self::Configuration(_) => "ConfigurationError",
            Self::Service(_) => "ServiceError",
            Self::DomainNotInZone(_) => "DomainNotInZone",
            Self::RejectedIdentifier(_) => "RejectedIdentifier",
            Self::ChallengeFailed(_) => "ChallengeFailed",
            Self::RateLimited(_) => "RateLimited",
            Self::AcmeUnavailable(_) => "AcmeUnavailable",
            Self::AcmeFailed(_) => "AcmeFailed",
            Self::AcmImportFailed(_) => "AcmImportFailed",
            Self::DnsChangePending(_) => "DnsChangePending",
            Self::OrderPending(_) => "OrderPending",
        }
    }

    /// Maps an SDK failure that the caller did not handle itself: throttling becomes the
    /// retryable [`CertshipError::Throttled`], everything else [`CertshipError::Service`], keeping
    /// the service's code and message and saying which call failed.
    pub fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let inner = service.err();
                let code = inner.code().unwrap_or("Unknown");
                let message = inner.message().unwrap_or("no message");
                if is_throttling_code(code) {
                    Self::Throttled(format!("{operation} was throttled ({code}): {message}"))
                } else {
                    Self::Service(format!("{operation} failed ({code}): {message}"))
                }
            }
            SdkError::TimeoutError(_) => Self::Service(format!("{operation} timed out")),
            SdkError::DispatchFailure(failure) => {
                Self::Service(format!("{operation} could not reach AWS: {failure:?}"))
            }
            other => Self::Service(format!("{operation} failed: {other}")),
        }
    }
}

impl CertshipError {
    /// An entry EventBridge's PutEvents refused, with the entry's error code and message:
    /// `Throttled` (retried by the state machines) for a throttling code, else `Service`.
    /// `event` says which event, as the message names it.
    pub fn event_refused(event: &str, code: Option<&str>, message: Option<&str>) -> Self {
        let code = code.unwrap_or("Unknown");
        let message = message.unwrap_or("no message");
        let text = format!("PutEvents refused {event} ({code}): {message}");
        if is_throttling_code(code) {
            Self::Throttled(text)
        } else {
            Self::Service(text)
        }
    }
}

/// The error codes AWS services use for throttling (the SDK's own retry classifier's list).
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "BandwidthLimitExceeded"
            | "RequestThrottled"
            | "SlowDown"
            | "PriorRequestNotComplete"
            | "EC2ThrottledException"
    )
}

impl From<CertshipError> for Diagnostic {
    fn from(err: CertshipError) -> Self {
        Diagnostic {
            error_type: err.name().to_string(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_stable_name_and_the_message() {
        let diagnostic: Diagnostic =
            CertshipError::CertNameConflict("web is taken on env=dev".into()).into();
        assert_eq!(diagnostic.error_type, "CertNameConflict");
        assert_eq!(diagnostic.error_message, "web is taken on env=dev");
        let diagnostic: Diagnostic = CertshipError::Configuration("TABLE_NAME".into()).into();
        assert_eq!(diagnostic.error_type, "ConfigurationError");
    }

    #[test]
    fn throttling_codes_are_recognised() {
        assert!(is_throttling_code("ThrottlingException"));
        assert!(is_throttling_code("ProvisionedThroughputExceededException"));
        assert!(!is_throttling_code("ResourceNotFoundException"));
        assert!(!is_throttling_code("LimitExceededException"));
    }
}
