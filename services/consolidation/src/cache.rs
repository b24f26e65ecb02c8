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
//! Writers fence (ADR 0004): before a writer (the consumer) commits changes to a merchant's
//! books, it places a token in the merchant's fence (`<prefix>fence:<merchant>`, a sorted set
//! scored by placement time), bumping the version and retiring what it may change in the same
//! script; only then does it commit; after the commit it retires what changed and removes its
//! token in one script. While a fence is up, every instance's lookups read PostgreSQL and store
//! nothing, so no instance serves a cached answer that a commit may have changed, whichever
//! instance committed and whatever Redis's breaker on it says. A writer that cannot place its
//! fence does not commit. A fence older than the expiry (its writer died between fence and lift)
//! no longer counts: the writer retired what it could change when it placed it, and commits
//! within the expiry by construction (the expiry is made of its deadlines).
//!
//! Redis is a cache for reads only: when it fails, reads go to PostgreSQL and a metric counts
//! the fallback; lifts that could not reach Redis are kept and retried, and this instance
//! bypasses the cache for those merchants until they succeed (the fences left up make every
//! other instance bypass them too). Every command has a deadline (`REDIS_COMMAND_TIMEOUT_MS`),
//! and a [`Breaker`] stops calling Redis after consecutive failures, so a dead or hanging Redis
//! costs reads nothing once the breaker is open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Reads that went to PostgreSQL because a writer had fenced the merchant's answers.
    pub fenced: Counter,
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
    /// Redis failed, a writer fenced the merchant, or this instance has a lift of it waiting
    /// for Redis: read from PostgreSQL, store nothing.
    Bypass,
}

/// A lookup's round trip: Redis's clock (seconds, microseconds), the merchant's newest fence
/// token with its placement time, the version, the answer.
type LookupReply = (
    (u64, u64),
    Vec<(String, f64)>,
    Option<String>,
    Option<String>,
);

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
    /// How old a fence must be before readers ignore it as a dead writer's (one that died
    /// between fencing and lifting).
    fence_expiry: Duration,
    /// This instance's part of every fence token, so that no two writers share one.
    writer: String,
    /// The sequence number of the next fence token.
    next_token: AtomicU64,
    /// The last fence failed: writers wait for [`Cache::writable`] before receiving more.
    unwritable: AtomicBool,
    /// Lifts that did not reach Redis, by merchant; this instance bypasses the cache for them
    /// (their fences make every other instance bypass it too).
    pending: Mutex<HashMap<String, PendingLift>>,
    metrics: CacheMetrics,
    /// The scripts, hashed once: `Script::new` computes the SHA-1 that `EVALSHA` names.
    scripts: Scripts,
}

/// The cache's Lua scripts.
#[derive(Debug)]
struct Scripts {
    put: Script,
    fence: Script,
    lift: Script,
}

/// The Lua functions the scripts below share. `retire` retires a merchant's answers whose last
/// date is `from` or later (every answer when `from` is empty), keeping a copy of each for
/// stale-if-error, and bumps the version so that no reader stores what it read before. The
/// stale copies are indexed per merchant (`<prefix>stale:<merchant>:index`, scored by expiry;
/// fields start with `d:` or `r:`, so no field is named `index`), trimmed of expired members
/// and capped at [`STALE_COPIES_PER_MERCHANT`] newest on each retirement: Redis holds at most
/// that many stale copies per merchant, however many ranges its readers ask for.
macro_rules! stale_copies_per_merchant {
    () => {
        64
    };
}
macro_rules! retire_function {
    () => {
        concat!(
            r"
local function now()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local function retire(version, index, from, version_ttl, answers, stales, stale_ttl)
  redis.call('INCR', version)
  redis.call('EXPIRE', version, version_ttl)
  stale_ttl = tonumber(stale_ttl)
  local stale_index = stales .. 'index'
  local copied = false
  for _, field in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if string.sub(field, -10) >= from then
      local answer = answers .. field
      if stale_ttl > 0 then
        local value = redis.call('GET', answer)
        if value then
          redis.call('SET', stales .. field, value, 'EX', stale_ttl)
          redis.call('ZADD', stale_index, now() + stale_ttl, field)
          copied = true
        end
      end
      redis.call('DEL', answer)
      redis.call('ZREM', index, field)
    end
  end
  if copied then
    redis.call('ZREMRANGEBYSCORE', stale_index, '-inf', now())
    local over = redis.call('ZCARD', stale_index) - ",
            stale_copies_per_merchant!(),
            r"
    if over > 0 then
      for _, field in ipairs(redis.call('ZRANGE', stale_index, 0, over - 1)) do
        redis.call('DEL', stales .. field)
      end
      redis.call('ZREMRANGEBYRANK', stale_index, 0, over - 1)
    end
    redis.call('EXPIRE', stale_index, stale_ttl)
  end
end
"
        )
    };
}

