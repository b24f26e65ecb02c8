//! A running stack: the dependencies from a backend, the emulated identity provider, and the
//! per-test scopes carved out of them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use sqlx::migrate::Migrator;
use tokio::sync::OnceCell;

use crate::backend::containers::ContainerOptions;
use crate::backend::native::NativeOptions;
use crate::backend::{Backend, BackendKind, Dependency, Endpoints, Fault, SqsEmulator};
use crate::identity::{DEFAULT_AUDIENCE, IdentityProvider};
use crate::netfault::{FaultProxy, Link, NetFault, Proxies, Toxics};
use crate::scope::{Scope, ScopeOptions, database_url};
use crate::sqs::{self, QueuePairSpec};
use crate::sqs_faults::SqsFaults;

/// How a stack is started. `Default` reads `HARNESS_BACKEND` and uses free ports.
#[derive(Debug, Default)]
pub struct StackOptions {
    /// Backend; `None` reads `HARNESS_BACKEND`.
    pub backend: Option<BackendKind>,
    /// Native backend choices.
    pub native: NativeOptions,
    /// Containers backend choices.
    pub containers: ContainerOptions,
    /// Where the identity provider listens (`None`: a free port).
    pub identity_listener: Option<std::net::TcpListener>,
    /// Use these running dependencies (an external backend) instead of starting any.
    pub external: Option<Endpoints>,
}

impl StackOptions {
    /// Uses this backend whatever `HARNESS_BACKEND` says.
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Native backend choices (ports, persistent data).
    pub fn with_native(mut self, native: NativeOptions) -> Self {
        self.native = native;
        self
    }

    /// Containers backend choices (ports, persistent data).
    pub fn with_containers(mut self, containers: ContainerOptions) -> Self {
        self.containers = containers;
        self
    }

    /// PostgreSQL's throwaway data in memory on whichever backend starts it: for stacks that
    /// never stop, kill or restart PostgreSQL (a process's or a nextest run's shared stack).
    pub fn in_memory(mut self) -> Self {
        self.native = self.native.with_postgres_in_memory();
        self.containers = self.containers.with_postgres_in_memory();
        self
    }

    /// Uses dependencies that are already running (e.g. a nextest run's shared ones).
    pub fn with_external(mut self, endpoints: Endpoints) -> Self {
        self.external = Some(endpoints);
        self
    }

    /// Serves the identity provider on this listener.
    pub fn with_identity_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.identity_listener = Some(listener);
        self
    }
}

/// Real dependencies plus the identity provider. Tests usually share one per process through
/// [`crate::shared`]; tests that kill things start their own with [`Stack::start`].
#[derive(Debug)]
pub struct Stack {
    backend: Backend,
    /// The backend's endpoints, SQS's through the fault layer.
    endpoints: Endpoints,
    /// In front of the SQS emulator, for everything that reaches SQS through this stack.
    sqs_faults: SqsFaults,
    identity: IdentityProvider,
    /// Migrated template databases by migration-set hash, built once per process.
    templates: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
    /// Every queue pair made, to make them again after the SQS emulator restarts.
    queues: Mutex<Vec<QueuePairSpec>>,
    /// Fault proxies on service→dependency links, made on first use.
    proxies: Proxies,
}

