//! Where the PostgreSQL backend connects, and how: libpq's connection strings, environment,
//! password file and `sslmode`, on tokio-postgres with TLS by rustls (feature `postgres`).
//!
//! [`resolve`] turns a connection string (or none) and the environment into a [`Target`];
//! [`connect`] opens a session to it.
//!
//! # Connection strings
//!
//! Both of libpq's forms:
//!
//! - URIs: `postgres://user:password@host:port,host2:port2/dbname?key=value&...` (or
//!   `postgresql://`). Every part is optional and percent-decoded; `[...]` holds an IPv6
//!   address; a host that is a directory (`%2Fvar%2Frun%2Fpostgresql`, or
//!   `?host=/var/run/postgresql`) is a Unix socket: `postgres:///test?host=/var/run/postgresql`.
//!   `ssl=true` means `sslmode=require`, as in libpq.
//! - key-value strings: `host=/var/run/postgresql dbname=test user='o\'brien'`.
//!
//! Keys: `host`, `hostaddr`, `port`, `dbname`, `user`, `password`, `passfile`, `sslmode`,
//! `sslrootcert`, `sslsni`, `sslnegotiation`, `application_name`, `fallback_application_name`,
//! `options`, `connect_timeout`, `tcp_user_timeout`, `keepalives`, `keepalives_idle`,
//! `keepalives_interval`, `keepalives_count`, `target_session_attrs`, `channel_binding`,
//! `load_balance_hosts`. Any other key is an error, and so are libpq's keys this crate does not
//! implement (client certificates: `sslcert`, `sslkey`, ...; `service`; GSSAPI), rather than
//! being silently ignored.
//!
//! # Where each value comes from (libpq's precedence)
//!
//! For each key, the first of:
//!
//! 1. the connection string (an explicit empty value counts: `host=''` stops `PGHOST`);
//! 2. its environment variable: `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGDATABASE`, `PGUSER`,
//!    `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLSNI`, `PGSSLNEGOTIATION`,
//!    `PGAPPNAME`, `PGOPTIONS`, `PGCONNECT_TIMEOUT`, `PGTARGETSESSIONATTRS`,
//!    `PGCHANNELBINDING`, `PGLOADBALANCEHOSTS`;
//! 3. the default: the Unix socket in `/var/run/postgresql` or else `/tmp` (the first that has
//!    the server's socket file; `localhost` over TCP if neither does — libpq would insist on
//!    its compiled-in directory), port 5432, the operating-system user name (from the password
//!    database, as libpq), a database named as the user, `sslmode=prefer`
//!    (`verify-full` when `sslrootcert=system`), `sslrootcert=~/.postgresql/root.crt`,
//!    `passfile=~/.pgpass` (`%APPDATA%\postgresql\...` on Windows); `~` is `$HOME`, or the
//!    password database's home directory.
//!
//! An empty value is the default. The password file is read only when no password was given by
//! 1 or 2. It is ignored, with a note added to connection errors, when it is not a plain file or
//! has any group or world permission bit (it must be `u=rw` (0600) or less). Its lines are
//! `host:port:database:username:password`; `#` starts a comment line; `*` alone matches
//! anything; `\:` and `\\` are a literal `:` and `\`; the first matching line wins. Its host is
//! matched against `host` (or `hostaddr` when there is no `host`), and against `localhost` for
//! the default socket directories. With several hosts, the first host with a matching line
//! gives the password (tokio-postgres has one password for all hosts).
//!
//! # TLS (`sslmode`, `sslrootcert`)
//!
//! libpq's meanings:
//!
//! | `sslmode` | TLS | certificate chain | host name |
//! |---|---|---|---|
//! | `disable` | never | | |
//! | `allow` | only if the server refuses a plain session | if roots are available | no |
//! | `prefer` (default) | if offered; plain if TLS fails | if roots are available | no |
//! | `require` | always | if roots are available | no |
//! | `verify-ca` | always | always | no |
//! | `verify-full` | always | always | always |
//!
//! "Roots are available" means `sslrootcert` names a file, or the default
//! `~/.postgresql/root.crt` exists: as in libpq, `require` with a root certificate checks the
//! chain like `verify-ca`. `sslrootcert=system` uses the operating system's trusted roots
//! (PostgreSQL 16's meaning), defaults `sslmode` to `verify-full` and refuses any other mode.
//! `verify-ca` and `verify-full` without any root certificate fail with libpq's advice. One
//! deliberate difference: an `sslrootcert` file that cannot be read is an error in every mode
//! (libpq ignores it below `verify-ca`, silently dropping the verification that was asked for).
//! Certificates are checked with rustls (webpki) and the `ring` provider; host names against
//! the DNS or IP-address subject alternative names (never the common name); with `hostaddr`
//! and no `host`, the address is the name checked (libpq refuses `verify-full` there).
//! `sslmode` is ignored for Unix sockets, as in libpq (the server offers no TLS there); a list
//! mixing sockets and TCP hosts with `require` or stronger fails on its socket hosts. SCRAM
//! uses channel binding (`tls-server-end-point`) over TLS when the server offers it. As in
//! libpq, `prefer` (and `allow`) go plain when TLS fails, certificate errors included: only
//! `verify-full` (or `verify-ca`) protects against a server or network path that is not the
//! expected one.
//!
//! # Descriptions
//!
//! [`Target::display`] never contains a password: `postgres://user@host:5432/db` (with
//! `?sslmode=...` unless `prefer`), or `/var/run/postgresql (socket, port 5432), user u, db d`.
//!
//! Not implemented: client certificates, `service` files, GSSAPI, Kerberos, `requirepeer`,
//! certificate revocation lists.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::Host;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket};

/// The task driving a connection (spawned on the caller's runtime); it ends with the session.
pub(crate) type Driver = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, ConnectError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(ConnectError::config(format!(
                    "invalid sslmode value: \"{value}\" (disable, allow, prefer, require, \
                     verify-ca or verify-full)"
                )))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// libpq's default, `~/.postgresql/root.crt`, used if it exists (`None`: no home
    /// directory).
    Default(Option<PathBuf>),
    /// `sslrootcert=<file>`: must exist.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trusted roots.
    System,
}

/// What TLS a [`Target`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsPolicy {
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
    /// `sslsni`: send the host name in the handshake (the default).
    pub(crate) sni: bool,
}

/// A server to connect to, resolved from a connection string and the environment.
pub(crate) struct Target {
    config: tokio_postgres::Config,
    tls: TlsPolicy,
    display: String,
    /// Why something was ignored (a password file with loose permissions): added to
    /// connection errors.
    notes: Vec<String>,
}

impl fmt::Debug for Target {
    // Never the config's fields: a password must not reach a log through `{:?}` either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.display)
            .field("tls", &self.tls)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl Target {
    /// The server, without any password.
    #[cfg_attr(not(test), allow(dead_code))] // the tests read it
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    #[allow(dead_code)] // for callers that report what TLS was asked for
    pub(crate) fn tls(&self) -> &TlsPolicy {
        &self.tls
    }

    /// The tokio-postgres configuration (hosts, user, password, ...), for the caller's own
    /// settings (application name, keepalives, timeouts). Its `ssl_mode` is set by
    /// [`connect`].
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(crate) fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    #[cfg_attr(not(test), allow(dead_code))] // the tests read it
    pub(crate) fn notes(&self) -> &[String] {
        &self.notes
    }
}

/// A connection string that cannot be used, or a connection that failed.
#[derive(Debug)]
pub(crate) struct ConnectError {
    message: String,
    source: Option<tokio_postgres::Error>,
}

impl ConnectError {
    fn config(message: impl Into<String>) -> ConnectError {
        ConnectError {
            message: message.into(),
            source: None,
        }
    }

