//! How to reach Redis, turned into connections: the one place the dispatcher, the worker
//! and the store dial from.
//!
//! Either one fixed address (the Redis URL), or the master a set of Sentinels names. With
//! Sentinel the URL still gives the scheme (`rediss://` with the TLS files), the ACL user
//! and password and the database; only its host and port are replaced by the master's.
//! Every new connection asks the Sentinels again, so after a failover the reconnect that
//! follows the first broken command goes to the promoted replica, without a restart.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisError, Value};

use super::sentinel::{RedisSentinel, Sentinels};
use super::{RedisSetupError, RedisTls, open_client, redacted_url};

/// Why no usable connection could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ConnectError {
    /// Redis (the fixed one, or the master Sentinel named) could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// No Sentinel named a master.
    #[error("{0}")]
    Sentinel(String),
    /// The node a Sentinel named is not (or no longer) a master: the Sentinels have not
    /// caught up with a failover yet.
    #[error("{host}:{port}, named master by Sentinel, is not a master (role {role})")]
    NotMaster {
        /// The node dialled.
        host: String,
        /// Its port.
        port: u16,
        /// The role it reported.
        role: String,
    },
}

/// Where connections go.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The client of the URL: the connection itself without Sentinel, the template (TLS
    /// files, user, password, database) of the master's with it.
    client: Client,
    sentinels: Option<Sentinels>,
    /// The URL with its password hidden, or the Sentinels, for logs.
    description: String,
}

impl Endpoint {
    /// The endpoint for `url` (and its TLS files), or for the master `sentinel` names with
    /// `url`'s scheme, credentials and database. Nothing is dialled.
    pub(crate) fn new(
        url: &str,
        tls: &RedisTls,
        sentinel: Option<&RedisSentinel>,
    ) -> Result<Self, RedisSetupError> {
        let client = open_client(url, tls)?;
        let sentinels = sentinel.map(Sentinels::new).transpose()?;
        let description = match &sentinels {
            Some(sentinels) => format!("{} ({})", sentinels.describe(), redacted_url(url)),
            None => redacted_url(url),
        };
        if let Some(sentinels) = &sentinels
            && matches!(client.get_connection_info().addr(), ConnectionAddr::Unix(_))
        {
            return Err(RedisSetupError::InvalidConfig(format!(
                "{}: a Unix socket URL cannot be combined with Sentinel",
                sentinels.describe()
            )));
        }
        Ok(Endpoint {
            client,
            sentinels,
            description,
        })
    }

    /// The URL (password hidden) or the Sentinels, for logs.
    pub(crate) fn describe(&self) -> &str {
        &self.description
    }

    /// A new multiplexed connection: to the URL's Redis, or to the master the Sentinels
    /// name now, checked to be one.
    pub(crate) async fn connect(
        &self,
        config: &AsyncConnectionConfig,
        timeout: Duration,
    ) -> Result<MultiplexedConnection, ConnectError> {
        let Some(sentinels) = &self.sentinels else {
            return Ok(self
                .client
                .get_multiplexed_async_connection_with_config(config)
                .await?);
        };
        let (host, port) = sentinels
            .master_address(timeout)
            .await
            .map_err(ConnectError::Sentinel)?;
        let client = self.client_at(&host, port)?;
        let mut connection = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        let role = ::redis::cmd("ROLE")
            .query_async::<Vec<Value>>(&mut connection)
            .await?;
        check_master(&host, port, &role)?;
        Ok(connection)
    }

    /// A new synchronous connection (the store's), every command bounded by `timeout`.
    pub(crate) fn connect_blocking(
        &self,
        timeout: Duration,
    ) -> Result<::redis::Connection, ConnectError> {
        let bounded = |client: &Client| -> Result<::redis::Connection, RedisError> {
            let connection = client.get_connection_with_timeout(timeout)?;
            connection.set_read_timeout(Some(timeout))?;
            connection.set_write_timeout(Some(timeout))?;
            Ok(connection)
        };
        let Some(sentinels) = &self.sentinels else {
            return Ok(bounded(&self.client)?);
        };
        let (host, port) = sentinels
            .master_address_blocking(timeout)
            .map_err(ConnectError::Sentinel)?;
        let mut connection = bounded(&self.client_at(&host, port)?)?;
        let role = ::redis::cmd("ROLE").query::<Vec<Value>>(&mut connection)?;
        check_master(&host, port, &role)?;
        Ok(connection)
    }

    /// The URL's client with its host and port replaced by `host:port`, keeping TLS (its
    /// certificates, and the host name check against `host`), user, password and database.
    fn client_at(&self, host: &str, port: u16) -> Result<Client, RedisError> {
        let info = self.client.get_connection_info().clone();
        let addr = match info.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        Client::open(info.set_addr(addr))
    }
}

/// Refuses a node whose `ROLE` reply does not start with `master`.
fn check_master(host: &str, port: u16, role: &[Value]) -> Result<(), ConnectError> {
    let name = match role.first() {
        Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Value::SimpleString(text)) => text.clone(),
        other => format!("{other:?}"),
    };
    if name == "master" {
        Ok(())
    } else {
        Err(ConnectError::NotMaster {
            host: host.to_owned(),
            port,
            role: name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_master_keeps_the_urls_credentials_and_database() {
        let sentinel = RedisSentinel::new(["127.0.0.1:26379"], "circle");
        let endpoint = Endpoint::new(
            "redis://user:pw-secret@ignored:1/3",
            &RedisTls::default(),
            Some(&sentinel),
        )
        .unwrap();
        assert!(!endpoint.describe().contains("pw-secret"));
        assert!(endpoint.describe().contains("circle"));
        let master = endpoint.client_at("10.1.2.3", 6390).unwrap();
        let info = master.get_connection_info();
        assert_eq!(
            info.addr(),
            &ConnectionAddr::Tcp("10.1.2.3".to_owned(), 6390)
        );
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().username(), Some("user"));
        let tls = Endpoint::new("rediss://ignored", &RedisTls::default(), Some(&sentinel))
            .unwrap()
            .client_at("10.1.2.3", 6390)
            .unwrap();
        assert!(matches!(
            tls.get_connection_info().addr(),
            ConnectionAddr::TcpTls { host, port: 6390, insecure: false, .. } if host == "10.1.2.3"
        ));
        assert!(check_master("h", 1, &[Value::BulkString(b"master".to_vec())]).is_ok());
        assert!(matches!(
            check_master("h", 1, &[Value::BulkString(b"slave".to_vec())]),
            Err(ConnectError::NotMaster { .. })
        ));
    }
}
