//! The DNS view of a validation: one configured server (or the system resolver), no cache.
//!
//! NXDOMAIN and "no records of this type" are answers, not failures; SERVFAIL, REFUSED, timeouts
//! and unreachable servers are `dns` problems naming the queried name and type.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::CAA;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use sceau_wire::ProblemType;

use crate::{BuildError, ValidationError};

#[derive(Clone)]
pub(crate) struct Dns {
    resolver: TokioResolver,
}

/// What the DNS said about one name and type.
#[derive(Debug)]
pub(crate) enum Answer {
    Records(Vec<RData>),
    /// The name exists, with no record of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

impl Dns {
    pub(crate) fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Dns, BuildError> {
        let mut builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let mut b = TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                );
                // A dedicated validation server answers for names; /etc/hosts must not.
                b.options_mut().use_hosts_file = ResolveHosts::Never;
                b
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| BuildError::Resolver(format!("system configuration: {e}")))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        // A validation must see the records as they are now, not as they were.
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        // Two tries per question within half the validation budget, so an unresponsive server
        // is reported as a `dns` problem before the whole attempt times out.
        opts.timeout = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        opts.attempts = 2;
        // Names we query are absolute; never try search domains.
        opts.ndots = 0;
        builder
            .build()
            .map_err(|e| BuildError::Resolver(e.to_string()))
            .map(|resolver| Dns { resolver })
    }

    /// Records of `rtype` at `name` (absolute, without trailing dot), CNAMEs followed.
    pub(crate) async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Answer, ValidationError> {
        let fqdn = Name::from_ascii(format!("{name}.")).map_err(|e| {
            ValidationError::new(
                ProblemType::Malformed,
                format!("{name:?} is not a DNS name: {e}"),
            )
        })?;
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(lookup) => {
                let records: Vec<RData> = lookup
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect();
                Ok(if records.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Records(records)
                })
            }
            Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
                Ok(if nr.response_code == ResponseCode::NXDomain {
                    Answer::NxDomain
                } else {
                    Answer::NoData
                })
            }
            Err(e) => Err(dns_failure(name, rtype, &e)),
        }
    }

    /// Addresses of `host`: A records first, then AAAA (RFC 8555 §8.3 leaves the order to us).
    pub(crate) async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, ValidationError> {
        let a = self.lookup(host, RecordType::A).await?;
        let aaaa = self.lookup(host, RecordType::AAAA).await;
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Answer::Records(rs) = &a {
            ips.extend(rs.iter().filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            }));
        }
        match aaaa {
            Ok(Answer::Records(rs)) => ips.extend(rs.iter().filter_map(|r| match r {
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Ok(_) => {}
            // IPv4 addresses are enough to go on; only fail when we have none.
            Err(e) if ips.is_empty() => return Err(e),
            Err(_) => {}
        }
        if ips.is_empty() {
            let why = if matches!(a, Answer::NxDomain) {
                "NXDOMAIN"
            } else {
                "no A or AAAA records"
            };
            return Err(ValidationError::new(
                ProblemType::Dns,
                format!("{why} looking up A/AAAA for {host}"),
            ));
        }
        Ok(ips)
    }

    /// TXT values at `name`, each record's character-strings concatenated. A name that exists
    /// without TXT gives an empty list; a name that does not exist is a `dns` problem.
    pub(crate) async fn txt(&self, name: &str) -> Result<Vec<String>, ValidationError> {
        match self.lookup(name, RecordType::TXT).await? {
            Answer::Records(rs) => Ok(rs
                .iter()
                .filter_map(|r| match r {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Answer::NoData => Ok(Vec::new()),
            Answer::NxDomain => Err(ValidationError::new(
                ProblemType::Dns,
                format!("NXDOMAIN looking up TXT for {name}"),
            )),
        }
    }

    /// The CAA RRset at `name` (empty when the name or the RRset does not exist).
    pub(crate) async fn caa(&self, name: &str) -> Result<Vec<CAA>, ValidationError> {
        Ok(match self.lookup(name, RecordType::CAA).await? {
            Answer::Records(rs) => rs
                .into_iter()
                .filter_map(|r| match r {
                    RData::CAA(caa) => Some(caa),
                    _ => None,
                })
                .collect(),
            Answer::NoData | Answer::NxDomain => Vec::new(),
        })
    }
}

fn dns_failure(name: &str, rtype: RecordType, e: &NetError) -> ValidationError {
    let why = match e {
        NetError::Dns(DnsError::ResponseCode(rc)) => rc.to_str().to_uppercase(),
        NetError::Timeout => "timeout".to_owned(),
        other => other.to_string(),
    };
    ValidationError::new(
        ProblemType::Dns,
        format!("{why} looking up {rtype} for {name}"),
    )
}