    /// The server's error, if it answered with one (SQLSTATE and message).
    pub(crate) fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        self.source.as_ref().and_then(|e| e.as_db_error())
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already includes it; exposed for callers that look for a DbError.
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// The keys this module implements, with their environment variables.
const KEYS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("options", Some("PGOPTIONS")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("tcp_user_timeout", None),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
];

/// libpq keys that are refused with a reason rather than as unknown.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("sslcert", "client certificates are not supported"),
    ("sslkey", "client certificates are not supported"),
    ("sslpassword", "client certificates are not supported"),
    ("sslcertmode", "client certificates are not supported"),
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    ("service", "service files are not supported"),
    ("gssencmode", "GSSAPI is not supported"),
    ("krbsrvname", "GSSAPI is not supported"),
    ("gsslib", "GSSAPI is not supported"),
    ("gssdelegation", "GSSAPI is not supported"),
    ("requirepeer", "requirepeer is not supported"),
    ("require_auth", "require_auth is not supported"),
    ("replication", "replication connections are not supported"),
];

fn check_key(key: &str) -> Result<&'static str, ConnectError> {
    if let Some((known, _)) = KEYS.iter().find(|(k, _)| *k == key) {
        return Ok(known);
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return Err(ConnectError::config(format!(
            "connection option \"{key}\": {why}"
        )));
    }
    Err(ConnectError::config(format!(
        "unknown connection option \"{key}\""
    )))
}

type Options = BTreeMap<&'static str, String>;

/// A connection string, either form, as libpq's key/value pairs.
fn parse(conninfo: &str) -> Result<Options, ConnectError> {
    let trimmed = conninfo.trim_start();
    for scheme in ["postgresql://", "postgres://"] {
        if let Some(rest) = trimmed.strip_prefix(scheme) {
            return parse_uri(rest);
        }
    }
    parse_key_values(conninfo)
}

fn parse_key_values(text: &str) -> Result<Options, ConnectError> {
    let mut options = Options::new();
    let mut chars = text.chars().peekable();
    let mut previous = "";
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(options);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        // After an unquoted password with a space, this word may be part of the password.
        let shown = if previous == "password" {
            "(not shown: it follows the password)"
        } else {
            key.as_str()
        };
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnectError::config(format!(
                "missing \"=\" after \"{shown}\" in the connection string (a value with \
                 spaces must be quoted: key='a b')"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(ConnectError::config(
                            "unterminated quoted string in the connection string",
                        ))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        let known = check_key(&key).map_err(|e| {
            if previous == "password" {
                ConnectError::config(
                    "unknown connection option after the password (not shown: it may be part \
                     of it; a value with spaces must be quoted: key='a b')",
                )
            } else {
                e
            }
        })?;
        options.insert(known, value);
        previous = known;
    }
}

fn percent_decode(text: &str) -> Result<String, ConnectError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    // Not the text: it may be the password.
                    ConnectError::config(
                        "invalid percent-encoded token in the connection URI (% must be \
                         followed by two hexadecimal digits)",
                    )
                })?;
            if hex == 0 {
                return Err(ConnectError::config(
                    "forbidden value %00 in percent-encoded value",
                ));
            }
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnectError::config("a percent-encoded value is not UTF-8"))
}

/// `[userinfo@][hosts][/dbname][?params]`, after the scheme.
fn parse_uri(rest: &str) -> Result<Options, ConnectError> {
    let mut options = Options::new();
    let (main, query) = match rest.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (main, None),
    };
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                options.insert("user", percent_decode(user)?);
            }
            if let Some(password) = password {
                options.insert("password", percent_decode(password)?);
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let mut host_list = Vec::new();
        let mut port_list = Vec::new();
        for spec in hosts.split(',') {
            let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
                let (host, after) = v6.split_once(']').ok_or_else(|| {
                    ConnectError::config(format!(
                        "missing \"]\" in the IPv6 host address of the connection URI: \"{spec}\""
                    ))
                })?;
                let port = match after {
                    "" => "",
                    _ => after.strip_prefix(':').ok_or_else(|| {
                        ConnectError::config(format!(
                            "unexpected \"{after}\" after an IPv6 host address in the URI"
                        ))
                    })?,
                };
                (host.to_owned(), port)
            } else {
                let (host, port) = spec.split_once(':').unwrap_or((spec, ""));
                (percent_decode(host)?, port)
            };
            host_list.push(host);
            port_list.push(percent_decode(port)?);
        }
        if host_list.iter().any(|h| !h.is_empty()) {
            options.insert("host", host_list.join(","));
        }
        if port_list.iter().any(|p| !p.is_empty()) {
            options.insert("port", port_list.join(","));
        }
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        options.insert("dbname", percent_decode(path)?);
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        if param.is_empty() {
            continue;
        }
        let (key, value) = param.split_once('=').ok_or_else(|| {
            ConnectError::config(format!(
                "missing \"=\" in the connection URI query parameter \"{param}\""
            ))
        })?;
        let (key, value) = (percent_decode(key)?, percent_decode(value)?);
        if key == "ssl" {
            // libpq's JDBC-compatible spelling.
            if value != "true" {
                return Err(ConnectError::config(format!(
                    "invalid value for \"ssl\" in the connection URI: \"{value}\" (only true)"
                )));
            }
            options.insert("sslmode", "require".to_owned());
            continue;
        }
        options.insert(check_key(&key)?, value);
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// The directories libpq builds may default to (Debian's, then upstream's).
#[cfg(unix)]
const SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/tmp"];
#[cfg(not(unix))]
const SOCKET_DIRS: &[&str] = &[];

