//! What one deployment costs, from published on-demand prices (us-east-1, as of 2026-11): the
//! counts the bench measured times the unit price. Free calls (SSM's State Manager, Run Command
//! and DescribeInstanceInformation at standard throughput) cost nothing.
//!
//! - Step Functions Standard: $0.025 per 1,000 state transitions
//!   (<https://aws.amazon.com/step-functions/pricing/>).
//! - Lambda on arm64: $0.20 per million requests, $0.0000133334 per GB-second, at the template's
//!   256 MB (<https://aws.amazon.com/lambda/pricing/>). The duration is the local handlers' run
//!   time, which includes the emulator's latency: an upper bound for AWS.
//! - DynamoDB on demand: $0.625 per million write request units, $0.125 per million read request
//!   units, one unit per request (items under 1 KB; a query of many items reads more)
//!   (<https://aws.amazon.com/dynamodb/pricing/on-demand/>).
//! - S3 Standard: $0.005 per 1,000 PUT/LIST, $0.0004 per 1,000 GET
//!   (<https://aws.amazon.com/s3/pricing/>).
//! - Secrets Manager: $0.05 per 10,000 API calls
//!   (<https://aws.amazon.com/secrets-manager/pricing/>).
//! - EventBridge: $1.00 per million custom events (<https://aws.amazon.com/eventbridge/pricing/>).

use certship_local::functions::{Function, Invocations};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

pub const STATE_TRANSITION: f64 = 0.025 / 1_000.0;
pub const LAMBDA_REQUEST: f64 = 0.20 / 1_000_000.0;
pub const LAMBDA_GB_SECOND_ARM: f64 = 0.000_013_333_4;
/// The template's `MemorySize` for every function.
pub const LAMBDA_MEMORY_GB: f64 = 256.0 / 1024.0;
pub const DYNAMODB_WRITE: f64 = 0.625 / 1_000_000.0;
pub const DYNAMODB_READ: f64 = 0.125 / 1_000_000.0;
pub const S3_PUT: f64 = 0.005 / 1_000.0;
pub const S3_GET: f64 = 0.0004 / 1_000.0;
pub const SECRETS_MANAGER_CALL: f64 = 0.05 / 10_000.0;
pub const EVENTBRIDGE_EVENT: f64 = 1.0 / 1_000_000.0;

/// One deployment's cost in USD, by service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    pub step_functions: f64,
    pub lambda: f64,
    pub dynamodb: f64,
    pub s3: f64,
    pub secrets_manager: f64,
    pub eventbridge: f64,
    pub total: f64,
}

/// The cost of `transitions`, the functions' `invocations` and the `calls` (`service:Operation`).
pub fn of(
    transitions: u64,
    invocations: &HashMap<Function, Invocations>,
    calls: &BTreeMap<String, u64>,
) -> Cost {
    let mut cost = Cost {
        step_functions: transitions as f64 * STATE_TRANSITION,
        ..Cost::default()
    };
    for stats in invocations.values() {
        cost.lambda += stats.count as f64 * LAMBDA_REQUEST
            + stats.busy.as_secs_f64() * LAMBDA_MEMORY_GB * LAMBDA_GB_SECOND_ARM;
    }
    for (call, &n) in calls {
        let n = n as f64;
        let (service, operation) = call.split_once(':').unwrap_or((call, ""));
        let operation = operation.split(' ').next().unwrap_or(operation);
        match service {
            "dynamodb" if is_write(operation) => cost.dynamodb += n * DYNAMODB_WRITE,
            "dynamodb" => cost.dynamodb += n * DYNAMODB_READ,
            "s3" if matches!(operation, "GetObject" | "HeadObject") => cost.s3 += n * S3_GET,
            "s3" => cost.s3 += n * S3_PUT,
            "secretsmanager" => cost.secrets_manager += n * SECRETS_MANAGER_CALL,
            "events" => cost.eventbridge += n * EVENTBRIDGE_EVENT,
            _ => {}
        }
    }
    cost.total = cost.step_functions
        + cost.lambda
        + cost.dynamodb
        + cost.s3
        + cost.secrets_manager
        + cost.eventbridge;
    cost
}

fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_count_is_priced_by_its_service() {
        let invocations = HashMap::from([(
            Function::CheckInstallStatus,
            Invocations {
                count: 2,
                busy: Duration::from_secs(4),
                last_end: None,
            },
        )]);
        let calls = BTreeMap::from([
            ("dynamodb:PutItem".to_string(), 1_000_000),
            ("dynamodb:Query".to_string(), 1_000_000),
            ("s3:PutObject (agents)".to_string(), 1_000),
            ("s3:GetObject".to_string(), 1_000),
            ("secretsmanager:GetSecretValue".to_string(), 10_000),
            ("ssm:DescribeInstanceInformation".to_string(), 1_000_000),
        ]);
        let cost = of(1_000, &invocations, &calls);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(near(cost.step_functions, 0.025));
        assert!(near(
            cost.lambda,
            2.0 * 0.2e-6 + 4.0 * 0.25 * 0.000_013_333_4
        ));
        assert!(near(cost.dynamodb, 0.625 + 0.125));
        assert!(near(cost.s3, 0.005 + 0.0004));
        assert!(near(cost.secrets_manager, 0.05));
        assert!(near(
            cost.total,
            cost.step_functions + cost.lambda + cost.dynamodb + cost.s3 + cost.secrets_manager
        ));
    }
}
