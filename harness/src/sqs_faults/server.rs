//! The layer's HTTP server: hyper serves each connection itself (so that a connection can be
//! closed without an answer), reqwest forwards to the emulator, the rules decide in between.
//!
//! It runs on a thread and runtime of its own: tests share one stack per process but each has
//! its own runtime, and a server spawned on the first test's runtime would die with it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::actions;
use super::protocol::{self, AwsError, Operation};
use super::rules::Action;
use super::state::State;

type Answer = Response<Full<Bytes>>;

/// Longest a forwarded request may take: a 20 s long poll and then some. The caller's own
/// deadlines are shorter; this only bounds a request nobody waits for any more.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(90);

/// Where requests go, and how.
#[derive(Debug)]
struct Upstream {
    /// `http://host:port` of the emulator.
    base: String,
    client: reqwest::Client,
}

/// What every connection shares.
#[derive(Debug)]
struct Layer {
    state: Arc<State>,
    upstream: Upstream,
}

/// An answer from the emulator.
struct Forwarded {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Serves `listener` on a thread of its own until `shutdown`.
pub(super) fn spawn(
    listener: std::net::TcpListener,
    upstream: String,
    state: Arc<State>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    listener.set_nonblocking(true)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(FORWARD_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()?;
    let layer = Arc::new(Layer {
        state,
        upstream: Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            client,
        },
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sqs-faults")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sqs-faults".into())
        .spawn(move || runtime.block_on(serve(listener, layer, shutdown)))?;
    Ok(())
}

async fn serve(listener: std::net::TcpListener, layer: Arc<Layer>, shutdown: CancellationToken) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "the SQS fault layer cannot listen");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, Arc::clone(&layer), shutdown.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the SQS fault layer failed to accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// One client connection. `cut` closes it without an answer (a request's handler cancels it
/// and never returns): to the client, the connection dropped after the request was sent.
async fn connection(stream: TcpStream, layer: Arc<Layer>, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let cut = CancellationToken::new();
    let service = {
        let cut = cut.clone();
        hyper::service::service_fn(move |request| handle(request, Arc::clone(&layer), cut.clone()))
    };
    let served =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = served => {}
        () = cut.cancelled() => {}
        () = shutdown.cancelled() => {}
    }
}

/// Closes the connection unanswered.
async fn cut_off(cut: &CancellationToken) -> Result<Answer, Infallible> {
    cut.cancel();
    std::future::pending().await
}

async fn handle(
    request: Request<Incoming>,
    layer: Arc<Layer>,
    cut: CancellationToken,
) -> Result<Answer, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return cut_off(&cut).await;
    };
    let operation = parts
        .headers
        .get(protocol::TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(Operation::from_target);
    let request_json: Option<Value> = serde_json::from_slice(&body).ok();
    let (Some(operation), Some(request_json)) = (operation, request_json) else {
        // Not SQS's JSON protocol (a health check, say): passed through untouched.
        return match layer.forward(&parts, body).await {
            Some(forwarded) => Ok(forwarded.answer()),
            None => cut_off(&cut).await,
        };
    };
    let queue = protocol::queue_name(&request_json);
    let decision = layer.state.decide(operation, queue.as_deref());
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let queue = queue.unwrap_or_default();
    let answer = match (operation, decision.action) {
        (_, Some(Action::Error(error))) => Some(error_answer(error)),
        (Operation::ReceiveMessage, action) => {
            layer
                .receive(&parts, body, &request_json, &queue, action)
                .await
        }
        (_, Some(Action::FailEntries { share, error })) => {
            layer.batch(&parts, request_json, share, error).await
        }
        (_, Some(Action::DropAnswer)) => {
            // Whether or not the emulator applied it, the caller never hears.
            let _ = layer.forward(&parts, body).await;
            None
        }
        _ => layer.forward(&parts, body).await.map(Forwarded::answer),
    };
    match answer {
        Some(answer) => Ok(answer),
        None => cut_off(&cut).await,
    }
}

