//! `certship acme`: certificates from an ACME CA (Let's Encrypt or any RFC 8555 CA), issued by
//! the ACME issuance state machine (`statemachine/acme-issuance.asl.json`). `issue` starts an
//! issuance and follows it to its end; the functions under it are public so that tests run them
//! against the local cloud.

use super::ISSUANCE_FAILED;
use crate::ops::execution;
use crate::ops::stack::Resources;
use crate::ops::{self, AwsArgs, Clients, OutputArgs, OutputFormat, StackArgs, explain};
use anyhow::{Context, Result, bail};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use certship_shared::acme::{
    ImportResult, IssueRequest, KeyType, OrderResult, RateLimitedOrder, SOURCE_PREFIX,
};
use certship_shared::acme_registry::{Registration, Renewal};
use certship_shared::{CertshipError, ExportResult};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
#[command(after_help = "Example:
  certship acme issue --domain example.com --domain '*.example.com' --zone-id Z0123456789ABCDEFGHIJ")]
pub struct AcmeArgs {
    #[command(subcommand)]
    command: AcmeCommand,
}

#[derive(Subcommand)]
enum AcmeCommand {
    /// Issue a certificate (again: renew it), proving each name with a DNS-01 record in Route53
    Issue(IssueArgs),
    /// List the ACME certificates: expiry, days left, and where each renewal stands
    List(ListArgs),
    /// Have the renewal schedule issue a certificate again at its next sweep, whatever it has left
    Renew(RenewArgs),
}

impl AcmeArgs {
    pub async fn run(self) -> Result<ExitCode> {
        match self.command {
            AcmeCommand::Issue(args) => args.run().await,
            AcmeCommand::List(args) => args.run().await,
            AcmeCommand::Renew(args) => args.run().await,
        }
    }
}

#[derive(Args)]
#[command(
    after_help = "Each certificate issued once is renewed by the schedule (AcmeRenewalSchedule, daily
