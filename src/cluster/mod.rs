//! Replicas: several Bridge processes over the same datasets act as one service.
//!
//! Nothing here is a cluster protocol of Bridge's own. Membership is a static `--peers` list or
//! a DNS name (`--peers-dns`, a Kubernetes headless Service) resolved again every
//! `--peers-refresh`; a member is alive while it answers the standard gRPC health check. Work is
//! placed by rendezvous hashing ([`assign`]), and clients reach the replicas through Flight's own
//! distribution: a FlightInfo with several endpoints, each with ranked locations.
//!
//! Correctness never depends on the members agreeing: any replica answers any ticket, and a
//! split ticket names the files it covers, so a replica that sees other files refuses it rather
//! than answer differently (see `queries::split`).

pub mod assign;
mod probe;

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{
    catalog::Catalog,
    config::Config,
    error::{Error, Result},
};

/// Where the member list comes from.
#[derive(Debug, Clone)]
enum Source {
    /// No replicas: this process alone.
    Alone,
    Static(Vec<String>),
    /// NAME:PORT, resolved again every refresh.
    Dns(String),
}

/// One replica as this one last saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Member {
    /// HOST:PORT of its Flight port, as clients reach it.
    pub address: String,
    /// This process.
    pub me: bool,
    /// Answered its last health check (this process always is).
    pub alive: bool,
    pub checked_at: Option<DateTime<Utc>>,
    /// Why the last check failed.
    pub error: Option<String>,
}

/// The replicas and how to reach them.
#[derive(Debug)]
pub struct Cluster {
    source: Source,
    advertise: Option<String>,
    scheme: &'static str,
    refresh: Duration,
    max_endpoints: usize,
    members: ArcSwap<Vec<Member>>,
}

impl Cluster {
    /// The membership `config` describes; nothing is resolved or probed until [`Cluster::spawn`].
    pub fn from_config(config: &Config, tls: bool) -> Result<Arc<Cluster>> {
        let peers: Vec<String> = config.peers.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        let source = match (&config.peers_dns, peers.is_empty()) {
            (Some(name), _) => Source::Dns(check_address("--peers-dns", name)?),
            (None, false) => Source::Static(peers.iter().map(|p| check_address("--peers", p)).collect::<Result<_>>()?),
            (None, true) => Source::Alone,
        };
        let advertise = config.advertise.as_deref().map(|a| check_address("--advertise", a)).transpose()?;
        if advertise.is_none() && !matches!(source, Source::Alone) {
            return Err(Error::invalid(
                "--peers and --peers-dns need --advertise HOST:PORT: the address other replicas' FlightInfos \
                 send clients to for this one",
            ));
        }
        let me: Vec<Member> = advertise
            .iter()
            .map(|a| Member { address: a.clone(), me: true, alive: true, checked_at: None, error: None })
            .collect();
        Ok(Arc::new(Cluster {
            source,
            advertise,
            scheme: if tls { "grpc+tls" } else { "grpc+tcp" },
            refresh: config.peers_refresh,
            max_endpoints: config.max_endpoints as usize,
            members: ArcSwap::from_pointee(me),
        }))
    }

    /// Whether other replicas may exist (`--peers` or `--peers-dns`).
    pub fn replicated(&self) -> bool {
        !matches!(self.source, Source::Alone)
    }