impl Layer {
    /// Forwards the request as it came (the `Host` header too, so the emulator builds queue
    /// URLs that name the layer). `None` when the emulator cannot be reached: the caller's
    /// connection is then cut, as a network failure would.
    async fn forward(&self, parts: &Parts, body: Bytes) -> Option<Forwarded> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers);
        let sent = self
            .upstream
            .client
            .request(
                parts.method.clone(),
                format!("{}{path}", self.upstream.base),
            )
            .headers(headers)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "the SQS emulator did not answer the fault layer");
                return None;
            }
        };
        let status = response.status();
        let mut headers = response.headers().clone();
        strip_hop_by_hop(&mut headers);
        let body = response.bytes().await.ok()?;
        Some(Forwarded {
            status,
            headers,
            body,
        })
    }

    /// A receive: messages held back for the queue come first (without asking the emulator);
    /// otherwise the emulator's answer, duplicated, reordered or dropped as `action` says.
    async fn receive(
        &self,
        parts: &Parts,
        body: Bytes,
        request: &Value,
        queue: &str,
        action: Option<Action>,
    ) -> Option<Answer> {
        let held = self.state.take_held(queue, actions::max_messages(request));
        if !held.is_empty() {
            self.state.delivered(queue, &held);
            return Some(json_answer(StatusCode::OK, &actions::receive_answer(held)));
        }
        let forwarded = self.forward(parts, body).await?;
        if action == Some(Action::DropAnswer) {
            return None;
        }
        let watched = self.state.is_watched(queue);
        if forwarded.status != StatusCode::OK || (action.is_none() && !watched) {
            return Some(forwarded.answer());
        }
        let Ok(mut answer) = serde_json::from_slice::<Value>(&forwarded.body) else {
            return Some(forwarded.answer());
        };
        match action {
            Some(Action::Duplicate) => {
                self.state.hold(queue, actions::messages(&answer).to_vec());
            }
            Some(Action::Reorder) => {
                if let Some(first) = actions::messages_mut(&mut answer).and_then(actions::reorder) {
                    self.state.hold(queue, vec![first]);
                }
            }
            _ => {}
        }
        self.state.delivered(queue, actions::messages(&answer));
        Some(forwarded.with_json(&answer))
    }

    /// A batch with `share` of its entries failing with `error`.
    async fn batch(
        &self,
        parts: &Parts,
        mut request: Value,
        share: f64,
        error: AwsError,
    ) -> Option<Answer> {
        let failed = actions::fail_entries(&mut request, share);
        if !actions::has_entries(&request) {
            return Some(json_answer(
                StatusCode::OK,
                &actions::all_failed(&failed, error),
            ));
        }
        let body = Bytes::from(serde_json::to_vec(&request).ok()?);
        let forwarded = self.forward(parts, body).await?;
        if forwarded.status != StatusCode::OK {
            return Some(forwarded.answer());
        }
        let Ok(mut answer) = serde_json::from_slice::<Value>(&forwarded.body) else {
            return Some(forwarded.answer());
        };
        actions::add_failed(&mut answer, &failed, error);
        Some(forwarded.with_json(&answer))
    }
}

impl Forwarded {
    /// The emulator's answer as it came.
    fn answer(self) -> Answer {
        let mut answer = Response::new(Full::new(self.body));
        *answer.status_mut() = self.status;
        *answer.headers_mut() = self.headers;
        answer
    }

    /// The emulator's status and headers with another JSON body.
    fn with_json(mut self, body: &Value) -> Answer {
        self.body = Bytes::from(body.to_string());
        self.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(protocol::CONTENT_TYPE),
        );
        self.answer()
    }
}

/// An SQS error answer: status, `x-amzn-query-error`, a request id, the JSON body.
fn error_answer(error: AwsError) -> Answer {
    let mut answer = json_answer(
        StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &error.body(),
    );
    if let Ok(value) = HeaderValue::from_str(&error.query_error()) {
        answer
            .headers_mut()
            .insert(HeaderName::from_static(protocol::QUERY_ERROR_HEADER), value);
    }
    answer
}

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())));
    *answer.status_mut() = status;
    let headers = answer.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(protocol::CONTENT_TYPE),
    );
    if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert(HeaderName::from_static(protocol::REQUEST_ID_HEADER), id);
    }
    answer
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and the length,
/// which the side that sends the body sets.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ] {
        headers.remove(name);
    }
}