/// Stale copies Redis keeps per merchant at most (the newest): a merchant's readers retire a
/// few dozen distinct days and ranges an hour.
pub const STALE_COPIES_PER_MERCHANT: usize = stale_copies_per_merchant!();

/// KEYS: version, index, answer, fence. ARGV: version seen, field, value, TTL in seconds.
/// Stores only if the version is the one seen and no writer holds a fence. The index lives as
/// long as its newest answer (every answer has the same TTL).
const PUT: &str = r"
local current = redis.call('GET', KEYS[1])
if redis.call('EXISTS', KEYS[4]) == 0 and ((current == false and ARGV[1] == '') or current == ARGV[1]) then
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

/// KEYS: version, index, fence. ARGV: token, first date the writer may change, version TTL,
/// answer prefix, stale prefix, stale TTL, fence expiry in seconds.
/// Places the writer's fence and retires what it may change, before it commits.
const FENCE: &str = concat!(
    retire_function!(),
    r"
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now() - tonumber(ARGV[7]))
redis.call('ZADD', KEYS[3], now(), ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[7])
retire(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
return 1
"
);

/// KEYS: version, index, fence. ARGV: first changed date (empty: nothing changed, only lift),
/// version TTL, answer prefix, stale prefix, stale TTL, then the writer's tokens.
/// After commit: retires what changed and lifts the writer's fences in one step.
const LIFT: &str = concat!(
    retire_function!(),
    r"
if ARGV[1] ~= '' then
  retire(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
end
for i = 6, #ARGV do
  redis.call('ZREM', KEYS[3], ARGV[i])
end
return 1
"
);

/// How many statements a consumer's fenced apply may run at most: the batch, and when it is
/// refused, each of its (up to ten) events alone, plus one to spare. The fence expiry is that
/// many pool acquires and statements, so a fence never expires before its writer committed.
pub const FENCED_STATEMENTS: u32 = 12;

/// A writer's fences, one per merchant, to lift with [`Cache::lift`] once its changes committed.
#[derive(Debug)]
#[must_use = "a fence must be lifted, or every reader bypasses the cache until it expires"]
pub struct Fence {
    /// Merchant → the token placed for it.
    tokens: Vec<(String, String)>,
}

/// A lift waiting for Redis: the first changed day (if any changed) and the tokens to remove.
#[derive(Debug, Default)]
struct PendingLift {
    from: Option<Date>,
    tokens: Vec<String>,
}

impl Cache {
    /// A cache on `url` whose answers live `ttl`, and whose invalidated answers are kept
    /// `stale_if_error` for reads while PostgreSQL is unavailable; a writer's fence counts for
    /// `fence_expiry` at most. Connects on first use.
    pub fn new(
        url: &str,
        prefix: &str,
        ttl: Duration,
        stale_if_error: Duration,
        fence_expiry: Duration,
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
            fence_expiry: fence_expiry.max(Duration::from_secs(1)),
            writer: uuid::Uuid::new_v4().simple().to_string(),
            next_token: AtomicU64::new(0),
            unwritable: AtomicBool::new(false),
            pending: Mutex::default(),
            metrics,
            scripts: Scripts {
                put: Script::new(PUT),
                fence: Script::new(FENCE),
                lift: Script::new(LIFT),
            },
        })
    }

    /// The read path's figures.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    /// How old a fence must be before readers ignore it.
    pub fn fence_expiry(&self) -> Duration {
        self.fence_expiry
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

    /// The merchant's fence: writers' tokens scored by when they were placed.
    fn fence_key(&self, merchant: &str) -> String {
        format!("{}fence:{merchant}", self.prefix)
    }

    /// How long a version outlives the last change (past every answer read before it).
    fn version_ttl(&self) -> u64 {
        self.ttl.as_secs() * 2
    }

    fn fence_expiry_secs(&self) -> u64 {
        self.fence_expiry.as_secs().max(1)
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

    /// Looks up a cached answer. A merchant a writer has fenced is a bypass: its books may be
    /// changing, and the answer must come from PostgreSQL.
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
        // Plain reads in one round trip, not a script: a script call cost Redis 36 µs of CPU
        // where these four cost it about 6 (INFO commandstats; issue 32). No MULTI is needed:
        // Redis runs them in this order, and a fence placed between two of them retires the
        // answer (GET finds none: a miss) and bumps the version (the miss's store is refused).
        // A token counts while it is younger than the expiry by Redis's clock: the newest one
        // decides. Read-only, so lookups also run on a read-only replica.
        let result: redis::RedisResult<LookupReply> = self
            .call(
                redis::pipe()
                    .cmd("TIME")
                    .cmd("ZRANGE")
                    .arg(self.fence_key(merchant))
                    .arg(-1)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .get(&version_key)
                    .get(format!("{answers}{field}"))
                    .query_async(&mut redis),
            )
            .await;
        let fenced = |(seconds, micros): (u64, u64), newest: &[(String, f64)]| {
            let now = seconds as f64 + micros as f64 / 1e6;
            newest
                .iter()
                .any(|(_, placed)| *placed > now - self.fence_expiry_secs() as f64)
        };
        match result {
            Ok((time, newest, _, _)) if fenced(time, &newest) => {
                self.metrics.fenced.inc();
                Lookup::Bypass
            }
            Ok((_, _, _, Some(value))) => {
                self.metrics.hits.inc();
                Lookup::Hit(value)
            }
            Ok((_, _, version, None)) => {
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
                self.scripts
                    .put
                    .key(&version_key)
                    .key(&index_key)
                    .key(format!("{answers}{field}"))
                    .key(self.fence_key(merchant))
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

    /// Fences the merchants a writer is about to change, each from the first day it may change,
    /// before the writer commits: from then on no reader serves or stores a cached answer of
    /// theirs, and what they may change is retired. One Redis round trip for all of them (a
    /// consumer batch touches up to ten merchants). `None` when Redis did not take the fence
    /// (unreachable, the breaker open, a read-only replica): the writer must not commit, or
    /// another instance's cache could go on serving what the commit changed. A fence that may
    /// have landed anyway is lifted once Redis answers again.
    pub async fn fence<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, Date)>,
    ) -> Option<Fence> {
        let tokens: Vec<(String, String, Date)> = changes
            .into_iter()
            .map(|(merchant, from)| {
                let sequence = self.next_token.fetch_add(1, Ordering::Relaxed);
                (
                    merchant.to_string(),
                    format!("{}:{sequence}", self.writer),
                    from,
                )
            })
            .collect();
        let fence = Fence {
            tokens: tokens
                .iter()
                .map(|(merchant, token, _)| (merchant.clone(), token.clone()))
                .collect(),
        };
        let placed = match self.connection().await {
            None => false,
            Some(mut redis) => {
                let script = &self.scripts.fence;
                let mut pipeline = redis::pipe();
                pipeline.load_script(script).ignore();
                for (merchant, token, from) in &tokens {
                    let (version_key, index_key, answers) = self.keys(merchant);
                    pipeline.invoke_script(
                        script
                            .key(&version_key)
                            .key(&index_key)
                            .key(self.fence_key(merchant))
                            .arg(token)
                            .arg(business_date::format(*from))
                            .arg(self.version_ttl())
                            .arg(&answers)
                            .arg(self.stale_prefix(merchant))
                            .arg(self.stale_if_error.as_secs())
                            .arg(self.fence_expiry_secs()),
                    );
                }
                let done: redis::RedisResult<Vec<i32>> =
                    self.call(pipeline.query_async(&mut redis)).await;
                match done {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "fencing the cache failed; not applying");
                        false
                    }
                }
            }
        };
        self.unwritable.store(!placed, Ordering::Relaxed);
        if placed {
            return Some(fence);
        }
        // Nothing committed: lift without retiring anything, in case the fence landed.
        self.queue_lift(fence.tokens.into_iter().map(|(m, t)| (m, t, None)))
            .await;
        None
    }

    /// Lifts a writer's fences once its changes committed (or failed), retiring for each merchant
    /// every answer that covers `changes`' day for it or later; merchants without a day only lose
    /// their fence. Until Redis takes it, this instance bypasses the cache for those merchants,
    /// and the fences make every other instance bypass it too.
    pub async fn lift<'a>(&self, fence: Fence, changes: impl IntoIterator<Item = (&'a str, Date)>) {
        let changes: HashMap<&str, Date> = changes.into_iter().collect();
        self.queue_lift(fence.tokens.into_iter().map(|(merchant, token)| {
            let from = changes.get(merchant.as_str()).copied();
            (merchant, token, from)
        }))
        .await;
        self.flush_pending().await;
    }

    async fn queue_lift(&self, lifts: impl Iterator<Item = (String, String, Option<Date>)>) {
        let mut pending = self.pending.lock().await;
        for (merchant, token, from) in lifts {
            let waiting = pending.entry(merchant).or_default();
            waiting.tokens.push(token);
            waiting.from = match (waiting.from, from) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// Whether this instance may write (fence) now: at once when the last fence went through and
    /// the breaker is closed; otherwise after a write to Redis succeeds (a ping would not do: a
    /// demoted replica answers it, and refuses writes with `READONLY`).
    pub async fn writable(&self) -> bool {
        if !self.unwritable.load(Ordering::Relaxed) && self.breaker.state() == BreakerState::Closed
        {
            return true;
        }
        let Some(mut redis) = self.connection().await else {
            return false;
        };
        let probe: redis::RedisResult<()> = self
            .call(
                redis::cmd("SET")
                    .arg(format!("{}writable", self.prefix))
                    .arg(1)
                    .arg("EX")
                    .arg(60)
                    .query_async(&mut redis),
            )
            .await;
        let writable = probe.is_ok();
        self.unwritable.store(!writable, Ordering::Relaxed);
        if writable {
            self.flush_pending().await;
        }
        writable
    }

    /// Sends the lifts that are waiting for Redis, all in one pipeline.
    pub async fn flush_pending(&self) {
        let waiting: Vec<(String, Option<Date>, Vec<String>)> = {
            let pending = self.pending.lock().await;
            if pending.is_empty() {
                return;
            }
            pending
                .iter()
                .map(|(m, p)| (m.clone(), p.from, p.tokens.clone()))
                .collect()
        };
        let Some(mut redis) = self.connection().await else {
            return;
        };
        let script = &self.scripts.lift;
        let mut pipeline = redis::pipe();
        // Loads the script in the same round trip, so that the EVALSHAs below never meet a
        // Redis that lost it (a restart, a failover).
        pipeline.load_script(script).ignore();
        for (merchant, from, tokens) in &waiting {
            let (version_key, index_key, answers) = self.keys(merchant);
            let mut invocation = script.key(&version_key);
            invocation
                .key(&index_key)
                .key(self.fence_key(merchant))
                .arg(from.map(business_date::format).unwrap_or_default())
                .arg(self.version_ttl())
                .arg(&answers)
                .arg(self.stale_prefix(merchant))
                .arg(self.stale_if_error.as_secs());
            for token in tokens {
                invocation.arg(token);
            }
            pipeline.invoke_script(&invocation);
        }
        let done: redis::RedisResult<Vec<i32>> = self.call(pipeline.query_async(&mut redis)).await;
        match done {
            Ok(_) => {
                let mut pending = self.pending.lock().await;
                for (merchant, from, tokens) in waiting {
                    let Some(left) = pending.get_mut(&merchant) else {
                        continue;
                    };
                    left.tokens.retain(|t| !tokens.contains(t));
                    // A later change may have lowered the date meanwhile: keep that one.
                    if left.from == from {
                        left.from = None;
                    }
                    if left.tokens.is_empty() && left.from.is_none() {
                        pending.remove(&merchant);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, merchants = waiting.len(), "lifting cache fences failed; will retry");
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
