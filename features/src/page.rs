//! The cash-flow page served for tests as `harness up` serves it: the harness's nginx gateway in
//! front of a [`System`]'s two services, serving `web/`, `config.json` and the identity provider
//! same-origin ([`harness::page`]). The gateway reaches the ledger through a fault proxy, so a
//! test can make the ledger's answers late enough that the page gives up on them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use harness::gateway::GatewayConfig;
use harness::netfault::FaultProxy;
use harness::page::{PageConfig, PageSite};
use harness::process::Supervised;

use testkit::System;

/// The page in front of a system.
#[derive(Debug)]
pub struct ServedPage {
    gateway: Supervised,
    /// Between the gateway and the ledger.
    pub ledger_link: FaultProxy,
    /// The page's public client at the identity provider (one per served page).
    pub client_id: String,
    url: String,
    dir: PathBuf,
}

impl ServedPage {
    /// Serves the page in front of `system`: access tokens live `access_ttl` (the page refreshes
    /// them before they expire), and the page gives up on an API call after `request_timeout`.
    pub async fn start(
        system: &System,
        access_ttl: Duration,
        request_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let nginx = harness::gateway::nginx_binary()
            .ok_or_else(|| anyhow::anyhow!("nginx is not installed: bash ci/install-deps.sh"))?;
        let identity = system.placement().ledger.identity();
        let ledger_link = FaultProxy::for_url(system.ledger_url()).await?;
        let port = harness::backend::native::free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let dir = harness::paths::harness_dir().join("page").join(&id);
        let client_id = format!("{}-{id}", harness::page::CLIENT_ID);
        identity.register_public_client(&client_id, &[&format!("{url}/")], access_ttl);
        let mut config = PageConfig::proxied(identity.issuer());
        config.client_id = client_id.clone();
        config.request_timeout_ms = u64::try_from(request_timeout.as_millis())?;
        harness::page::write(
            &dir,
            &PageSite {
                root: harness::page::web_root(),
                identity: identity.issuer().trim_start_matches("http://").to_string(),
                config,
            },
        )?;
        let gateway_config = GatewayConfig {
            listen: format!("127.0.0.1:{port}"),
            upstreams: BTreeMap::from([
                (
                    harness::Service::Ledger,
                    vec![ledger_link.address().to_string()],
                ),
                (
                    harness::Service::Consolidation,
                    vec![
                        system
                            .consolidation_url()
                            .trim_start_matches("http://")
                            .to_string(),
                    ],
                ),
            ]),
            rate_limit: harness::gateway::DEFAULT_RATE_LIMIT,
            burst_limit: harness::gateway::DEFAULT_BURST_LIMIT,
            access_log: dir.join("access.log"),
            dir: dir.clone(),
            ledger_internal: None,
        };
        let gateway = harness::gateway::process(&gateway_config, &nginx, dir.join("gateway.log"))?;
        gateway.start(Duration::from_secs(30)).await?;
        Ok(Self {
            gateway,
            ledger_link,
            client_id,
            url,
            dir,
        })
    }

    /// The page's URL (`http://127.0.0.1:PORT/`).
    pub fn url(&self) -> String {
        format!("{}/", self.url)
    }

    /// The gateway's base URL, for API calls the way the page makes them.
    pub fn base_url(&self) -> &str {
        &self.url
    }

    /// Stops the gateway and removes its files.
    pub async fn stop(self) {
        let _ = self.gateway.stop(Duration::from_secs(5)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
