//! Both services — ledger and consolidation — running in-process against the harness's real
//! dependencies, each on its own scope, driven over HTTP as a user would: what the acceptance
//! suite's scenarios and the load suite's in-process target run against. It can put a fault proxy
//! on every service→dependency link, restart or kill the consolidation, and rotate the identity
//! provider's keys.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cashflow_platform::auth::AuthConfig;
use cashflow_platform::sqs::SqsSettings;
use harness::netfault::{FaultProxy, NetFault};
use harness::{IssuerKeys, RotatingIdentity, Scope, ScopeOptions, Stack};
use serde_json::Value;

use crate::books::{self, Books};
use crate::config::{consolidation_config, ledger_config};
use crate::running::Running;

/// A service running in-process and where it listens.
#[derive(Debug)]
struct Serving {
    address: String,
    run: Running,
}

/// Where each part runs: the ledger's PostgreSQL may be another stack's than the
/// consolidation's, so chaos can kill the consolidation side only.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Stack of the ledger's database, the queue and the identity provider.
    pub ledger: &'static Stack,
    /// Stack of the consolidation's database and Redis.
    pub consolidation: &'static Stack,
}

/// Both services wired together on their own scopes.
#[derive(Debug)]
pub struct System {
    placement: Placement,
    /// The ledger's scope (database, and the queue pair both services use).
    pub ledger_scope: Scope,
    /// The consolidation's scope (database, Redis prefix).
    pub consolidation_scope: Scope,
    ledger: Option<Serving>,
    consolidation: Option<Serving>,
    ledger_address: String,
    /// The ledger's internal listener (digests, replays).
    ledger_internal_address: String,
    consolidation_address: String,
    /// The consolidation's metrics (the latest instance's).
    pub consolidation_metrics: Option<consolidation::metrics::Metrics>,
    /// Long-poll loops of the consolidation.
    pollers: u16,
    /// Retries logged on the queue before the latest consolidation instance started.
    retries_before: usize,
    /// Interval of the consolidation's periodic reconciler; `None` runs none (the on-demand API
    /// still works). Takes effect at the next start of the consolidation.
    pub reconcile_interval: Option<Duration>,
    /// Fault proxies on every service→dependency link, once [`System::route_through_proxies`]
    /// put them there.
    pub links: Option<Links>,
    /// The system's own identity provider, whose keys rotate, when it was started with one;
    /// else the ledger stack's shared provider signs and serves the keys.
    rotating: Option<Arc<RotatingIdentity>>,
    http: reqwest::Client,
}

/// Where a client gets its tokens: the shared provider's fixed key, or a rotating provider's
/// newest key (so a client that is refused with 401 after a rotation gets a good token again).
/// Cheap to clone, for load tasks.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The shared provider's key.
    Fixed(IssuerKeys),
    /// The newest key of a rotating provider.
    Rotating(Arc<RotatingIdentity>),
}

impl TokenSource {
    /// A token for `merchant` with `scopes`, signed by the current key.
    pub fn token(&self, merchant: &str, scopes: &[&str]) -> anyhow::Result<String> {
        self.keys()
            .token()
            .merchant(merchant)
            .scopes(scopes.iter().copied())
            .mint()
    }

    /// A token for `merchant` with every merchant scope.
    pub fn full_token(&self, merchant: &str) -> anyhow::Result<String> {
        self.token(
            merchant,
            &["entries:write", "entries:read", "balances:read"],
        )
    }

    /// The key that signs tokens now.
    pub fn keys(&self) -> IssuerKeys {
        match self {
            Self::Fixed(keys) => keys.clone(),
            Self::Rotating(identity) => identity.signing(),
        }
    }
}

/// A fault proxy on each service→dependency link: the services reach their dependencies only
/// through these, so a test can make any link slow, silent or broken.
#[derive(Debug)]
pub struct Links {
    /// ledger → PostgreSQL.
    pub ledger_postgres: FaultProxy,
    /// ledger → SQS.
    pub ledger_sqs: FaultProxy,
    /// consolidation → PostgreSQL.
    pub consolidation_postgres: FaultProxy,
    /// consolidation → Redis.
    pub consolidation_redis: FaultProxy,
    /// consolidation → SQS.
    pub consolidation_sqs: FaultProxy,
}

