//! Redis under Sentinel: which Sentinels to ask, and asking them where the master is.
//!
//! The master's address is asked for (`SENTINEL get-master-addr-by-name`) on every new
//! connection, never cached: a connection breaks when the master dies, and the next one
//! goes wherever Sentinel says the master now is. The Sentinels are asked in the order
//! given; the first that names a master wins. Its answer is then checked on the master
//! itself (`ROLE`, see `endpoint`), so a Sentinel still naming the old master (before the
//! promotion, or cut off from the others) costs a failed connection, not writes sent to a
//! replica.
//!
//! The Sentinels are reached over plain TCP without a password; the master connection
//! keeps the TLS and the ACL user and password of the Redis URL.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError};

/// How to find the master when Redis runs under Sentinel: the Sentinels to ask and the
/// name they monitor the master under (`sentinel monitor NAME …` in their configuration).
///
/// ```
/// use circle_executor::redis::RedisSentinel;
///
/// let sentinel = RedisSentinel::new(["10.0.0.1:26379", "10.0.0.2:26379"], "circle");
/// assert!(sentinel.check().is_ok());
/// assert!(RedisSentinel::new(["10.0.0.1"], "circle").check().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSentinel {
    /// `HOST:PORT` of each Sentinel (`[v6]:PORT` for an IPv6 address). Asked in this
    /// order; give all of them, so that any one being down does not matter.
    pub sentinels: Vec<String>,
    /// The master's name in the Sentinels' configuration.
    pub master_name: String,
}

/// Why a Sentinel setting is refused, before anything is dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SentinelConfigError {
    /// A master name was given but no Sentinel to ask for it.
    #[error("a Redis master name needs at least one Sentinel (HOST:PORT) to ask for it")]
    NoSentinels,
    /// Sentinels were given but not the name of the master to ask them for.
    #[error("Redis Sentinels need the master's name, as in their `sentinel monitor NAME …` line")]
    NoMasterName,
    /// The master name is empty or holds spaces.
    #[error("invalid Redis master name {0:?}: expected a name without spaces")]
    BadMasterName(String),
    /// A Sentinel address is not `HOST:PORT`.
    #[error("invalid Sentinel address {0:?}: expected HOST:PORT, [IPv6]:PORT for IPv6")]
    BadAddress(String),
}

impl RedisSentinel {
    /// The Redis URL used with Sentinel when none is given: plain TCP, no password,
    /// database 0. Its host is a placeholder that is never dialled.
    pub const DEFAULT_URL: &'static str = "redis://sentinel-master";

    /// The Sentinels at `sentinels` (`HOST:PORT` each), monitoring the master `master_name`.
    pub fn new<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        master_name: impl Into<String>,
    ) -> Self {
        RedisSentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master_name: master_name.into(),
        }
    }

    /// Builds the setting from the two command-line options, each possibly missing:
    /// `None` when neither is given, an error when only one of them is.
    ///
    /// # Errors
    ///
    /// [`SentinelConfigError::NoSentinels`] or [`SentinelConfigError::NoMasterName`] for a
    /// half-given setting, and whatever [`RedisSentinel::check`] refuses.
    pub fn from_parts(
        sentinels: &[String],
        master_name: Option<&str>,
    ) -> Result<Option<Self>, SentinelConfigError> {
        match (sentinels.is_empty(), master_name) {
            (true, None) => Ok(None),
            (true, Some(_)) => Err(SentinelConfigError::NoSentinels),
            (false, None) => Err(SentinelConfigError::NoMasterName),
            (false, Some(name)) => {
                let sentinel = RedisSentinel::new(sentinels.iter().cloned(), name);
                sentinel.check()?;
                Ok(Some(sentinel))
            }
        }
    }

    /// Checks the names and addresses without dialling anything.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn check(&self) -> Result<(), SentinelConfigError> {
        if self.sentinels.is_empty() {
            return Err(SentinelConfigError::NoSentinels);
        }
        if self.master_name.is_empty() || self.master_name.chars().any(char::is_whitespace) {
            return Err(SentinelConfigError::BadMasterName(self.master_name.clone()));
        }
        for address in &self.sentinels {
            split_address(address)?;
        }
        Ok(())
    }
}

