//! dns-01 through RFC 2136 dynamic update, signed with TSIG (RFC 8945).
//!
//! Procedure for one TXT record (RFC 8555 §8.4):
//! 1. follow CNAMEs at `_acme-challenge.<name>` (R62: delegation of the challenge to a
//!    dedicated zone); the final target is the name that gets the record;
//! 2. find the zone of that name by asking the update server for its SOA;
//! 3. add the TXT record (an UPDATE that adds to the RRset, so concurrent orders coexist);
//! 4. wait until every authoritative server of the zone answers with the value;
//! 5. after validation, delete exactly that record (R64).
//!
//! Invariants: updates go over TCP and, when a key is configured, responses must carry a
//! valid TSIG from the same key (a forged "NOERROR" must not make us tell the CA to go ahead).
//! The key's secret never appears in errors or logs.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query, ResponseCode, UpdateMessage, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, RecordSet, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::error::{Error, Result};

const TXT_TTL: u32 = 60;
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// A TSIG key: name, algorithm, secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TsigKey {{ name: {:?}, algorithm: {:?}, secret: <redacted> }}",
            self.name, self.algorithm
        )
    }
}

impl TsigKey {
    pub fn new(name: &str, algorithm: &str, secret: Vec<u8>) -> Self {
        TsigKey {
            name: name.trim_end_matches('.').to_owned(),
            algorithm: algorithm.to_ascii_lowercase(),
            secret,
        }
    }

    /// Reads a key file in one of the formats DNS servers hand out:
    /// BIND (`key "name" { algorithm hmac-sha256; secret "…"; };`), knot's YAML
    /// (`id:`/`algorithm:`/`secret:`), or the one-line `[algorithm:]name:secret` of knsupdate -y.
    pub fn parse(text: &str) -> Result<Self> {
        use base64::Engine;
        let b64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim().trim_matches('"'))
                .map_err(|_| Error::Config("TSIG key: the secret is not base64".into()))
        };
        // BIND puts several statements on a line; one statement per line makes all formats alike.
        let normalised = text.replace(['{', '}', ';'], "\n");
        let field = |key: &str| -> Option<String> {
            normalised.lines().find_map(|l| {
                let l = l.trim().trim_start_matches("- ");
                let rest = l.strip_prefix(key)?;
                let rest = rest.trim_start_matches(':').trim();
                Some(
                    rest.trim_end_matches(';')
                        .trim()
                        .trim_matches('"')
                        .to_owned(),
                )
            })
        };
        if let Some(start) = text.find("key ") {
            // BIND syntax.
            let after = &text[start + 4..];
            let name = after
                .split('{')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"')
                .to_owned();
            let name = name.trim_end_matches('.').to_owned();
            let algorithm = field("algorithm").unwrap_or_else(|| "hmac-sha256".into());
            let secret =
                field("secret").ok_or_else(|| Error::Config("TSIG key: no secret".into()))?;
            if name.is_empty() {
                return Err(Error::Config("TSIG key: no key name".into()));
            }
            return Ok(Self::new(&name, &algorithm, b64(&secret)?));
        }
        if let (Some(id), Some(secret)) = (field("id"), field("secret")) {
            let algorithm = field("algorithm").unwrap_or_else(|| "hmac-sha256".into());
            return Ok(Self::new(&id, &algorithm, b64(&secret)?));
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let parts: Vec<&str> = line.split(':').collect();
        match parts.as_slice() {
            [name, secret] => Ok(Self::new(name, "hmac-sha256", b64(secret)?)),
            [alg, name, secret] => Ok(Self::new(name, alg, b64(secret)?)),
            _ => Err(Error::Config(
                "TSIG key file: expected BIND `key` syntax, knot `id:/algorithm:/secret:` or `[alg:]name:secret`".into(),
            )),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading TSIG key {}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    fn signer(&self) -> Result<TSigner> {
        let algorithm = TsigAlgorithm::from_name(
            Name::from_ascii(&self.algorithm)
                .map_err(|_| Error::Config("TSIG key: bad algorithm name".into()))?,
        );
        let name = Name::from_ascii(&self.name)
            .map_err(|_| Error::Config(format!("TSIG key: bad key name {}", self.name)))?;
        TSigner::new(self.secret.clone(), algorithm, name, 300).map_err(|_| {
            Error::Config(format!(
                "TSIG algorithm {} is not supported",
                self.algorithm
            ))
        })
    }
}

/// An RFC 2136 update target.
#[derive(Debug, Clone)]
pub struct DnsUpdater {
    pub server: SocketAddr,
    pub key: Option<TsigKey>,
    /// Servers that must show the record before the CA is told; empty: the zone's NS set
    /// (port 53, or the update server's port for NS addresses equal to the update server's).
    pub check_servers: Vec<SocketAddr>,
    pub propagation_timeout: Duration,
}

/// A TXT record that was added and must be removed.
#[derive(Debug, Clone)]
pub struct AddedRecord {
    pub zone: Name,
    pub name: Name,
    pub value: String,
}

fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_ascii(name)
        .map_err(|_| Error::Dns(format!("{name} is not a valid DNS name")))?;
    n.set_fqdn(true);
    Ok(n)
}