/// Resolves a connection string (`None` or empty: everything from the environment and the
/// defaults) with `env` as the environment (`|k| std::env::var(k).ok()` in production).
/// Reads the password file; never connects.
pub(crate) fn resolve(
    url: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, ConnectError> {
    let given = match url {
        Some(url) => parse(url)?,
        None => Options::new(),
    };
    // 1. the string (an explicit empty value included), 2. the environment; empty is unset.
    let get = |key: &str| -> Option<String> {
        let env_var = KEYS.iter().find(|(k, _)| *k == key).and_then(|(_, e)| *e);
        given
            .get(key)
            .cloned()
            .or_else(|| env_var.and_then(env))
            .filter(|v| !v.is_empty())
    };
    let split = |value: Option<String>| -> Vec<String> {
        value.map_or_else(Vec::new, |v| v.split(',').map(str::to_owned).collect())
    };

    let mut notes = Vec::new();
    let home = home_dir(env);

    // Ports (one per host, or one for all; an empty entry is the default).
    let default_port = 5432u16;
    let parse_port = |p: &str| -> Result<u16, ConnectError> {
        if p.is_empty() {
            return Ok(default_port);
        }
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ConnectError::config(format!("invalid port number: \"{p}\"")))
    };
    let ports = split(get("port"))
        .iter()
        .map(|p| parse_port(p))
        .collect::<Result<Vec<_>, _>>()?;

    // Hosts and host addresses.
    let hostaddrs = split(get("hostaddr"))
        .iter()
        .map(|a| {
            a.trim().parse::<IpAddr>().map_err(|_| {
                ConnectError::config(format!("invalid hostaddr (not an IP address): \"{a}\""))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut hosts = split(get("host"));
    if hosts.is_empty() {
        if hostaddrs.is_empty() {
            hosts.push(default_host(ports.first().copied().unwrap_or(default_port)));
        } else {
            // Host names for TLS and the password file: the addresses themselves.
            hosts = hostaddrs.iter().map(IpAddr::to_string).collect();
        }
    }
    if !hostaddrs.is_empty() && hostaddrs.len() != hosts.len() {
        return Err(ConnectError::config(format!(
            "{} host names but {} hostaddr values",
            hosts.len(),
            hostaddrs.len()
        )));
    }
    for (i, host) in hosts.iter_mut().enumerate() {
        if host.is_empty() {
            // `host=a,,b`: the default for that entry.
            *host = match hostaddrs.get(i) {
                Some(addr) => addr.to_string(),
                None => default_host(default_port),
            };
        }
    }
    let ports = match ports.len() {
        0 => vec![default_port; hosts.len()],
        1 => vec![ports[0]; hosts.len()],
        n if n == hosts.len() => ports,
        n => {
            return Err(ConnectError::config(format!(
                "{} hosts but {n} port numbers",
                hosts.len()
            )))
        }
    };

    let user = match get("user") {
        Some(user) => user,
        None => os_user(env).ok_or_else(|| {
            ConnectError::config(
                "could not determine the user name: give user= or set PGUSER".to_owned(),
            )
        })?,
    };
    let dbname = get("dbname").unwrap_or_else(|| user.clone());

    // TLS.
    let rootcert = get("sslrootcert");
    let roots = match rootcert.as_deref() {
        Some("system") => Roots::System,
        Some(file) => Roots::File(PathBuf::from(file)),
        None => Roots::Default(home.as_ref().map(|h| config_dir(h).join("root.crt"))),
    };
    let mode = match get("sslmode") {
        Some(mode) => SslMode::parse(&mode)?,
        None if roots == Roots::System => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if roots == Roots::System && mode != SslMode::VerifyFull {
        return Err(ConnectError::config(format!(
            "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
            mode.name()
        )));
    }
    let sni = match get("sslsni").as_deref() {
        None | Some("1") => true,
        Some("0") => false,
        Some(other) => {
            return Err(ConnectError::config(format!(
                "invalid sslsni value: \"{other}\" (0 or 1)"
            )))
        }
    };

    // Everything tokio-postgres checks itself goes through its own parser.
    let mut passthrough = String::new();
    for (key, theirs) in [
        ("connect_timeout", "connect_timeout"),
        ("tcp_user_timeout", "tcp_user_timeout"),
        ("keepalives", "keepalives"),
        ("keepalives_idle", "keepalives_idle"),
        ("keepalives_interval", "keepalives_interval"),
        ("keepalives_count", "keepalives_retries"),
        ("target_session_attrs", "target_session_attrs"),
        ("channel_binding", "channel_binding"),
        ("load_balance_hosts", "load_balance_hosts"),
        ("sslnegotiation", "sslnegotiation"),
    ] {
        if let Some(value) = get(key) {
            passthrough.push_str(&format!("{theirs}={} ", quote(&value)));
        }
    }
    let mut config: tokio_postgres::Config = passthrough
        .parse()
        .map_err(|e| ConnectError::config(format!("invalid connection option: {e}")))?;
    for host in &hosts {
        config.host(host);
    }
    for addr in &hostaddrs {
        config.hostaddr(*addr);
    }
    for port in &ports {
        config.port(*port);
    }
    config.user(&user).dbname(&dbname);
    if let Some(options) = get("options") {
        config.options(options);
    }
    if let Some(name) = get("application_name").or_else(|| get("fallback_application_name")) {
        config.application_name(name);
    }

    // The password: given, else the password file.
    match get("password") {
        Some(password) => {
            config.password(password);
        }
        None => {
            let file = get("passfile")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| default_passfile(h)));
            if let Some(file) = file {
                let lookup = hosts.iter().zip(&ports).find_map(|(host, port)| {
                    pgpass_lookup(&file, host, *port, &dbname, &user, &mut notes)
                });
                if let Some(password) = lookup {
                    config.password(password);
                }
            }
        }
    }

    let tls = TlsPolicy { mode, roots, sni };
    let display = describe(&hosts, &ports, &user, &dbname, mode);
    Ok(Target {
        config,
        tls,
        display,
        notes,
    })
}

/// Quotes a value for tokio-postgres's key-value parser.
fn quote(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn is_socket(host: &str) -> bool {
    cfg!(unix) && host.starts_with('/')
}

/// libpq's default host: a socket directory where the server's socket is, else `localhost`.
fn default_host(port: u16) -> String {
    SOCKET_DIRS
        .iter()
        .find(|dir| Path::new(dir).join(format!(".s.PGSQL.{port}")).exists())
        .map_or_else(|| "localhost".to_owned(), |dir| (*dir).to_owned())
}

fn describe(hosts: &[String], ports: &[u16], user: &str, dbname: &str, mode: SslMode) -> String {
    if hosts.iter().all(|h| !is_socket(h)) {
        let list = hosts
            .iter()
            .zip(ports)
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let ssl = match mode {
            SslMode::Prefer => String::new(),
            mode => format!("?sslmode={}", mode.name()),
        };
        return format!("postgres://{user}@{list}/{dbname}{ssl}");
    }
    let list = hosts
        .iter()
        .zip(ports)
        .map(|(h, p)| {
            if is_socket(h) {
                format!("{h} (socket, port {p})")
            } else {
                format!("{h}:{p}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("{list}, user {user}, db {dbname}")
}

/// `$HOME`, else the password database's home directory (libpq's order).
fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        env("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| passwd_entry().map(|(_, home)| PathBuf::from(home)))
    }
    #[cfg(not(unix))]
    {
        env("APPDATA").filter(|h| !h.is_empty()).map(PathBuf::from)
    }
}

/// Where libpq keeps `root.crt`: `~/.postgresql` (`%APPDATA%\postgresql` on Windows).
fn config_dir(home: &Path) -> PathBuf {
    if cfg!(unix) {
        home.join(".postgresql")
    } else {
        home.join("postgresql")
    }
}

fn default_passfile(home: &Path) -> PathBuf {
    if cfg!(unix) {
        home.join(".pgpass")
    } else {
        home.join("postgresql").join("pgpass.conf")
    }
}

/// The operating-system user name, from the password database (as libpq).
fn os_user(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    #[cfg(unix)]
    {
        passwd_entry().map(|(name, _)| name).or_else(|| env("USER"))
    }
    #[cfg(not(unix))]
    {
        env("USERNAME")
    }
}

/// The effective user's name and home directory from `/etc/passwd`.
#[cfg(unix)]
fn passwd_entry() -> Option<(String, String)> {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2] == uid)
            .then(|| (fields[0].to_owned(), fields[5].to_owned()))
    })
}

// ---------------------------------------------------------------------------------------------
// The password file

/// One field of a password-file line.
#[derive(Debug, PartialEq, Eq)]
enum Field {
    Any,
    Exactly(String),
}

impl Field {
    fn matches(&self, value: &str) -> bool {
        match self {
            Field::Any => true,
            Field::Exactly(v) => v == value,
        }
    }
}

/// A line's four match fields and its password; `None` for comments and short lines.
fn pgpass_line(line: &str) -> Option<([Field; 4], String)> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields: Vec<(String, bool)> = Vec::new(); // (text, had an escape)
    let mut current = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                    escaped_any = true;
                }
            }
            ':' if fields.len() < 4 => {
                fields.push((std::mem::take(&mut current), escaped_any));
                escaped_any = false;
            }
            // The password ends at an unescaped ':' (libpq ignores what follows).
            ':' => break,
            c => current.push(c),
        }
    }
    if fields.len() < 4 {
        return None;
    }
    let mut matchers = fields.into_iter().map(|(text, escaped)| {
        if text == "*" && !escaped {
            Field::Any
        } else {
            Field::Exactly(text)
        }
    });
    let mut next = || matchers.next().unwrap_or(Field::Any);
    Some(([next(), next(), next(), next()], current))
}

/// The password for one host from the password file, if it may be read and has a line.
fn pgpass_lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
    notes: &mut Vec<String>,
) -> Option<String> {
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        notes.push(format!(
            "password file \"{}\" is not a plain file: ignored",
            file.display()
        ));
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            let note = format!(
                "password file \"{}\" has group or world access (mode {:04o}): ignored; \
                 permissions should be u=rw (0600) or less",
                file.display(),
                mode & 0o7777
            );
            if !notes.contains(&note) {
                notes.push(note);
            }
            return None;
        }
    }
    let text = std::fs::read_to_string(file).ok()?;
    // For the default socket directories, libpq looks for `localhost`.
    let host = if is_socket(host) && SOCKET_DIRS.contains(&host) {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    text.lines()
        .filter_map(pgpass_line)
        .find_map(|(fields, password)| {
            let [h, p, d, u] = &fields;
            (h.matches(host) && p.matches(&port) && d.matches(dbname) && u.matches(user))
                .then_some(password)
                .filter(|p| !p.is_empty())
        })
}

