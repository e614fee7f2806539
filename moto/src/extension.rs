//! The typed client of certship's routes on moto server (`scripts/certship_moto.py`), for what
//! moto has no AWS API for, and of the moto-api switch the local cloud needs.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `POST` here renews a certificate in place (`RENEW_PATH` in `scripts/certship_moto.py`).
pub const RENEW_PATH: &str = "/_certship/acm/renew";
/// moto's own configuration route (`/moto-api/config`).
pub const MOTO_CONFIG_PATH: &str = "/moto-api/config";

/// What the emulator's renewal answers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Renewed {
    pub certificate_arn: String,
    /// As ACM writes serials: `0a:1b:...`.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
}

/// certship's extension of a moto server, reached at `endpoint` (moto itself, or the local
/// cloud's gateway, which forwards these routes to moto).
#[derive(Debug, Clone)]
pub struct Extension {
    endpoint: String,
}

impl Extension {
    /// The extension at `endpoint` (`http://127.0.0.1:PORT`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
        }
    }

    /// Renews a certificate in place, as ACM's managed renewal does: the same ARN, domain names,
    /// tags and options, a new key and a new certificate (new serial, new validity) from the
    /// emulator's CA; DescribeCertificate then shows a `RenewalSummary` of `SUCCESS`. An unknown
    /// ARN is an error naming HTTP 404; a certificate that is not `ISSUED` (or was imported) one
    /// naming HTTP 400.
    pub async fn renew_certificate(&self, certificate_arn: &str) -> Result<Renewed> {
        let url = format!("{}{RENEW_PATH}", self.endpoint);
        let (status, answer) =
            crate::http::post(&url, &json!({ "CertificateArn": certificate_arn })).await?;
        if status != hyper::StatusCode::OK {
            bail!(
                "renewing {certificate_arn}: HTTP {}: {answer}",
                status.as_u16()
            );
        }
        serde_json::from_str(&answer)
            .with_context(|| format!("renewing {certificate_arn}: unexpected answer {answer}"))
    }

    /// Switches on moto's Step Functions execution (idempotent with moto_server.py doing it too
    /// under `CERTSHIP_SFN_EXECUTE=1`).
    pub async fn enable_step_functions_execution(&self) -> Result<()> {
        crate::http::post_json(
            &format!("{}{MOTO_CONFIG_PATH}", self.endpoint),
            &json!({"stepfunctions": {"execute_state_machine": true}}),
        )
        .await
        .context("switching on Step Functions execution in moto")?;
        Ok(())
    }
}
