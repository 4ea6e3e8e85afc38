//! Serving the panel over HTTPS (rustls with ring, through axum-server) or
//! plain HTTP, on one listener, with graceful shutdown.
//!
//! - HTTPS: `--tls-cert FILE --tls-key FILE` (PEM). [`ServerTls::reload`]
//!   reads both files again and swaps the configuration new handshakes use;
//!   open connections keep theirs, none is dropped. The binary reloads on
//!   SIGHUP ([`ServerTls::reload_on_sighup`]); a bad file is logged and the
//!   old certificate stays in force.
//! - Plain HTTP only where nothing secret crosses a network: on a loopback
//!   address, or behind a TLS-terminating proxy the operator names with
//!   `--plain-http-behind-proxy` ([`TlsArgs::server`] refuses anything else).
//! - When browsers see HTTPS (either case above), session cookies are
//!   `Secure` and every answer carries `Strict-Transport-Security`
//!   ([`hsts`]).

use axum::http::{header, HeaderValue};
use axum_server::tls_rustls::RustlsConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// `Strict-Transport-Security` of the panel on HTTPS: one year.
pub const HSTS: &str = "max-age=31536000";

/// The flag that allows plain HTTP on a non-loopback address.
pub const BEHIND_PROXY_FLAG: &str = "--plain-http-behind-proxy";

/// The TLS flags of `portwall-panel`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain to serve HTTPS with (the leaf first); reloaded on SIGHUP.
    #[arg(
        long,
        env = "PORTWALL_PANEL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded on SIGHUP.
    #[arg(
        long,
        env = "PORTWALL_PANEL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address, for a TLS-terminating proxy
    /// in front of the panel (browsers still get Secure cookies and HSTS).
    #[arg(
        long,
        env = "PORTWALL_PANEL_PLAIN_HTTP_BEHIND_PROXY",
        conflicts_with = "tls_cert"
    )]
    pub plain_http_behind_proxy: bool,
}

/// Why the panel will not serve as asked.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to serve plain HTTP on {0}: tokens and customers' policies would cross the \
         network in clear. Give --tls-cert FILE --tls-key FILE, listen on a loopback address, \
         or pass {BEHIND_PROXY_FLAG} when a TLS-terminating proxy is in front of the panel"
    )]
    PlainHttp(SocketAddr),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

impl TlsArgs {
    /// The TLS to serve `listen` with: `Some` with --tls-cert/--tls-key, `None`
    /// for plain HTTP where that is allowed, an error where it is not.
    pub fn server(&self, listen: SocketAddr) -> Result<Option<ServerTls>, ServeError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTls::load(cert, key)?)),
            _ if listen.ip().is_loopback() || self.plain_http_behind_proxy => Ok(None),
            _ => Err(ServeError::PlainHttp(listen)),
        }
    }

    /// Whether browsers reach the panel over HTTPS (its own or a proxy's).
    pub fn browsers_see_https(&self) -> bool {
        self.tls_cert.is_some() || self.plain_http_behind_proxy
    }
}

/// The panel's certificate and key files and the configuration read from them.
#[derive(Clone)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    config: RustlsConfig,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the PEM certificate chain and key.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, tls::TlsError> {
        let config = tls::server_config(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: RustlsConfig::from_config(Arc::new(config)),
        })
    }

    /// Reads both files again; new handshakes use them, open connections keep
    /// theirs. On error the certificate in force stays.
    pub fn reload(&self) -> Result<(), tls::TlsError> {
        let config = tls::server_config(&self.cert, &self.key)?;
        self.config.reload_from_config(Arc::new(config));
        Ok(())
    }

    /// Reloads on every SIGHUP, logging the outcome, for as long as the
    /// process runs.
    pub fn reload_on_sighup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup())?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match me.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %me.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; the old certificate stays")
                    }
                }
            }
        }))
    }
}

/// Adds `Strict-Transport-Security` to every answer.
pub fn hsts(router: axum::Router) -> axum::Router {
    router.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    ))
}

/// Serves `app` on `listener` until `shutdown` turns true, then waits for the
/// requests in flight.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<ServerTls>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
        stopper.graceful_shutdown(None);
    });
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum_server::Server::from_listener(listener).handle(handle);
    match tls {
        Some(tls) => {
            server
                .acceptor(axum_server::tls_rustls::RustlsAcceptor::new(tls.config))
                .serve(make)
                .await
        }
        None => server.serve(make).await,
    }
}
