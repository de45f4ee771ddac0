//! A minimal synchronous DNS stub: one question to one server, UDP with TCP fallback.
//!
//! Used to check what a test DNS server really serves over the network (not what we believe
//! we configured). No caching, no recursion, no retries beyond a lost UDP datagram.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad name: {0}")]
    Name(String),
    #[error("DNS I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("DNS wire format: {0}")]
    Wire(String),
    #[error("DNS response code {0}")]
    Rcode(ResponseCode),
}

const TIMEOUT: Duration = Duration::from_secs(2);

/// Asks `server` for `name`/`rtype` and returns the answer-section records of that type.
///
/// NXDOMAIN and NODATA both give an empty list; other error codes are errors.
pub fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Result<Vec<RData>, QueryError> {
    query_with_timeout(server, name, rtype, TIMEOUT)
}

pub(crate) fn query_with_timeout(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<RData>, QueryError> {
    let qname = Name::from_ascii(name).map_err(|e| QueryError::Name(e.to_string()))?;
    let mut msg = Message::query();
    msg.add_query(Query::query(qname, rtype));
    let wire = msg.to_vec().map_err(|e| QueryError::Wire(e.to_string()))?;
    let id = msg.metadata.id;

    let mut response = udp_exchange(server, &wire, id, timeout)?;
    if response.metadata.truncation {
        response = tcp_exchange(server, &wire, timeout)?;
    }
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        rc => return Err(QueryError::Rcode(rc)),
    }
    Ok(response
        .answers
        .into_iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data)
        .collect())
}

fn udp_exchange(
    server: SocketAddr,
    wire: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Message, QueryError> {
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .expect("literal address");
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(timeout))?;
    let mut buf = vec![0u8; 65535];
    let mut last_err = None;
    for _ in 0..2 {
        sock.send(wire)?;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = Message::from_vec(&buf[..n])
                        .map_err(|e| QueryError::Wire(e.to_string()))?;
                    // A late answer to an earlier attempt has the same id, which is fine.
                    if msg.metadata.id == id {
                        return Ok(msg);
                    }
                }
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
    }
    Err(QueryError::Io(last_err.expect("loop ran")))
}

fn tcp_exchange(server: SocketAddr, wire: &[u8], timeout: Duration) -> Result<Message, QueryError> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let len = u16::try_from(wire.len()).map_err(|_| QueryError::Wire("query too long".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    stream.write_all(&framed)?;
    let mut len_buf = [0u8; 2];
    stream.read_exact(&mut len_buf)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len_buf))];
    stream.read_exact(&mut buf)?;
    Message::from_vec(&buf).map_err(|e| QueryError::Wire(e.to_string()))
}
