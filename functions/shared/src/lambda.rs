//! Glue between the Lambda runtime and the handlers.

use crate::CertshipError;
use serde::de::DeserializeOwned;

/// Decodes a raw Lambda payload into a typed event. A payload that does not fit is the caller's
/// fault, so it is an `InvalidRequest` naming what is wrong (serde names the missing field),
/// rather than the runtime's own deserialization error, which the state machine cannot match.
pub fn decode<T: DeserializeOwned>(payload: serde_json::Value) -> Result<T, CertshipError> {
    serde_json::from_value(payload).map_err(|e| {
        CertshipError::InvalidRequest(format!("the input does not fit the contract: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkflowState;

    #[test]
    fn a_missing_field_is_an_invalid_request_naming_it() {
        let err = decode::<WorkflowState>(serde_json::json!({"CertificateArn": "a"})).unwrap_err();
        assert_eq!(err.name(), "InvalidRequest");
        assert!(err.to_string().contains("CertName"), "{err}");
    }
}