by default) when fewer than its RenewDaysBefore days (30 by default) are left, or when marked with
`certship acme renew`. RENEWAL says what the next sweep does: due, not due, forced, or backing off
after failures in a row (1, 2, then 4 days between attempts).
Your credentials need dynamodb:Scan on the registry (the stack's AcmeTableName)."
)]
pub struct ListArgs {
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl ListArgs {
    pub async fn run(self) -> Result<ExitCode> {
        let clients = Clients::load(&self.aws).await?;
        let table = Resources::new(&clients.cloudformation, &self.stack)
            .acme_table_name()
            .await?;
        let (registrations, broken) = ops::acme_registry::list(&clients.dynamodb, &table).await?;
        let now = std::time::SystemTime::now();
        match self.output.output {
            OutputFormat::Text => {
                println!("{}", render_registrations(&registrations, now));
                for err in &broken {
                    eprintln!("warning: {err}");
                }
            }
            OutputFormat::Json => ops::print_json(&serde_json::json!({
                "Certificates": registrations.iter().map(|r| {
                    let mut value = serde_json::to_value(r).unwrap_or_default();
                    value["Renewal"] = serde_json::to_value(r.renewal(now)).unwrap_or_default();
                    value
                }).collect::<Vec<_>>(),
                "Unreadable": broken,
            }))?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The registry as a table: one row per certificate.
pub fn render_registrations(registrations: &[Registration], now: std::time::SystemTime) -> String {
    if registrations.is_empty() {
        return "No ACME certificate has been issued yet: `certship acme issue` issues one.".into();
    }
    let rows: Vec<Vec<String>> = registrations
        .iter()
        .map(|r| {
            let renewal = match r.renewal(now) {
                Renewal::NotDue { .. } => "not due".to_string(),
                Renewal::Due { .. } => "due".to_string(),
                Renewal::Forced { .. } => "forced".to_string(),
                Renewal::BackingOff { retry_in, .. } => {
                    format!("backing off ({}h)", retry_in.div_ceil(3_600))
                }
            };
            vec![
                format!("{SOURCE_PREFIX}{}", r.certificate_id),
                r.request.domains.join(","),
                r.not_after.clone().unwrap_or_else(|| "-".into()),
                r.days_left(now).map_or("-".into(), |d| d.to_string()),
                r.request.renew_days_before().to_string(),
                renewal,
                r.failed_attempts.to_string(),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    ops::table::render(
        &[
            "CERTIFICATE",
            "NAMES",
            "NOT AFTER",
            "DAYS LEFT",
            "RENEW AT",
            "RENEWAL",
            "FAILURES",
            "LAST ERROR",
        ],
        &rows,
    )
}

#[derive(Args)]
#[command(after_help = "Example:
  certship acme renew acme:www.example.com-0123456789ab

The certificate is marked in the registry; the next renewal sweep (AcmeRenewalSchedule, daily by
default) issues it again and redeploys it to every mapping, and clears the mark. To renew at once,
run `certship acme issue` with its names. On the local cloud, `certship local sweep` runs the sweep.
Your credentials need dynamodb:UpdateItem on the registry (the stack's AcmeTableName).")]
pub struct RenewArgs {
    /// The certificate, acme:<id> as `certship acme list` shows it
    #[arg(value_name = "CERTIFICATE")]
    certificate: String,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
}

impl RenewArgs {
    pub async fn run(self) -> Result<ExitCode> {
        // Before any AWS call: a malformed id touches nothing.
        let id = ops::acme_registry::certificate_id(&self.certificate)?;
        let clients = Clients::load(&self.aws).await?;
        let table = Resources::new(&clients.cloudformation, &self.stack)
            .acme_table_name()
            .await?;
        ops::acme_registry::force_renewal(&clients.dynamodb, &table, id).await?;
        println!(
            "{SOURCE_PREFIX}{id} is marked for renewal: the next sweep issues it again and redeploys it to every mapping."
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// The directory `--directory` names when not given: the contract's default (a test holds them
/// together), Let's Encrypt's staging CA, whose generous limits suit a first try.
const DEFAULT_DIRECTORY: &str = "letsencrypt-staging";

#[derive(Args)]
#[command(after_help = "Examples:
  certship acme issue --domain example.com --domain '*.example.com' --zone-id Z0123456789ABCDEFGHIJ
  certship acme issue --domain www.example.com --zone-id Z0123456789ABCDEFGHIJ \\
      --directory letsencrypt --contact mailto:ops@example.com --key-type ec-p384
  certship acme issue --acme-state-machine-arn arn:aws:states:…:stateMachine:… --no-wait …

Each name is proved with a DNS-01 TXT record written into the hosted zone (which must hold every
name's _acme-challenge record) and removed again at the end. The key is generated at each issuance
and stored, with the chain, as a new version of the certificate's secret. The same names from the
same CA are one certificate, acme:<id>: issuing them again renews it.
Start with letsencrypt-staging (the default): untrusted certificates, generous rate limits.
Your credentials need states:StartExecution on the ACME issuance state machine, and
states:GetExecutionHistory to follow it.
Exit codes: 0 issued (with --no-wait: started), 3 the issuance failed, 1 any other error.")]
pub struct IssueArgs {
    /// A name of the certificate, `*.NAME` for a wildcard; repeat for more (the first is the subject)
    #[arg(long = "domain", value_name = "NAME", required = true)]
    domains: Vec<String>,
    /// The Route53 hosted zone the DNS-01 records go into; it must cover every name
    #[arg(long, value_name = "ID")]
    zone_id: String,
    /// The certificate's key, generated afresh at each issuance
    #[arg(long, value_name = "TYPE", default_value = KeyType::default().as_str(), value_parser = key_type_parser())]
    key_type: KeyType,
    /// The CA: letsencrypt, letsencrypt-staging, or its ACME directory's https:// URL
    #[arg(long, value_name = "DIRECTORY", default_value = DEFAULT_DIRECTORY)]
    directory: String,
    /// A mailto: address for the CA's expiry and policy mail; repeat for more
    #[arg(long, value_name = "MAILTO")]
    contact: Vec<String>,
    /// Renew when fewer than DAYS days are left (the daily renewal schedule checks)
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=i64::from(certship_shared::acme::MAX_RENEW_DAYS_BEFORE)))]
    renew_days_before: Option<u32>,
    /// Also import the certificate into ACM (and re-import it under the same ARN at each
    /// renewal), for load balancers and CloudFront
    #[arg(long)]
    import_to_acm: bool,
    /// Start the issuance and return, rather than follow it to its end
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    aws: AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `--key-type`: one of [`KeyType::ALL`], read by [`KeyType::parse`]; clap lists the allowed
/// values in the help and in the error for any other.
fn key_type_parser() -> impl TypedValueParser<Value = KeyType> {
    PossibleValuesParser::new(KeyType::ALL.map(KeyType::as_str))
        .try_map(|name| KeyType::parse(&name).ok_or(format!("no key type {name:?}")))
}

impl IssueArgs {
    /// The issuance request the flags ask for, checked as acme-certificate checks it.
    fn request(&self) -> Result<IssueRequest> {
        let request = IssueRequest {
            domains: self.domains.clone(),
            hosted_zone_id: self.zone_id.clone(),
            key_type: self.key_type,
            directory: self.directory.clone(),
            contact: self.contact.clone(),
            renew_days_before: self.renew_days_before,
            import_to_acm: self.import_to_acm,
        };
        request
            .validate()
            .map_err(|e| anyhow::anyhow!("{}", flag_names(&e.to_string())))?;
        Ok(request)
    }

    pub async fn run(self) -> Result<ExitCode> {
        // Before any AWS call: a bad request starts nothing.
        let request = self.request()?;
        let clients = Clients::load(&self.aws).await?;
        let resources = Resources::new(&clients.cloudformation, &self.stack);
        let machine = resources.acme_state_machine_arn().await?;
        let format = self.output.output;
        if self.no_wait {
            let started = start(&clients.sfn, &machine, &request).await?;
            match format {
                OutputFormat::Text => println!(
                    "{}\nIt runs on without this command; see it with:\n  aws stepfunctions describe-execution --execution-arn {}",
                    started.text(),
                    started.execution_arn
                ),
                OutputFormat::Json => ops::print_json(&started.json())?,
            }
            return Ok(ExitCode::SUCCESS);
        }
        let outcome = match format {
            OutputFormat::Text => {
                issue(&clients.sfn, &machine, &request, &mut std::io::stdout()).await?
            }
            // Progress where someone watches; stdout is the JSON document's alone.
            OutputFormat::Json if std::io::stderr().is_terminal() => {
                issue(&clients.sfn, &machine, &request, &mut std::io::stderr()).await?
            }
            OutputFormat::Json => {
                issue(&clients.sfn, &machine, &request, &mut std::io::sink()).await?
            }
        };
        if format == OutputFormat::Json {
            ops::print_json(&outcome.json())?;
        }
        Ok(if outcome.succeeded() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(ISSUANCE_FAILED)
        })
    }
}

/// The contract's field names, where a validation message starts with one, as the flags that
/// set them.
fn flag_names(message: &str) -> String {
    [
        ("Domains", "--domain"),
        ("HostedZoneId", "--zone-id"),
        ("Directory", "--directory"),
        ("Contact", "--contact"),
        ("RenewDaysBefore", "--renew-days-before"),
    ]
    .iter()
    .find_map(|(field, flag)| {
        message
            .strip_prefix(field)
            .map(|rest| format!("{flag}{rest}"))
    })
    .unwrap_or_else(|| message.to_string())
}

/// Step Functions' limit on an execution name's length.
const EXECUTION_NAME_MAX: usize = 80;

/// The `-<12 hex>` digest that ends a certificate id ([`IssueRequest::certificate_id`]).
const ID_DIGEST_LEN: usize = 13;

/// `<certificate id>-<unix seconds>`, in the characters CloudWatch Logs accepts in an execution
/// name (`0-9 A-Z a-z - _`; every other one, such as the names' dots, becomes `-`). A name too
/// long for 80 characters loses the middle of its readable part: the digest that tells
/// certificates apart and the time that tells issuances apart both stay.
pub fn execution_name(certificate_id: &str, unix_seconds: u64) -> String {
    let suffix = format!("-{unix_seconds}");
    let id: String = certificate_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = EXECUTION_NAME_MAX - suffix.len();
    // Every character is ASCII now, so byte offsets are character offsets.
    let id = if id.len() <= room {
        id
    } else if id.len() > ID_DIGEST_LEN && room > ID_DIGEST_LEN {
        let digest = &id[id.len() - ID_DIGEST_LEN..];
        format!("{}{digest}", &id[..room - ID_DIGEST_LEN])
    } else {
        id[..room].to_string()
    };
    id + &suffix
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// An issuance started: the certificate it makes and the execution that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// [`IssueRequest::certificate_id`]; a deployment names the certificate `acme:<id>`.
    pub certificate_id: String,
    pub execution_arn: String,
}

impl Started {
    /// `acme:<id>`, as a deployment names the certificate.
    pub fn source(&self) -> String {
        format!("{SOURCE_PREFIX}{}", self.certificate_id)
    }

    pub fn text(&self) -> String {
        format!(
            "Certificate {}\nStarted {}",
            self.source(),
            self.execution_arn
        )
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "certificateId": self.certificate_id,
            "source": self.source(),
            "executionArn": self.execution_arn,
        })
    }
}

/// Checks `request` as acme-certificate will (a bad one starts nothing), then StartExecution
/// with it as input, named by [`execution_name`].
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    request: &IssueRequest,
) -> Result<Started> {
    request
        .validate()
        .map_err(|e| anyhow::anyhow!("the issuance request is refused: {e}"))?;
    let certificate_id = request.certificate_id();
    let execution_arn = sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(execution_name(&certificate_id, unix_seconds()))
        .input(serde_json::to_string(request)?)
        .send()
        .await
        .map_err(explain)
        .context("starting the issuance")?
        .execution_arn;
    Ok(Started {
        certificate_id,
        execution_arn,
    })
}

/// `certship acme issue` without its flags: starts the issuance of `request` on
/// `state_machine_arn`, follows it to its end and says how it went, all on `out`. The outcome
/// is `Ok` whether or not the certificate was issued ([`IssueOutcome::succeeded`]); `Err` is
/// for a request refused before it started, or AWS calls that failed.
pub async fn issue(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    request: &IssueRequest,
    out: &mut impl Write,
) -> Result<IssueOutcome> {
    let started = start(sfn, state_machine_arn, request).await?;
    writeln!(out, "{}", started.text())?;
    let outcome = follow(sfn, &started, out).await?;
    writeln!(out, "{}", outcome.text())?;
    out.flush()?;
    Ok(outcome)
}

/// How often the execution's history is read.
const POLL: Duration = Duration::from_secs(1);
/// After this long without a line, one says the issuance still runs.
const QUIET: Duration = Duration::from_secs(15);

/// Follows the started issuance until it ends, a line on `out` for each state entered and what
/// the steps did, and returns how it ended.
pub async fn follow(
    sfn: &aws_sdk_sfn::Client,
    started: &Started,
    out: &mut impl Write,
) -> Result<IssueOutcome> {
    let began = Instant::now();
    let mut last_line = Instant::now();
    let mut progress = Progress::default();
    let mut events_seen = 0;
    loop {
        let events = execution::history(sfn, &started.execution_arn).await?;
        for event in events.iter().skip(events_seen) {
            if let Some(line) = progress.absorb(event) {
                writeln!(out, "{line}")?;
                last_line = Instant::now();
            }
            if let Some(ending) = progress.ending.take() {
                out.flush()?;
                return IssueOutcome::new(started, ending, progress.state);
            }
        }
        events_seen = events.len();
        if last_line.elapsed() >= QUIET {
            writeln!(out, "  … still running ({} s)", began.elapsed().as_secs())?;
            last_line = Instant::now();
        }
        out.flush()?;
        tokio::time::sleep(POLL).await;
    }
}

/// The issuance's state as its steps write it, typed by the contract: `$.Order` once the order
/// is placed, `$.Issued` once the certificate is in its secret. (The state also holds the
/// request and, after a failure, `$.Error`; they are not read here.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IssuanceState {
    order: Option<OrderResult>,
    issued: Option<ExportResult>,
    #[serde(default)]
    imported: Option<ImportResult>,
}

impl IssuanceState {
    /// A state as the contract types it; `None` when there is none or it does not fit.
    fn parse(text: Option<&str>) -> Option<Self> {
        text.and_then(|t| serde_json::from_str(t).ok())
    }
}

/// The state after Place order met a rate limit it waits out: `$.Order.RateLimited`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RateLimited {
    order: RateLimitedOrder,
}

/// What the history has shown so far, and the lines it makes.
#[derive(Debug, Default)]
struct Progress {
    /// The last of `$.Order` and `$.Issued` that the steps wrote.
    state: IssuanceState,
    /// The last failure line, so that a wait retried many times shows once.
    last_failure: Option<String>,
    /// Set by the event that ends the execution.
    ending: Option<(execution::Ending, Option<IssuanceState>)>,
}

impl Progress {
    /// Takes in one event; returns the line it makes, if any.
    fn absorb(&mut self, event: &HistoryEvent) -> Option<String> {
        if let Some(entered) = event.state_entered_event_details() {
            self.last_failure = None;
            return Some(format!("→ {}", entered.name()));
        }
        match event.r#type() {
            HistoryEventType::TaskStateExited => {
                let output = event.state_exited_event_details()?.output();
                if let Some(limited) =
                    output.and_then(|t| serde_json::from_str::<RateLimited>(t).ok())
                {
                    let wait = limited.order.rate_limited;
                    return Some(format!(
                        "  … the CA refused the order for a rate limit: placing it again in {} s, at {} ({})",
                        wait.retry_after_seconds, wait.retry_at, wait.detail
                    ));
                }
                self.step_line(IssuanceState::parse(output)?)
            }
            HistoryEventType::LambdaFunctionFailed | HistoryEventType::TaskFailed => {
                let (error, cause) = match event.lambda_function_failed_event_details() {
                    Some(d) => (d.error(), d.cause()),
                    None => {
                        let d = event.task_failed_event_details()?;
                        (d.error(), d.cause())
                    }
                };
                let error = error.unwrap_or("error");
                let message = execution::cause_message(cause.unwrap_or_default());
                let line = if is_wait(error) {
                    format!("  … {message}")
                } else {
                    format!("  ✗ {error}: {message}")
                };
                if self.last_failure.as_ref() == Some(&line) {
                    return None;
                }
                self.last_failure = Some(line.clone());
                Some(line)
            }
            HistoryEventType::LambdaFunctionTimedOut | HistoryEventType::TaskTimedOut => {
                Some("  ✗ the step timed out".into())
            }
            _ => {
                let ending = execution::ending(event)?;
                let output = event
                    .execution_succeeded_event_details()
                    .and_then(|d| IssuanceState::parse(d.output()));
                self.ending = Some((ending, output));
                None
            }
        }
    }

    /// A line for what a step added to the state: the order, or the certificate.
    fn step_line(&mut self, state: IssuanceState) -> Option<String> {
        let mut lines = Vec::new();
        if let Some(order) = state.order.filter(|o| self.state.order.as_ref() != Some(o)) {
            lines.push(match &order.change_id {
                Some(change) => format!(
                    "  order placed: {} TXT record set(s) written in zone {} (change {change})",
                    order.records.len(),
                    order.hosted_zone_id
                ),
                None => "  order placed: every name is already authorized, no DNS change".into(),
            });
            self.state.order = Some(order);
        }
        if let Some(issued) = state
            .issued
            .filter(|i| self.state.issued.as_ref() != Some(i))
        {
            lines.push(format!(
                "  issued serial {}, valid until {}",
                issued.serial, issued.not_after
            ));
            self.state.issued = Some(issued);
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// Whether `error` is one of the waits the state machine retries (Route53 applying the change,
/// the CA validating), rather than a failure.
fn is_wait(error: &str) -> bool {
    [
        CertshipError::DnsChangePending(String::new()),
        CertshipError::OrderPending(String::new()),
    ]
    .iter()
    .any(|wait| wait.name() == error)
}

/// How an issuance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOutcome {
    pub certificate_id: String,
    pub execution_arn: String,
    pub result: IssueResult,
    /// The ACM certificate it went into, with `--import-to-acm` (or an earlier import).
    pub acm_certificate_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueResult {
    /// The certificate is in its secret: `$.Issued` of the final state.
    Issued(ExportResult),
    Failed(Box<IssueFailure>),
}

/// An issuance that failed, timed out or was aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueFailure {
    pub status: ExecutionStatus,
    /// The step's error name (`ChallengeFailed`, `DomainNotInZone`, ...).
    pub error: Option<String>,
    /// The step's message (the Lambda's `errorMessage`, out of its error JSON).
    pub cause: Option<String>,
    /// The certificate, when it was issued and stored before the failure (removing the challenge
    /// records failed).
    pub issued: Option<ExportResult>,
    /// The order, whose challenge records such a failure leaves in the zone.
    pub order: Option<OrderResult>,
}

impl IssueOutcome {
    fn new(
        started: &Started,
        (ending, output): (execution::Ending, Option<IssuanceState>),
        seen: IssuanceState,
    ) -> Result<Self> {
        let acm_certificate_arn = output
            .as_ref()
            .and_then(|o| o.imported.as_ref())
            .and_then(|i| i.acm_certificate_arn.clone());
        let result = if ending.succeeded() {
            // The final state, or else what Finalize wrote on the way.
            let issued = output.and_then(|o| o.issued).or(seen.issued);
            let Some(issued) = issued else {
                bail!(
                    "the issuance {} succeeded, but its state holds no Issued",
                    started.execution_arn
                );
            };
            IssueResult::Issued(issued)
        } else {
            IssueResult::Failed(Box::new(IssueFailure {
                status: ending.status,
                error: ending.error,
                cause: ending.cause.map(|c| execution::cause_message(&c)),
                issued: seen.issued,
                order: seen.order,
            }))
        };
        Ok(Self {
            certificate_id: started.certificate_id.clone(),
            execution_arn: started.execution_arn.clone(),
            result,
            acm_certificate_arn,
        })
    }

    pub fn succeeded(&self) -> bool {
        matches!(self.result, IssueResult::Issued(_))
    }

    /// `acme:<id>`, as a deployment names the certificate.
    pub fn source(&self) -> String {
        format!("{SOURCE_PREFIX}{}", self.certificate_id)
    }

    /// The result for people.
    pub fn text(&self) -> String {
        match &self.result {
            IssueResult::Issued(issued) => {
                let mut text = format!(
                    "Issued {}\n  serial     {}\n  not after  {}\n  names      {}\n  secret     {} (version {})",
                    self.source(),
                    issued.serial,
                    issued.not_after,
                    issued.domains.join(", "),
                    issued.secret_arn,
                    issued.secret_version_id
                );
                if let Some(arn) = &self.acm_certificate_arn {
                    text.push_str(&format!("\n  in ACM     {arn}"));
                }
                text
            }
            IssueResult::Failed(failure) => {
                let mut text = match failure.status {
                    ExecutionStatus::TimedOut => "Issuance timed out".to_string(),
                    ExecutionStatus::Aborted => "Issuance aborted".to_string(),
                    _ => "Issuance failed".to_string(),
                };
                text.push_str(&format!(" ({})", self.source()));
                match (&failure.error, &failure.cause) {
                    (Some(error), Some(cause)) => text.push_str(&format!(": {error}: {cause}")),
                    (Some(error), None) => text.push_str(&format!(": {error}")),
                    (None, Some(cause)) => text.push_str(&format!(": {cause}")),
                    (None, None) => {}
                }
                if let Some(issued) = &failure.issued {
                    text.push_str(&format!(
                        "\nThe certificate was issued and stored (serial {}, secret {}), but its \
                         challenge records are still in the zone.",
                        issued.serial, issued.secret_arn
                    ));
                    if let Some(order) = &failure.order {
                        text.push_str(&format!(
                            " Remove these TXT values from zone {}:",
                            order.hosted_zone_id
                        ));
                        for record in &order.records {
                            text.push_str(&format!(
                                "\n  {} {}",
                                record.name,
                                record.values.join(" ")
                            ));
                        }
                    }
                }
                text
            }
        }
    }

    /// The result for scripts.
    pub fn json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "certificateId": self.certificate_id,
            "source": self.source(),
            "executionArn": self.execution_arn,
        });
        let fields = match &self.result {
            IssueResult::Issued(issued) => serde_json::json!({
                "status": ExecutionStatus::Succeeded.as_str(),
                "issued": issued,
                "acmCertificateArn": self.acm_certificate_arn,
            }),
            IssueResult::Failed(failure) => serde_json::json!({
                "status": failure.status.as_str(),
                "error": failure.error,
                "cause": failure.cause,
                "issued": failure.issued,
            }),
        };
        if let (Some(json), serde_json::Value::Object(fields)) = (json.as_object_mut(), fields) {
            json.extend(fields);
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
    use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
    use aws_sdk_sfn::types::{
        ExecutionFailedEventDetails, ExecutionSucceededEventDetails,
        LambdaFunctionFailedEventDetails, StateEnteredEventDetails, StateExitedEventDetails,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::DateTime;
    use clap::Parser;
    use serde_json::json;

    const MACHINE: &str =
        "arn:aws:states:eu-west-1:111122223333:stateMachine:certship-acme-issuance";
    const EXECUTION: &str =
        "arn:aws:states:eu-west-1:111122223333:execution:certship-acme-issuance:x";
    const SECRET: &str =
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:certship-acme/certificate/x-AbCdEf";

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AcmeCommand,
    }

    fn parse(args: &[&str]) -> Result<IssueArgs, clap::Error> {
        let cli = Cli::try_parse_from(["acme"].iter().chain(args))?;
        match cli.command {
            AcmeCommand::Issue(issue) => Ok(issue),
            _ => panic!("not an issue command"),
        }
    }

    fn registration(not_after: &str) -> Registration {
        Registration {
            certificate_id: "www.example.com-0123456789ab".into(),
            request: IssueRequest {
                domains: vec!["www.example.com".into()],
                hosted_zone_id: "Z0123".into(),
                key_type: KeyType::EcP256,
                directory: "letsencrypt".into(),
                contact: vec![],
                renew_days_before: Some(20),
                import_to_acm: false,
            },
            force: false,
            not_after: Some(not_after.into()),
            serial: None,
            secret_version_id: None,
            issued_at: None,
            last_execution_arn: None,
            failed_attempts: 0,
            last_failed_at: None,
            last_error: None,
            acm_certificate_arn: None,
            retry_after: None,
        }
    }

    #[test]
    fn the_registry_table_says_where_each_renewal_stands() {
        let now = certship_shared::time::parse_rfc3339("2026-11-01T00:00:00Z").unwrap();
        let fine = registration("2026-12-31T00:00:00Z");
        let mut failing = registration("2026-11-11T00:00:00Z");
        failing.certificate_id = "api.example.com-abcdefabcdef".into();
        failing.failed_attempts = 2;
        failing.last_failed_at = Some("2026-10-31T12:00:00Z".into());
        failing.last_error = Some("ChallengeFailed: the CA could not validate".into());
        let mut forced = registration("2026-12-31T00:00:00Z");
        forced.force = true;
        let table = render_registrations(&[fine, failing, forced], now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CERTIFICATE"), "{table}");
        assert!(
            lines[1].contains("acme:www.example.com-0123456789ab")
                && lines[1].contains(" 60 ")
                && lines[1].contains("not due"),
            "{table}"
        );
        assert!(
            lines[2].contains("backing off (10h)") && lines[2].contains("ChallengeFailed"),
            "{table}"
        );
        assert!(lines[3].contains("forced"), "{table}");
        assert!(render_registrations(&[], now).contains("certship acme issue"));
    }

    #[test]
    fn renew_takes_the_id_with_or_without_its_prefix_and_refuses_anything_else() {
        let id = "www.example.com-0123456789ab";
        assert_eq!(
            crate::ops::acme_registry::certificate_id(&format!("acme:{id}")).unwrap(),
            id
        );
        assert_eq!(crate::ops::acme_registry::certificate_id(id).unwrap(), id);
        let err = crate::ops::acme_registry::certificate_id("arn:aws:acm:x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("acme list"), "{err}");
    }

    fn issued() -> ExportResult {
        ExportResult {
            secret_arn: SECRET.into(),
            secret_version_id: "v-2".into(),
            serial: "04:a1:9f".into(),
            not_after: "2026-04-01T00:00:00Z".into(),
            key_algorithm: "EC_prime256v1".into(),
            domains: vec!["example.com".into(), "*.example.com".into()],
            exported_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn order() -> OrderResult {
        OrderResult {
            certificate_id: "example.com-0123456789ab".into(),
            hosted_zone_id: "Z0123456789ABC".into(),
            order_url: "https://ca.example/order/1".into(),
            change_id: Some("C1".into()),
            records: vec![certship_shared::acme::ChallengeRecord {
                name: "_acme-challenge.example.com.".into(),
                values: vec!["v1".into(), "v2".into()],
            }],
            import_to_acm: false,
            acm_certificate_arn: None,
        }
    }

    fn state_json(order: Option<OrderResult>, issued: Option<ExportResult>) -> String {
        let mut state = json!({
            "Request": {"Domains": ["example.com", "*.example.com"], "HostedZoneId": "Z0123456789ABC"},
            "Execution": EXECUTION,
        });
        if let Some(order) = order {
            state["Order"] = serde_json::to_value(order).unwrap();
        }
        if let Some(issued) = issued {
            state["Issued"] = serde_json::to_value(issued).unwrap();
        }
        state.to_string()
    }

    fn event(id: i64, kind: HistoryEventType) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
        HistoryEvent::builder()
            .id(id)
            .timestamp(DateTime::from_secs(1_764_000_000 + id))
            .r#type(kind)
    }

    fn entered(id: i64, kind: HistoryEventType, name: &str) -> HistoryEvent {
        event(id, kind)
            .state_entered_event_details(
                StateEnteredEventDetails::builder()
                    .name(name)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn exited(id: i64, name: &str, output: String) -> HistoryEvent {
        event(id, HistoryEventType::TaskStateExited)
            .state_exited_event_details(
                StateExitedEventDetails::builder()
                    .name(name)
                    .output(output)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn lambda_failed(id: i64, error: &str, message: &str) -> HistoryEvent {
        event(id, HistoryEventType::LambdaFunctionFailed)
            .lambda_function_failed_event_details(
                LambdaFunctionFailedEventDetails::builder()
                    .error(error)
                    .cause(json!({"errorType": error, "errorMessage": message}).to_string())
                    .build(),
            )
            .build()
            .unwrap()
    }

    fn started() -> Started {
        Started {
            certificate_id: "example.com-0123456789ab".into(),
            execution_arn: EXECUTION.into(),
        }
    }

    #[test]
    fn the_flags_make_the_request_with_the_contracts_defaults() {
        let args = parse(&[
            "issue",
            "--domain",
            "example.com",
            "--domain",
            "*.example.com",
            "--zone-id",
            "Z0123456789ABC",
        ])
        .unwrap();
        let request = args.request().unwrap();
        // the defaults are those of a request that names neither key type nor directory
        let contract: IssueRequest = serde_json::from_value(
            json!({"Domains": ["example.com", "*.example.com"], "HostedZoneId": "Z0123456789ABC"}),
        )
        .unwrap();
        assert_eq!(request, contract);
        assert!(!args.no_wait);

        let args = parse(&[
            "issue",
            "--domain",
            "www.example.com",
            "--zone-id",
            "/hostedzone/Z0123456789ABC",
            "--key-type",
            "rsa-2048",
            "--directory",
            "letsencrypt",
            "--contact",
            "mailto:ops@example.com",
            "--contact",
            "mailto:pki@example.com",
            "--no-wait",
        ])
        .unwrap();
        let request = args.request().unwrap();
        assert_eq!(request.key_type, KeyType::Rsa2048);
        assert_eq!(request.directory, "letsencrypt");
        assert_eq!(
            request.contact,
            ["mailto:ops@example.com", "mailto:pki@example.com"]
        );
        assert_eq!(request.hosted_zone_id, "/hostedzone/Z0123456789ABC");
        assert!(args.no_wait);
    }

    #[test]
    fn an_unknown_key_type_is_refused_listing_the_allowed_ones() {
        let error = parse(&[
            "issue",
            "--domain",
            "example.com",
            "--zone-id",
            "Z1",
            "--key-type",
            "ec-p521",
        ])
        .err()
        .expect("refused")
        .to_string();
        assert!(error.contains("ec-p521"), "{error}");
        for allowed in KeyType::ALL {
            assert!(error.contains(allowed.as_str()), "{error}");
        }
        for allowed in KeyType::ALL {
            let args = parse(&[
                "issue",
                "--domain",
                "example.com",
                "--zone-id",
                "Z1",
                "--key-type",
                allowed.as_str(),
            ])
            .unwrap();
            assert_eq!(args.key_type, allowed);
        }
        assert!(parse(&["issue", "--zone-id", "Z1"]).is_err(), "no --domain");
    }

    #[test]
    fn a_bad_request_is_refused_naming_the_flag() {
        let good_zone = ["--zone-id", "Z0123456789ABC"];
        let cases: [(&[&str], &str); 4] = [
            (
                &["--domain", "a_b.example.com"],
                "domain \"a_b.example.com\" is not a DNS name",
            ),
            (
                &["--domain", "x.example.com", "--zone-id", "Z01;drop"],
                "--zone-id \"Z01;drop\" is not a Route53 hosted zone id",
            ),
            (
                &["--domain", "x.example.com", "--directory", "http://ca/dir"],
                "--directory \"http://ca/dir\" is neither",
            ),
            (
                &["--domain", "x.example.com", "--contact", "ops@example.com"],
                "--contact \"ops@example.com\" is not a mailto: address",
            ),
        ];
        for (flags, expected) in cases {
            let mut args = vec!["issue"];
            if !flags.contains(&"--zone-id") {
                args.extend(good_zone);
            }
            args.extend(flags);
            let error = parse(&args).unwrap().request().unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should say {expected}");
        }
    }

    /// What Step Functions (and CloudWatch Logs) accept: 1-80 of `0-9 A-Z a-z - _`.
    fn valid_execution_name(name: &str) -> bool {
        (1..=EXECUTION_NAME_MAX).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }

    #[test]
    fn execution_names_are_the_id_and_the_time_in_allowed_characters() {
        let request = IssueRequest {
            domains: vec!["*.example.com".into(), "example.com".into()],
            hosted_zone_id: "Z0123456789ABC".into(),
            key_type: KeyType::EcP256,
            directory: "letsencrypt-staging".into(),
            contact: vec![],
            renew_days_before: None,
            import_to_acm: false,
        };
        let id = request.certificate_id();
        let name = execution_name(&id, 1_764_000_000);
        assert_eq!(
            name,
            format!("wildcard-example-com-{}-1764000000", &id[id.len() - 12..])
        );
        assert!(valid_execution_name(&name), "{name}");

        // given the longest id a name can make
        let long = format!(
            "{}.example.com",
            ["a".repeat(63), "b".repeat(63), "c".repeat(49)].join(".")
        );
        let request = IssueRequest {
            domains: vec![long],
            ..request
        };
        let id = request.certificate_id();
        let name = execution_name(&id, 1_764_000_000);
        assert_eq!(name.len(), EXECUTION_NAME_MAX, "{name}");
        assert!(valid_execution_name(&name), "{name}");
        assert!(name.starts_with("aaaa"), "{name}");
        assert!(
            name.ends_with(&format!("{}-1764000000", &id[id.len() - 13..])),
            "the digest and the time stay: {name}"
        );
    }

    #[test]
    fn a_success_shows_serial_expiry_names_and_secret() {
        let outcome = IssueOutcome {
            certificate_id: "example.com-0123456789ab".into(),
            execution_arn: EXECUTION.into(),
            result: IssueResult::Issued(issued()),
            acm_certificate_arn: None,
        };
        assert!(outcome.succeeded());
        assert_eq!(
            outcome.text(),
            format!(
                "Issued acme:example.com-0123456789ab\n  serial     04:a1:9f\n  not after  2026-04-01T00:00:00Z\n  names      example.com, *.example.com\n  secret     {SECRET} (version v-2)"
            )
        );
        let json = outcome.json();
        assert_eq!(json["source"], "acme:example.com-0123456789ab");
        assert_eq!(json["status"], "SUCCEEDED");
        let back: ExportResult = serde_json::from_value(json["issued"].clone()).unwrap();
        assert_eq!(back, issued());

        // imported into ACM too, it says where
        let arn = "arn:aws:acm:eu-west-1:111122223333:certificate/0d3f5a1c";
        let imported = IssueOutcome {
            acm_certificate_arn: Some(arn.into()),
            ..outcome
        };
        assert!(imported.text().ends_with(&format!("\n  in ACM     {arn}")));
        assert_eq!(imported.json()["acmCertificateArn"], arn);
    }

    #[test]
    fn a_failure_shows_the_error_and_its_message() {
        let failed = |issued: Option<ExportResult>| IssueOutcome {
            certificate_id: "example.com-0123456789ab".into(),
            execution_arn: EXECUTION.into(),
            result: IssueResult::Failed(Box::new(IssueFailure {
                status: ExecutionStatus::Failed,
                error: Some("ChallengeFailed".into()),
                cause: Some("example.com: _acme-challenge.example.com. has no TXT record".into()),
                issued,
                order: Some(order()),
            })),
            acm_certificate_arn: None,
        };
        let outcome = failed(None);
        assert!(!outcome.succeeded());
        assert_eq!(
            outcome.text(),
            "Issuance failed (acme:example.com-0123456789ab): ChallengeFailed: example.com: _acme-challenge.example.com. has no TXT record"
        );
        assert_eq!(outcome.json()["error"], "ChallengeFailed");
        assert_eq!(outcome.json()["status"], "FAILED");

        // a failed cleanup after the certificate was stored says what is left in the zone
        let text = failed(Some(issued())).text();
        assert!(
            text.contains("issued and stored (serial 04:a1:9f")
                && text.contains("zone Z0123456789ABC:\n  _acme-challenge.example.com. v1 v2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn following_prints_each_state_and_reads_the_issued_certificate() {
        // given a whole history: two waits for DNS of which one line shows, then the certificate
        let events = vec![
            event(1, HistoryEventType::ExecutionStarted)
                .build()
                .unwrap(),
            entered(2, HistoryEventType::PassStateEntered, "Keep the request"),
            entered(3, HistoryEventType::TaskStateEntered, "Place order"),
            exited(4, "Place order", state_json(Some(order()), None)),
            entered(
                5,
                HistoryEventType::ChoiceStateEntered,
                "DNS records written?",
            ),
            entered(6, HistoryEventType::TaskStateEntered, "Wait for DNS"),
            lambda_failed(7, "DnsChangePending", "change C1 is PENDING"),
            lambda_failed(8, "DnsChangePending", "change C1 is PENDING"),
            entered(9, HistoryEventType::TaskStateEntered, "Finalize"),
            exited(10, "Finalize", state_json(Some(order()), Some(issued()))),
            entered(11, HistoryEventType::SucceedStateEntered, "Issued"),
            event(12, HistoryEventType::ExecutionSucceeded)
                .execution_succeeded_event_details(
                    ExecutionSucceededEventDetails::builder()
                        .output(state_json(Some(order()), Some(issued())))
                        .build(),
                )
                .build()
                .unwrap(),
        ];
        let history = mock!(aws_sdk_sfn::Client::get_execution_history)
            .match_requests(|r| r.execution_arn() == Some(EXECUTION))
            .then_output(move || {
                GetExecutionHistoryOutput::builder()
                    .set_events(Some(events.clone()))
                    .build()
                    .unwrap()
            });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&history]);
        let mut out = Vec::new();

        // when
        let outcome = follow(&sfn, &started(), &mut out).await.unwrap();

        // then
        assert_eq!(history.num_calls(), 1);
        assert_eq!(outcome.result, IssueResult::Issued(issued()));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "→ Keep the request\n→ Place order\n  order placed: 1 TXT record set(s) written in zone Z0123456789ABC (change C1)\n→ DNS records written?\n→ Wait for DNS\n  … change C1 is PENDING\n→ Finalize\n  issued serial 04:a1:9f, valid until 2026-04-01T00:00:00Z\n→ Issued\n"
        );
    }

    #[test]
    fn a_rate_limit_waited_out_shows_when_the_order_is_placed_again() {
        let mut progress = Progress::default();
        let limited = json!({
            "Request": {"Domains": ["example.com"], "HostedZoneId": "Z0123456789ABC"},
            "Order": {"RateLimited": {"RetryAfterSeconds": 90, "RetryAt": "2026-11-27T10:01:30Z",
                      "Detail": "placing the order: API error: too many new orders recently"}}
        });
        let lines: Vec<String> = [
            entered(1, HistoryEventType::TaskStateEntered, "Place order"),
            exited(2, "Place order", limited.to_string()),
            entered(
                3,
                HistoryEventType::WaitStateEntered,
                "Wait out the rate limit",
            ),
            entered(4, HistoryEventType::TaskStateEntered, "Place order"),
            exited(5, "Place order", state_json(Some(order()), None)),
        ]
        .iter()
        .filter_map(|e| progress.absorb(e))
        .collect();
        assert_eq!(
            lines,
            [
                "→ Place order",
                "  … the CA refused the order for a rate limit: placing it again in 90 s, at 2026-11-27T10:01:30Z (placing the order: API error: too many new orders recently)",
                "→ Wait out the rate limit",
                "→ Place order",
                "  order placed: 1 TXT record set(s) written in zone Z0123456789ABC (change C1)",
            ]
        );
        assert_eq!(progress.state.order, Some(order()));
    }

    #[tokio::test]
    async fn a_failed_issuance_ends_with_the_error_and_cause() {
        let events = vec![
            entered(1, HistoryEventType::TaskStateEntered, "Place order"),
            lambda_failed(
                2,
                "DomainNotInZone",
                "example.org is not in zone Z0123456789ABC",
            ),
            entered(3, HistoryEventType::FailStateEntered, "Issuance failed"),
            event(4, HistoryEventType::ExecutionFailed)
                .execution_failed_event_details(
                    ExecutionFailedEventDetails::builder()
                        .error("DomainNotInZone")
                        .cause(
                            json!({"errorType": "DomainNotInZone",
                                   "errorMessage": "example.org is not in zone Z0123456789ABC"})
                            .to_string(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        ];
        let history = mock!(aws_sdk_sfn::Client::get_execution_history).then_output(move || {
            GetExecutionHistoryOutput::builder()
                .set_events(Some(events.clone()))
                .build()
                .unwrap()
        });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&history]);
        let mut out = Vec::new();
        let outcome = follow(&sfn, &started(), &mut out).await.unwrap();
        let IssueResult::Failed(failure) = &outcome.result else {
            panic!("{outcome:?}")
        };
        assert_eq!(failure.status, ExecutionStatus::Failed);
        assert_eq!(failure.error.as_deref(), Some("DomainNotInZone"));
        assert_eq!(
            failure.cause.as_deref(),
            Some("example.org is not in zone Z0123456789ABC")
        );
        assert_eq!(failure.issued, None);
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("  ✗ DomainNotInZone: example.org is not in zone Z0123456789ABC\n→ Issuance failed\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn issue_starts_one_execution_named_for_the_certificate_with_the_request() {
        let request: IssueRequest = serde_json::from_value(
            json!({"Domains": ["example.com"], "HostedZoneId": "Z0123456789ABC",
                   "Contact": ["mailto:ops@example.com"]}),
        )
        .unwrap();
        let id = request.certificate_id();
        let expected_input = request.clone();
        let start = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(move |r| {
                r.state_machine_arn() == Some(MACHINE)
                    && r.name().is_some_and(|n| {
                        n.starts_with(&format!("example-com-{}-", &id[id.len() - 12..]))
                    })
                    && r.input()
                        .and_then(|i| serde_json::from_str::<IssueRequest>(i).ok())
                        .as_ref()
                        == Some(&expected_input)
            })
            .then_output(|| {
                StartExecutionOutput::builder()
                    .execution_arn(EXECUTION)
                    .start_date(DateTime::from_secs(1_764_000_000))
                    .build()
                    .unwrap()
            });
        let history = mock!(aws_sdk_sfn::Client::get_execution_history).then_output(|| {
            GetExecutionHistoryOutput::builder()
                .events(
                    event(1, HistoryEventType::ExecutionSucceeded)
                        .execution_succeeded_event_details(
                            ExecutionSucceededEventDetails::builder()
                                .output(state_json(Some(order()), Some(issued())))
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&start, &history]);
        let mut out = Vec::new();
        let outcome = issue(&sfn, MACHINE, &request, &mut out).await.unwrap();
        assert_eq!((start.num_calls(), history.num_calls()), (1, 1));
        assert!(outcome.succeeded());
        assert_eq!(outcome.certificate_id, request.certificate_id());
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with(&format!(
                "Certificate acme:{}\nStarted {EXECUTION}\nIssued acme:",
                request.certificate_id()
            )),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_bad_request_starts_nothing() {
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn(EXECUTION)
                .start_date(DateTime::from_secs(0))
                .build()
                .unwrap()
        });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&start]);
        let request: IssueRequest =
            serde_json::from_value(json!({"Domains": ["example.com"], "HostedZoneId": "Z01;drop"}))
                .unwrap();
        let error = issue(&sfn, MACHINE, &request, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("HostedZoneId \"Z01;drop\""), "{error}");
        assert_eq!(start.num_calls(), 0);
    }
}
