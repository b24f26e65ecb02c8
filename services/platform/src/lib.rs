//! What both cash-flow services run on: configuration from the environment, logs and metrics,
//! JWT verification, deadlines and the 503 for a dependency that is down, problem+json errors,
//! SQS client setup, health routes, supervised background tasks, retention (pruning in small
//! batches) and graceful shutdown.

pub mod auth;
pub mod config;
pub mod deadline;
pub mod gelf;
pub mod health;
pub mod http;
pub mod openapi;
pub mod problem;
pub mod retention;
pub mod shutdown;
pub mod sqs;
pub mod supervise;
pub mod telemetry;
