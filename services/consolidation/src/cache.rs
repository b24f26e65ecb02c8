//! Redis cache-aside for balance and report reads.
//!
//! Each cached answer is a key of its own (`<prefix>bal:<merchant>:<field>`, the field being
//! `d:<date>` for a day or `r:<from>:<to>` for a report; both end in the last date they cover)
//! with its own TTL, so an answer expires `CACHE_TTL_SECONDS` after it was stored whatever else
//! the merchant reads. (One hash per merchant with the hash's TTL renewed on each write kept
//! every range ever asked for as long as the merchant was read; Redis's per-field hash expiry
//! needs Redis 7.4, which ElastiCache does not offer.) Per merchant, a sorted set indexes the
//! live answers (score: expiry time; members past it are trimmed on each store) and a version
//! counts changes. A change to day D bumps the version and deletes every answer whose last date
//! is D or later: exactly the answers whose closing balance moved. A reader only stores what it
//! read from PostgreSQL if the version is still the one it saw before reading, so a slow reader
//! never puts back a stale balance. Both scripts run atomically, so the index, the answers and
//! the version never disagree for a reader.
//!
//! Stale-if-error (RFC 5861's idea, on the server side): an invalidation does not simply delete
//! an answer, it moves it to `<prefix>stale:<merchant>:<field>` for `CACHE_STALE_IF_ERROR_SECONDS`.
//! A read that misses and then finds PostgreSQL unavailable answers that last copy, marked stale
//! (`Cache-Status`), rather than a 503: its `as_of` says how old it is. It is never served while
//! PostgreSQL answers, so a stale copy can never hide a change from a reader who could see it.
//!
//! Redis is a cache only: when it fails, reads go to PostgreSQL and a metric counts the
//! fallback; invalidations that could not reach Redis are kept and retried, and this instance
//! bypasses the cache for those merchants until they succeed. Every command has a deadline
//! (`REDIS_COMMAND_TIMEOUT_MS`), and a [`Breaker`] stops calling Redis after consecutive
//! failures, so a dead or hanging Redis costs reads nothing once the breaker is open.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::Script;
use redis::aio::ConnectionManager;
use time::Date;
use tokio::sync::Mutex;

use cashflow_contracts::business_date;

use crate::breaker::{Breaker, BreakerState};
use crate::config::RedisConfig;

/// Cache figures.
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// Answers served from Redis.
    pub hits: Counter,
    /// Answers read from PostgreSQL because Redis did not have them.
    pub misses: Counter,
    /// Answers read from PostgreSQL because Redis failed or the breaker is open.
    pub fallbacks: Counter,
    /// The Redis circuit breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
    /// Redis connects and calls that failed or passed their deadline (each one a read that
    /// waited for Redis in vain; none while the breaker is open).
    pub redis_failures: Counter,
    /// Reads answered with the last, invalidated answer because PostgreSQL was unavailable.
    pub stale_served: Counter,
    /// Read attempts repeated because PostgreSQL dropped or refused the first (a restart or a
    /// failover, which a retry within the read's budget rides out).
    pub reads_retried: Counter,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The cached answer.
    Hit(String),
    /// Not cached; store the answer with this version.
    Miss(Version),
    /// Redis failed or the merchant has a pending invalidation: read from PostgreSQL, store nothing.
    Bypass,
}

/// The merchant's cache version seen before reading PostgreSQL.
#[derive(Debug, Clone)]
pub struct Version(Option<String>);

/// The cache.
#[derive(Debug)]
pub struct Cache {
    client: redis::Client,
    prefix: String,
    ttl: Duration,
    /// How long an invalidated answer is kept for reads while PostgreSQL is unavailable (zero:
    /// not kept).
    stale_if_error: Duration,
    redis: RedisConfig,
    /// The connection, made on first use (Redis may be down at start).
    connection: Mutex<Option<ConnectionManager>>,
    breaker: Breaker,
    /// Invalidations that did not reach Redis: merchant → earliest changed day.
    pending: Mutex<HashMap<String, Date>>,
    metrics: CacheMetrics,
}

/// KEYS: version, index, answer. ARGV: version seen, field, value, TTL in seconds.
/// The index lives as long as its newest answer (every answer has the same TTL).
const PUT: &str = r"
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  local now = tonumber(redis.call('TIME')[1])
  local ttl = tonumber(ARGV[4])
  redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl)
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[2])
  redis.call('EXPIRE', KEYS[2], ttl)
  return 1
end
return 0
";