impl Stack {
    /// Starts the dependencies and the identity provider.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let (kind, reason) = match (&options.external, options.backend) {
            (Some(_), _) => (
                BackendKind::External,
                "the dependencies shared by this nextest run".to_string(),
            ),
            (None, Some(kind)) => (kind, "chosen by the caller".to_string()),
            (None, None) => BackendKind::choose().await?,
        };
        tracing::info!(backend = ?kind, %reason, "harness backend");
        eprintln!("harness: backend {kind:?} ({reason})");
        let identity = async {
            match options.identity_listener {
                Some(listener) => IdentityProvider::start_on(listener, DEFAULT_AUDIENCE).await,
                None => IdentityProvider::start().await,
            }
        };
        let backend = async {
            match options.external {
                Some(endpoints) => Ok(Backend::External(crate::backend::external::External::new(
                    endpoints,
                ))),
                None => Backend::start(kind, &options.native, &options.containers).await,
            }
        };
        let (backend, identity) = tokio::join!(backend, identity);
        let backend = backend?;
        let sqs_faults = SqsFaults::start(&backend.endpoints().sqs_endpoint)?;
        let endpoints = Endpoints {
            sqs_endpoint: sqs_faults.url(),
            ..backend.endpoints().clone()
        };
        Ok(Self {
            backend,
            endpoints,
            sqs_faults,
            identity: identity.context("starting the identity provider")?,
            templates: Mutex::default(),
            queues: Mutex::default(),
            proxies: Proxies::default(),
        })
    }

    /// Connection details of the dependencies; SQS's is the fault layer's
    /// ([`Stack::sqs_faults`]). The emulator's own: `backend().endpoints()`.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The SQS fault layer in front of the emulator.
    pub fn sqs_faults(&self) -> &SqsFaults {
        &self.sqs_faults
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Which emulator serves SQS (LocalStack or moto).
    pub fn sqs_emulator(&self) -> SqsEmulator {
        self.endpoints().sqs_emulator
    }

    /// The emulated identity provider.
    pub fn identity(&self) -> &IdentityProvider {
        &self.identity
    }

    /// An SQS client for this stack (made per call: a client's pooled connections belong to the
    /// runtime that opened them, and tests each have their own runtime).
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        sqs::client(&self.endpoints().sqs_endpoint, &self.endpoints().aws_region)
    }

    /// A scope with the default options (no migrations, maxReceiveCount 5).
    pub async fn scope(&self) -> anyhow::Result<Scope> {
        self.scope_with(ScopeOptions::default()).await
    }

    /// A fresh database (from a migrated template when migrations are given), a queue pair and a
    /// Redis key prefix, none of which any other scope sees.
    pub async fn scope_with(&self, options: ScopeOptions) -> anyhow::Result<Scope> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let database = format!("scope_{id}");
        let template = match options.migrations {
            Some(migrator) => Some(self.template(migrator).await?),
            None => None,
        };
        let spec = QueuePairSpec {
            name: format!("scope-{id}-entries"),
            max_receive_count: options.max_receive_count,
            visibility_timeout_secs: options.visibility_timeout_secs,
        };
        let sqs = self.sqs();
        let (created, queues) = tokio::join!(
            self.create_database(&database, template.as_deref()),
            spec.create(&sqs)
        );
        created?;
        let queues = queues?;
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(spec);
        let endpoints = self.endpoints();
        Ok(Scope {
            database_url: database_url(&endpoints.postgres_url, &database),
            database,
            redis_url: endpoints.redis_url.clone(),
            redis_prefix: format!("scope:{id}:"),
            sqs_endpoint: endpoints.sqs_endpoint.clone(),
            aws_region: endpoints.aws_region.clone(),
            queues,
            id,
        })
    }

    /// The template database for a migration set, built once per process. Its name is derived
    /// from the migrations, and building it is serialised with an advisory lock, so processes
    /// sharing an external PostgreSQL reuse one template safely.
    async fn template(&self, migrator: &'static Migrator) -> anyhow::Result<String> {
        let mut hasher = Sha256::new();
        for migration in migrator.iter() {
            hasher.update(migration.version.to_le_bytes());
            hasher.update(&migration.checksum);
        }
        let hash = format!("{:x}", hasher.finalize());
        let name = format!("template_{}", &hash[..16]);
        let cell = Arc::clone(
            self.templates
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.clone())
                .or_default(),
        );
        let admin_url = self.endpoints().postgres_url.clone();
        let lock_key = i64::from_str_radix(&hash[..15], 16).unwrap_or_default();
        let built = cell.get_or_try_init(|| build_template(admin_url, name, lock_key, migrator));
        built.await.cloned()
    }

    async fn create_database(&self, name: &str, template: Option<&str>) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.endpoints().postgres_url)
            .await
            .context("connecting to PostgreSQL as admin")?;
        let sql = match template {
            Some(template) => format!(r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#),
            None => format!(r#"CREATE DATABASE "{name}""#),
        };
        retry_while_in_use(&mut admin, &sql)
            .await
            .with_context(|| format!("creating {name}"))?;
        admin.close().await?;
        Ok(())
    }

    /// Injects a fault into a dependency (the backends that own them). After the SQS emulator
    /// restarts, every queue pair made so far is made again: neither emulator keeps state across
    /// restarts.
    pub async fn inject(&self, dependency: Dependency, fault: Fault) -> anyhow::Result<()> {
        self.backend.inject(dependency, fault).await?;
        if dependency == Dependency::Sqs && fault == Fault::Restart {
            let specs = self
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let sqs = self.sqs();
            for spec in specs {
                spec.create(&sqs).await?;
            }
        }
        Ok(())
    }

    /// The fault proxy of `link`, started on first use in front of the link's dependency. Give
    /// the service [`FaultProxy::url`] of the dependency's URL (a scope's database URL, say)
    /// instead of the URL itself. Tests that fault a link while others run usually start their
    /// own [`FaultProxy`] instead, so that the fault is theirs alone.
    pub async fn proxy(&self, link: Link) -> anyhow::Result<Arc<FaultProxy>> {
        let endpoints = self.endpoints();
        let upstream = match link.dependency {
            Dependency::Postgres => &endpoints.postgres_url,
            Dependency::Redis => &endpoints.redis_url,
            Dependency::Sqs => &endpoints.sqs_endpoint,
        };
        self.proxies.get_or_start(link, upstream).await
    }

    /// Injects a network fault on `link` (starting its proxy if needed).
    pub async fn inject_net(&self, link: Link, fault: NetFault) -> anyhow::Result<()> {
        self.proxy(link).await?.inject(fault);
        Ok(())
    }

    /// The links proxied so far, where their proxies listen and their faults.
    pub async fn net_faults(&self) -> Vec<(Link, std::net::SocketAddr, Toxics)> {
        self.proxies.list().await
    }

    /// Clean shutdown of what the stack started.
    pub async fn shutdown(&self) {
        self.backend.shutdown().await;
    }
}

