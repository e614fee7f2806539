//! The local cloud's front door on the gateway port (moto's `MOTO_PORT`): Lambda Invoke for
//! certship's functions, SSM Run Command, State Manager and DescribeInstanceInformation are served
//! here, and the local cloud's own control calls (`certship local tick`); every other request is
//! forwarded to moto unchanged.

use super::api::LocalApi;
use super::calls::{self, Calls};
use super::functions::{Function, Functions};
use super::run_command::{self, RunCommand};
use super::state_manager::{self, StateManager};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = Full<Bytes>;

/// `POST` here is `certship local tick`: every association runs once now on every online host it
/// targets. Not an AWS API: the local cloud's own control, on its one endpoint.
pub const TICK_PATH: &str = "/_certship/local/tick";

/// `POST` here answers with every AWS call the gateway has served, by `service:Operation`
/// ([`super::calls`]), or with `{"ByCaller": true}` by `<caller> service:Operation` (each of
/// certship's functions signs as itself); `{"Reset": true}` starts the count again. The local
/// cloud's own control.
pub const CALLS_PATH: &str = "/_certship/local/calls";

pub struct Gateway {
    pub functions: Arc<Functions>,
    pub run_command: Arc<RunCommand>,
    pub state_manager: Arc<StateManager>,
    api: LocalApi,
    moto_port: u16,
    client: Client<HttpConnector, Body>,
    calls: Calls,
}

impl Gateway {
    pub fn new(
        functions: Arc<Functions>,
        run_command: Arc<RunCommand>,
        state_manager: Arc<StateManager>,
        api: LocalApi,
        moto_port: u16,
    ) -> Self {
        Self {
            functions,
            run_command,
            state_manager,
            api,
            moto_port,
            client: Client::builder(TokioExecutor::new()).build_http(),
            calls: Calls::default(),
        }
    }

    /// Accepts connections until `shutdown` turns true.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let this = Arc::clone(&self);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = Arc::clone(&this);
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &format!("unreadable body: {e}")),
        };
        let path = parts.uri.path().to_string();
        if path == CALLS_PATH && parts.method == hyper::Method::POST {
            let asked = serde_json::from_slice::<Value>(&body).unwrap_or_default();
            let flag = |name: &str| asked[name].as_bool().unwrap_or(false);
            return json_response(
                StatusCode::OK,
                &json!(self.calls.snapshot(flag("Reset"), flag("ByCaller"))),
                "application/json",
            );
        }
        if path == TICK_PATH && parts.method == hyper::Method::POST {
            let associations = self.state_manager.tick();
            tracing::info!(associations, "tick");
            return json_response(
                StatusCode::OK,
                &json!({ "Associations": associations }),
                "application/json",
            );
        }
        self.calls.record(
            calls::caller(&parts.headers),
            calls::operation(
                parts.method.as_str(),
                &path,
                parts.uri.query().unwrap_or_default(),
                &parts.headers,
                &body,
            ),
        );
        if LocalApi::serves(&path) && parts.method == hyper::Method::POST {
            let (status, value) = self.api.handle(&path, &parts.headers, &body).await;
            return json_response(status, &value, "application/json");
        }
        if let Some(function_name) = invoke_target(&path) {
            return self.invoke(&function_name, &body).await;
        }
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if let Some(operation) = target.strip_prefix("AmazonSSM.") {
            let served = if run_command::OPERATIONS.contains(&operation) {
                Some(self.run_command.call(operation, &body).await)
            } else if state_manager::OPERATIONS.contains(&operation) {
                Some(self.state_manager.call(operation, &body).await)
            } else {
                None
            };
            if let Some(result) = served {
                return match result {
                    Ok(value) => {
                        json_response(StatusCode::OK, &value, "application/x-amz-json-1.1")
                    }
                    Err(e) => json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({"__type": e.code, "message": e.message}),
                        "application/x-amz-json-1.1",
                    ),
                };
            }
        }
        self.forward(parts, body).await
    }

    async fn invoke(&self, function_name: &str, body: &[u8]) -> Response<Body> {
        let Some(function) = Function::resolve(function_name) else {
            return lambda_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                format!("Function not found: {function_name}"),
            );
        };
        let payload: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return lambda_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContentException",
                        format!("Could not parse request body into json: {e}"),
                    );
                }
            }
        };
        let mut response = match self.functions.invoke(function, payload).await {
            Ok(value) => json_response(StatusCode::OK, &value, "application/json"),
            Err(error) => {
                let mut response = json_response(
                    StatusCode::OK,
                    &super::functions::error_body(&error),
                    "application/json",
                );
                response.headers_mut().insert(
                    "x-amz-function-error",
                    hyper::header::HeaderValue::from_static("Unhandled"),
                );
                response
            }
        };
        response.headers_mut().insert(
            "x-amz-executed-version",
            hyper::header::HeaderValue::from_static("$LATEST"),
        );
        response
    }

    async fn forward(&self, parts: hyper::http::request::Parts, body: Bytes) -> Response<Body> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri = format!("http://127.0.0.1:{}{path_and_query}", self.moto_port);
        let mut builder = Request::builder().method(parts.method).uri(uri);
        for (name, value) in &parts.headers {
            builder = builder.header(name, value);
        }
        let request = match builder.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, &e.to_string()),
        };
        match self.client.request(request).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                match body.collect().await {
                    Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
                    Err(e) => plain(StatusCode::BAD_GATEWAY, &format!("moto: {e}")),
                }
            }
            Err(e) => plain(
                StatusCode::BAD_GATEWAY,
                &format!("moto is unreachable: {e}"),
            ),
        }
    }
}

