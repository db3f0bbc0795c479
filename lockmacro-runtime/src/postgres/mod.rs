//! The PostgreSQL backend (feature `postgres`): a session-level advisory lock held on a
//! dedicated connection, kept as a lease.
//!
//! Each acquisition runs one session on its own thread with a private current-thread tokio
//! runtime, so the caller's executor (if any) is never involved. The session:
//!
//! 1. connects with TCP keepalives and `tcp_user_timeout`, and an `application_name` naming
//!    the holder (`lockmacro <host>:<pid> <lock name>`);
//! 2. sets `idle_session_timeout` to the lease (PostgreSQL 14+), refuses a standby;
//! 3. polls `pg_try_advisory_lock` (so that every wait has a deadline and a cancellation
//!    point), then checks in `pg_locks` that *this backend* holds it, which a pooler in
//!    transaction mode cannot fake;
//! 4. while held, re-checks `pg_locks` every lease/5. The server ends the session (and so
//!    frees the lock) once it has been idle for a lease. The client therefore declares the
//!    lock lost when no heartbeat *sent* in the last half lease has been answered: the
//!    server's idle clock started after that send, so it cannot have let anyone in yet. Only
//!    durations on each side are compared, never clocks.
//!
//! A lost lock is never re-acquired: by default the process prints one line and exits with
//! [`LOST_EXIT_CODE`]; with [`OnLost::Report`] the guard reports it instead.

mod connect;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio_postgres::Client;

use crate::chain::Keyed;
use crate::deadline::Deadline;
use crate::error::{one_line, program_name, Error, Location};
use crate::lost::{OnLost, LOST_EXIT_CODE};
use crate::notice::{self, Notice};
use crate::once::OnceArc;
use crate::request::{Announce, Request, Share};
use crate::trace;

/// The environment variable read for the server URL when none is given in code (by
/// `backend = "postgres"` and [`Lock::postgres_from_env`](crate::Lock::postgres_from_env)).
/// Feature `postgres`.
///
/// ```
/// assert_eq!(lockmacro_runtime::URL_ENV, "LOCKMACRO_POSTGRES_URL");
/// ```
pub const URL_ENV: &str = "LOCKMACRO_POSTGRES_URL";

/// The default lease: how long the server waits on a silent holder before ending its session
/// (see [`Lock::lease`](crate::Lock::lease)). Feature `postgres`.
///
/// ```
/// assert_eq!(lockmacro_runtime::DEFAULT_LEASE, std::time::Duration::from_secs(10));
/// ```
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// The table of fencing tokens and last starts (`Lock::fencing`, `Lock::once_per`), by key.
/// Feature `postgres`.
///
/// ```
/// assert!(lockmacro_runtime::STATE_TABLE_SQL.contains("lockmacro_state"));
/// ```
pub const STATE_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS lockmacro_state (key bigint \
                                   PRIMARY KEY, token bigint NOT NULL, started_at timestamptz \
                                   NOT NULL)";

/// Records a start and takes the next token, unless the last start is within `$2` ms (then no
/// row). `clock_timestamp()`: the server's clock, the only one that judges.
const RECORD_SQL: &str = "INSERT INTO lockmacro_state AS s (key, token, started_at) VALUES \
                          ($1, 1, clock_timestamp()) ON CONFLICT (key) DO UPDATE SET token = \
                          s.token + 1, started_at = clock_timestamp() WHERE s.started_at <= \
                          clock_timestamp() - $2::bigint * interval '1 millisecond' RETURNING \
                          s.token";

/// How long ago (ms, on the server's clock) the last start was.
const SINCE_SQL: &str = "SELECT (extract(epoch FROM clock_timestamp() - started_at) * \
                         1000)::bigint FROM lockmacro_state WHERE key = $1";

/// Prefix hashed with the name; a new version would change every key.
const KEY_PREFIX: &str = "lockmacro-v1:";

/// The SQL that computes the same key as [`key_for`] (exported as `postgres_key_for`), for
/// operators looking at `pg_locks`; `$1` is the lock name. Feature `postgres`.
///
/// ```
/// let sql = lockmacro_runtime::KEY_SQL.replace("$1", "'nightly-report'");
/// assert!(sql.starts_with("SELECT ('x' || substr(encode(sha256("));
/// ```
pub const KEY_SQL: &str = "SELECT ('x' || substr(encode(sha256(convert_to('lockmacro-v1:' || \
                           $1, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint";

