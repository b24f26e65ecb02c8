//! The `external` backend: dependencies someone else runs (compose.yaml, CI services), found
//! through the standard environment variables.

use anyhow::Context;

use super::{Endpoints, SqsEmulator};

/// Endpoints read from `DATABASE_URL`, `REDIS_URL` and `AWS_ENDPOINT_URL`.
#[derive(Debug)]
pub struct External {
    endpoints: Endpoints,
}

impl External {
    /// Reads the endpoints; every variable is required (`HARNESS_SQS` names the emulator behind
    /// `AWS_ENDPOINT_URL`, LocalStack when unset).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("HARNESS_BACKEND=external needs {name} (DATABASE_URL, REDIS_URL, AWS_ENDPOINT_URL)")
            })
        };
        Ok(Self {
            endpoints: Endpoints {
                postgres_url: var("DATABASE_URL")?,
                redis_url: var("REDIS_URL")?,
                sqs_endpoint: var("AWS_ENDPOINT_URL")?,
                aws_region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
                sqs_emulator: SqsEmulator::from_env()?,
            },
        })
    }

    /// Dependencies at known endpoints.
    pub fn new(endpoints: Endpoints) -> Self {
        Self { endpoints }
    }

    /// Connection details.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
}