    /// Every member as last seen, this one included, sorted by address.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.load_full()
    }

    /// The addresses of the members that answered their last check (this one always does).
    pub fn alive(&self) -> Vec<String> {
        self.members().iter().filter(|m| m.alive).map(|m| m.address.clone()).collect()
    }

    /// A location URI for a member's address.
    pub fn location(&self, address: &str) -> String {
        format!("{}://{address}", self.scheme)
    }

    pub fn max_endpoints(&self) -> usize {
        self.max_endpoints
    }

    /// What `status` shows.
    pub fn describe(&self) -> serde_json::Value {
        let source = match &self.source {
            Source::Alone => serde_json::Value::Null,
            Source::Static(p) => serde_json::json!({ "peers": p }),
            Source::Dns(name) => serde_json::json!({ "peers_dns": name }),
        };
        serde_json::json!({
            "advertise": self.advertise,
            "source": source,
            "refresh_seconds": self.refresh.as_secs_f64(),
            "members": *self.members(),
        })
    }

    /// Resolves and probes the members every refresh until `stop` turns true, and marks which
    /// of `catalog`'s files this replica owns (its local tier keeps those first).
    pub fn spawn(self: &Arc<Self>, catalog: Arc<Catalog>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.replicated() {
            return;
        }
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cluster.refresh);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        cluster.check().await;
                        cluster.mark_owned(&catalog);
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// One round: resolve the member list, health-check every other member, publish.
    async fn check(&self) {
        let Some(me) = &self.advertise else { return };
        let addresses = match self.resolve().await {
            Ok(a) => a,
            Err(e) => {
                // Keep the last list (members still drop out by failing their checks).
                tracing::warn!(error = %e, "cannot resolve the replicas");
                self.members().iter().map(|m| m.address.clone()).collect()
            }
        };
        let timeout = self.refresh.min(Duration::from_secs(1));
        let checks = addresses.into_iter().filter(|a| a != me).map(|address| async move {
            let outcome = probe::check(&address, self.scheme == "grpc+tls", timeout).await;
            Member { alive: outcome.is_ok(), error: outcome.err(), checked_at: Some(Utc::now()), me: false, address }
        });
        let mut members = futures::future::join_all(checks).await;
        members.push(Member { address: me.clone(), me: true, alive: true, checked_at: Some(Utc::now()), error: None });
        members.sort_by(|a, b| a.address.cmp(&b.address));
        let before = self.members();
        for m in &members {
            let was = before.iter().find(|b| b.address == m.address).map(|b| b.alive);
            if was != Some(m.alive) {
                tracing::info!(member = %m.address, alive = m.alive, error = ?m.error, "replica membership changed");
            }
        }
        crate::metrics::cluster_members(&members);
        self.members.store(Arc::new(members));
    }

    /// Marks each published file as owned by this replica or not, by the same key parts are
    /// placed by (the file's key), among the live members.
    fn mark_owned(&self, catalog: &Catalog) {
        let (Some(me), members) = (&self.advertise, self.alive()) else { return };
        for ds in catalog.datasets() {
            let snap = ds.snapshot();
            for (file, slot) in snap.files.iter().zip(&snap.segments) {
                slot.own(assign::owner(&file.key, &members) == Some(me.as_str()));
            }
        }
    }

    /// The member addresses the source names now.
    async fn resolve(&self) -> Result<Vec<String>> {
        match &self.source {
            Source::Alone => Ok(Vec::new()),
            Source::Static(peers) => Ok(peers.clone()),
            Source::Dns(name) => {
                let found = tokio::net::lookup_host(name.as_str())
                    .await
                    .map_err(|e| Error::Unavailable(format!("cannot resolve --peers-dns {name}: {e}")))?;
                let mut addresses: Vec<String> = found.map(|a| a.to_string()).collect();
                addresses.sort();
                addresses.dedup();
                Ok(addresses)
            }
        }
    }
}

/// `HOST:PORT` with a port number, or a clear error naming the flag.
fn check_address(flag: &str, address: &str) -> Result<String> {
    let address = address.trim();
    let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
    match port.map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => Ok(address.to_string()),
        _ => Err(Error::invalid(format!("{flag} {address:?} is not HOST:PORT (e.g. 10.0.0.2:50051)"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked() {
        let config = |peers: &[&str], advertise: Option<&str>| Config {
            peers: peers.iter().map(|p| p.to_string()).collect(),
            advertise: advertise.map(str::to_string),
            ..Config::default()
        };
        let err = |c: Config| Cluster::from_config(&c, false).expect_err("must fail").to_string();
        assert!(err(config(&["10.0.0.2:50051"], None)).contains("need --advertise"));
        assert!(err(config(&["10.0.0.2"], Some("10.0.0.1:50051"))).contains("not HOST:PORT"));
        assert!(err(config(&["10.0.0.2:50051"], Some("10.0.0.1:0"))).contains("--advertise"));
        let c = Cluster::from_config(&config(&["10.0.0.2:50051"], Some("10.0.0.1:50051")), false).expect("valid");
        assert!(c.replicated());
        assert_eq!(c.alive(), ["10.0.0.1:50051"]);
        assert_eq!(c.location("10.0.0.2:50051"), "grpc+tcp://10.0.0.2:50051");
        let alone = Cluster::from_config(&Config::default(), true).expect("valid");
        assert!(!alone.replicated());
        assert!(alone.alive().is_empty());
    }

    /// `--peers-dns`: the name's addresses are the members; one that never answers (a port
    /// that accepts connections and says nothing) is not alive, this replica always is.
    #[tokio::test]
    async fn dns_members_are_resolved_and_checked() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let config = Config {
            peers_dns: Some(format!("localhost:{port}")),
            advertise: Some("127.0.0.1:1".into()),
            peers_refresh: Duration::from_millis(200),
            ..Config::default()
        };
        let cluster = Cluster::from_config(&config, false).expect("valid");
        let resolved = cluster.resolve().await.expect("localhost resolves");
        assert!(resolved.contains(&format!("127.0.0.1:{port}")), "{resolved:?}");
        cluster.check().await;
        let members = cluster.members();
        let peer = members.iter().find(|m| m.address == format!("127.0.0.1:{port}")).expect("listed");
        assert!(!peer.alive && peer.error.is_some(), "{peer:?}");
        assert_eq!(cluster.alive(), ["127.0.0.1:1"]);
        assert!(cluster.describe()["source"]["peers_dns"].is_string());
        drop(silent);
    }
}
