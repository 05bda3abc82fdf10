//! One Redis, or a Redis Cluster, behind one connection type.
//!
//! Every key of one request carries the `{tenant}` hash tag, so each script
//! touches one slot and runs on one master: the cluster client routes each
//! `EVALSHA` by its first key, and nothing else about the limiter changes.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

/// Where the counters live, as `redis_url` names it:
/// - `redis://host:port` (or `rediss://`, `unix://`): one Redis;
/// - `redis+cluster://host:port,host:port`: a cluster, seeded by those nodes;
/// - several URLs separated by commas: a cluster seeded by them.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    Single(ConnectionInfo),
    Cluster(Vec<ConnectionInfo>),
}

/// Bounds the connection applies on its own: generous backstops, since the
/// caller bounds each call (and decides when Redis is down) itself.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionBounds {
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

impl RedisTarget {
    /// Parses `redis_url`. Errors never quote the URL (it may hold a
    /// password).
    pub fn parse(url: &str) -> RedisResult<RedisTarget> {
        if let Some(nodes) = url.strip_prefix("redis+cluster://") {
            // Credentials written once, on the first node, apply to all.
            let (credentials, nodes) = match nodes.rsplit_once('@') {
                Some((credentials, nodes)) => (format!("{credentials}@"), nodes),
                None => (String::new(), nodes),
            };
            let nodes = nodes
                .split(',')
                .map(|node| format!("redis://{credentials}{}", node.trim()).into_connection_info())
                .collect::<RedisResult<Vec<_>>>()?;
            return Ok(RedisTarget::Cluster(nodes));
        }
        let mut nodes = url
            .split(',')
            .map(|node| node.trim().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()?;
        if nodes.len() == 1 {
            Ok(RedisTarget::Single(nodes.remove(0)))
        } else {
            Ok(RedisTarget::Cluster(nodes))
        }
    }

    /// What to show in logs: the nodes' addresses, never credentials.
    pub fn addresses(&self) -> String {
        let nodes = match self {
            RedisTarget::Single(node) => std::slice::from_ref(node),
            RedisTarget::Cluster(nodes) => nodes.as_slice(),
        };
        nodes
            .iter()
            .map(|node| node.addr().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// Opens the connection. Both kinds reconnect on their own afterwards.
    pub async fn connect(&self, bounds: ConnectionBounds) -> RedisResult<RedisConnection> {
        match self {
            RedisTarget::Single(node) => {
                let client = redis::Client::open(node.clone())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(bounds.connect_timeout))
                    .set_response_timeout(Some(bounds.response_timeout))
                    // Reconnect attempts are cheap and the caller probes
                    // while Redis is down; long backoffs would only delay
                    // recovery.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let manager = ConnectionManager::new_with_config(client, config).await?;
                Ok(RedisConnection::Single(manager))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(bounds.connect_timeout)
                    .response_timeout(bounds.response_timeout)
                    // A moved slot or a failover is retried inside the
                    // client; past a few attempts the caller's policy rules.
                    .retries(2)
                    .build()?;
                Ok(RedisConnection::Cluster(
                    client.get_async_connection().await?,
                ))
            }
        }
    }
}

/// A multiplexed connection to one Redis or to a cluster. Cheap to clone:
/// clones share the connection and pipeline concurrent calls on it.
#[derive(Clone)]
pub enum RedisConnection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        RedisConnection::Single(connection)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        RedisConnection::Cluster(connection)
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
            RedisConnection::Cluster(connection) => {
                connection.req_packed_commands(cmd, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn one_url_is_one_redis() {
        let target = RedisTarget::parse("redis://127.0.0.1:6379").unwrap();
        assert!(!target.is_cluster());
        assert_eq!(target.addresses(), "127.0.0.1:6379");
    }

    #[test]
    fn a_cluster_scheme_or_a_list_is_a_cluster() {
        let target =
            RedisTarget::parse("redis+cluster://user:secret@10.0.0.1:7000,10.0.0.2:7001").unwrap();
        assert!(target.is_cluster());
        assert_eq!(target.addresses(), "10.0.0.1:7000,10.0.0.2:7001");
        let RedisTarget::Cluster(nodes) = &target else {
            unreachable!()
        };
        assert!(nodes.iter().all(|node| {
            node.redis_settings().password() == Some("secret")
                && node.redis_settings().username() == Some("user")
        }));
        assert!(!format!("{target:?}").contains("secret"));

        let list = RedisTarget::parse("redis://10.0.0.1:7000, redis://10.0.0.2:7001").unwrap();
        assert!(list.is_cluster());
    }

    #[test]
    fn a_bad_node_is_an_error() {
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("redis://a:1,http://b").is_err());
    }
}
