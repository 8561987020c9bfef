//! The live dashboard: an HTTP server over any [`StateStore`].

mod auth;
mod checklists;
mod control;
mod live;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use cutover_core::{Clock, StateStore, TokioClock};
use sha2::{Digest, Sha256};
use thiserror::Error;

use self::auth::{Credentials, Sessions};
pub use self::auth::{Secret, hash_password};

/// Why the dashboard could not be set up or started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// Neither a token nor a password hash was configured.
    #[error(
        "the dashboard needs a token or a password hash: call `token(..)` or `password_hash(..)`"
    )]
    NoCredentials,
    /// The configured token is too short to resist guessing.
    #[error("the dashboard token is {len} characters long; it needs at least {min}")]
    WeakToken {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// The configured password hash is not an Argon2 PHC string.
    #[error("the password hash is not a PHC string such as `$argon2id$v=19$...`: {0}")]
    PasswordHash(String),
    /// The operating system's random generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The least length of a configured token.
pub const MIN_TOKEN_LEN: usize = 16;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) credentials: Credentials,
    pub(crate) sessions: Sessions,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) public_reads: bool,
    /// The content security policy of the report page, which carries its stylesheet inline.
    pub(crate) report_csp: HeaderValue,
}

/// Sets up a [`Dashboard`].
///
/// ```
/// use cutover_core::MemoryStateStore;
/// use cutover_dashboard::{Dashboard, Secret};
/// let dashboard = Dashboard::builder(MemoryStateStore::new())
///     .token(Secret::new("a-long-random-token-from-your-vault"))
///     .build()?;
/// assert_eq!(dashboard.addr().to_string(), "127.0.0.1:8080");
/// # Ok::<(), cutover_dashboard::DashboardError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct DashboardBuilder {
    store: Arc<dyn StateStore>,
    credentials: Option<Credentials>,
    addr: SocketAddr,
    clock: Arc<dyn Clock>,
    public_reads: bool,
}

impl DashboardBuilder {
    /// People sign in with this token (and name themselves); programs send it as
    /// `Authorization: Bearer TOKEN`. At least [`MIN_TOKEN_LEN`] characters.
    pub fn token(mut self, token: Secret) -> Self {
        self.credentials = Some(Credentials::Token(token));
        self
    }

    /// People sign in with the password whose Argon2 hash (a PHC string, from
    /// [`hash_password`]) this is; programs send the password as a bearer token.
    pub fn password_hash(mut self, phc: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::PasswordHash(phc.into()));
        self
    }

    /// Where to listen; `127.0.0.1:8080` unless told otherwise. Port 0 picks a free port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Lets anyone who reaches the dashboard see rollouts without signing in (controls still
    /// need it). Off by default.
    pub fn public_reads(mut self, public: bool) -> Self {
        self.public_reads = public;
        self
    }

    /// The clock that timestamps commands (default: [`TokioClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Dashboard, DashboardError> {
        let credentials = match self.credentials {
            None => return Err(DashboardError::NoCredentials),
            Some(Credentials::Token(token)) => {
                let len = token.expose().chars().count();
                if len < MIN_TOKEN_LEN {
                    return Err(DashboardError::WeakToken {
                        len,
                        min: MIN_TOKEN_LEN,
                    });
                }
                Credentials::Token(token)
            }
            Some(Credentials::PasswordHash(phc)) => {
                argon2::password_hash::PasswordHash::new(&phc)
                    .map_err(|e| DashboardError::PasswordHash(e.to_string()))?;
                Credentials::PasswordHash(phc)
            }
        };
        let css_hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(crate::report::html::CSS.as_bytes()));
        let report_csp = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'sha256-{css_hash}'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ))
        .expect("a base64 hash makes a valid header");
        Ok(Dashboard {
            app: Arc::new(App {
                store: self.store,
                credentials,
                sessions: Sessions::default(),
                clock: self.clock,
                public_reads: self.public_reads,
                report_csp,
            }),
            addr: self.addr,
        })
    }
}

/// A web dashboard over a [`StateStore`]: the list of rollouts, a live page per rollout that
/// updates as it decides, its report, and controls (pause, resume, promote, promote-full,
/// abort, approve, reject) sent through the store's command inbox with who and why, so it can
/// run in another process than the engines.
///
/// Every page needs signing in (unless [`public_reads`](DashboardBuilder::public_reads)),
/// every control does; forms carry a CSRF token and must come from the dashboard's own
/// origin; pages are sent with a strict content security policy. It listens on 127.0.0.1
/// unless told otherwise.
///
/// Routes: `GET /rollouts` (filters `phase`, `q`, paging `after`), `GET /rollouts/{id}`,
/// `GET /rollouts/{id}/events` (server-sent events), `GET /rollouts/{id}/report`,
/// `GET /rollouts/{id}/checklist` (its pre-flight checklist runs, `runs` = how many),
/// `GET /checklists` (the latest checklist run of each rollout, paging `after`),
/// `GET /api/checklists`, `GET /api/rollouts/{id}/checklist`,
/// `POST /rollouts/{id}/commands` (form), `GET /api/rollouts`, `GET /api/rollouts/{id}`,
/// `POST /api/rollouts/{id}/commands` (JSON, bearer token), `GET|POST /login`,
/// `POST /logout`.
#[derive(Debug, Clone)]
pub struct Dashboard {
    app: Arc<App>,
    addr: SocketAddr,
}

impl Dashboard {
    /// A dashboard over `store`.
    pub fn builder(store: impl StateStore + 'static) -> DashboardBuilder {
        DashboardBuilder {
            store: Arc::new(store),
            credentials: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            clock: Arc::new(TokioClock::new()),
            public_reads: false,
        }
    }

    /// The address it will listen on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The routes, to serve yourself or nest in your own axum app.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(pages::home))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route("/rollouts", get(pages::list))
            .route("/rollouts/{id}", get(pages::rollout))
            .route("/rollouts/{id}/report", get(pages::report))
            .route("/rollouts/{id}/checklist", get(checklists::rollout))
            .route("/checklists", get(checklists::list))
            .route("/api/checklists", get(checklists::api_list))
            .route("/api/rollouts/{id}/checklist", get(checklists::api_rollout))
            .route("/rollouts/{id}/events", get(live::events))
            .route("/rollouts/{id}/commands", post(control::form))
            .route("/api/rollouts", get(pages::api_list))
            .route("/api/rollouts/{id}", get(pages::api_rollout))
            .route("/api/rollouts/{id}/commands", post(control::api))
            .route("/assets/style.css", get(pages::style))
            .route("/assets/live.js", get(pages::script))
            .fallback(pages::not_found)
            .layer(axum::middleware::from_fn(security_headers))
            .with_state(self.app.clone())
    }

    /// Listens and serves in a task of its own until [`Running::shutdown`].
    pub async fn serve(self) -> Result<Running, DashboardError> {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| DashboardError::Bind {
                addr: self.addr,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind {
                addr: self.addr,
                source,
            })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "dashboard server stopped");
            }
        });
        tracing::info!(%addr, "dashboard listening");
        Ok(Running {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// A dashboard being served.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops listening, and stops once open connections (live pages included) are closed:
    /// live pages are told to stop at once.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// The headers every response carries: a strict content security policy (scripts, styles and
/// connections from the dashboard itself only; no frames, no plugins), no sniffing, no
/// referrer beyond the site, and no caching of pages that may hold state.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