// ---------------------------------------------------------------------------------------------
// Connecting

/// Opens a session to `target` following its `sslmode` (see the module docs), and spawns the
/// task that drives it on the current tokio runtime.
pub(crate) async fn connect(target: &Target) -> Result<(Client, Driver), ConnectError> {
    let sockets_only = target
        .config
        .get_hosts()
        .iter()
        .all(|h| !matches!(h, Host::Tcp(_)));
    let mode = if sockets_only {
        SslMode::Disable // libpq never tries TLS on a Unix socket
    } else {
        target.tls.mode
    };
    match mode {
        SslMode::Disable => plain(target).await,
        SslMode::Allow => match plain(target).await {
            // Refused by the server (pg_hba.conf, say): try again with TLS, as libpq does.
            Err(e) if e.db_error().is_some() => encrypted(target)
                .await
                .map_err(|e2| both(target, "without TLS", e, "with TLS", e2)),
            done => done,
        },
        SslMode::Prefer => {
            let tried = Arc::new(AtomicBool::new(false));
            match with_tls(target, tokio_postgres::config::SslMode::Prefer, &tried).await {
                // TLS was tried and failed (handshake, or refused after it): plain, as libpq.
                Err(e) if tried.load(Ordering::SeqCst) => plain(target)
                    .await
                    .map_err(|e2| both(target, "with TLS", e, "without TLS", e2)),
                done => done,
            }
        }
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => encrypted(target).await,
    }
}

fn both(
    target: &Target,
    first: &str,
    e1: ConnectError,
    second: &str,
    e2: ConnectError,
) -> ConnectError {
    let prefix = format!("could not connect to {}: ", target.display);
    let strip = |e: &ConnectError| {
        let message = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
        // The notes are said once, at the end.
        message
            .split("; note: ")
            .next()
            .unwrap_or(message)
            .to_owned()
    };
    let mut message = format!(
        "could not connect to {} {first} ({}) nor {second} ({})",
        target.display,
        strip(&e1),
        strip(&e2)
    );
    for note in &target.notes {
        message.push_str(&format!("; note: {note}"));
    }
    ConnectError {
        message,
        source: e2.source,
    }
}

async fn plain(target: &Target) -> Result<(Client, Driver), ConnectError> {
    let mut config = target.config.clone();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    match config.connect(NoTls).await {
        Ok((client, connection)) => Ok((client, tokio::spawn(connection))),
        Err(e) => Err(failed(target, SslMode::Disable, e)),
    }
}

/// TLS only (`require`, or `allow`'s second try).
async fn encrypted(target: &Target) -> Result<(Client, Driver), ConnectError> {
    let tried = Arc::new(AtomicBool::new(false));
    with_tls(target, tokio_postgres::config::SslMode::Require, &tried).await
}

async fn with_tls(
    target: &Target,
    mode: tokio_postgres::config::SslMode,
    tried: &Arc<AtomicBool>,
) -> Result<(Client, Driver), ConnectError> {
    let client_config = client_config(&target.tls).map_err(|e| ConnectError {
        message: format!("could not connect to {}: {}", target.display, e.message),
        source: None,
    })?;
    let tls = RustlsMake {
        config: Arc::new(client_config),
        tried: Arc::clone(tried),
        policy: target.tls.clone(),
    };
    let mut config = target.config.clone();
    config.ssl_mode(mode);
    match config.connect(tls).await {
        Ok((client, connection)) => Ok((client, tokio::spawn(connection))),
        Err(e) => Err(failed(target, target.tls.mode, e)),
    }
}

fn failed(target: &Target, mode: SslMode, e: tokio_postgres::Error) -> ConnectError {
    let mut message = format!("could not connect to {}: {}", target.display, chain(&e));
    if message.ends_with("password missing") {
        message.push_str(
            " (the server asks for a password: give password=, PGPASSWORD or a line of the \
             password file)",
        );
    }
    if let Some(db) = e.as_db_error() {
        if mode == SslMode::Disable && db.message().contains("no encryption") {
            message.push_str(
                " (the server accepts this connection only over TLS: use sslmode=require or \
                 stronger)",
            );
        }
    }
    for note in &target.notes {
        message.push_str(&format!("; note: {note}"));
    }
    ConnectError {
        message,
        source: Some(e),
    }
}

/// An error and its sources, each said once (tokio-postgres says only "db error" itself).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = inner.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// TLS

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots for `policy`, `None` when the mode verifies nothing and none are available.
fn load_roots(policy: &TlsPolicy) -> Result<Option<(RootCertStore, String)>, ConnectError> {
    let verifying = matches!(policy.mode, SslMode::VerifyCa | SslMode::VerifyFull);
    let file = match &policy.roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ConnectError::config(format!(
                    "sslrootcert=system: no trusted root certificates found on this system{}",
                    found
                        .errors
                        .first()
                        .map_or_else(String::new, |e| format!(" ({e})"))
                )));
            }
            return Ok(Some((store, "the system's trusted roots".to_owned())));
        }
        Roots::File(file) => file.clone(),
        Roots::Default(Some(file)) if file.exists() => file.clone(),
        Roots::Default(default) => {
            if verifying {
                let shown = default.as_ref().map_or_else(
                    || "~/.postgresql/root.crt".into(),
                    |f| f.display().to_string(),
                );
                return Err(ConnectError::config(format!(
                    "sslmode={}: root certificate file \"{shown}\" does not exist; either \
                     provide the file (sslrootcert=), use the system's trusted roots with \
                     sslrootcert=system, or change sslmode to disable server certificate \
                     verification",
                    policy.mode.name()
                )));
            }
            return Ok(None);
        }
    };
    let certs = CertificateDer::pem_file_iter(&file)
        .map_err(|e| {
            ConnectError::config(format!(
                "could not read root certificate file \"{}\": {e}",
                file.display()
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConnectError::config(format!(
                "could not read root certificate file \"{}\": {e}",
                file.display()
            ))
        })?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ConnectError::config(format!(
            "root certificate file \"{}\" holds no usable certificate",
            file.display()
        )));
    }
    Ok(Some((store, format!("\"{}\"", file.display()))))
}

fn client_config(policy: &TlsPolicy) -> Result<ClientConfig, ConnectError> {
    let provider = provider();
    let algs = provider.signature_verification_algorithms;
    let roots = load_roots(policy)?;
    let verifier = Arc::new(Verifier {
        roots: roots.map(|(store, _)| Arc::new(store)),
        check_name: policy.mode == SslMode::VerifyFull,
        algs,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"postgresql".to_vec()]; // as libpq 17 (required with direct TLS)
    config.enable_sni = policy.sni;
    Ok(config)
}

/// libpq's checks: the chain if roots are known (every mode), the name only for verify-full.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            // `require` (or weaker) without roots: encryption only, as libpq.
            return Ok(ServerCertVerified::assertion());
        };
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Clone)]
struct RustlsMake {
    config: Arc<ClientConfig>,
    policy: TlsPolicy,
    /// Set once a TLS handshake starts (the server accepted TLS): `prefer` then retries plain.
    tried: Arc<AtomicBool>,
}

impl MakeTlsConnect<Socket> for RustlsMake {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, io::Error> {
        Ok(RustlsConnect {
            make: self.clone(),
            host: domain.to_owned(),
        })
    }
}

struct RustlsConnect {
    make: RustlsMake,
    host: String,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream, io::Error>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            self.make.tried.store(true, Ordering::SeqCst);
            let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("\"{}\" is not a valid host name for TLS", self.host),
                )
            })?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.make.config));
            match connector.connect(name, stream).await {
                Ok(tls) => Ok(RustlsStream(Box::new(tls))),
                Err(e) => Err(tls_error(e, &self.host, &self.make.policy)),
            }
        })
    }
}