/// The 64-bit advisory-lock key of a lock name: the first 8 bytes (big-endian) of
/// SHA-256(`"lockmacro-v1:"` + name). [`KEY_SQL`] computes the same in SQL. Exported as
/// `postgres_key_for`; feature `postgres`.
///
/// ```
/// let key = lockmacro_runtime::postgres_key_for("nightly-report");
/// assert_eq!(key, lockmacro_runtime::postgres_key_for("nightly-report")); // stable
/// ```
pub fn key_for(name: &str) -> i64 {
    let digest = Sha256::digest(format!("{KEY_PREFIX}{name}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A PostgreSQL lock as asked for: the request, the server and the key.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) request: Request,
    /// `None`: read [`URL_ENV`] when acquiring.
    pub(crate) url: Option<String>,
    pub(crate) key: i64,
    pub(crate) lease: Duration,
    /// `server()`, described once: errors, events and every nested-call check use it, and
    /// describing resolves the connection string (which reads the password file).
    server: OnceArc<String>,
}

/// What events show as the lock's place: the server and the key.
impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.location())
    }
}

impl Spec {
    pub(crate) fn new(request: Request, url: Option<String>) -> Spec {
        Spec {
            key: key_for(&request.name),
            request,
            url,
            lease: DEFAULT_LEASE,
            server: OnceArc::new(),
        }
    }

    /// To be called after changing `url`: the description is made again.
    pub(crate) fn url_changed(&mut self) {
        self.server = OnceArc::new();
    }

    /// The server without credentials (`host:port/db`), or `$LOCKMACRO_POSTGRES_URL` until
    /// that is read.
    pub(crate) fn server(&self) -> String {
        String::clone(&self.server.get_or_init(|| Arc::new(self.describe())))
    }

    fn describe(&self) -> String {
        let Some(url) = self.url.as_deref() else {
            return format!("${URL_ENV}");
        };
        match connect::resolve(Some(url), &|key| std::env::var(key).ok()) {
            Ok(target) => server_of(target.config()),
            Err(_) => "(an unusable connection string)".to_owned(),
        }
    }

    /// The server to connect to: the lock's URL, else `LOCKMACRO_POSTGRES_URL`, else the libpq
    /// environment (`PGHOST` and the rest) if it names a host. Without any of them this is an
    /// error, never libpq's default local server: a host whose configuration is missing would
    /// otherwise lock its own local server, and exclude nobody on the other hosts.
    fn target(&self) -> Result<connect::Target, String> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let url = self.url.clone().or_else(|| env(URL_ENV));
        if url.is_none() && env("PGHOST").is_none() && env("PGHOSTADDR").is_none() {
            return Err(format!(
                "{URL_ENV} is not set, and neither is PGHOST: set one to the server to lock on"
            ));
        }
        connect::resolve(url.as_deref(), &env).map_err(|e| e.to_string())
    }

    pub(crate) fn location(&self) -> Location {
        Location::Postgres {
            server: self.server(),
            key: self.key,
        }
    }

    fn about(&self) -> trace::About<'_> {
        trace::About {
            name: &self.request.name,
            at: self,
            share: self.request.share,
        }
    }

    fn error(
        &self,
        action: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::Postgres {
            name: self.request.name.clone(),
            server: self.server(),
            key: self.key,
            action,
            source: e.into(),
        }
    }

    /// Takes the lock, blocking the calling thread (never an executor's: the sync path).
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Deadline) -> Result<Hold, Error> {
        crate::wait::block_on(self.acquire_async(deadline))
    }

    /// The session thread does the connecting and the waiting; the future only waits for its
    /// answer. Dropping the future cancels the session (and with it any lock it got).
    pub(crate) fn acquire_async(
        self: &Arc<Self>,
        deadline: Deadline,
    ) -> impl Future<Output = Result<Hold, Error>> + Send + 'static {
        // `Lock::slots` is a file-lock feature: refused here, before any connection.
        let refused = (self.request.slots > 1).then(|| {
            self.error(
                "take",
                "slots (N holders at a time) are not supported by the PostgreSQL backend",
            )
        });
        let (reply, answer) = oneshot::channel();
        let session = Session {
            spec: Arc::clone(self),
        };
        let spawned = match refused {
            Some(e) => Err(e),
            None => spawn(self, session.session(deadline, reply)),
        };
        let spec = Arc::clone(self);
        async move {
            spawned?;
            let (link, token) = answer.await.unwrap_or_else(|_| Err(thread_ended(&spec)))?;
            Ok(Hold {
                link,
                token,
                lease: spec.lease,
                pid: crate::pid::current(),
                released: false,
            })
        }
    }

    /// The PID of this lock's holder on this host, asked from the server (for `Lock::holder`).
    pub(crate) fn holder(self: &Arc<Self>) -> Result<Option<u32>, Error> {
        let session = Session {
            spec: Arc::clone(self),
        };
        let (tx, rx) = oneshot::channel();
        spawn(self, async move {
            let asked = match session.connect().await {
                Ok((client, _connection)) => Ok(session.holder(&client).await),
                Err(e) => Err(e),
            };
            let _ = tx.send(asked);
        })?;
        crate::wait::block_on(rx).unwrap_or_else(|_| Err(thread_ended(self)))
    }
}

