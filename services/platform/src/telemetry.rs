//! Logs (JSON lines on stdout, and GELF to Graylog when `GELF_ADDR` is set) and Prometheus
//! metrics. Each application owns its metric
//! registry, so several applications in one test process keep separate figures.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Installs the log subscriber (once per process; later calls do nothing): JSON lines on
/// stdout, plus GELF over UDP to `GELF_ADDR` when set (a bad address is reported on stderr and
/// logging goes on without it). `RUST_LOG` filters, `info` by default.
pub fn init_logging(service: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let gelf = crate::config::optional("GELF_ADDR").and_then(|address| {
        crate::gelf::GelfLayer::connect(&address, service)
            .inspect_err(|e| eprintln!("GELF logging is off: {e:#}"))
            .ok()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true),
        )
        .with(gelf)
        .try_init();
}

/// Latency buckets in seconds, from 1 ms to 10 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
    status: u16,
}

/// Request count and latency by route and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        Self { requests, latency }
    }

    /// Middleware recording every request under its route template (not the raw path, which
    /// would make one series per merchant).
    pub async fn track(State(metrics): State<Self>, request: Request, next: Next) -> Response {
        let started = Instant::now();
        let method = request.method().to_string();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
        let response = next.run(request).await;
        let labels = RouteLabels {
            method,
            route,
            status: response.status().as_u16(),
        };
        metrics.requests.get_or_create(&labels).inc();
        metrics
            .latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        response
    }
}

/// The `/metrics` route rendering `registry` in the Prometheus text format.
pub fn metrics_route<S>(registry: Arc<Registry>) -> Router<S> {
    Router::new()
        .route("/metrics", get(render))
        .with_state(registry)
}

async fn render(State(registry): State<Arc<Registry>>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