/// A handshake error with what it means for the user.
fn tls_error(e: io::Error, host: &str, policy: &TlsPolicy) -> io::Error {
    use rustls::CertificateError as C;
    let mode = policy.mode.name();
    let roots = match &policy.roots {
        Roots::System => "the system's trusted roots".to_owned(),
        Roots::File(f) | Roots::Default(Some(f)) => format!("\"{}\"", f.display()),
        Roots::Default(None) => "the root certificates".to_owned(),
    };
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let meaning = match inner {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer)) => format!(
            "the server's certificate is not signed by a certificate authority in {roots} \
             (sslmode={mode})"
        ),
        Some(rustls::Error::InvalidCertificate(C::NotValidForName))
        | Some(rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. })) => format!(
            "the server's certificate is not valid for the host name \"{host}\" \
             (sslmode=verify-full checks it; verify-ca would not)"
        ),
        Some(rustls::Error::InvalidCertificate(C::Expired))
        | Some(rustls::Error::InvalidCertificate(C::ExpiredContext { .. })) => {
            "the server's certificate has expired".to_owned()
        }
        Some(rustls::Error::InvalidCertificate(other)) => {
            format!("the server's certificate was refused ({other:?}) (sslmode={mode})")
        }
        _ => return io::Error::new(e.kind(), format!("TLS with \"{host}\": {e}")),
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS with \"{host}\": {meaning}"),
    )
}

/// A TLS session on a socket, with the channel binding SCRAM-SHA-256-PLUS needs.
struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| tls_server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the certificate's hash with its signature's hash
/// function, SHA-256 for MD5 and SHA-1, `None` when that is not one hash (Ed25519, RSA-PSS):
/// then SCRAM goes without channel binding, as libpq.
fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    enum Hash {
        Sha256,
        Sha384,
        Sha512,
    }
    let (certificate, _) = der(cert, 0x30)?;
    let (_tbs, rest) = der(certificate, 0x30)?;
    let (algorithm, _) = der(rest, 0x30)?;
    let (oid, _) = der(algorithm, 0x06)?;
    let hash = match oid {
        // md5, sha1, sha256, sha384, sha512 WithRSAEncryption
        [rsa @ .., 4 | 5 | 11] if rsa == RSA => Hash::Sha256,
        [rsa @ .., 12] if rsa == RSA => Hash::Sha384,
        [rsa @ .., 13] if rsa == RSA => Hash::Sha512,
        _ if oid == ECDSA_SHA1 => Hash::Sha256,
        [ec @ .., 2] if ec == ECDSA_SHA2 => Hash::Sha256,
        [ec @ .., 3] if ec == ECDSA_SHA2 => Hash::Sha384,
        [ec @ .., 4] if ec == ECDSA_SHA2 => Hash::Sha512,
        _ => return None,
    };
    Some(match hash {
        Hash::Sha256 => sha2::Sha256::digest(cert).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(cert).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(cert).to_vec(),
    })
}

