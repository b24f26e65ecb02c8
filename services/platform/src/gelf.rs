//! Logs to Graylog as GELF 1.1 over UDP, beside the JSON lines on stdout, when `GELF_ADDR`
//! (`host:port`) is set. Best effort by design: a log line never blocks or fails a request, so a
//! send error is dropped (UDP gives no delivery guarantee anyway).

use std::net::{ToSocketAddrs, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Largest datagram sent whole; bigger messages are split into GELF chunks of this size.
const CHUNK_PAYLOAD: usize = 8_000;
/// GELF allows at most 128 chunks per message.
const MAX_CHUNKS: usize = 128;

/// A `tracing` layer that sends each event as one GELF message.
#[derive(Debug)]
pub struct GelfLayer {
    /// Connected to the Graylog input.
    socket: UdpSocket,
    /// The GELF `host` field: this machine (the pod name on Kubernetes).
    host: String,
    /// Sent as the additional field `_service`.
    service: String,
}

impl GelfLayer {
    /// A layer sending to `address` (`host:port` of a GELF UDP input).
    pub fn connect(address: &str, service: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let target = address
            .to_socket_addrs()
            .with_context(|| format!("resolving GELF_ADDR={address}"))?
            .next()
            .with_context(|| format!("GELF_ADDR={address} resolves to nothing"))?;
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local).context("binding a UDP socket for GELF")?;
        socket
            .connect(target)
            .with_context(|| format!("connecting to GELF_ADDR={address}"))?;
        socket.set_nonblocking(true)?;
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            socket,
            host,
            service: service.to_string(),
        })
    }

    /// The GELF document for an event.
    fn message(&self, event: &Event<'_>) -> Value {
        let mut fields = FieldVisitor::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut gelf = Map::new();
        gelf.insert("version".into(), "1.1".into());
        gelf.insert("host".into(), self.host.clone().into());
        gelf.insert(
            "short_message".into(),
            fields
                .message
                .unwrap_or_else(|| metadata.name().to_string())
                .into(),
        );
        gelf.insert("timestamp".into(), timestamp.into());
        gelf.insert("level".into(), syslog_level(metadata.level()).into());
        gelf.insert("_service".into(), self.service.clone().into());
        gelf.insert("_target".into(), metadata.target().into());
        for (name, value) in fields.additional {
            // `_id` is reserved by GELF; every other additional field is `_` + name.
            let key = if name == "id" {
                "_event_id".to_string()
            } else {
                format!("_{name}")
            };
            gelf.insert(key, value);
        }
        Value::Object(gelf)
    }

    fn send(&self, payload: &[u8]) {
        if payload.len() <= CHUNK_PAYLOAD {
            let _ = self.socket.send(payload);
            return;
        }
        let chunks: Vec<&[u8]> = payload.chunks(CHUNK_PAYLOAD).collect();
        if chunks.len() > MAX_CHUNKS {
            return; // Graylog would drop it; too big to be a log line.
        }
        let id: [u8; 8] = uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or_default();
        for (sequence, chunk) in chunks.iter().enumerate() {
            let mut datagram = Vec::with_capacity(12 + chunk.len());
            datagram.extend_from_slice(&[0x1e, 0x0f]);
            datagram.extend_from_slice(&id);
            // Both fit in a byte: at most 128 chunks.
            datagram.push(sequence as u8);
            datagram.push(chunks.len() as u8);
            datagram.extend_from_slice(chunk);
            let _ = self.socket.send(&datagram);
        }
    }
}

impl<S: Subscriber> Layer<S> for GelfLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if let Ok(payload) = serde_json::to_vec(&self.message(event)) {
            self.send(&payload);
        }
    }
}

/// Syslog severities, as GELF wants them.
fn syslog_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[derive(Default)]
struct FieldVisitor {
    message: Option<String>,
    additional: Vec<(String, Value)>,
}

impl FieldVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.additional.push((field.name().to_string(), value));
        }
    }
}

impl Visit for FieldVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::GelfLayer;

    fn receiver() -> (UdpSocket, String) {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let address = socket.local_addr().expect("address").to_string();
        (socket, address)
    }

    #[test]
    fn an_event_arrives_as_a_gelf_message_with_its_fields() {
        let (socket, address) = receiver();
        let layer = GelfLayer::connect(&address, "ledger").expect("connect");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(merchant = "m1", attempts = 3_u64, "outbox publish failed");
        });
        let mut buffer = [0_u8; 9000];
        let n = socket.recv(&mut buffer).expect("a datagram");
        let gelf: serde_json::Value = serde_json::from_slice(&buffer[..n]).expect("JSON");
        assert_eq!(gelf["version"], "1.1");
        assert_eq!(gelf["short_message"], "outbox publish failed");
        assert_eq!(gelf["level"], 4);
        assert_eq!(gelf["_service"], "ledger");
        assert_eq!(gelf["_merchant"], "m1");
        assert_eq!(gelf["_attempts"], 3);
        assert!(gelf["timestamp"].as_f64().is_some_and(|t| t > 1.7e9));
    }

    #[test]
    fn a_large_message_is_chunked_and_reassembles() {
        let (socket, address) = receiver();
        let layer = GelfLayer::connect(&address, "consolidation").expect("connect");
        let big = "x".repeat(20_000);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(detail = %big, "a large one");
        });
        let mut parts = Vec::new();
        let mut buffer = [0_u8; 9000];
        loop {
            let n = socket.recv(&mut buffer).expect("a chunk");
            assert_eq!(&buffer[..2], &[0x1e, 0x0f], "chunk magic");
            let (sequence, count) = (buffer[10], buffer[11]);
            parts.push((sequence, buffer[12..n].to_vec()));
            if parts.len() == usize::from(count) {
                break;
            }
        }
        assert_eq!(parts.len(), 3);
        parts.sort_by_key(|(sequence, _)| *sequence);
        let whole: Vec<u8> = parts.into_iter().flat_map(|(_, bytes)| bytes).collect();
        let gelf: serde_json::Value = serde_json::from_slice(&whole).expect("JSON");
        assert_eq!(gelf["_detail"].as_str().map(str::len), Some(20_000));
        assert_eq!(gelf["level"], 3);
    }
}