fn txt_rrset(name: &Name, value: &str, ttl: u32) -> RecordSet {
    let mut rrset = RecordSet::with_ttl(name.clone(), RecordType::TXT, ttl);
    rrset.add_rdata(RData::TXT(TXT::new(vec![value.to_owned()])));
    rrset.set_dns_class(DNSClass::IN);
    rrset
}

fn txt_values(msg: &Message, name: &Name) -> Vec<String> {
    msg.answers
        .iter()
        .filter(|r| r.name.eq_case(name) || r.name == *name)
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

impl DnsUpdater {
    pub fn new(server: SocketAddr, key: Option<TsigKey>) -> Self {
        DnsUpdater {
            server,
            key,
            check_servers: Vec::new(),
            propagation_timeout: Duration::from_secs(120),
        }
    }

    async fn query(&self, server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Message> {
        let mut msg = Message::query();
        msg.add_query(Query::query(name.clone(), rtype));
        msg.metadata.recursion_desired = false;
        let bytes = msg
            .to_vec()
            .map_err(|e| Error::Dns(format!("encoding a query: {e}")))?;
        let reply = udp_exchange(server, &bytes).await?;
        let mut answer = Message::from_vec(&reply)
            .map_err(|e| Error::Dns(format!("bad answer from {server}: {e}")))?;
        if answer.metadata.truncation {
            let reply = tcp_exchange(server, &bytes).await?;
            answer = Message::from_vec(&reply)
                .map_err(|e| Error::Dns(format!("bad answer from {server}: {e}")))?;
        }
        if answer.metadata.id != msg.metadata.id {
            return Err(Error::Dns(format!(
                "{server} answered with a different message id"
            )));
        }
        Ok(answer)
    }

    /// Follows CNAMEs from `name` (at most 8, to stop loops) and returns the final owner.
    pub async fn follow_cname(&self, name: &str) -> Result<Name> {
        let mut current = fqdn(name)?;
        for _ in 0..8 {
            let answer = self.query(self.server, &current, RecordType::CNAME).await?;
            let next = answer.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(c) if r.name == current => Some(c.0.clone()),
                _ => None,
            });
            match next {
                Some(target) => {
                    tracing::debug!("{current} is a CNAME to {target}");
                    current = target;
                }
                None => return Ok(current),
            }
        }
        Err(Error::Dns(format!(
            "{name}: CNAME chain longer than 8 or a loop"
        )))
    }

    /// The zone that contains `name`, from the update server's SOA answer.
    pub async fn find_zone(&self, name: &Name) -> Result<Name> {
        let mut candidate = name.clone();
        loop {
            let answer = self.query(self.server, &candidate, RecordType::SOA).await?;
            let soa_owner = answer
                .answers
                .iter()
                .chain(answer.authorities.iter())
                .find(|r| r.record_type() == RecordType::SOA)
                .map(|r| r.name.clone());
            if let Some(zone) = soa_owner
                && zone.zone_of(name)
            {
                return Ok(zone);
            }
            if candidate.is_root() || candidate.num_labels() == 0 {
                return Err(Error::Dns(format!(
                    "the DNS server {} is not authoritative for any zone containing {name}",
                    self.server
                )));
            }
            candidate = candidate.base_name();
        }
    }

    async fn send_update(&self, mut msg: Message, what: &str) -> Result<()> {
        let verifier = match &self.key {
            Some(key) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
                msg.finalize(&key.signer()?, now)
                    .map_err(|e| Error::Dns(format!("TSIG signing: {e}")))?
            }
            None => None,
        };
        let bytes = msg
            .to_vec()
            .map_err(|e| Error::Dns(format!("encoding the update: {e}")))?;
        let reply = tcp_exchange(self.server, &bytes).await?;
        let answer = match verifier {
            Some(mut v) => v
                .verify(&reply)
                .map_err(|e| {
                    Error::Dns(format!(
                        "{what}: the answer of {} is not signed by the TSIG key ({e}); check the key name and secret",
                        self.server
                    ))
                })?
                .into_message(),
            None => Message::from_vec(&reply).map_err(|e| Error::Dns(format!("bad update answer: {e}")))?,
        };
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NotAuth => Err(Error::Dns(format!(
                "{what}: {} refused the TSIG key or is not authoritative (NOTAUTH); check the key and the server's update ACL",
                self.server
            ))),
            ResponseCode::Refused => Err(Error::Dns(format!(
                "{what}: {} refused the update (REFUSED); allow updates for this key on that zone",
                self.server
            ))),
            other => Err(Error::Dns(format!(
                "{what}: {} answered {other}",
                self.server
            ))),
        }
    }

    /// Adds the TXT record for `domain` (the `_acme-challenge` owner, CNAME followed).
    pub async fn add_txt(&self, domain: &str, value: &str) -> Result<AddedRecord> {
        let owner = format!("_acme-challenge.{}", domain.trim_end_matches('.'));
        let name = self.follow_cname(&owner).await?;
        let zone = self.find_zone(&name).await?;
        let mut msg =
            update_message::append(txt_rrset(&name, value, TXT_TTL), zone.clone(), false, false);
        debug_assert_eq!(msg.metadata.op_code, OpCode::Update);
        msg.metadata.recursion_desired = false;
        self.send_update(msg, &format!("adding TXT {name}")).await?;
        Ok(AddedRecord {
            zone,
            name,
            value: value.to_owned(),
        })
    }

    pub async fn remove_txt(&self, record: &AddedRecord) -> Result<()> {
        let msg = update_message::delete_by_rdata(
            txt_rrset(&record.name, &record.value, 0),
            record.zone.clone(),
            false,
        );
        self.send_update(msg, &format!("removing TXT {}", record.name))
            .await
    }

    /// Adds many TXT records with one UPDATE per zone (a fleet manager answering dns-01 for
    /// hundreds of names sends a handful of updates, not one per name). Each entry is
    /// `(domain, value)` as for [`DnsUpdater::add_txt`]. Either every record of a zone is
    /// added or none: an UPDATE is atomic on the primary (RFC 2136 §3.4).
    pub async fn add_txts(&self, records: &[(String, String)]) -> Result<Vec<AddedRecord>> {
        let mut added = Vec::with_capacity(records.len());
        for (domain, value) in records {
            let owner = format!("_acme-challenge.{}", domain.trim_end_matches('.'));
            let name = self.follow_cname(&owner).await?;
            let zone = self.find_zone(&name).await?;
            added.push(AddedRecord {
                zone,
                name,
                value: value.clone(),
            });
        }
        for (zone, group) in by_zone(&added) {
            let mut msg = Message::query();
            msg.metadata.op_code = OpCode::Update;
            msg.metadata.recursion_desired = false;
            msg.add_zone(Query::query(zone.clone(), RecordType::SOA));
            for r in &group {
                msg.add_updates(txt_rrset(&r.name, &r.value, TXT_TTL));
            }
            self.send_update(
                msg,
                &format!("adding {} TXT records in {zone}", group.len()),
            )
            .await?;
        }
        Ok(added)
    }

    /// Removes records added by [`DnsUpdater::add_txts`], one UPDATE per zone.
    pub async fn remove_txts(&self, records: &[AddedRecord]) -> Result<()> {
        for (zone, group) in by_zone(records) {
            let mut msg = Message::query();
            msg.metadata.op_code = OpCode::Update;
            msg.metadata.recursion_desired = false;
            msg.add_zone(Query::query(zone.clone(), RecordType::SOA));
            for r in &group {
                let mut rrset = txt_rrset(&r.name, &r.value, 0);
                // RFC 2136 §2.5.4: class NONE deletes exactly this RR.
                rrset.set_dns_class(DNSClass::NONE);
                msg.add_updates(rrset);
            }
            self.send_update(
                msg,
                &format!("removing {} TXT records in {zone}", group.len()),
            )
            .await?;
        }
        Ok(())
    }

    /// Waits until every record is visible on every authoritative server of its zone; the
    /// servers are asked in turn, and records already seen are not asked again.
    pub async fn wait_all_visible(&self, records: &[AddedRecord]) -> Result<()> {
        let mut pending: Vec<(SocketAddr, &AddedRecord)> = Vec::new();
        for (zone, group) in by_zone(records) {
            for server in self.servers_to_check(&zone).await {
                pending.extend(group.iter().map(|r| (server, *r)));
            }
        }
        let deadline = Instant::now() + self.propagation_timeout;
        loop {
            let mut still = Vec::new();
            for (server, record) in pending {
                match self.query(server, &record.name, RecordType::TXT).await {
                    Ok(m) if txt_values(&m, &record.name).contains(&record.value) => {}
                    _ => still.push((server, record)),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let (server, record) = still[0];
                return Err(Error::Timeout(format!(
                    "{} TXT records not visible after {:?} (first: {} on {server}); check zone transfers to the secondaries",
                    still.len(),
                    self.propagation_timeout,
                    record.name,
                )));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The servers to check: the configured list, or the zone's NS addresses.
    async fn servers_to_check(&self, zone: &Name) -> Vec<SocketAddr> {
        if !self.check_servers.is_empty() {
            return self.check_servers.clone();
        }
        let mut out = vec![self.server];
        let Ok(ns) = self.query(self.server, zone, RecordType::NS).await else {
            return out;
        };
        for r in &ns.answers {
            let RData::NS(target) = &r.data else { continue };
            for rtype in [RecordType::A, RecordType::AAAA] {
                let Ok(a) = self.query(self.server, &target.0, rtype).await else {
                    continue;
                };
                for rec in a.answers.iter().chain(a.additionals.iter()) {
                    let ip: IpAddr = match &rec.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        _ => continue,
                    };
                    let port = if ip == self.server.ip() {
                        self.server.port()
                    } else {
                        53
                    };
                    let addr = SocketAddr::new(ip, port);
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
        }
        out
    }

    /// Waits until every authoritative server answers the record (RFC 8555 §8.4 asks the
    /// client to make sure the record is in place before responding to the challenge).
    pub async fn wait_visible(&self, record: &AddedRecord) -> Result<()> {
        let servers = self.servers_to_check(&record.zone).await;
        let deadline = Instant::now() + self.propagation_timeout;
        let mut pending = servers.clone();
        loop {
            let mut still = Vec::new();
            for s in pending {
                match self.query(s, &record.name, RecordType::TXT).await {
                    Ok(m) if txt_values(&m, &record.name).contains(&record.value) => {}
                    _ => still.push(s),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = still.iter().map(|s| s.to_string()).collect();
                return Err(Error::Timeout(format!(
                    "TXT {} not visible on {} after {:?}; check zone transfers to the secondaries",
                    record.name,
                    list.join(", "),
                    self.propagation_timeout
                )));
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every TXT value currently at `name` on the update server (used by tests and cleanup checks).
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>> {
        let n = fqdn(name)?;
        let m = self.query(self.server, &n, RecordType::TXT).await?;
        Ok(txt_values(&m, &n))
    }
}

/// Records grouped by zone, zones in first-seen order.
fn by_zone(records: &[AddedRecord]) -> Vec<(Name, Vec<&AddedRecord>)> {
    let mut groups: Vec<(Name, Vec<&AddedRecord>)> = Vec::new();
    for r in records {
        match groups.iter_mut().find(|(z, _)| *z == r.zone) {
            Some((_, g)) => g.push(r),
            None => groups.push((r.zone.clone(), vec![r])),
        }
    }
    groups
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(Error::io("binding a UDP socket"))?;
    sock.connect(server)
        .await
        .map_err(Error::io(format!("connecting to {server}")))?;
    for _ in 0..3 {
        sock.send(bytes)
            .await
            .map_err(Error::io(format!("sending to {server}")))?;
        let mut buf = vec![0u8; 65535];
        match tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(Err(e)) => return Err(Error::Dns(format!("{server}: {e}"))),
            Err(_) => continue,
        }
    }
    Err(Error::Dns(format!("no answer from {server}")))
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>> {
    let work = async {
        let mut s = TcpStream::connect(server).await?;
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(QUERY_TIMEOUT * 3, work).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(Error::Dns(format!("{server} (TCP): {e}"))),
        Err(_) => Err(Error::Dns(format!("{server} (TCP): no answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_formats() {
        let bind =
            "key \"acme-key\" {\n  algorithm hmac-sha256;\n  secret \"c2VjcmV0c2VjcmV0\";\n};\n";
        let k = TsigKey::parse(bind).unwrap();
        assert_eq!(
            (k.name.as_str(), k.algorithm.as_str(), k.secret.as_slice()),
            ("acme-key", "hmac-sha256", &b"secretsecret"[..])
        );
        let knot =
            "key:\n  - id: acme-key.\n    algorithm: hmac-sha512\n    secret: c2VjcmV0c2VjcmV0\n";
        let k = TsigKey::parse(knot).unwrap();
        assert_eq!(
            (k.name.as_str(), k.algorithm.as_str()),
            ("acme-key", "hmac-sha512")
        );
        let line = TsigKey::parse("hmac-sha384:acme-key:c2VjcmV0c2VjcmV0\n").unwrap();
        assert_eq!(line.algorithm, "hmac-sha384");
        assert!(TsigKey::parse("nonsense").is_err());
        assert!(TsigKey::parse("acme-key:not*base64").is_err());
        assert!(!format!("{k:?}").contains("c2Vj"));
    }
}