/// One DER element with tag `tag` at the start of `input`: its contents and what follows.
fn der(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, input) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, input) = input.split_first()?;
    let (len, input) = if first < 0x80 {
        (usize::from(first), input)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, input) = input.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, input)
    };
    input.split_at_checked(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    /// An environment with only `vars` (and `HOME` pointing nowhere useful unless given).
    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.entry("HOME".into())
            .or_insert_with(|| "/nonexistent-lockmacro-home".into());
        move |key| map.get(key).cloned()
    }

    fn resolve_with(url: Option<&str>, vars: &[(&str, &str)]) -> Result<Target, ConnectError> {
        resolve(url, &env_of(vars))
    }

    fn hosts(target: &Target) -> Vec<String> {
        target
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                Host::Unix(p) => format!("unix:{}", p.display()),
            })
            .collect()
    }

    fn password(target: &Target) -> Option<String> {
        target
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// A fresh directory under the temporary directory, removed by the caller's `Drop`.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "lockmacro-pg-connect-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).expect("create a temporary directory");
            TempDir(dir)
        }

        fn file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).expect("write a temporary file");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .expect("chmod a temporary file");
            }
            #[cfg(not(unix))]
            let _ = mode;
            path
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("a UTF-8 temporary path")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    // --- parsing ------------------------------------------------------------------------

    #[test]
    fn a_full_uri() {
        let t = resolve_with(
            Some(
                "postgresql://al%40ice:p%40ss@db.example.com:6543/my%20db?sslmode=verify-full\
                 &sslrootcert=/etc/ca.pem&application_name=app&connect_timeout=7",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(hosts(&t), ["db.example.com"]);
        assert_eq!(t.config.get_ports(), [6543]);
        assert_eq!(t.config.get_user(), Some("al@ice"));
        assert_eq!(password(&t).as_deref(), Some("p@ss"));
        assert_eq!(t.config.get_dbname(), Some("my db"));
        assert_eq!(t.config.get_application_name(), Some("app"));
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        assert_eq!(
            t.tls,
            TlsPolicy {
                mode: SslMode::VerifyFull,
                roots: Roots::File("/etc/ca.pem".into()),
                sni: true
            }
        );
        assert_eq!(
            t.display(),
            "postgres://al@ice@db.example.com:6543/my db?sslmode=verify-full"
        );
    }

    #[test]
    fn several_hosts_ipv6_and_default_ports() {
        let t = resolve_with(
            Some("postgres://u@a:5433,b,[::1]:5435/d?keepalives_count=4"),
            &[],
        )
        .unwrap();
        assert_eq!(hosts(&t), ["a", "b", "::1"]);
        assert_eq!(t.config.get_ports(), [5433, 5432, 5435]);
        assert_eq!(t.config.get_keepalives_retries(), Some(4));
        assert_eq!(t.display(), "postgres://u@a:5433,b:5432,[::1]:5435/d");
        // PGPORT is the default for the entries without one.
        let t = resolve_with(Some("postgres://u@a:5433,b/d"), &[("PGPORT", "6000")]).unwrap();
        assert_eq!(t.config.get_ports(), [5433, 5432]); // an explicit port list wins whole
    }

    #[cfg(unix)]
    #[test]
    fn unix_sockets_in_uris() {
        for url in [
            "postgres:///test?host=/var/run/postgresql",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/test",
            "postgres://%2Fvar%2Frun%2Fpostgresql:5432/test",
        ] {
            let t = resolve_with(Some(url), &[("PGUSER", "me")]).unwrap();
            assert_eq!(hosts(&t), ["unix:/var/run/postgresql"], "{url}");
            assert_eq!(t.config.get_dbname(), Some("test"));
            assert_eq!(
                t.display(),
                "/var/run/postgresql (socket, port 5432), user me, db test"
            );
        }
    }

    #[test]
    fn key_value_strings() {
        let t = resolve_with(
            Some(
                r"host=/var/run/postgresql dbname = test user='o\'brien' password='a b\\c'
                  sslmode=require port=5433",
            ),
            &[],
        )
        .unwrap();
        #[cfg(unix)]
        assert_eq!(hosts(&t), ["unix:/var/run/postgresql"]);
        assert_eq!(t.config.get_user(), Some("o'brien"));
        assert_eq!(password(&t).as_deref(), Some(r"a b\c"));
        assert_eq!(t.config.get_ports(), [5433]);
        assert_eq!(t.tls.mode, SslMode::Require);
        let t = resolve_with(Some("host=h1,h2 hostaddr=127.0.0.1,::1 user=u"), &[]).unwrap();
        assert_eq!(hosts(&t), ["h1", "h2"]);
        assert_eq!(
            t.config.get_hostaddrs(),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(t.config.get_dbname(), Some("u")); // the database defaults to the user
    }

    #[test]
    fn bad_strings_are_refused_clearly() {
        let cases = [
            ("host=h sslmode=verify", "invalid sslmode value: \"verify\""),
            (
                "host=h frobnicate=1",
                "unknown connection option \"frobnicate\"",
            ),
            (
                "postgres://h/d?sslcert=/c.pem",
                "\"sslcert\": client certificates are not supported",
            ),
            ("host=h user", "missing \"=\" after \"user\""),
            ("host='h", "unterminated quoted string"),
            ("postgres://h:99999/d", "invalid port number: \"99999\""),
            ("postgres://h/d?ssl=false", "only true"),
            ("postgres://[::1/d", "missing \"]\""),
            ("host=a,b port=1,2,3 user=u", "2 hosts but 3 port numbers"),
            ("host=h user=u hostaddr=nope", "not an IP address"),
            (
                "host=h user=u target_session_attrs=bogus",
                "invalid connection option",
            ),
            (
                "host=h user=u sslrootcert=system sslmode=require",
                "weak sslmode \"require\" may not be used with sslrootcert=system",
            ),
        ];
        for (url, expected) in cases {
            let err = resolve_with(Some(url), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn ssl_true_and_system_roots() {
        let t = resolve_with(Some("postgres://u@h/d?ssl=true"), &[]).unwrap();
        assert_eq!(t.tls.mode, SslMode::Require);
        let t = resolve_with(Some("postgres://u@h/d?sslrootcert=system"), &[]).unwrap();
        assert_eq!(
            (t.tls.mode, &t.tls.roots),
            (SslMode::VerifyFull, &Roots::System)
        );
        let t = resolve_with(Some("postgres://u@h/d?sslsni=0"), &[]).unwrap();
        assert!(!t.tls.sni);
    }

    // --- the environment ------------------------------------------------------------------

    #[test]
    fn the_environment_alone() {
        let t = resolve_with(
            None,
            &[
                ("PGHOST", "db1,db2"),
                ("PGPORT", "6000"),
                ("PGUSER", "envuser"),
                ("PGDATABASE", "envdb"),
                ("PGPASSWORD", "envpass"),
                ("PGSSLMODE", "verify-ca"),
                ("PGSSLROOTCERT", "/etc/env-ca.pem"),
                ("PGAPPNAME", "envapp"),
                ("HOME", "/home/someone"),
            ],
        )
        .unwrap();
        assert_eq!(hosts(&t), ["db1", "db2"]);
        assert_eq!(t.config.get_ports(), [6000, 6000]);
        assert_eq!(t.config.get_user(), Some("envuser"));
        assert_eq!(t.config.get_dbname(), Some("envdb"));
        assert_eq!(password(&t).as_deref(), Some("envpass"));
        assert_eq!(t.config.get_application_name(), Some("envapp"));
        assert_eq!(t.tls.mode, SslMode::VerifyCa);
        assert_eq!(t.tls.roots, Roots::File("/etc/env-ca.pem".into()));
    }

    #[test]
    fn the_string_overrides_the_environment_which_overrides_defaults() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpass"),
            ("PGSSLMODE", "disable"),
            ("HOME", "/home/someone"),
        ];
        let t = resolve_with(
            Some("postgres://urluser:urlpass@urlhost/urldb?sslmode=require"),
            &env,
        )
        .unwrap();
        assert_eq!(hosts(&t), ["urlhost"]);
        assert_eq!(t.config.get_ports(), [6000]); // not in the URL: PGPORT
        assert_eq!(t.config.get_user(), Some("urluser"));
        assert_eq!(t.config.get_dbname(), Some("urldb"));
        assert_eq!(password(&t).as_deref(), Some("urlpass"));
        assert_eq!(t.tls.mode, SslMode::Require);
        assert_eq!(
            t.tls.roots,
            Roots::Default(Some("/home/someone/.postgresql/root.crt".into()))
        );
        // Not in the string: from the environment.
        let t = resolve_with(Some("host=urlhost"), &env).unwrap();
        assert_eq!(t.config.get_user(), Some("envuser"));
        assert_eq!(t.config.get_dbname(), Some("envdb"));
        assert_eq!(t.tls.mode, SslMode::Disable);
        // An explicit empty value stops the environment and means the default.
        let t = resolve_with(Some("host=urlhost sslmode='' port=''"), &env).unwrap();
        assert_eq!(t.tls.mode, SslMode::Prefer);
        assert_eq!(t.config.get_ports(), [5432]);
    }

    #[cfg(unix)]
    #[test]
    fn defaults_are_the_os_user_and_a_local_server() {
        let t = resolve_with(None, &[]).unwrap();
        let me = passwd_entry().map(|(name, _)| name).unwrap();
        assert_eq!(t.config.get_user(), Some(me.as_str()));
        assert_eq!(t.config.get_dbname(), Some(me.as_str()));
        assert_eq!(t.config.get_ports(), [5432]);
        let host = &hosts(&t)[0];
        assert!(
            host == "localhost" || SOCKET_DIRS.iter().any(|d| host == &format!("unix:{d}")),
            "{host}"
        );
        assert_eq!(t.tls.mode, SslMode::Prefer);
    }

    // --- the password file --------------------------------------------------------------

    #[test]
    fn password_file_lines() {
        let line = |l: &str| pgpass_line(l);
        assert_eq!(line("# a:b:c:d:e"), None);
        assert_eq!(line(""), None);
        assert_eq!(line("a:b:c:d"), None);
        let ([h, p, d, u], pw) = line(r"*:5432:d\:b:u\\x:pa\:ss:ignored").unwrap();
        assert_eq!(h, Field::Any);
        assert_eq!(p, Field::Exactly("5432".into()));
        assert_eq!(d, Field::Exactly("d:b".into()));
        assert_eq!(u, Field::Exactly(r"u\x".into()));
        assert_eq!(pw, "pa:ss");
        // `\*` is a literal star.
        let ([h, ..], _) = line(r"\*:*:*:*:pw").unwrap();
        assert_eq!(h, Field::Exactly("*".into()));
    }

    #[cfg(unix)]
    #[test]
    fn password_file_matching() {
        let dir = TempDir::new();
        let file = dir.file(
            "pgpass",
            "# comment\n\
             other:*:*:*:wrong-host\n\
             db.example.com:5433:*:*:wrong-port\n\
             db.example.com:*:app:alice:right\r\n\
             *:*:*:alice:fallback\n\
             localhost:5432:test:bob:socket\n\
             /srv/pg:5432:test:bob:custom-socket\n",
            0o600,
        );
        let file = file.to_str().unwrap();
        let pw = |url: &str, extra: &[(&str, &str)]| {
            let mut vars = vec![("PGPASSFILE", file)];
            vars.extend_from_slice(extra);
            password(&resolve_with(Some(url), &vars).unwrap())
        };
        assert_eq!(
            pw("postgres://alice@db.example.com/app", &[]).as_deref(),
            Some("right")
        );
        assert_eq!(
            pw("postgres://alice@elsewhere/app", &[]).as_deref(),
            Some("fallback")
        );
        assert_eq!(pw("postgres://carol@elsewhere/app", &[]), None);
        // A default socket directory matches `localhost`; another one matches its path.
        assert_eq!(
            pw("host=/var/run/postgresql user=bob dbname=test", &[]).as_deref(),
            Some("socket")
        );
        assert_eq!(
            pw("host=/srv/pg user=bob dbname=test", &[]).as_deref(),
            Some("custom-socket")
        );
        // A password given anywhere wins; the file is not read.
        assert_eq!(
            pw("postgres://alice:given@db.example.com/app", &[]).as_deref(),
            Some("given")
        );
        assert_eq!(
            pw(
                "postgres://alice@db.example.com/app",
                &[("PGPASSWORD", "env")]
            )
            .as_deref(),
            Some("env")
        );
        // passfile= beats PGPASSFILE, which beats ~/.pgpass.
        let home = TempDir::new();
        home.file(".pgpass", "*:*:*:*:from-home\n", 0o600);
        let t = resolve_with(Some("postgres://u@h/d"), &[("HOME", home.path())]).unwrap();
        assert_eq!(password(&t).as_deref(), Some("from-home"));
        let t = resolve_with(
            Some(&format!("postgres://alice@h/d?passfile={file}")),
            &[("HOME", home.path())],
        )
        .unwrap();
        assert_eq!(password(&t).as_deref(), Some("fallback"));
    }

    #[cfg(unix)]
    #[test]
    fn a_password_file_open_to_others_is_ignored_with_a_note() {
        let dir = TempDir::new();
        for mode in [0o640, 0o604, 0o660, 0o700] {
            let file = dir.file("pgpass", "*:*:*:*:secret\n", mode);
            let t = resolve_with(
                Some("postgres://u@h/d"),
                &[("PGPASSFILE", file.to_str().unwrap())],
            )
            .unwrap();
            if mode == 0o700 {
                // Only the owner's bits: fine (libpq checks group and other only).
                assert_eq!(password(&t).as_deref(), Some("secret"));
                continue;
            }
            assert_eq!(password(&t), None, "mode {mode:o}");
            assert!(
                t.notes()[0].contains("has group or world access")
                    && t.notes()[0].contains("ignored"),
                "{:?}",
                t.notes()
            );
        }
        // A directory is not a password file.
        let t = resolve_with(Some("postgres://u@h/d"), &[("PGPASSFILE", dir.path())]).unwrap();
        assert!(
            t.notes()[0].contains("is not a plain file"),
            "{:?}",
            t.notes()
        );
    }

    // --- descriptions -------------------------------------------------------------------

    #[cfg(unix)]
    #[test]
    fn passwords_never_show() {
        let dir = TempDir::new();
        let file = dir.file("pgpass", "*:*:*:*:pgpass-secret\n", 0o600);
        let file = file.to_str().unwrap();
        for (url, vars) in [
            ("postgres://u:url-secret@h/d", vec![]),
            ("host=h user=u password=kv-secret", vec![]),
            ("host=h user=u", vec![("PGPASSWORD", "env-secret")]),
            ("host=/tmp user=u", vec![("PGPASSFILE", file)]),
            ("host=h user=u", vec![("PGPASSFILE", file)]),
        ] {
            let t = resolve_with(Some(url), &vars).unwrap();
            assert!(password(&t).is_some(), "{url}");
            for shown in [t.display().to_owned(), t.to_string(), format!("{t:?}")] {
                assert!(!shown.contains("secret"), "{url}: {shown}");
            }
        }
        for url in [
            "postgres://u:url-secret@h/d?sslmode=bad",
            "postgres://u:url-secret%zz@h/d",
            "host=h password=url secret",
            "host=h password=url secret=x",
        ] {
            let err = resolve_with(Some(url), &[]).unwrap_err().to_string();
            assert!(!err.contains("secret"), "{url}: {err}");
        }
    }

    #[test]
    fn channel_binding_hash_follows_the_signature_algorithm() {
        // A certificate's outline: SEQUENCE { SEQUENCE (tbs), SEQUENCE { OID }, BIT STRING }.
        let cert = |oid: &[u8]| {
            let mut alg = vec![0x06, oid.len() as u8];
            alg.extend_from_slice(oid);
            let mut body = vec![0x30, 0x01, 0x00, 0x30, alg.len() as u8];
            body.extend_from_slice(&alg);
            body.extend_from_slice(&[0x03, 0x01, 0x00]);
            let mut cert = vec![0x30, 0x81, body.len() as u8]; // long-form length
            cert.extend_from_slice(&body);
            cert
        };
        let ecdsa_sha256 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        let rsa_sha1 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05]);
        let rsa_sha384 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]);
        let ecdsa_sha512 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04]);
        let ed25519 = cert(&[0x2b, 0x65, 0x70]);
        let len = |c: &[u8]| tls_server_end_point(c).map(|h| h.len());
        assert_eq!(
            tls_server_end_point(&ecdsa_sha256),
            Some(sha2::Sha256::digest(&ecdsa_sha256).to_vec())
        );
        assert_eq!(len(&rsa_sha1), Some(32)); // MD5 and SHA-1 use SHA-256
        assert_eq!(len(&rsa_sha384), Some(48));
        assert_eq!(len(&ecdsa_sha512), Some(64));
        assert_eq!(len(&ed25519), None);
        assert_eq!(len(&ecdsa_sha256[..10]), None); // truncated
    }

    // --- against the server (.ci/pg-tls-setup) --------------------------------------------

    /// The directory `.ci/pg-tls-setup` made, if it was run (`LOCKMACRO_TEST_PG_TLS`).
    fn setup() -> Option<PathBuf> {
        match std::env::var_os("LOCKMACRO_TEST_PG_TLS") {
            Some(dir) => Some(dir.into()),
            None if std::env::var_os("CI").is_some() => {
                panic!("LOCKMACRO_TEST_PG_TLS is not set: .ci/run sets it from .ci/pg-tls-setup")
            }
            None => {
                eprintln!(
                    "note: server test skipped: run .ci/pg-tls-setup as root and set \
                     LOCKMACRO_TEST_PG_TLS to the directory it prints"
                );
                None
            }
        }
    }

    const SOCKET_DIR: &str = "/var/run/postgresql";
    const TLS_PASSWORD: &str = "lm-tls-password";

    #[derive(Debug, Clone, PartialEq)]
    struct Session {
        user: String,
        tls: bool,
        socket: bool,
    }

    /// Connects (with `env`, whose `HOME` is an empty directory unless given) and asks the
    /// server who we are and how we came.
    fn session(url: Option<&str>, vars: &[(&str, &str)]) -> Result<Session, String> {
        let home = TempDir::new();
        let mut vars = vars.to_vec();
        if !vars.iter().any(|(k, _)| *k == "HOME") {
            vars.push(("HOME", home.path()));
        }
        let target = resolve(url, &env_of(&vars)).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, _driver) = connect(&target).await.map_err(|e| {
                let message = e.to_string();
                assert!(!message.contains(TLS_PASSWORD), "{message}");
                message
            })?;
            let row = client
                .query_one(
                    "SELECT current_user::text, coalesce((SELECT ssl FROM pg_stat_ssl \
                     WHERE pid = pg_backend_pid()), false), inet_server_addr() IS NULL",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            Ok(Session {
                user: row.get(0),
                tls: row.get(1),
                socket: row.get(2),
            })
        })
    }

    fn tls_session(user: &str) -> Session {
        Session {
            user: user.into(),
            tls: true,
            socket: false,
        }
    }

    fn url(host: &str, mode: &str, root: Option<&Path>) -> String {
        let mut url = format!("postgres://lm_tls:{TLS_PASSWORD}@{host}:5432/test?sslmode={mode}");
        if let Some(root) = root {
            url.push_str(&format!("&sslrootcert={}", root.display()));
        }
        url
    }

    fn assert_err(result: Result<Session, String>, expected: &[&str]) {
        let err = result.expect_err("the connection should have been refused");
        eprintln!("refused as expected: {err}");
        for part in expected {
            assert!(err.contains(part), "expected {part:?} in: {err}");
        }
    }

    #[test]
    fn server_verify_full() {
        let Some(dir) = setup() else { return };
        let ca = dir.join("ca.crt");
        // Right CA, right name (DNS or IP subject alternative name); SCRAM with channel binding.
        for host in ["localhost", "127.0.0.1"] {
            assert_eq!(
                session(Some(&url(host, "verify-full", Some(&ca))), &[]),
                Ok(tls_session("lm_tls")),
                "{host}"
            );
        }
        assert_eq!(
            session(
                Some(&url("localhost", "verify-full", Some(&ca))),
                &[("PGCHANNELBINDING", "require")]
            ),
            Ok(tls_session("lm_tls"))
        );
        // An unrelated CA.
        assert_err(
            session(
                Some(&url(
                    "localhost",
                    "verify-full",
                    Some(&dir.join("other-ca.crt")),
                )),
                &[],
            ),
            &[
                "not signed by a certificate authority in",
                "other-ca.crt",
                "verify-full",
            ],
        );
        // The right server under a name its certificate does not have (reached by hostaddr).
        let wrong_name = |mode: &str| {
            format!(
                "host=wrong-name.invalid hostaddr=127.0.0.1 user=lm_tls dbname=test \
                 password={TLS_PASSWORD} sslmode={mode} sslrootcert={}",
                ca.display()
            )
        };
        assert_err(
            session(Some(&wrong_name("verify-full")), &[]),
            &["not valid for the host name \"wrong-name.invalid\""],
        );
        // verify-ca checks the chain only.
        assert_eq!(
            session(Some(&wrong_name("verify-ca")), &[]),
            Ok(tls_session("lm_tls"))
        );
        assert_err(
            session(
                Some(&url(
                    "localhost",
                    "verify-ca",
                    Some(&dir.join("other-ca.crt")),
                )),
                &[],
            ),
            &["not signed by a certificate authority"],
        );
        // verify-* without any root certificate: libpq's advice.
        assert_err(
            session(Some(&url("localhost", "verify-full", None)), &[]),
            &[
                "could not connect to postgres://lm_tls@localhost:5432/test?sslmode=verify-full: ",
                "root certificate file",
                "does not exist",
                "sslrootcert=system",
            ],
        );
        // The system's roots do not include the test CA.
        assert_err(
            session(
                Some(&format!(
                    "postgres://lm_tls:{TLS_PASSWORD}@localhost/test?sslrootcert=system"
                )),
                &[],
            ),
            &["not signed by a certificate authority in the system's trusted roots"],
        );
    }

    #[test]
    fn server_require_prefer_allow_disable() {
        let Some(dir) = setup() else { return };
        let other = dir.join("other-ca.crt");
        // require: encrypted, nothing verified (no root certificate anywhere).
        assert_eq!(
            session(Some(&url("localhost", "require", None)), &[]),
            Ok(tls_session("lm_tls"))
        );
        // require with a root certificate verifies the chain, as libpq (here: the wrong CA).
        assert_err(
            session(Some(&url("localhost", "require", Some(&other))), &[]),
            &["not signed by a certificate authority"],
        );
        // ~/.postgresql/root.crt counts as a given root certificate.
        let home = TempDir::new();
        std::fs::create_dir(home.0.join(".postgresql")).unwrap();
        std::fs::copy(&other, home.0.join(".postgresql/root.crt")).unwrap();
        assert_err(
            session(
                Some(&url("localhost", "require", None)),
                &[("HOME", home.path())],
            ),
            &[
                "not signed by a certificate authority",
                ".postgresql/root.crt",
            ],
        );
        // disable: refused by the hostssl-only rule, with a clear message.
        assert_err(
            session(Some(&url("127.0.0.1", "disable", None)), &[]),
            &[
                "pg_hba.conf rejects connection",
                "no encryption",
                "only over TLS: use sslmode=require",
            ],
        );
        // prefer (the default): TLS when offered.
        assert_eq!(
            session(
                Some(&format!("postgres://lm_tls:{TLS_PASSWORD}@localhost/test")),
                &[]
            ),
            Ok(tls_session("lm_tls"))
        );
        // prefer whose TLS fails (the wrong root) goes plain, as libpq: a trusted user gets in...
        assert_eq!(
            session(
                Some(&format!(
                    "postgres://postgres@127.0.0.1/test?sslrootcert={}",
                    other.display()
                )),
                &[]
            ),
            Ok(Session {
                user: "postgres".into(),
                tls: false,
                socket: false
            })
        );
        // ...and lm_tls, who needs TLS, is refused both ways, both reasons shown.
        assert_err(
            session(Some(&url("localhost", "prefer", Some(&other))), &[]),
            &[
                "with TLS (",
                "not signed",
                "nor without TLS (",
                "no encryption",
            ],
        );
        // allow: plain first; refused, then TLS.
        assert_eq!(
            session(Some(&url("localhost", "allow", None)), &[]),
            Ok(tls_session("lm_tls"))
        );
        assert_eq!(
            session(
                Some("postgres://postgres@127.0.0.1/test?sslmode=allow"),
                &[]
            ),
            Ok(Session {
                user: "postgres".into(),
                tls: false,
                socket: false
            })
        );
    }

    #[cfg(unix)]
    #[test]
    fn server_unix_socket_peer_authentication() {
        let Some(_) = setup() else { return };
        if !rustix::process::geteuid().is_root() {
            eprintln!("note: peer test skipped: the ident map of .ci/pg-tls-setup maps root");
            return;
        }
        let peer = Session {
            user: "lm_peer".into(),
            tls: false,
            socket: true,
        };
        for url in [
            format!("host={SOCKET_DIR} dbname=test user=lm_peer"),
            format!("postgres:///test?host={SOCKET_DIR}&user=lm_peer"),
            // sslmode is ignored on a socket, as libpq.
            "postgres://lm_peer@%2Fvar%2Frun%2Fpostgresql/test?sslmode=verify-full".to_owned(),
        ] {
            assert_eq!(session(Some(&url), &[]), Ok(peer.clone()), "{url}");
        }
        assert_eq!(
            session(
                None,
                &[
                    ("PGHOST", SOCKET_DIR),
                    ("PGUSER", "lm_peer"),
                    ("PGDATABASE", "test")
                ]
            ),
            Ok(peer.clone())
        );
        // Peer authentication is really checked: root is not mapped to lm_tls.
        assert_err(
            session(
                Some(&format!("host={SOCKET_DIR} dbname=test user=lm_tls")),
                &[],
            ),
            &[
                "Peer authentication failed for user \"lm_tls\"",
                "(socket, port 5432)",
            ],
        );
    }

    #[cfg(unix)]
    #[test]
    fn server_environment_and_password_file() {
        let Some(dir) = setup() else { return };
        let ca = dir.join("ca.crt");
        let files = TempDir::new();
        let pgpass = files.file(
            "pgpass",
            &format!("localhost:5432:test:lm_tls:{TLS_PASSWORD}\n*:*:*:*:wrong\n"),
            0o600,
        );
        // Leaked: the environment closure wants one lifetime, and this is a test.
        let pgpass: &'static str = Box::leak(pgpass.to_str().unwrap().to_owned().into_boxed_str());
        let ca: &'static str = Box::leak(ca.to_str().unwrap().to_owned().into_boxed_str());
        let env = |passfile: &'static str| {
            vec![
                ("PGHOST", "localhost"),
                ("PGPORT", "5432"),
                ("PGUSER", "lm_tls"),
                ("PGDATABASE", "test"),
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", ca),
                ("PGPASSFILE", passfile),
            ]
        };
        assert_eq!(session(None, &env(pgpass)), Ok(tls_session("lm_tls")));
        // ~/.pgpass when PGPASSFILE is not set.
        let home = TempDir::new();
        home.file(".pgpass", &format!("*:*:*:lm_tls:{TLS_PASSWORD}\n"), 0o600);
        let mut vars = env(pgpass);
        vars.retain(|(k, _)| *k != "PGPASSFILE");
        vars.push(("HOME", home.path()));
        assert_eq!(session(None, &vars), Ok(tls_session("lm_tls")));
        // PGPASSWORD beats the file (here, wrongly).
        let mut vars = env(pgpass);
        vars.push(("PGPASSWORD", "not-it"));
        assert_err(
            session(None, &vars),
            &["password authentication failed for user \"lm_tls\""],
        );
        // A URL value beats the environment: another name for the same server, for which the
        // file's first line does not match, and its catch-all line has a wrong password.
        assert_err(
            session(Some("postgres://127.0.0.1"), &env(pgpass)),
            &[
                "postgres://lm_tls@127.0.0.1:5432/test?sslmode=verify-full",
                "password authentication failed",
            ],
        );
        // A password file readable by others is ignored, and the error says why.
        let loose = files.file("loose", &format!("*:*:*:*:{TLS_PASSWORD}\n"), 0o644);
        assert_err(
            session(
                None,
                &env(Box::leak(
                    loose.to_str().unwrap().to_owned().into_boxed_str(),
                )),
            ),
            &[
                "the server asks for a password",
                "has group or world access",
                "ignored",
            ],
        );
    }
}