impl Links {
    /// Every link.
    pub fn all(&self) -> [&FaultProxy; 5] {
        [
            &self.ledger_postgres,
            &self.ledger_sqs,
            &self.consolidation_postgres,
            &self.consolidation_redis,
            &self.consolidation_sqs,
        ]
    }

    /// The same fault (or [`NetFault::Heal`]) on every link.
    pub fn inject_all(&self, fault: NetFault) {
        for link in self.all() {
            link.inject(fault);
        }
    }
}

impl System {
    /// Starts both services on fresh scopes. `max_receive_count` is the queue's redrive limit;
    /// the visibility timeout (how soon a message a killed consumer held comes back) is 5 s.
    pub async fn start(placement: Placement, max_receive_count: u32) -> anyhow::Result<Self> {
        Self::start_with_pollers(placement, max_receive_count, 2).await
    }

    /// Same, with `pollers` long-poll loops in the consolidation (the load suite uses 4).
    pub async fn start_with_pollers(
        placement: Placement,
        max_receive_count: u32,
        pollers: u16,
    ) -> anyhow::Result<Self> {
        Self::start_with(placement, max_receive_count, pollers, None).await
    }

    /// Same, with an identity provider of the system's own whose keys rotate
    /// ([`System::identity`]); the services refresh its keys every 2 s, so a retired key is
    /// refused within about that.
    pub async fn start_with_rotating_identity(
        placement: Placement,
        max_receive_count: u32,
    ) -> anyhow::Result<Self> {
        let identity = RotatingIdentity::start(None)
            .await
            .context("starting the rotating identity provider")?;
        Self::start_with(placement, max_receive_count, 2, Some(Arc::new(identity))).await
    }

