use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv6 address, or an IPv4 address in its v4-mapped form (`::ffff:a.b.c.d`), as four
/// 32-bit words in network byte order — the layout of `bpf_sock_addr.user_ip6`.
///
/// One representation for both families lets a v4 socket (`connect4`) and a dual-stack
/// socket connecting to `::ffff:a.b.c.d` (`connect6`) find the same service entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ip6 {
    /// The address words, network byte order.
    pub words: [u32; 4],
}

impl Ip6 {
    /// The v4-mapped form of an IPv4 address given in network byte order (`user_ip4`).
    #[inline(always)]
    pub const fn from_v4_be(ip4: u32) -> Self {
        Self { words: [0, 0, u32::from_ne_bytes([0, 0, 0xff, 0xff]), ip4] }
    }

    /// Whether this is a v4-mapped IPv4 address.
    #[inline(always)]
    pub const fn is_v4_mapped(&self) -> bool {
        self.words[0] == 0 && self.words[1] == 0 && self.words[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
    }

    /// The IPv4 address in network byte order (`user_ip4`); meaningful when v4-mapped.
    #[inline(always)]
    pub const fn v4_be(&self) -> u32 {
        self.words[3]
    }

    /// Converts a standard address; IPv4 becomes v4-mapped.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::from_v4_be(u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Self {
                    words: [
                        u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
                        u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
                        u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
                        u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
                    ],
                }
            }
        }
    }

    /// Converts back to a standard address; v4-mapped becomes IPv4.
    pub fn to_ip(&self) -> IpAddr {
        if self.is_v4_mapped() {
            let b = self.words[3].to_ne_bytes();
            return IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        }
        let [a, b, c, d] = self.words;
        let (a, b, c, d) = (a.to_ne_bytes(), b.to_ne_bytes(), c.to_ne_bytes(), d.to_ne_bytes());
        IpAddr::V6(Ipv6Addr::from([
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3],
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trips_through_the_mapped_form() {
        let ip: IpAddr = Ipv4Addr::new(240, 0, 0, 10).into();
        let mapped = Ip6::from_ip(ip);
        assert!(mapped.is_v4_mapped());
        assert_eq!(mapped.v4_be(), u32::from_ne_bytes([240, 0, 0, 10]));
        assert_eq!(mapped.to_ip(), ip);
    }

    #[test]
    fn v4_mapped_v6_equals_v4() {
        let v6: Ipv6Addr = "::ffff:240.0.0.10".parse().unwrap();
        let v4: Ipv4Addr = "240.0.0.10".parse().unwrap();
        assert_eq!(Ip6::from_ip(v6.into()), Ip6::from_ip(v4.into()));
    }

    #[test]
    fn v6_round_trips() {
        let ip: IpAddr = "fd00::1:2".parse::<Ipv6Addr>().unwrap().into();
        let k = Ip6::from_ip(ip);
        assert!(!k.is_v4_mapped());
        assert_eq!(k.to_ip(), ip);
    }
}
