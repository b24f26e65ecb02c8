//! What both cash-flow services run on: configuration from the environment, logs and metrics,
//! JWT verification, the HTTP edge (one error type, problem+json, the checks every request
//! passes), deadlines and the 503 for a dependency that is down, one backoff schedule, SQS
//! client setup, health routes, the run loop with its supervised background tasks, retention
//! (pruning in small batches) and graceful shutdown.

pub mod auth;
pub mod backoff;
pub mod config;
pub mod deadline;
pub mod edge;
pub mod gelf;
pub mod health;
pub mod http;
pub mod openapi;
pub mod problem;
pub mod retention;
pub mod run;
pub mod shutdown;
pub mod sqs;
pub mod supervise;
pub mod telemetry;