fn server_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{db}")
}

/// A held PostgreSQL lock; dropping it ends the session (in the process that took it only).
#[derive(Debug)]
pub(crate) struct Hold {
    link: Arc<Link>,
    /// The fencing token of this acquisition, if asked for.
    token: Option<u64>,
    lease: Duration,
    pid: u32,
    released: bool,
}

impl Hold {
    /// Still to be released by this process.
    pub(crate) fn is_live(&self) -> bool {
        !self.released && crate::pid::current() == self.pid
    }

    pub(crate) fn lost_reason(&self) -> Option<String> {
        self.link.lost_reason()
    }

    pub(crate) fn token(&self) -> Option<u64> {
        self.token
    }

    /// The reason if the lock is lost, else registers `waker` to be woken when it is.
    pub(crate) fn poll_lost(&self, waker: &Waker) -> Option<String> {
        self.link.watch(waker)
    }

    /// Ends the session: unlocks, closes the connection, and waits (a bounded time) until the
    /// server has confirmed the unlock, so the next acquirer finds it free.
    pub(crate) fn release(&mut self) {
        if self.is_live() {
            self.released = true;
            self.link.release(self.lease);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// The state a held lock shares between its session thread and its [`Hold`].
#[derive(Debug)]
struct Link {
    state: Mutex<HoldState>,
}

#[derive(Debug, Default)]
struct HoldState {
    lost: Option<String>,
    wakers: Vec<Waker>,
    release: Option<oneshot::Sender<()>>,
    released: Option<std::sync::mpsc::Receiver<()>>,
}

impl Link {
    fn state(&self) -> MutexGuard<'_, HoldState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lost_reason(&self) -> Option<String> {
        self.state().lost.clone()
    }

    /// Registers `waker` to be woken when the lock is lost; the reason if it already is.
    fn watch(&self, waker: &Waker) -> Option<String> {
        let mut state = self.state();
        if state.lost.is_none() {
            state.wakers.push(waker.clone());
        }
        state.lost.clone()
    }

    fn set_lost(&self, reason: String) {
        let wakers = {
            let mut state = self.state();
            state.lost.get_or_insert(reason);
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn release(&self, lease: Duration) {
        let (release, released) = {
            let mut state = self.state();
            // A lost lock has nothing left to confirm: never wait (perhaps on an executor
            // thread) for a session that is already ending.
            let released = state.released.take().filter(|_| state.lost.is_none());
            (state.release.take(), released)
        };
        if let Some(release) = release {
            let _ = release.send(());
        }
        if let Some(released) = released {
            let _ = released.recv_timeout(lease);
        }
    }
}

/// Runs `work` on a new thread with its own current-thread runtime.
fn spawn(spec: &Spec, work: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| spec.error("start a runtime for", e))?;
    std::thread::Builder::new()
        .name("lockmacro-pg".into())
        .spawn(move || runtime.block_on(work))
        .map(drop)
        .map_err(|e| spec.error("start a session thread for", e))
}

fn thread_ended(spec: &Spec) -> Error {
    spec.error("hold", "the session thread ended")
}

/// One connection to the server, on its own thread, that takes and then keeps the lock.
struct Session {
    spec: Arc<Spec>,
}

/// How a hold ended.
enum Ended {
    /// Given back by its holder.
    Released,
    /// Lost, the connection still open: why.
    Lost(String),
    /// Lost because the connection ended (its task is done): why.
    Closed(String),
}

/// The hold's link to its session, and its fencing token if asked for.
type Reply = oneshot::Sender<Result<(Arc<Link>, Option<u64>), Error>>;
/// The task driving the connection; it ends when the session does.
type Connection = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

impl Session {
    fn error(
        &self,
        action: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        self.spec.error(action, e)
    }

    async fn session(self, deadline: Deadline, mut reply: Reply) {
        let since = trace::Since::now();
        let connected = tokio::select! {
            c = self.connect() => c,
            () = reply.closed() => return, // cancelled while connecting
        };
        let (client, mut connection) = match connected {
            Ok(c) => c,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let got = tokio::select! {
            got = self.take(&client, deadline) => got,
            () = reply.closed() => return, // cancelled: closing the session frees everything
            end = &mut connection => Err(self.error("keep the connection to", ended(end))),
        };
        let recorded = match got {
            Ok(_) if self.spec.request.record.wanted() => tokio::select! {
                r = self.record(&client) => r,
                () = reply.closed() => return,
            },
            Ok(sent) => Ok((sent, None)),
            Err(e) => Err(e),
        };
        let (sent, token) = match recorded {
            Ok(done) => done,
            Err(e) => {
                let _ = reply.send(Err(e)); // the session ends below, freeing the lock
                return;
            }
        };
        let (release_tx, release_rx) = oneshot::channel();
        let (released_tx, released_rx) = std::sync::mpsc::channel();
        let link = Arc::new(Link {
            state: Mutex::new(HoldState {
                release: Some(release_tx),
                released: Some(released_rx),
                ..HoldState::default()
            }),
        });
        trace::acquired(self.spec.about(), since);
        if reply.send(Ok((Arc::clone(&link), token))).is_err() {
            // Nobody is waiting any more: closing the session gives the lock back.
            drop(client);
            return;
        }
        let ended = self.hold(&client, &mut connection, release_rx, sent).await;
        let connection = match ended {
            Ended::Released => Some(connection),
            Ended::Lost(reason) => {
                self.lost(&link, reason);
                Some(connection)
            }
            // The connection task is done: it must not be awaited again.
            Ended::Closed(reason) => {
                self.lost(&link, reason);
                None
            }
        };
        if connection.is_some() {
            let unlock = format!("SELECT pg_advisory_unlock{}($1)", self.suffix());
            let _ = tokio::time::timeout(
                self.spec.lease / 2,
                client.execute(&unlock, &[&self.spec.key]),
            )
            .await;
        }
        drop(client); // closes the session: whatever happened above, the server frees the lock
        if let Some(connection) = connection {
            let _ = tokio::time::timeout(self.spec.lease / 2, connection).await;
        }
        let _ = released_tx.send(());
    }

    fn suffix(&self) -> &'static str {
        match self.spec.request.share {
            Share::Shared => "_shared",
            Share::Exclusive => "",
        }
    }

    async fn connect(&self) -> Result<(Client, Connection), Error> {
        let mut target = self
            .spec
            .target()
            .map_err(|e| self.error("find the server of", e))?;
        let lease = self.spec.lease;
        target
            .config_mut()
            .application_name(application_name(&self.spec.request.name))
            .connect_timeout(lease.max(Duration::from_secs(1)))
            .keepalives(true)
            .keepalives_idle((lease / 4).max(Duration::from_secs(1)))
            .keepalives_interval((lease / 10).max(Duration::from_secs(1)))
            .keepalives_retries(3)
            .tcp_user_timeout(lease / 2);
        connect::connect(&target)
            .await
            .map_err(|e| self.error("connect to the server of", e))
    }

    /// Sets up the lease and takes the lock; returns when the last confirming query was sent.
    async fn take(&self, client: &Client, deadline: Deadline) -> Result<Instant, Error> {
        let lease_ms = u64::try_from(self.spec.lease.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        client
            .batch_execute(&format!("SET idle_session_timeout = {lease_ms}"))
            .await
            .map_err(|e| self.error("set idle_session_timeout (PostgreSQL 14 or later) for", e))?;
        let standby: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| self.error("ask the server about", e))?
            .get(0);
        if standby {
            return Err(self.error(
                "lock on a standby server",
                "the server is a read-only standby (pg_is_in_recovery() is true); use the primary",
            ));
        }
        let try_lock = client
            .prepare(&format!("SELECT pg_try_advisory_lock{}($1)", self.suffix()))
            .await
            .map_err(|e| self.error("prepare", e))?;
        let mut pause = Duration::from_millis(5);
        let mut contended = false;
        let mut _notice = None;
        loop {
            let sent = Instant::now();
            let got: bool = self
                .timely(client.query_one(&try_lock, &[&self.spec.key]))
                .await?
                .get(0);
            if got {
                if !self.timely(self.visible(client)).await? {
                    return Err(self.error(
                        "lock through a pooler",
                        "pg_locks does not show the lock held by this session: is the URL a \
                         pooler in transaction mode (PgBouncer)? Connect to the server directly",
                    ));
                }
                return Ok(sent);
            }
            if !std::mem::replace(&mut contended, true) {
                trace::contended(self.spec.about(), None);
                if deadline != Deadline::Now && self.spec.request.announce == Announce::LongWaits {
                    // Asking needs a connection: the line names no holder.
                    _notice = Some(Notice::arm(
                        &self.spec.request.name,
                        self.spec.location(),
                        notice::Holder::default,
                    ));
                }
            }
            if deadline.passed() {
                let pid = self.holder(client).await;
                let (name, at) = (self.spec.request.name.clone(), self.spec.location());
                let Deadline::At { timeout, .. } = deadline else {
                    return Err(Error::Held { name, at, pid });
                };
                trace::timed_out(self.spec.about(), timeout, pid);
                return Err(Error::Timeout {
                    name,
                    at,
                    timeout,
                    pid,
                });
            }
            let mut wake = Instant::now() + pause;
            if let Deadline::At { at, .. } = deadline {
                wake = wake.min(at);
            }
            tokio::time::sleep_until(wake.into()).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Under the lock: refuses a start within the period of the last one ([`Error::TooSoon`]),
    /// else records this start (the server's clock) and takes the next fencing token, in the
    /// table `lockmacro_state` (created on first use). Returns when its query was sent, and the
    /// token.
    async fn record(&self, client: &Client) -> Result<(Instant, Option<u64>), Error> {
        let record = self.spec.request.record;
        if self.spec.request.share == Share::Shared {
            return Err(self.error(
                "record a start of",
                "fencing tokens and once_per are for exclusive locks",
            ));
        }
        if let Err(e) = self.timely(client.batch_execute(STATE_TABLE_SQL)).await {
            return Err(self.error(
                "create the table lockmacro_state for",
                format!(
                    "{}; if this role may not create tables, have an administrator run: {STATE_TABLE_SQL}",
                    one_line(&e)
                ),
            ));
        }
        let period_ms = record
            .period
            .map_or(0, |p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX));
        let sent = Instant::now();
        let row = self
            .timely(client.query_opt(RECORD_SQL, &[&self.spec.key, &period_ms]))
            .await?;
        if let Some(row) = row {
            let token: i64 = row.get(0);
            return Ok((sent, Some(u64::try_from(token).unwrap_or(0))));
        }
        let since_ms: i64 = self
            .timely(client.query_one(SINCE_SQL, &[&self.spec.key]))
            .await?
            .get(0);
        Err(Error::TooSoon {
            name: self.spec.request.name.clone(),
            at: self.spec.location(),
            since: Duration::from_millis(u64::try_from(since_ms).unwrap_or(0)),
            period: record.period.unwrap_or_default(),
        })
    }

    /// A query, bounded by half a lease: a server or network path that does not answer by then
    /// is treated as gone.
    async fn timely<T>(
        &self,
        query: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.spec.lease / 2, query).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error("query the server of", e)),
            Err(_) => Err(self.error(
                "query the server of",
                format!("no answer within {:?}", self.spec.lease / 2),
            )),
        }
    }

    /// Whether `pg_locks` shows this lock granted to this session.
    async fn visible(&self, client: &Client) -> Result<bool, tokio_postgres::Error> {
        let mode = match self.spec.request.share {
            Share::Shared => "ShareLock",
            Share::Exclusive => "ExclusiveLock",
        };
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                 AND pid = pg_backend_pid() AND granted AND objsubid = 1 AND mode = $2 \
                 AND ((classid::bigint << 32) | objid::bigint) = $1)",
                &[&self.spec.key, &mode],
            )
            .await?;
        Ok(row.get(0))
    }

    /// The PID of a holder on this host, from its `application_name`; best effort.
    async fn holder(&self, client: &Client) -> Option<u32> {
        let rows = tokio::time::timeout(
            self.spec.lease / 2,
            client.query(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a \
                 ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted \
                 AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
                &[&self.spec.key],
            ),
        )
        .await
        .ok()?
        .ok()?;
        rows.iter().find_map(|row| {
            let name: String = row.get(0);
            let (host, pid) = name
                .strip_prefix("lockmacro ")?
                .split_once(' ')?
                .0
                .rsplit_once(':')?;
            (host == hostname()).then(|| pid.parse().ok())?
        })
    }

    /// Holds the lock until released or lost.
    async fn hold(
        &self,
        client: &Client,
        connection: &mut Connection,
        mut release: oneshot::Receiver<()>,
        mut sent: Instant,
    ) -> Ended {
        let lease = self.spec.lease;
        let every = lease / 5;
        loop {
            // The server cannot end the session before `sent + lease`; we give up at half that.
            let give_up = sent + lease / 2;
            let next = (Instant::now() + every).min(give_up);
            let heartbeat = async {
                tokio::time::sleep_until(next.into()).await;
                let beat = Instant::now();
                let answer = tokio::time::timeout_at(give_up.into(), self.visible(client)).await;
                (beat, answer)
            };
            let (beat, answer) = tokio::select! {
                _ = &mut release => return Ended::Released,
                end = &mut *connection => {
                    return Ended::Closed(format!("the connection ended: {}", ended(end)));
                }
                done = heartbeat => done,
            };
            match answer {
                Ok(Ok(true)) => sent = beat,
                Ok(Ok(false)) => {
                    return Ended::Lost(
                        "pg_locks no longer shows the lock held by this session".into(),
                    )
                }
                Ok(Err(e)) => return Ended::Lost(format!("the heartbeat failed: {e}")),
                Err(_) => {
                    return Ended::Lost(format!(
                        "no heartbeat answered for {:?} (half the {lease:?} lease): the server \
                         or the network path is stuck",
                        lease / 2
                    ))
                }
            }
        }
    }

    fn lost(&self, link: &Link, reason: String) {
        trace::lost(self.spec.about(), &reason);
        if self.spec.request.on_lost == OnLost::Exit {
            let err = Error::Lost {
                name: self.spec.request.name.clone(),
                at: self.spec.location(),
                reason,
            };
            eprintln!("{}: {}", program_name(), one_line(&err));
            std::process::exit(LOST_EXIT_CODE);
        }
        link.set_lost(reason);
    }
}