    async fn start_with(
        placement: Placement,
        max_receive_count: u32,
        pollers: u16,
        rotating: Option<Arc<RotatingIdentity>>,
    ) -> anyhow::Result<Self> {
        crate::logs::capture();
        let ledger_scope = placement
            .ledger
            .scope_with(
                ScopeOptions::default()
                    .with_migrations(&ledger::MIGRATOR)
                    .with_max_receive_count(max_receive_count)
                    .with_visibility_timeout_secs(5),
            )
            .await?;
        let consolidation_scope = placement
            .consolidation
            .scope_with(ScopeOptions::default().with_migrations(&consolidation::MIGRATOR))
            .await?;
        let mut system = Self {
            placement,
            ledger_scope,
            consolidation_scope,
            ledger: None,
            consolidation: None,
            ledger_address: String::new(),
            ledger_internal_address: String::new(),
            consolidation_address: String::new(),
            consolidation_metrics: None,
            retries_before: 0,
            pollers,
            reconcile_interval: None,
            links: None,
            rotating,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        system.start_ledger().await?;
        system.start_consolidation().await?;
        Ok(system)
    }

    fn auth(&self) -> AuthConfig {
        match &self.rotating {
            Some(identity) => AuthConfig {
                keys: cashflow_platform::auth::KeyPolicy {
                    fetch_timeout: Duration::from_secs(1),
                    refresh_interval: Duration::from_secs(2),
                    min_refetch_interval: Duration::from_secs(1),
                },
                ..identity.auth_config()
            },
            None => self.placement.ledger.identity().auth_config(),
        }
    }

    /// The system's rotating identity provider, when it was started with one.
    pub fn identity(&self) -> Option<&RotatingIdentity> {
        self.rotating.as_deref()
    }

    /// Where clients of this system get their tokens.
    pub fn token_source(&self) -> TokenSource {
        match &self.rotating {
            Some(identity) => TokenSource::Rotating(Arc::clone(identity)),
            None => TokenSource::Fixed(self.placement.ledger.identity().keys().clone()),
        }
    }

    /// SQS as one side reaches it: through its link's proxy when there is one.
    fn sqs(&self, link: impl Fn(&Links) -> &FaultProxy) -> SqsSettings {
        SqsSettings {
            endpoint_url: Some(self.via(link, &self.ledger_scope.sqs_endpoint)),
            region: self.ledger_scope.aws_region.clone(),
        }
    }

    /// `url` through a link's proxy when the system has them, else `url` itself.
    fn via(&self, link: impl Fn(&Links) -> &FaultProxy, url: &str) -> String {
        self.links
            .as_ref()
            .map_or_else(|| url.to_string(), |links| link(links).url(url))
    }

    /// Puts a fault proxy on every service→dependency link and restarts both services behind
    /// them (on the same addresses for the consolidation; the ledger gets a new one).
    pub async fn route_through_proxies(&mut self) -> anyhow::Result<()> {
        let proxy = |url: String| async move { FaultProxy::for_url(&url).await };
        self.links = Some(Links {
            ledger_postgres: proxy(self.ledger_scope.database_url.clone()).await?,
            ledger_sqs: proxy(self.ledger_scope.sqs_endpoint.clone()).await?,
            consolidation_postgres: proxy(self.consolidation_scope.database_url.clone()).await?,
            consolidation_redis: proxy(self.consolidation_scope.redis_url.clone()).await?,
            consolidation_sqs: proxy(self.ledger_scope.sqs_endpoint.clone()).await?,
        });
        self.stop().await?;
        self.start_ledger().await?;
        self.start_consolidation().await
    }

    async fn start_ledger(&mut self) -> anyhow::Result<()> {
        let mut config = ledger_config(&self.ledger_scope, self.auth());
        config.database_url = self.via(|l| &l.ledger_postgres, &self.ledger_scope.database_url);
        config.sqs = self.sqs(|l| &l.ledger_sqs);
        config.relay.max_backoff = Duration::from_secs(1);
        let app = ledger::Application::build(config).await?;
        let address = format!("http://{}", app.local_addr());
        self.ledger_internal_address = format!("http://{}", app.internal_addr());
        self.ledger_address = address.clone();
        self.ledger = Some(Serving {
            address,
            run: Running::spawn(|shutdown| app.run_until_stopped(shutdown)),
        });
        Ok(())
    }

    /// Starts the consolidation (again), on the same address when it ran before, so clients
    /// keep their URL.
    pub async fn start_consolidation(&mut self) -> anyhow::Result<()> {
        let listen = match self.consolidation_address.strip_prefix("http://") {
            Some(address) => address.parse()?,
            None => "127.0.0.1:0".parse()?,
        };
        let mut config =
            consolidation_config(&self.consolidation_scope, &self.ledger_scope, self.auth());
        config.listen = listen;
        config.database_url = self.via(
            |l| &l.consolidation_postgres,
            &self.consolidation_scope.database_url,
        );
        config.redis_url = self.via(
            |l| &l.consolidation_redis,
            &self.consolidation_scope.redis_url,
        );
        config.sqs = self.sqs(|l| &l.consolidation_sqs);
        config.consumer.concurrency = self.pollers;
        config.reconcile = self.reconcile_config();
        // The old listener may take a moment to be released.
        let app = harness::eventually(Duration::from_secs(10), "the consolidation's port", || {
            let config = config.clone();
            async move { consolidation::Application::build(config).await.ok() }
        })
        .await;
        let address = format!("http://{}", app.local_addr());
        self.consolidation_metrics = Some(app.metrics().clone());
        self.retries_before = crate::logs::retries_on(&self.ledger_scope.queues.url).len();
        self.consolidation_address = address.clone();
        self.consolidation = Some(Serving {
            address,
            run: Running::spawn(|shutdown| app.run_until_stopped(shutdown)),
        });
        Ok(())
    }

    /// The consolidation's reconciler: the ledger's URL and an OAuth2 client registered with the
    /// identity emulator (client credentials, scope `ledger:reconcile`, 60 s tokens so that the
    /// tests see them refreshed).
    fn reconcile_config(&self) -> consolidation::config::ReconcileConfig {
        let client_id = format!(
            "consolidation-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (scopes, ttl) = (&["ledger:reconcile"], Duration::from_secs(60));
        let (client, issuer) = match &self.rotating {
            Some(identity) => (
                identity.register_client(&client_id, scopes, ttl),
                identity.issuer().to_string(),
            ),
            None => {
                let identity = self.placement.ledger.identity();
                (
                    identity.register_client(&client_id, scopes, ttl),
                    identity.issuer().to_string(),
                )
            }
        };
        consolidation::config::ReconcileConfig {
            enabled: self.reconcile_interval.is_some(),
            ledger_url: self.ledger_internal_address.clone(),
            interval: self.reconcile_interval.unwrap_or(Duration::from_secs(300)),
            grace: Duration::from_millis(500),
            recheck_timeout: Duration::from_secs(20),
            client: consolidation::config::OAuthClientConfig {
                token_url: None,
                issuer,
                client_id: client.client_id,
                client_secret: client.client_secret,
                scope: "ledger:reconcile".into(),
            },
            ..Default::default()
        }
    }

    /// The retries the latest consolidation instance scheduled, as its log lines tell them,
    /// waiting until there are at least `n` or `timeout` passes (`None` then).
    pub async fn consolidation_retries(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Option<Vec<crate::logs::Retry>> {
        crate::logs::wait_for_retries(
            &self.ledger_scope.queues.url,
            self.retries_before,
            n,
            timeout,
        )
        .await
    }

    /// The DLQ as the consolidation's admin API lists it (`GET /v1/admin/dlq`, admin token).
    pub async fn dlq_listing(&self) -> anyhow::Result<Value> {
        let admin = self.token("ops", &["admin"])?;
        let response = self
            .http
            .get(format!("{}/v1/admin/dlq", self.consolidation_url()))
            .bearer_auth(admin)
            .send()
            .await
            .context("GET dlq")?;
        Ok(response.json().await?)
    }

    /// The broker loses every message of the entries queue (PurgeQueue).
    pub async fn purge_queue(&self) -> anyhow::Result<()> {
        self.ledger_scope
            .sqs()
            .purge_queue()
            .queue_url(&self.ledger_scope.queues.url)
            .send()
            .await
            .context("purging the entries queue")?;
        Ok(())
    }

    /// Messages in the entries queue (visible and in flight).
    pub async fn queue_depth(&self) -> anyhow::Result<i64> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .ledger_scope
            .sqs()
            .get_queue_attributes()
            .queue_url(&self.ledger_scope.queues.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .context("reading the queue's depth")?;
        let attrs = out.attributes.unwrap_or_default();
        let get = |a: A| {
            attrs
                .get(&a)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        Ok(get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible))
    }

    /// Stops the consolidation (graceful drain).
    pub async fn stop_consolidation(&mut self) -> anyhow::Result<()> {
        if let Some(serving) = self.consolidation.take() {
            serving.run.stop().await?;
        }
        Ok(())
    }

    /// Kills the consolidation: its task is dropped mid-flight, with no drain (what it had
    /// received comes back after the visibility timeout).
    pub fn kill_consolidation(&mut self) {
        if let Some(serving) = self.consolidation.take() {
            serving.run.kill();
        }
    }

    /// Stops both services.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.stop_consolidation().await?;
        if let Some(serving) = self.ledger.take() {
            serving.run.stop().await?;
        }
        Ok(())
    }

    /// The ledger's base URL.
    pub fn ledger_url(&self) -> &str {
        self.ledger
            .as_ref()
            .map_or(&self.ledger_address, |r| &r.address)
    }

    /// The ledger's internal base URL (digests, replays; service tokens only).
    pub fn ledger_internal_url(&self) -> &str {
        &self.ledger_internal_address
    }

    /// The consolidation's base URL.
    pub fn consolidation_url(&self) -> &str {
        self.consolidation
            .as_ref()
            .map_or(&self.consolidation_address, |r| &r.address)
    }

    /// The stacks things run on.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// A token for `merchant` with `scopes`.
    pub fn token(&self, merchant: &str, scopes: &[&str]) -> anyhow::Result<String> {
        self.token_source().token(merchant, scopes)
    }

    /// A token for `merchant` with every merchant scope.
    pub fn full_token(&self, merchant: &str) -> anyhow::Result<String> {
        self.token_source().full_token(merchant)
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs an entry; status and JSON body.
    pub async fn record(
        &self,
        merchant: &str,
        token: &str,
        body: &Value,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .post(format!(
                "{}/v1/merchants/{merchant}/entries",
                self.ledger_url()
            ))
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// GETs a day's balance; status and JSON body.
    pub async fn balance(
        &self,
        merchant: &str,
        token: &str,
        date: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .get(format!(
                "{}/v1/merchants/{merchant}/balances/{date}",
                self.consolidation_url()
            ))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// The ids of every entry the ledger lists for `merchant` on `date` (`YYYY-MM-DD`), page
    /// by page through `GET .../entries?date=` (the history check's "every acknowledged entry
    /// is listed").
    pub async fn listed_entry_ids(
        &self,
        merchant: &str,
        date: &str,
    ) -> anyhow::Result<std::collections::HashSet<String>> {
        let token = self.token(merchant, &["entries:read"])?;
        let mut ids = std::collections::HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let response = self
                .http
                .get(format!(
                    "{}/v1/merchants/{merchant}/entries?date={date}&limit=200{}",
                    self.ledger_url(),
                    cursor
                        .as_ref()
                        .map(|c| format!("&cursor={c}"))
                        .unwrap_or_default()
                ))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "entries of {merchant} on {date}: {}",
                response.status()
            );
            let page: Value = response.json().await?;
            for item in page["items"].as_array().context("entries' items")? {
                ids.insert(item["id"].as_str().context("an entry's id")?.to_string());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(ids),
            }
        }
    }

    /// The ledger's books of `merchant` over the replay window, read through its digest API
    /// with a service token (`ledger:reconcile`).
    pub async fn ledger_books(&self, merchant: &str) -> anyhow::Result<Books> {
        let token = self
            .token_source()
            .keys()
            .token()
            .client("acceptance-checker")
            .scope("ledger:reconcile")
            .mint()?;
        let digests = books::ledger_digests(
            &self.http,
            self.ledger_internal_url(),
            &token,
            merchant,
            check_window(),
        )
        .await?;
        Books::of(&digests)
    }

    /// The consolidation's books of `merchant` over the same window, through its HTTP API
    /// ([`books::consolidated_days`]: the report, then each day on the Redis-cached path).
    pub async fn consolidated_books(&self, merchant: &str) -> anyhow::Result<Books> {
        let token = self.token(merchant, &["balances:read"])?;
        let days = books::consolidated_days(
            &self.http,
            self.consolidation_url(),
            &token,
            merchant,
            check_window(),
        )
        .await?;
        Books::of(&days)
    }

    /// Waits until, for every merchant given, the consolidated totals equal the ledger's sums
    /// day by day, both read through the services' HTTP APIs; returns the last comparison's
    /// differences when they never do.
    pub async fn wait_consistent(
        &self,
        merchants: &[String],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut differences = Vec::new();
            for merchant in merchants {
                // A side that cannot be read is a difference, never an empty agreement.
                let (ledger, consolidated) = match (
                    self.ledger_books(merchant).await,
                    self.consolidated_books(merchant).await,
                ) {
                    (Ok(ledger), Ok(consolidated)) => (ledger, consolidated),
                    (ledger, consolidated) => {
                        differences.push(format!(
                            "{merchant}: cannot read both sides: ledger {:?}, consolidation {:?}",
                            ledger.err(),
                            consolidated.err()
                        ));
                        continue;
                    }
                };
                differences.extend(
                    books::differences(&ledger, &consolidated)
                        .iter()
                        .map(ToString::to_string),
                );
            }
            if differences.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "not consistent after {timeout:?}:\n{}",
                    differences.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The business dates the consistency checks cover: the ledger's backdating window (30 days)
/// before today, up to tomorrow in UTC (merchants' today in any zone).
fn check_window() -> (time::Date, time::Date) {
    let today = time::OffsetDateTime::now_utc().date();
    (
        today - time::Duration::days(31),
        today.next_day().unwrap_or(today),
    )
}