/// Asks the local cloud at `endpoint` to tick (see [`TICK_PATH`]); returns how many
/// associations it holds.
pub async fn tick(endpoint: &str) -> anyhow::Result<u64> {
    use anyhow::Context;
    let answer = certship_moto::http::post_json(&format!("{endpoint}{TICK_PATH}"), &json!({}))
        .await
        .with_context(|| format!("asking the local cloud at {endpoint} to tick"))?;
    answer["Associations"]
        .as_u64()
        .with_context(|| format!("the local cloud answered the tick with {answer}"))
}

/// The AWS calls the local cloud at `endpoint` has served since it started or the last reset
/// (see [`CALLS_PATH`]), by `service:Operation`.
pub async fn calls(
    endpoint: &str,
    reset: bool,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    calls_as(endpoint, reset, false).await
}

/// [`calls`], by `<caller> service:Operation` when `by_caller`.
pub async fn calls_as(
    endpoint: &str,
    reset: bool,
    by_caller: bool,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    use anyhow::Context;
    let answer = certship_moto::http::post_json(
        &format!("{endpoint}{CALLS_PATH}"),
        &json!({"Reset": reset, "ByCaller": by_caller}),
    )
    .await
    .with_context(|| format!("asking the local cloud at {endpoint} for its call counts"))?;
    serde_json::from_value(answer.clone())
        .with_context(|| format!("the local cloud answered the call counts with {answer}"))
}

/// The function name of a Lambda Invoke path, `/2015-03-31/functions/{name}/invocations`.
fn invoke_target(path: &str) -> Option<String> {
    let name = path
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    Some(
        percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

fn json_response(status: StatusCode, value: &Value, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// An error of the Lambda service itself (not of the function), as its REST API returns one.
fn lambda_error(status: StatusCode, error_type: &'static str, message: String) -> Response<Body> {
    let mut response = json_response(
        status,
        &json!({"Type": "User", "message": message}),
        "application/json",
    );
    response.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static(error_type),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_paths_name_their_function() {
        assert_eq!(
            invoke_target(
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Acertship-dispatch-install/invocations"
            )
            .as_deref(),
            Some("arn:aws:lambda:us-east-1:123456789012:function:certship-dispatch-install")
        );
        assert_eq!(
            invoke_target("/2015-03-31/functions/x/invocations").as_deref(),
            Some("x")
        );
        assert_eq!(invoke_target("/2015-03-31/functions/x/configuration"), None);
        assert_eq!(invoke_target("/"), None);
    }
}