/// Boxed as `Send` here: left to inference, sqlx's `Acquire` bounds make the future's `Send`
/// proof higher-ranked, and `tokio::spawn(stack.scope_with(..))` would not compile.
fn build_template(
    admin_url: String,
    name: String,
    lock_key: i64,
    migrator: &'static Migrator,
) -> Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>> {
    Box::pin(async move {
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .context("connecting to PostgreSQL as admin")?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_key)
            .execute(&mut admin)
            .await?;
        let result = async {
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut admin)
                    .await?;
            if exists.is_some() {
                return Ok(());
            }
            // Built under another name and renamed, so a half-migrated template is never used.
            let building = format!("{name}_building_{}", std::process::id());
            sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{building}""#))
                .execute(&mut admin)
                .await?;
            sqlx::query(&format!(r#"CREATE DATABASE "{building}""#))
                .execute(&mut admin)
                .await?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&database_url(&admin_url, &building))
                .await?;
            migrator
                .run(&pool)
                .await
                .context("running migrations on the template")?;
            pool.close().await;
            // A closed connection's backend can linger and block the rename: it is ours, so
            // make sure it is gone.
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await?;
            retry_while_in_use(
                &mut admin,
                &format!(r#"ALTER DATABASE "{building}" RENAME TO "{name}""#),
            )
            .await
        }
        .await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_key)
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        result.with_context(|| format!("building template database {name}"))?;
        Ok(name)
    })
}

/// Runs DDL that fails while another session is still attached to the source database (a
/// closing connection's backend lingers for a moment), retrying against a deadline.
async fn retry_while_in_use(conn: &mut sqlx::PgConnection, sql: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match sqlx::query(sql).execute(&mut *conn).await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
