//! The checks on names and backend addresses that every source's input goes through: the
//! config file, Consul's catalog and containers' declarations.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr},
};

use ipnet::IpNet;

/// Why a name cannot name a service: names become DNS labels (`<name>.service.viking`)
/// and env var prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or longer than a DNS label.
    #[error("must be 1 to 63 characters")]
    Length,
    /// A character other than a letter, a digit, `-` or `_`.
    #[error("may only contain letters, digits, '-' and '_'")]
    Characters,
    /// A leading or trailing `-`.
    #[error("may not start or end with '-'")]
    Hyphen,
}

/// Checks that `name` can name a service.
pub fn check_service_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 63 {
        return Err(NameError::Length);
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(NameError::Characters);
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(NameError::Hyphen);
    }
    Ok(())
}

/// The address ranges VIPs come from (`agent.vip_ranges`). No backend is ever inside one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct VipRanges(Vec<IpNet>);

impl VipRanges {
    /// Whether `ip` is inside one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// Whether `net` lies inside one of the ranges.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        self.0.iter().any(|range| range.contains(net))
    }

    /// Whether there is no range at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// 240.0.0.0/4: reserved, never routed, and where Consul's own virtual IPs live.
impl Default for VipRanges {
    fn default() -> Self {
        Self(vec![IpNet::V4(ipnet::Ipv4Net::new(Ipv4Addr::new(240, 0, 0, 0), 4).expect("valid prefix"))])
    }
}

/// The ranges as written in messages: `240.0.0.0/4, fd00:5::/64`.
impl fmt::Display for VipRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, range) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{range}")?;
        }
        Ok(())
    }
}

/// Why an address cannot be a backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Port 0.
    #[error("port 0 is not a destination")]
    PortZero,
    /// Unspecified, multicast or broadcast.
    #[error("not a unicast address")]
    NotUnicast,
    /// A VIP, or where VIPs come from.
    #[error("inside the VIP ranges ({0}); a VIP cannot be a backend")]
    InsideVipRanges(VipRanges),
    /// IPv4 for an IPv6 VIP, or the other way round.
    #[error("address family differs from the VIP {0}")]
    FamilyDiffers(IpAddr),
}

/// Checks that `addr` is a usable unicast destination outside `vip_ranges`, whichever VIP
/// it serves.
pub fn check_backend_addr(addr: SocketAddr, vip_ranges: &VipRanges) -> Result<(), BackendError> {
    let ip = addr.ip();
    if addr.port() == 0 {
        return Err(BackendError::PortZero);
    }
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(BackendError::NotUnicast);
    }
    if vip_ranges.contains(ip) {
        return Err(BackendError::InsideVipRanges(vip_ranges.clone()));
    }
    Ok(())
}

/// Checks that `addr` can be a backend of `vip`: [`check_backend_addr`], and the VIP's
/// address family.
pub fn check_backend_of(addr: SocketAddr, vip: IpAddr, vip_ranges: &VipRanges) -> Result<(), BackendError> {
    check_backend_addr(addr, vip_ranges)?;
    if addr.is_ipv4() != vip.is_ipv4() {
        return Err(BackendError::FamilyDiffers(vip));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_labels() {
        assert_eq!(check_service_name("web_1-a"), Ok(()));
        assert_eq!(check_service_name(""), Err(NameError::Length));
        assert_eq!(check_service_name(&"a".repeat(64)), Err(NameError::Length));
        assert_eq!(check_service_name("bad name"), Err(NameError::Characters));
        assert_eq!(check_service_name("-web"), Err(NameError::Hyphen));
    }

    #[test]
    fn backends_are_unicast_outside_the_vip_ranges_and_of_the_vips_family() {
        let ranges = VipRanges::default();
        let vip: IpAddr = "240.0.0.10".parse().unwrap();
        let check = |addr: &str| check_backend_of(addr.parse().unwrap(), vip, &ranges);
        assert_eq!(check("10.0.0.1:80"), Ok(()));
        assert_eq!(check("10.0.0.1:0"), Err(BackendError::PortZero));
        assert_eq!(check("224.0.0.1:80"), Err(BackendError::NotUnicast));
        assert_eq!(check("255.255.255.255:80"), Err(BackendError::NotUnicast));
        assert_eq!(check("240.0.0.11:80"), Err(BackendError::InsideVipRanges(ranges.clone())));
        assert_eq!(check("[fd00::1]:80"), Err(BackendError::FamilyDiffers(vip)));
        assert_eq!(check_backend_addr("[fd00::1]:80".parse().unwrap(), &ranges), Ok(()), "any family");
        assert_eq!(
            BackendError::InsideVipRanges(ranges).to_string(),
            "inside the VIP ranges (240.0.0.0/4); a VIP cannot be a backend"
        );
    }
}
