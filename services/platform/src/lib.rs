//! What both cash-flow services run on: JWT verification (more as the services land).

pub mod auth;
