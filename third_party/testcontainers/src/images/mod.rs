#[cfg(feature = "docker-compose")]
pub(crate) mod docker_cli;
pub mod generic;
#[cfg(feature = "docker-compose")]
pub(crate) mod socat;