/// `HOST:PORT` (or `[v6]:PORT`) into its host and port.
pub(crate) fn split_address(address: &str) -> Result<(String, u16), SentinelConfigError> {
    let bad = || SentinelConfigError::BadAddress(address.to_owned());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// The Sentinels, ready to be asked.
#[derive(Debug)]
pub(crate) struct Sentinels {
    /// Each Sentinel's address as given, and a client for it.
    nodes: Vec<(String, Client)>,
    master_name: String,
}

impl Sentinels {
    pub(crate) fn new(setting: &RedisSentinel) -> Result<Self, SentinelConfigError> {
        setting.check()?;
        let nodes = setting
            .sentinels
            .iter()
            .map(|address| {
                let (host, port) = split_address(address)?;
                let client = Client::open(::redis::ConnectionAddr::Tcp(host, port))
                    .map_err(|_| SentinelConfigError::BadAddress(address.clone()))?;
                Ok((address.clone(), client))
            })
            .collect::<Result<_, SentinelConfigError>>()?;
        Ok(Sentinels {
            nodes,
            master_name: setting.master_name.clone(),
        })
    }

    /// The addresses of the Sentinels, for logs.
    pub(crate) fn describe(&self) -> String {
        let addresses: Vec<&str> = self.nodes.iter().map(|(a, _)| a.as_str()).collect();
        format!("sentinel {} via {}", self.master_name, addresses.join(","))
    }

    /// Where the Sentinels say the master is, asking each in turn until one knows, every
    /// step bounded by `timeout`.
    ///
    /// # Errors
    ///
    /// What each Sentinel answered or why it could not be asked, in one message.
    pub(crate) async fn master_address(&self, timeout: Duration) -> Result<(String, u16), String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut failures = Vec::new();
        for (address, client) in &self.nodes {
            let asked = async {
                let mut connection: MultiplexedConnection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.query()
                    .query_async::<Option<(String, String)>>(&mut connection)
                    .await
            }
            .await;
            match self.judge(asked) {
                Ok(master) => return Ok(master),
                Err(reason) => failures.push(format!("{address}: {reason}")),
            }
        }
        Err(format!(
            "no Sentinel named the master {:?} ({})",
            self.master_name,
            failures.join("; ")
        ))
    }

    /// [`Sentinels::master_address`] for the synchronous connections of the store.
    pub(crate) fn master_address_blocking(
        &self,
        timeout: Duration,
    ) -> Result<(String, u16), String> {
        let mut failures = Vec::new();
        for (address, client) in &self.nodes {
            let asked = (|| {
                let mut connection = client.get_connection_with_timeout(timeout)?;
                connection.set_read_timeout(Some(timeout))?;
                connection.set_write_timeout(Some(timeout))?;
                self.query()
                    .query::<Option<(String, String)>>(&mut connection)
            })();
            match self.judge(asked) {
                Ok(master) => return Ok(master),
                Err(reason) => failures.push(format!("{address}: {reason}")),
            }
        }
        Err(format!(
            "no Sentinel named the master {:?} ({})",
            self.master_name,
            failures.join("; ")
        ))
    }

    fn query(&self) -> ::redis::Cmd {
        let mut command = ::redis::cmd("SENTINEL");
        command
            .arg("get-master-addr-by-name")
            .arg(&self.master_name);
        command
    }

    /// One Sentinel's answer to `get-master-addr-by-name` as an address, or why not.
    fn judge(
        &self,
        asked: Result<Option<(String, String)>, RedisError>,
    ) -> Result<(String, u16), String> {
        match asked {
            Ok(Some((host, port))) => match port.parse::<u16>() {
                Ok(port) => Ok((host, port)),
                Err(_) => Err(format!("answered the port {port:?}")),
            },
            Ok(None) => Err("does not monitor a master of that name".to_owned()),
            Err(err) => Err(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_checked() {
        assert_eq!(
            split_address("127.0.0.1:26379"),
            Ok(("127.0.0.1".to_owned(), 26379))
        );
        assert_eq!(split_address("[::1]:26379"), Ok(("::1".to_owned(), 26379)));
        for bad in [
            "127.0.0.1",
            "::1:26379",
            "host:0",
            ":1",
            "host:port",
            "[::1:2",
        ] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
        assert_eq!(RedisSentinel::from_parts(&[], None), Ok(None));
        assert_eq!(
            RedisSentinel::from_parts(&[], Some("m")),
            Err(SentinelConfigError::NoSentinels)
        );
        let one = ["h:1".to_owned()];
        assert_eq!(
            RedisSentinel::from_parts(&one, None),
            Err(SentinelConfigError::NoMasterName)
        );
        assert_eq!(
            RedisSentinel::from_parts(&one, Some("a b")),
            Err(SentinelConfigError::BadMasterName("a b".to_owned()))
        );
        assert!(RedisSentinel::from_parts(&one, Some("m")).is_ok_and(|s| s.is_some()));
    }
}
