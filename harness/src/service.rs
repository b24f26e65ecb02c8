//! The platform's services, as the harness names them everywhere: fault links, replicas, the
//! gateway's upstreams, the command line and the state file. A service is this enum, never a
//! string; its lower-case name is the binary's name and the Kubernetes Deployment's.

use std::fmt;
use std::str::FromStr;

/// One of the platform's services.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// The ledger (entries, outbox relay).
    Ledger,
    /// The consolidation (SQS consumer, balances, reports).
    Consolidation,
}

impl Service {
    /// Both services, in start order.
    pub const ALL: [Service; 2] = [Service::Ledger, Service::Consolidation];

    /// The lower-case name (`ledger`, `consolidation`): also its binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ledger => "ledger",
            Self::Consolidation => "consolidation",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|service| service.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown service {s:?} (ledger, consolidation)"))
    }
}

#[cfg(test)]
mod tests {
    use super::Service;

    #[test]
    fn names_round_trip() {
        for service in Service::ALL {
            assert_eq!(service.name().parse::<Service>().ok(), Some(service));
            assert_eq!(
                serde_json::to_string(&service).ok(),
                Some(format!("\"{service}\""))
            );
        }
        assert!("Ledger".parse::<Service>().is_err());
    }
}
