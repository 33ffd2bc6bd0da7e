//! The tiny HTTP/1.1 dialect spoken by the load generator and the backend servers. Fixed
//! requests and a fixed-length response keep parsing out of the measurement; it is still
//! real HTTP on the wire, so HAProxy could run in `mode http` as well.

use std::net::{Ipv4Addr, SocketAddrV4};

/// One request per connection; the server closes after the response (`Connection: close`),
/// so the server side holds TIME_WAIT and the client's ephemeral ports are freed at once.
pub const REQUEST_CLOSE: &[u8] = b"GET /close HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
/// A request on a persistent connection.
pub const REQUEST_KEEP: &[u8] = b"GET /keep HTTP/1.1\r\nHost: bench\r\n\r\n";
/// Asks the server to stream bytes until the client closes.
pub const REQUEST_BULK: &[u8] = b"GET /bulk HTTP/1.1\r\nHost: bench\r\n\r\n";
/// The answer to `/close` and `/keep`.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What a request asks for, told apart by the first letter of its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// [`REQUEST_CLOSE`].
    Close,
    /// [`REQUEST_KEEP`].
    Keep,
    /// [`REQUEST_BULK`].
    Bulk,
}

impl Request {
    /// Parses a complete request head.
    pub fn parse(head: &[u8]) -> Option<Self> {
        match head.get(..6)? {
            b"GET /c" => Some(Self::Close),
            b"GET /k" => Some(Self::Keep),
            b"GET /b" => Some(Self::Bulk),
            _ => None,
        }
    }
}

/// The backends every setup ends at: two servers (two addresses, so a VIP has two backends
/// to balance over) on the loopback of the setup's own network namespace.
pub const BACKENDS: [SocketAddrV4; 2] =
    [SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9000), SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 9000)];

/// Port of every VIP.
pub const VIP_PORT: u16 = 80;

/// VIP of service `index` (0-based): consecutive addresses from 240.0.0.1, inside Viking's
/// default VIP range 240.0.0.0/4 (room for 2^28 - 1 services).
pub fn vip(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(240, 0, 0, 1)) + index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_apart() {
        assert_eq!(Request::parse(REQUEST_CLOSE), Some(Request::Close));
        assert_eq!(Request::parse(REQUEST_KEEP), Some(Request::Keep));
        assert_eq!(Request::parse(REQUEST_BULK), Some(Request::Bulk));
        assert_eq!(Request::parse(b"POST /"), None);
    }

    #[test]
    fn vips_are_consecutive_from_240_0_0_1() {
        assert_eq!(vip(0), Ipv4Addr::new(240, 0, 0, 1));
        assert_eq!(vip(255), Ipv4Addr::new(240, 0, 1, 0));
        assert_eq!(vip(99_999), Ipv4Addr::new(240, 1, 134, 160));
    }
}