/// KEYS: version, index. ARGV: first changed date, version TTL, prefix of the answer keys,
/// prefix of the stale copies, their TTL in seconds (0: keep none).
const INVALIDATE: &str = r"
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local stale_ttl = tonumber(ARGV[5])
for _, field in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.sub(field, -10) >= ARGV[1] then
    local answer = ARGV[3] .. field
    if stale_ttl > 0 then
      local value = redis.call('GET', answer)
      if value then
        redis.call('SET', ARGV[4] .. field, value, 'EX', stale_ttl)
      end
    end
    redis.call('DEL', answer)
    redis.call('ZREM', KEYS[2], field)
  end
end
return 1
";

impl Cache {
    /// A cache on `url` whose answers live `ttl`, and whose invalidated answers are kept
    /// `stale_if_error` for reads while PostgreSQL is unavailable; connects on first use.
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        stale_if_error: Duration,
        redis: RedisConfig,
        metrics: CacheMetrics,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix: prefix.to_string(),
            ttl,
            stale_if_error,
            redis,
            connection: Mutex::default(),
            breaker: Breaker::new(
                redis.breaker_failures,
                redis.breaker_cooldown,
                metrics.breaker_state.clone(),
            ),
            pending: Mutex::default(),
            metrics,
        })
    }

    /// The read path's figures.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The field of a day's answer.
    pub fn day_field(date: Date) -> String {
        format!("d:{}", business_date::format(date))
    }

    /// The field of a report's answer.
    pub fn report_field(from: Date, to: Date) -> String {
        format!(
            "r:{}:{}",
            business_date::format(from),
            business_date::format(to)
        )
    }

    /// The merchant's version key, answer index, and the prefix of its answer keys.
    fn keys(&self, merchant: &str) -> (String, String, String) {
        (
            format!("{}ver:{merchant}", self.prefix),
            format!("{}idx:{merchant}", self.prefix),
            self.answer_prefix(merchant),
        )
    }

    fn answer_prefix(&self, merchant: &str) -> String {
        format!("{}bal:{merchant}:", self.prefix)
    }

    fn stale_prefix(&self, merchant: &str) -> String {
        format!("{}stale:{merchant}:", self.prefix)
    }

    /// A connection to use now, or `None` when the breaker is open or connecting fails. The
    /// caller reports the outcome of what it did with it through [`Cache::call`].
    async fn connection(&self) -> Option<ConnectionManager> {
        if !self.breaker.allow() {
            return None;
        }
        let mut connection = self.connection.lock().await;
        if let Some(manager) = &*connection {
            return Some(manager.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.redis.connect_timeout))
            .set_response_timeout(Some(self.redis.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        // The manager's own timeout covers one attempt; this bounds the whole connect.
        match tokio::time::timeout(self.redis.connect_timeout * 3, connecting).await {
            Ok(Ok(manager)) => {
                *connection = Some(manager.clone());
                Some(manager)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Redis is unavailable; reading from PostgreSQL");
                self.metrics.redis_failures.inc();
                self.breaker.failure();
                None
            }
            Err(_) => {
                tracing::warn!("connecting to Redis timed out; reading from PostgreSQL");
                self.metrics.redis_failures.inc();
                self.breaker.failure();
                None
            }
        }
    }

    /// Runs one Redis call under the command deadline and tells the breaker how it went.
    async fn call<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let result = match tokio::time::timeout(self.redis.command_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis command deadline passed",
            ))),
        };
        match &result {
            Ok(_) => self.breaker.success(),
            Err(_) => {
                self.metrics.redis_failures.inc();
                self.breaker.failure();
            }
        }
        result
    }

    /// Looks up a cached answer.
    pub async fn get(&self, merchant: &str, field: &str) -> Lookup {
        self.flush_pending().await;
        if self.pending.lock().await.contains_key(merchant) {
            self.metrics.fallbacks.inc();
            return Lookup::Bypass;
        }
        let Some(mut redis) = self.connection().await else {
            self.metrics.fallbacks.inc();
            return Lookup::Bypass;
        };
        let (version_key, _, answers) = self.keys(merchant);
        let result: redis::RedisResult<(Option<String>, Option<String>)> = self
            .call(
                redis::pipe()
                    .get(&version_key)
                    .get(format!("{answers}{field}"))
                    .query_async(&mut redis),
            )
            .await;
        match result {
            Ok((_, Some(value))) => {
                self.metrics.hits.inc();
                Lookup::Hit(value)
            }
            Ok((version, None)) => {
                self.metrics.misses.inc();
                Lookup::Miss(Version(version))
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis read failed; reading from PostgreSQL");
                self.metrics.fallbacks.inc();
                Lookup::Bypass
            }
        }
    }

    /// Stores an answer read from PostgreSQL, unless the merchant's books changed since
    /// `version` was seen.
    pub async fn put(&self, merchant: &str, field: &str, value: &str, version: Version) {
        let Some(mut redis) = self.connection().await else {
            return;
        };
        let (version_key, index_key, answers) = self.keys(merchant);
        let stored: redis::RedisResult<i32> = self
            .call(
                Script::new(PUT)
                    .key(&version_key)
                    .key(&index_key)
                    .key(format!("{answers}{field}"))
                    .arg(version.0.unwrap_or_default())
                    .arg(field)
                    .arg(value)
                    .arg(self.ttl.as_secs())
                    .invoke_async(&mut redis),
            )
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "caching a balance failed");
        }
    }

    /// The last answer for `field` that an invalidation retired, for a read that PostgreSQL
    /// cannot answer now. `None` when there is none or Redis cannot say.
    pub async fn stale(&self, merchant: &str, field: &str) -> Option<String> {
        if self.stale_if_error.is_zero() {
            return None;
        }
        let mut redis = self.connection().await?;
        let key = format!("{}{field}", self.stale_prefix(merchant));
        let found: redis::RedisResult<Option<String>> = self
            .call(redis::cmd("GET").arg(key).query_async(&mut redis))
            .await;
        match found {
            Ok(Some(value)) => {
                self.metrics.stale_served.inc();
                Some(value)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "reading a stale answer failed");
                None
            }
        }
    }

    /// Forgets every cached answer of `merchant` that covers `from` or later.
    pub async fn invalidate_from(&self, merchant: &str, from: Date) {
        self.invalidate(std::iter::once((merchant, from))).await;
    }

    /// Forgets, for each merchant, every cached answer that covers its date or later: one
    /// Redis round trip for all of them (a consumer batch touches up to ten merchants).
    pub async fn invalidate<'a>(&self, changes: impl IntoIterator<Item = (&'a str, Date)>) {
        {
            let mut pending = self.pending.lock().await;
            for (merchant, from) in changes {
                let earliest = pending.entry(merchant.to_string()).or_insert(from);
                *earliest = (*earliest).min(from);
            }
        }
        self.flush_pending().await;
    }

    /// Sends the invalidations that are waiting for Redis, all in one pipeline.
    pub async fn flush_pending(&self) {
        let waiting: Vec<(String, Date)> = {
            let pending = self.pending.lock().await;
            if pending.is_empty() {
                return;
            }
            pending.iter().map(|(m, d)| (m.clone(), *d)).collect()
        };
        let Some(mut redis) = self.connection().await else {
            return;
        };
        let script = Script::new(INVALIDATE);
        let mut pipeline = redis::pipe();
        // Loads the script in the same round trip, so that the EVALSHAs below never meet a
        // Redis that lost it (a restart, a failover).
        pipeline.load_script(&script).ignore();
        for (merchant, from) in &waiting {
            let (version_key, index_key, answers) = self.keys(merchant);
            pipeline.invoke_script(
                script
                    .key(&version_key)
                    .key(&index_key)
                    .arg(business_date::format(*from))
                    .arg(self.ttl.as_secs() * 2)
                    .arg(&answers)
                    .arg(self.stale_prefix(merchant))
                    .arg(self.stale_if_error.as_secs()),
            );
        }
        let done: redis::RedisResult<Vec<i32>> = self.call(pipeline.query_async(&mut redis)).await;
        match done {
            Ok(_) => {
                let mut pending = self.pending.lock().await;
                for (merchant, from) in waiting {
                    // A later change may have lowered the date meanwhile: keep that one.
                    if pending.get(&merchant) == Some(&from) {
                        pending.remove(&merchant);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, merchants = waiting.len(), "cache invalidation failed; will retry");
            }
        }
    }

    /// Whether Redis answers PING (for diagnostics, not readiness).
    pub async fn ping(&self) -> bool {
        let Some(mut redis) = self.connection().await else {
            return false;
        };
        let pong: redis::RedisResult<String> =
            self.call(redis::cmd("PING").query_async(&mut redis)).await;
        pong.is_ok()
    }
}

#[cfg(test)]
mod tests {
    /// ElastiCache in production requires TLS: a `rediss://` URL must be accepted (the redis
    /// crate refuses it when built without its rustls features).
    #[test]
    fn tls_redis_urls_are_supported() {
        let client = redis::Client::open("rediss://:token@cache.example.internal:6379");
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
