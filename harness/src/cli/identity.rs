//! `harness identity`: the emulated identity provider on its own, for `compose.yaml` (the real
//! one is a third party). Its keys persist in a file, so `harness token --keys-file` mints tokens
//! that the composed services accept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::identity::{DEFAULT_AUDIENCE, IdentityProvider, IssuerKeys};

#[derive(Debug, Args)]
pub(super) struct IdentityArgs {
    /// Address to listen on.
    #[arg(long, env = "IDENTITY_LISTEN", default_value = "0.0.0.0:8089")]
    listen: SocketAddr,
    /// Issuer URL as the services reach it; tokens carry it and discovery is served under it.
    #[arg(long, env = "IDENTITY_ISSUER", default_value = "http://identity:8089")]
    issuer: String,
    /// Audience of the tokens.
    #[arg(long, env = "IDENTITY_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    audience: String,
    /// Keys file: used when present (and for the same issuer), else generated and written.
    #[arg(
        long,
        env = "IDENTITY_KEYS_FILE",
        default_value = "/var/lib/identity/keys.json"
    )]
    keys_file: PathBuf,
    /// Service clients granted client credentials, `id:secret:scope[,scope...]`, comma- or
    /// repeat-separated per client with `;` (compose registers the consolidation's).
    #[arg(long = "client", env = "IDENTITY_CLIENTS", value_delimiter = ';')]
    clients: Vec<String>,
    /// Public clients of the users' login (Authorization Code with PKCE: the cash-flow page),
    /// `id:redirect_uri[,redirect_uri...]`, several separated by `;`. A loopback redirect URI
    /// matches on any port.
    #[arg(
        long = "public-client",
        env = "IDENTITY_PUBLIC_CLIENTS",
        value_delimiter = ';'
    )]
    public_clients: Vec<String>,
}

pub(super) async fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let keys = match load(&args.keys_file) {
        Some(keys) if keys.issuer == args.issuer && keys.audience == args.audience => keys,
        _ => {
            let (issuer, audience) = (args.issuer.clone(), args.audience.clone());
            let keys = tokio::task::spawn_blocking(move || IssuerKeys::generate(issuer, audience))
                .await??;
            write(&args.keys_file, &keys)?;
            keys
        }
    };
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    let provider = IdentityProvider::serve(listener, keys).await?;
    for client in &args.clients {
        let mut parts = client.splitn(3, ':');
        let (Some(id), Some(secret), Some(scopes)) = (parts.next(), parts.next(), parts.next())
        else {
            anyhow::bail!("--client {client:?} is not id:secret:scope[,scope...]");
        };
        let scopes: Vec<&str> = scopes.split(',').collect();
        provider.register_client_with_secret(
            id,
            secret,
            &scopes,
            std::time::Duration::from_secs(300),
        );
    }
    for client in &args.public_clients {
        let Some((id, uris)) = client.split_once(':') else {
            anyhow::bail!("--public-client {client:?} is not id:redirect_uri[,redirect_uri...]");
        };
        let uris: Vec<&str> = uris.split(',').collect();
        provider.register_public_client(id, &uris, crate::page::ACCESS_TTL);
    }
    println!(
        "identity provider for {} on {} (keys in {}); ready",
        provider.issuer(),
        args.listen,
        args.keys_file.display()
    );
    super::signals::wait_for_shutdown_signal().await?;
    drop(provider);
    Ok(())
}

/// Reads a keys file written by `harness identity`.
pub(super) fn load(file: &Path) -> Option<IssuerKeys> {
    let text = std::fs::read_to_string(file).ok()?;
    serde_json::from_str(&text).ok()
}

fn write(file: &Path, keys: &IssuerKeys) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Readable by the developer who mints tokens from the host: an emulated provider's
    // throwaway key, never a real one.
    std::fs::write(file, serde_json::to_string_pretty(keys)?)
        .with_context(|| format!("writing {}", file.display()))
}