fn ended(end: Result<Result<(), tokio_postgres::Error>, tokio::task::JoinError>) -> String {
    match end {
        Ok(Ok(())) => "closed by the server".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// `lockmacro <host>:<pid> <name>`, cut to the server's 63-byte limit (the name goes last, so
/// the holder's identity survives the cut).
fn application_name(name: &str) -> String {
    let mut text = format!("lockmacro {}:{} {name}", hostname(), std::process::id());
    if text.len() > 63 {
        let mut cut = 63;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

fn hostname() -> String {
    #[cfg(unix)]
    {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_else(|_| "localhost".to_owned())
    }
}

/// The server and the key identify a PostgreSQL lock on the call chain.
impl Keyed for Spec {
    fn chain_key(&self) -> Arc<Location> {
        Arc::new(self.location())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable() {
        // Pinned: changing them would let old and new versions hold "the same" lock at once.
        assert_eq!(key_for("abc"), 3_368_508_787_286_195_161);
        assert_ne!(key_for("abc"), key_for("abd"));
    }

    #[test]
    fn application_names_fit_and_keep_the_holder() {
        let long = application_name(&"é".repeat(100));
        assert!(long.len() <= 63, "{long}");
        assert!(long.starts_with("lockmacro "));
        assert!(long.contains(&format!(":{} ", std::process::id())));
    }
}
